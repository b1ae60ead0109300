//! The tower-shield demo API: a small axum service wired the way a production service would be
//! (see `examples/demo_api/README.md` for the whole contract).
//!
//! ```text
//! cargo run --release --example demo_api
//! ```
//!
//! Prints `listening on http://ADDR` on stdout once it accepts connections, then one log line per
//! request on stderr (text, or JSON with `LOG_FORMAT=json`). With `METRICS_ADDR`, a second
//! listener serves `GET /metrics` (Prometheus text) and nothing else. Configuration comes from
//! the environment (`config.rs`); a bad value stops the process before it listens, with exit
//! code 2 and one stderr line naming the variable.
//! SIGINT or SIGTERM stops it gracefully.

mod api;
mod api_keys;
mod app;
mod auth;
mod config;
mod header_limit;
mod keys;
mod observability;
mod pg;
mod problem;
mod store;

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use tokio::net::TcpListener;

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
    observability::init_logging(config.log_format, level);
    // Before `app::build`: the layers register their metric handles when built.
    let metrics = match config.metrics_addr {
        None => None,
        Some(addr) => match observability::install_recorder() {
            Ok(handle) => Some((addr, handle)),
            Err(error) => {
                eprintln!("demo_api: environment variable `METRICS_ADDR`: {error}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let (app, warnings) = match app::build(&config).await {
        Ok(built) => built,
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
    let metrics = match metrics {
        None => None,
        Some((addr, handle)) => match TcpListener::bind(addr).await {
            Ok(listener) => Some((addr, listener, handle)),
            Err(error) => {
                eprintln!(
                    "demo_api: environment variable `METRICS_ADDR`: cannot listen on {addr}: {error}"
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    // Sure to start now: the warnings, then the addresses.
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    if let Some((addr, listener, handle)) = metrics {
        let local = listener.local_addr().unwrap_or(addr);
        tracing::info!(metrics_addr = %local, "serving GET /metrics on its own listener");
        observability::spawn_upkeep(handle.clone());
        // Stops with the process (when the API server below has shut down).
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, observability::router(handle)).await {
                tracing::error!(%error, "metrics listener failed");
            }
        });
    }
    let local = listener.local_addr().unwrap_or(config.bind_addr);
    println!("listening on http://{local}");
    let _ = std::io::stdout().flush();

    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo_api: server error: {error}");
            ExitCode::FAILURE
        }
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
