//! graft's HTTP server: trained students behind a JSON API (axum on tokio).
//!
//! - `POST /v1/predict` (the first student) and `POST /v1/students/{name}/predict`: images as
//!   `multipart/form-data` parts or as the raw body (`image/*`, `application/octet-stream`),
//!   texts as `{"texts": [...]}`; `?top_k=K`. Answers `{"student", "predictions": [{"index",
//!   "name"?, "top": [{"class_index", "label", "probability"}]}]}`.
//! - `GET /v1/model`, `GET /v1/students/{name}`, `GET /v1/students`: classes, teacher, strategy,
//!   metrics from the run.
//! - `GET /healthz`, `GET /metrics` (Prometheus text).
//!
//! Requests that arrive together are batched into one forward pass per student ([`batch`]); a
//! full queue answers 503 with `Retry-After`; bodies over the limit 413 (a declared length at
//! once); unreadable images 400 with the reason; wrong content types 415; a body that does not
//! arrive in time 408; connections past the limit 503. [`Server::run`] stops accepting when its
//! shutdown future completes and answers the requests in flight before it returns.
//!
//! ```no_run
//! use std::sync::Arc;
//! use graft::run::{Student, StudentOptions};
//! use graft_serve::{Named, ServeOptions, Server, shutdown_signal};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let student = Student::load("my-run".as_ref(), &StudentOptions::default())?;
//! let named = vec![Named { name: "default".into(), student: Arc::new(student) }];
//! let server = Server::bind(named, ServeOptions::default()).await?;
//! println!("listening on http://{}", server.local_addr());
//! server.run(shutdown_signal()).await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod batch;
pub mod client;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use graft::run::Student;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::api::{App, Endpoint};
use crate::batch::Batching;
use crate::metrics::{Metrics, Reason};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where to listen (port 0: any free port).
    pub address: SocketAddr,
    /// Inputs per forward pass at most (requests that arrive together share one).
    pub max_batch: usize,
    /// How long an idle worker waits for more requests after one arrives.
    pub batch_window: Duration,
    /// Prediction requests that may wait per student; more are answered 503.
    pub queue_capacity: usize,
    /// The largest request body, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Images or texts per request at most (413 above).
    pub max_inputs: usize,
    /// The most pixels an uploaded image's header may declare (400 above): a decompression bomb
    /// is refused before its decode is queued.
    pub max_image_pixels: u64,
    /// Open connections at most; more are answered 503 and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and its body.
    pub read_timeout: Duration,
    /// At shutdown, how long the requests in flight may take before connections are dropped.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            address: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_batch: 32,
            batch_window: Duration::from_millis(5),
            queue_capacity: 64,
            max_body_bytes: 32 << 20,
            max_inputs: 64,
            max_image_pixels: 50_000_000,
            max_connections: 256,
            read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(60),
        }
    }
}

/// A student served under a name (`/v1/students/{name}`).
pub struct Named {
    pub name: String,
    pub student: Arc<Student>,
}

/// What a server did, when it has stopped.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// Whether every request in flight at shutdown was answered within the drain timeout.
    pub drained: bool,
}

/// A bound server with its students' workers started.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `options.address` and starts a batching worker per student.
    ///
    /// # Errors
    /// No student, two with one name, an address that cannot be bound, a thread that cannot
    /// be started.
    pub async fn bind(students: Vec<Named>, options: ServeOptions) -> std::io::Result<Server> {
        let invalid = |message: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, message);
        if students.is_empty() {
            return Err(invalid("no student to serve".to_owned()));
        }
        for (index, named) in students.iter().enumerate() {
            if students[..index].iter().any(|other| other.name == named.name) {
                return Err(invalid(format!("two students are named `{}`", named.name)));
            }
        }
        let listener = TcpListener::bind(options.address).await?;
        let metrics = Arc::new(Metrics::default());
        let batching = Batching {
            max_batch: options.max_batch.max(1),
            window: options.batch_window,
            capacity: options.queue_capacity,
        };
        let mut endpoints = Vec::with_capacity(students.len());
        let mut workers = Vec::with_capacity(students.len());
        for Named { name, student } in students {
            let (queue, worker) = batch::start(&name, student.clone(), batching, metrics.clone())?;
            endpoints.push(Endpoint { name, student, queue });
            workers.push(worker);
        }
        Ok(Server { listener, app: Arc::new(App { endpoints, metrics, options }), workers })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes; then stops accepting, answers the requests in flight
    /// (for at most the drain timeout) and stops the workers.
    ///
    /// # Errors
    /// None in practice: a failed accept (out of file descriptors, say) is retried after a
    /// pause.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<Stopped> {
        let Server { listener, app, workers } = self;
        let options = app.options.clone();
        let router = api::router(app.clone());
        let graceful = GracefulShutdown::new();
        let connections = Arc::new(Semaphore::new(options.max_connections.max(1)));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new()).header_read_timeout(options.read_timeout).keep_alive(true);
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(_) => {
                        // Out of file descriptors, or a connection reset before it was accepted.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                app.metrics.rejected(Reason::Connections);
                app.metrics.request("other", 503, Duration::ZERO);
                tokio::spawn(turn_away(stream));
                continue;
            };
            let service = TowerToHyperService::new(router.clone());
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                // A client that hangs up mid-request is no error of the server's.
                let _ = connection.await;
                drop(permit);
            });
        }
        drop(listener);
        let drained = tokio::time::timeout(options.drain_timeout, graceful.shutdown()).await.is_ok();
        drop(router);
        drop(app);
        if drained {
            // The workers end once every queue handle is gone (the connections' are, with the
            // connections) and their queues are empty. After a drain that timed out, connections
            // still hold handles: the workers are left to the process's exit, not waited for.
            for worker in workers {
                let _ = tokio::task::spawn_blocking(move || worker.join()).await;
            }
        }
        Ok(Stopped { drained })
    }
}

/// Answers a connection past the limit with 503 and closes it (reading what it sent first, so
/// that the close does not reset the connection before the client reads the answer).
async fn turn_away(mut stream: TcpStream) {
    let mut buffer = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await;
    if stream.write_all(&api::too_many_connections()).await.is_ok() {
        let _ = stream.shutdown().await;
        // Whatever else it sends, until it closes or a second passes.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
        })
        .await;
    }
}

/// Completes at Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
