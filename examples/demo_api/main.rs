//! The tower-shield demo API: a small axum service wired the way a production service would be
//! (see `DEMO_API.md` for the whole contract).
//!
//! ```text
//! cargo run --release --example demo_api
//! ```
//!
//! Prints `listening on http://ADDR` on stdout once it accepts connections, then one log line per
//! request on stderr. Configuration comes from the environment (`config.rs`); a bad value stops
//! the process before it listens, with exit code 2 and one stderr line naming the variable.
//! SIGINT or SIGTERM stops it gracefully.

mod api;
mod app;
mod auth;
mod config;
mod keys;
mod problem;
mod store;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use axum::extract::ConnectInfo;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::Config;

/// Exit code for configuration the demo cannot start with.
const EXIT_CONFIG: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("demo_api: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // INFO: one line per request. With DEMO_ACCESS_LOG=false (load tests) only warnings, so
    // the per-request span and line cost nothing.
    let level = if config.access_log {
        tracing::Level::INFO
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(level)
        .init();
    let app = match app::build(&config).await {
        Ok((app, warnings)) => {
            for warning in &warnings {
                tracing::warn!("{warning}");
            }
            app
        }
        Err(error) => {
            eprintln!("demo_api: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let listener = match TcpListener::bind(config.bind_addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "demo_api: environment variable `BIND_ADDR`: cannot listen on {}: {error}",
                config.bind_addr
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let local = listener.local_addr().unwrap_or(config.bind_addr);
    println!("listening on http://{local}");
    let _ = std::io::stdout().flush();

    serve(listener, app).await;
    ExitCode::SUCCESS
}

/// Header lines hyper accepts before answering 431 itself (bodiless). Generous, so the
/// app's own 16 KiB check (a problem body with the request id and every header) is what
/// refuses many small header lines too: a line is at least 4 bytes (`a:\r\n`).
const MAX_HEADER_LINES: usize = app::MAX_REQUEST_HEADER_BYTES / 4;

/// Serves HTTP/1.1 and HTTP/2 (hyper-util's auto builder) until SIGINT/SIGTERM, then lets
/// open connections finish their requests (at most 10 s).
async fn serve(listener: TcpListener, app: axum::Router) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_headers(MAX_HEADER_LINES)
        .max_buf_size(64 * 1024);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        let app = app.clone();
        let builder = builder.clone();
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            // The peer address, where axum's extractors and the rate limiter look for it.
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(request)
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stopped.changed() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after 10 s; closing them");
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
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
    tracing::info!("shutting down");
}
