//! The tower-shield demo API: a small axum service wired the way a production service would be
//! (see `examples/demo_api/README.md` for the whole contract).
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
mod header_limit;
mod keys;
mod problem;
mod store;

use std::io::{IsTerminal, Write};
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
