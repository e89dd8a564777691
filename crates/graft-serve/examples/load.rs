//! A bounded load generator for `graft serve` (count- and time-limited), and the in-process
//! baseline it is compared with. `scripts/serve/bench.sh` runs both; docs/SERVING.md has the
//! figures.
//!
//! ```text
//! load --address 127.0.0.1:8080 --files DIR --clients 8 --requests 2000 [--max-seconds 300]
//! load --local RUN --files DIR [--batch 32] [--rounds 3]
//! ```
//!
//! With `--address`, each client holds one keep-alive connection and sends one image per
//! request (`image/*` body), cycling through the files, until `--requests` are sent in all or
//! `--max-seconds` pass; it prints one JSON line: requests, statuses, seconds, requests/s,
//! latency percentiles. With `--local`, it loads the student in-process and times
//! `Student::predict_encoded` on the same files in batches (the throughput a server batching
//! perfectly could reach), after one warm-up pass.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use graft_serve::client::Connection;

struct Args {
    address: Option<SocketAddr>,
    local: Option<PathBuf>,
    files: PathBuf,
    clients: usize,
    requests: usize,
    max_seconds: f64,
    batch: usize,
    rounds: usize,
    path: String,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        address: None,
        local: None,
        files: PathBuf::new(),
        clients: 1,
        requests: 100,
        max_seconds: 300.0,
        batch: 32,
        rounds: 3,
        path: "/v1/predict".to_owned(),
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let mut value = || given.next().ok_or_else(|| format!("{flag} takes a value"));
        let number = |text: String| text.parse::<usize>().map_err(|_| format!("{flag}: `{text}` is not a count"));
        match flag.as_str() {
            "--address" => args.address = Some(value()?.parse().map_err(|_| "--address: host:port".to_owned())?),
            "--local" => args.local = Some(PathBuf::from(value()?)),
            "--files" => args.files = PathBuf::from(value()?),
            "--clients" => args.clients = number(value()?)?.max(1),
            "--requests" => args.requests = number(value()?)?,
            "--max-seconds" => args.max_seconds = value()?.parse().map_err(|_| "--max-seconds: a number".to_owned())?,
            "--batch" => args.batch = number(value()?)?.max(1),
            "--rounds" => args.rounds = number(value()?)?.max(1),
            "--path" => args.path = value()?,
            other => return Err(format!("unknown argument `{other}` (see the example's documentation)")),
        }
    }
    if args.address.is_none() == args.local.is_none() {
        return Err("give --address HOST:PORT (a server) or --local RUN (in-process)".to_owned());
    }
    Ok(args)
}

/// Every image file of `dir` and its subfolders, sorted, with its content type.
fn images(dir: &Path) -> Vec<(Vec<u8>, &'static str)> {
    let mut paths = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap_or_else(|error| panic!("{}: {error}", folder.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                paths.push(path);
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let kind = match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
                "png" => "image/png",
                "jpg" | "jpeg" => "image/jpeg",
                _ => return None,
            };
            Some((std::fs::read(&path).ok()?, kind))
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn drive(address: SocketAddr, args: &Args, files: &[(Vec<u8>, &'static str)]) -> serde_json::Value {
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(args.requests));
    let statuses = Mutex::new(BTreeMap::<String, usize>::new());
    let started = Instant::now();
    let limit = Duration::from_secs_f64(args.max_seconds);
    std::thread::scope(|scope| {
        for _ in 0..args.clients {
            scope.spawn(|| {
                let mut connection: Option<Connection> = None;
                let (mut mine, mut seen) = (Vec::new(), BTreeMap::<String, usize>::new());
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= args.requests || started.elapsed() > limit {
                        break;
                    }
                    let (body, kind) = &files[index % files.len()];
                    let sent = Instant::now();
                    let answer = match connection.as_mut() {
                        Some(open) => open.send("POST", &args.path, &[("content-type", kind)], body),
                        None => Connection::open(address, Duration::from_secs(120)).and_then(|mut open| {
                            let answer = open.send("POST", &args.path, &[("content-type", kind)], body);
                            connection = Some(open);
                            answer
                        }),
                    };
                    let status = match answer {
                        Ok(answer) => {
                            if answer.header("connection") == Some("close") {
                                connection = None;
                            }
                            answer.status.to_string()
                        }
                        Err(error) => {
                            connection = None;
                            format!("{:?}", error.kind())
                        }
                    };
                    mine.push(sent.elapsed().as_secs_f64());
                    *seen.entry(status).or_default() += 1;
                }
                latencies.lock().unwrap().extend(mine);
                let mut all = statuses.lock().unwrap();
                for (status, count) in seen {
                    *all.entry(status).or_default() += count;
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = latencies.into_inner().unwrap();
    latencies.sort_by(f64::total_cmp);
    let statuses = statuses.into_inner().unwrap();
    let ok = statuses.get("200").copied().unwrap_or(0);
    serde_json::json!({
        "clients": args.clients,
        "requests": latencies.len(),
        "statuses": statuses,
        "failed": latencies.len() - ok,
        "seconds": seconds,
        "requests_per_second": ok as f64 / seconds,
        "latency_ms": {
            "p50": percentile(&latencies, 0.5) * 1e3,
            "p90": percentile(&latencies, 0.9) * 1e3,
            "p99": percentile(&latencies, 0.99) * 1e3,
            "max": latencies.last().copied().unwrap_or(f64::NAN) * 1e3,
        },
    })
}

fn local(run: &Path, args: &Args, files: &[(Vec<u8>, &'static str)]) -> serde_json::Value {
    let options = graft::run::StudentOptions { batch_size: args.batch, ..graft::run::StudentOptions::default() };
    let student = graft::run::Student::load(run, &options).unwrap_or_else(|error| panic!("{error}"));
    let bytes: Vec<&[u8]> = files.iter().map(|(bytes, _)| bytes.as_slice()).collect();
    let pass = || {
        let started = Instant::now();
        let rows = student.predict_encoded(&bytes).unwrap_or_else(|error| panic!("{error}"));
        assert!(rows.iter().all(Result::is_ok), "an image could not be read");
        started.elapsed().as_secs_f64()
    };
    pass();
    let seconds: Vec<f64> = (0..args.rounds).map(|_| pass()).collect();
    let best = seconds.iter().copied().fold(f64::INFINITY, f64::min);
    serde_json::json!({
        "images": bytes.len(),
        "batch": args.batch,
        "seconds": seconds,
        "images_per_second": bytes.len() as f64 / best,
    })
}

fn main() {
    let args = parse().unwrap_or_else(|error| {
        eprintln!("error: {error}");
        std::process::exit(2);
    });
    let files = images(&args.files);
    if files.is_empty() {
        eprintln!("error: no PNG or JPEG files under {}", args.files.display());
        std::process::exit(2);
    }
    let result = match (&args.address, &args.local) {
        (Some(address), _) => drive(*address, &args, &files),
        (_, Some(run)) => local(run, &args, &files),
        _ => unreachable!("parse checks"),
    };
    println!("{result}");
}
