//! Request batching: one worker thread per student takes prediction jobs from a bounded queue
//! and runs the jobs that arrive together through one forward pass. It waits for company only
//! while it would otherwise be idle: when it finishes a pass with jobs already waiting, it takes
//! them at once (up to the batch limit); when one job arrives at an idle worker, it waits at most
//! the batch window for others.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

use graft::run::Student;
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// What one request asks to have predicted.
#[derive(Debug)]
pub enum Inputs {
    /// Encoded images (JPEG, PNG, ...).
    Images(Vec<Vec<u8>>),
    Texts(Vec<String>),
}

impl Inputs {
    pub fn len(&self) -> usize {
        match self {
            Inputs::Images(images) => images.len(),
            Inputs::Texts(texts) => texts.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per input: its probabilities, or why it could not be read.
pub type Answer = Result<Vec<Result<Vec<f32>, String>>, String>;

struct Job {
    inputs: Inputs,
    reply: oneshot::Sender<Answer>,
}

/// The sending side of a student's queue.
#[derive(Clone)]
pub struct Queue {
    sender: SyncSender<Job>,
    waiting: Arc<AtomicUsize>,
}

/// Why a job was not queued.
pub enum Refused {
    /// The queue is full: try again shortly.
    Full,
    /// The worker has stopped (the server is shutting down).
    Closed,
}

/// How a worker batches.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    /// Inputs per forward pass at most (a single larger request still runs whole).
    pub max_batch: usize,
    /// How long an idle worker waits for more jobs after the first.
    pub window: Duration,
    /// Requests that may wait; more are refused.
    pub capacity: usize,
}

impl Queue {
    /// Queues `inputs`; the answer comes on the returned channel.
    pub fn submit(&self, inputs: Inputs) -> Result<oneshot::Receiver<Answer>, Refused> {
        let (reply, answer) = oneshot::channel();
        // Counted before it is sent, so that the worker's decrement never comes first.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(Job { inputs, reply }) {
            Ok(()) => Ok(answer),
            Err(error) => {
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                Err(match error {
                    TrySendError::Full(_) => Refused::Full,
                    TrySendError::Disconnected(_) => Refused::Closed,
                })
            }
        }
    }

    /// Requests waiting for a forward pass.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Starts `student`'s worker thread; it ends when every [`Queue`] clone is dropped and the
/// queue is empty.
///
/// # Errors
/// A thread that cannot be started.
pub fn start(
    name: &str,
    student: Arc<Student>,
    batching: Batching,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Queue, std::thread::JoinHandle<()>)> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(batching.capacity.max(1));
    let waiting = Arc::new(AtomicUsize::new(0));
    let queue = Queue { sender, waiting: waiting.clone() };
    let worker = std::thread::Builder::new()
        .name(format!("graft-serve-{name}"))
        .spawn(move || work(&student, &receiver, batching, &waiting, &metrics))?;
    Ok((queue, worker))
}

fn work(student: &Student, receiver: &Receiver<Job>, batching: Batching, waiting: &AtomicUsize, metrics: &Metrics) {
    while let Ok(first) = receiver.recv() {
        let mut inputs = first.inputs.len();
        let mut jobs = vec![first];
        let deadline = Instant::now() + batching.window;
        while inputs < batching.max_batch {
            let next = match receiver.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match receiver.recv_timeout(left) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            inputs += next.inputs.len();
            jobs.push(next);
        }
        waiting.fetch_sub(jobs.len(), Ordering::Relaxed);
        metrics.batch(inputs);
        run(student, jobs);
    }
}

/// One forward pass over the jobs' inputs together; each job gets its own rows back. A panic
/// in graft fails these jobs, not the worker.
fn run(student: &Student, jobs: Vec<Job>) {
    let (inputs, replies): (Vec<Inputs>, Vec<_>) = jobs.into_iter().map(|job| (job.inputs, job.reply)).unzip();
    let sizes: Vec<usize> = inputs.iter().map(Inputs::len).collect();
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| predict(student, &inputs)));
    let rows = match outcome {
        Ok(Ok(rows)) => rows,
        Ok(Err(error)) => return fail(replies, &error),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            return fail(replies, &format!("graft failed on this batch: {message}"));
        }
    };
    let mut rows = rows.into_iter();
    for (reply, size) in replies.into_iter().zip(sizes) {
        // A client that went away no longer listens; nothing to do.
        let _ = reply.send(Ok(rows.by_ref().take(size).collect()));
    }
}

fn fail(replies: Vec<oneshot::Sender<Answer>>, error: &str) {
    for reply in replies {
        let _ = reply.send(Err(error.to_owned()));
    }
}

fn predict(student: &Student, inputs: &[Inputs]) -> Result<Vec<Result<Vec<f32>, String>>, String> {
    let mut images: Vec<&[u8]> = Vec::new();
    let mut texts: Vec<&str> = Vec::new();
    for input in inputs {
        match input {
            Inputs::Images(files) => images.extend(files.iter().map(Vec::as_slice)),
            Inputs::Texts(lines) => texts.extend(lines.iter().map(String::as_str)),
        }
    }
    let mut rows = Vec::with_capacity(images.len() + texts.len());
    if !images.is_empty() {
        let predicted = student.predict_encoded(&images).map_err(|error| error.to_string())?;
        rows.extend(predicted.into_iter().map(|row| row.map_err(|error| unreadable(&error))));
    }
    if !texts.is_empty() {
        let (predicted, _) = student.predict_texts(&texts).map_err(|error| error.to_string())?;
        rows.extend(predicted.into_iter().map(Ok));
    }
    Ok(rows)
}

/// Why an uploaded image could not be read, without the placeholder name graft gives it.
fn unreadable(error: &graft::GraftError) -> String {
    match error {
        graft::GraftError::Image { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}
