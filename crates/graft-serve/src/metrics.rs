//! What `GET /metrics` reports, in Prometheus' text format: requests by route and status,
//! request latency and batch sizes as histograms, rejected requests by reason, the queue's depth.
//! Plain atomics: recording a request takes no lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
const LATENCY_BOUNDS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Upper bounds (inputs) of the batch-size histogram's buckets.
const BATCH_BOUNDS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// The routes counted apart (anything else is `other`).
pub const ROUTES: [&str; 5] = ["predict", "model", "healthz", "metrics", "other"];
/// The status codes counted apart (anything else is `other`).
const STATUSES: [u16; 10] = [200, 400, 404, 405, 408, 413, 415, 500, 503, 0];

/// Why a request was turned away or failed, as `graft_rejected_total{reason}` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// An input graft could not read (a damaged or oversized image, malformed JSON).
    BadInput,
    /// A content type the endpoint does not take.
    MediaType,
    /// A body over the size limit, or too many inputs.
    TooLarge,
    /// The queue was full.
    Overloaded,
    /// The client sent its body too slowly.
    Timeout,
    /// Too many open connections.
    Connections,
    /// graft failed on readable inputs.
    Internal,
}

const REASONS: [(Reason, &str); 7] = [
    (Reason::BadInput, "bad_input"),
    (Reason::MediaType, "media_type"),
    (Reason::TooLarge, "too_large"),
    (Reason::Overloaded, "overloaded"),
    (Reason::Timeout, "timeout"),
    (Reason::Connections, "connections"),
    (Reason::Internal, "internal"),
];

struct Histogram<const N: usize> {
    bounds: [f64; N],
    /// Per bucket (not cumulative); the last is +Inf.
    counts: Vec<AtomicU64>,
    /// The sum of observations, in millionths.
    sum_micros: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    fn new(bounds: [f64; N]) -> Self {
        Histogram { bounds, counts: (0..=N).map(|_| AtomicU64::new(0)).collect(), sum_micros: AtomicU64::new(0) }
    }

    fn observe(&self, value: f64) {
        let bucket = self.bounds.iter().position(|&bound| value <= bound).unwrap_or(N);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((value * 1e6).round() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let separator = if labels.is_empty() { "" } else { "," };
        for (index, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = self.bounds.get(index).map_or("+Inf".to_owned(), f64::to_string);
            let _ = writeln!(out, "{name}_bucket{{{labels}{separator}le=\"{bound}\"}} {cumulative}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// The server's counters.
pub struct Metrics {
    /// `[route][status]`.
    requests: Vec<Vec<AtomicU64>>,
    latency: Histogram<14>,
    batches: Histogram<8>,
    rejected: Vec<AtomicU64>,
    inputs: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let counters = |count| (0..count).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Metrics {
            requests: ROUTES.iter().map(|_| counters(STATUSES.len())).collect(),
            latency: Histogram::new(LATENCY_BOUNDS),
            batches: Histogram::new(BATCH_BOUNDS),
            rejected: counters(REASONS.len()),
            inputs: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// A request to `route` answered with `status` after `elapsed`.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        let route = ROUTES.iter().position(|&known| known == route).unwrap_or(ROUTES.len() - 1);
        let status = STATUSES.iter().position(|&known| known == status).unwrap_or(STATUSES.len() - 1);
        self.requests[route][status].fetch_add(1, Ordering::Relaxed);
        if ROUTES[route] == "predict" {
            self.latency.observe(elapsed.as_secs_f64());
        }
    }

    /// A forward pass over `inputs` inputs (images or texts of several requests).
    pub fn batch(&self, inputs: usize) {
        self.batches.observe(inputs as f64);
        self.inputs.fetch_add(inputs as u64, Ordering::Relaxed);
    }

    pub fn rejected(&self, reason: Reason) {
        if let Some(index) = REASONS.iter().position(|(known, _)| *known == reason) {
            self.rejected[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text `/metrics` answers; `queued` is the requests waiting per student.
    pub fn render(&self, queued: &[(String, usize)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP graft_requests_total HTTP requests answered, by route and status.\n");
        out.push_str("# TYPE graft_requests_total counter\n");
        for (route, statuses) in ROUTES.iter().zip(&self.requests) {
            for (status, count) in STATUSES.iter().zip(statuses) {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let status = if *status == 0 { "other".to_owned() } else { status.to_string() };
                    let _ = writeln!(out, "graft_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}");
                }
            }
        }
        out.push_str("# HELP graft_request_duration_seconds Time to answer a prediction request, queueing included.\n");
        out.push_str("# TYPE graft_request_duration_seconds histogram\n");
        self.latency.write(&mut out, "graft_request_duration_seconds", "");
        out.push_str("# HELP graft_batch_size Inputs per forward pass (requests that arrive together share one).\n");
        out.push_str("# TYPE graft_batch_size histogram\n");
        self.batches.write(&mut out, "graft_batch_size", "");
        out.push_str("# HELP graft_inputs_total Images or texts predicted.\n");
        out.push_str("# TYPE graft_inputs_total counter\n");
        let _ = writeln!(out, "graft_inputs_total {}", self.inputs.load(Ordering::Relaxed));
        out.push_str("# HELP graft_rejected_total Requests turned away or failed, by reason.\n");
        out.push_str("# TYPE graft_rejected_total counter\n");
        for ((_, name), count) in REASONS.iter().zip(&self.rejected) {
            let _ = writeln!(out, "graft_rejected_total{{reason=\"{name}\"}} {}", count.load(Ordering::Relaxed));
        }
        out.push_str("# HELP graft_queue_depth Prediction requests waiting for a forward pass, by student.\n");
        out.push_str("# TYPE graft_queue_depth gauge\n");
        for (student, depth) in queued {
            let _ = writeln!(out, "graft_queue_depth{{student=\"{student}\"}} {depth}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counters_by_label() {
        let metrics = Metrics::default();
        metrics.request("predict", 200, Duration::from_millis(3));
        metrics.request("predict", 200, Duration::from_millis(40));
        metrics.request("predict", 503, Duration::from_millis(1));
        metrics.request("nowhere", 404, Duration::ZERO);
        metrics.batch(3);
        metrics.rejected(Reason::Overloaded);
        let text = metrics.render(&[("bags".to_owned(), 2)]);
        for line in [
            "graft_requests_total{route=\"predict\",status=\"200\"} 2",
            "graft_requests_total{route=\"predict\",status=\"503\"} 1",
            "graft_requests_total{route=\"other\",status=\"404\"} 1",
            "graft_request_duration_seconds_bucket{le=\"0.005\"} 2",
            "graft_request_duration_seconds_bucket{le=\"0.05\"} 3",
            "graft_request_duration_seconds_bucket{le=\"+Inf\"} 3",
            "graft_request_duration_seconds_count 3",
            "graft_request_duration_seconds_sum 0.044",
            "graft_batch_size_bucket{le=\"2\"} 0",
            "graft_batch_size_bucket{le=\"4\"} 1",
            "graft_inputs_total 3",
            "graft_rejected_total{reason=\"overloaded\"} 1",
            "graft_queue_depth{student=\"bags\"} 2",
        ] {
            assert!(text.lines().any(|got| got == line), "no `{line}` in\n{text}");
        }
    }
}
