//! `graft serve`: students over HTTP (graft-serve), until Ctrl-C or SIGTERM.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use graft::run::Student;
use graft_serve::{Named, ServeOptions, Server, shutdown_signal};

use crate::cli::ServeArgs;
use crate::settings::Settings;

pub fn run(args: &ServeArgs, settings: &Settings) -> anyhow::Result<()> {
    let mut runs: Vec<(String, PathBuf)> = Vec::new();
    if let Some(run) = &args.run {
        runs.push(("default".to_owned(), run.clone()));
    }
    for named in &args.student {
        let Some((name, run)) = named.split_once('=').filter(|(name, run)| !name.is_empty() && !run.is_empty()) else {
            anyhow::bail!("`--student {named}`: give NAME=RUN (a name, `=`, a run directory)");
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            anyhow::bail!("`--student {named}`: a name of letters, digits, `-`, `_` and `.` goes in the URL");
        }
        runs.push((name.to_owned(), PathBuf::from(run)));
    }
    let mut students = Vec::with_capacity(runs.len());
    for (name, run) in runs {
        // A pass the worker gathers (up to `--max-batch` inputs) goes through the network whole.
        let student = Student::load(&run, &settings.student_options(args.max_batch.max(1)))?;
        let header = student.header();
        settings.log(format!(
            "student `{name}`: a {} {} student of {} ({} classes) from {}",
            header.strategy,
            header.modality,
            header.teacher,
            header.classes.len(),
            run.display()
        ));
        students.push(Named { name, student: Arc::new(student) });
    }
    let address = format!("{}:{}", args.host, args.port);
    let address = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .with_context(|| format!("`{address}` is not an address to listen on"))?
        .next()
        .with_context(|| format!("`{address}` names no address"))?;
    let options = ServeOptions {
        address,
        max_batch: args.max_batch,
        batch_window: Duration::from_millis(args.batch_window_ms),
        queue_capacity: args.queue,
        max_body_bytes: usize::try_from(args.max_body_mib << 20).unwrap_or(usize::MAX),
        max_inputs: args.max_inputs,
        max_connections: args.max_connections,
        read_timeout: Duration::from_secs(args.read_timeout.max(1)),
        ..ServeOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("graft-http")
        .build()
        .context("cannot start the HTTP runtime")?;
    runtime.block_on(async {
        let names: Vec<String> = students.iter().map(|named| named.name.clone()).collect();
        let server = Server::bind(students, options).await.with_context(|| format!("cannot listen on {address}"))?;
        // The address on stdout (port 0 picks a free one): what a script waits for.
        println!("listening on http://{} (students: {})", server.local_addr(), names.join(", "));
        let stopped = server.run(async {
            shutdown_signal().await;
            eprintln!("shutting down: answering the requests in flight");
        });
        let stopped = stopped.await?;
        if !stopped.drained {
            eprintln!("warning: some requests were still running at the end of the drain timeout and were dropped");
        }
        settings.log("stopped");
        anyhow::Ok(())
    })
}
