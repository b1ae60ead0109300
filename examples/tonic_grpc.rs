//! A tonic gRPC server serving the standard health service (`grpc.health.v1.Health`, so no
//! protobuf code generation is needed) behind `RequestIdLayer`, `SecurityHeadersLayer` and a
//! per-client-IP `RateLimitLayer`, composed with `tower::ServiceBuilder`.
//!
//! ```text
//! BIND_ADDR=127.0.0.1:50051 cargo run --example tonic_grpc
//! grpcurl -plaintext -v 127.0.0.1:50051 grpc.health.v1.Health/Check
//! ```
//!
//! Each response's metadata carries `x-request-id` and the `ratelimit` fields. The client IP is
//! the TCP peer that tonic's server records (`TcpConnectInfo`, read with tower-shield's `tonic`
//! feature). `RATE_LIMIT_PER_MINUTE` (default 600) sets the quota; past it, clients get
//! `RESOURCE_EXHAUSTED`: refusals of tower-shield layers reach gRPC clients as a proper
//! `grpc-status`. SIGINT or SIGTERM stops the server gracefully.

use std::io::Write;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tower::ServiceBuilder;
use tower_shield::rate_limit::{MemoryStore, Policy, Quota, RateLimitLayer};
use tower_shield::request_id::RequestIdLayer;
use tower_shield::security_headers::SecurityHeadersLayer;

#[tokio::main]
async fn main() {
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let Ok(addr) = bind.parse::<SocketAddr>() else {
        eprintln!("BIND_ADDR: not a socket address (expected e.g. 127.0.0.1:50051)");
        std::process::exit(2);
    };
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("BIND_ADDR: cannot listen on {addr}: {error}");
            std::process::exit(1);
        }
    };
    let local = listener.local_addr().unwrap_or(addr);

    // The overall server health ("") starts as SERVING.
    let (_reporter, health_service) = tonic_health::server::health_reporter();

    let per_minute = match std::env::var("RATE_LIMIT_PER_MINUTE") {
        Err(_) => 600,
        Ok(value) => match value.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("RATE_LIMIT_PER_MINUTE: expected a whole number above 0");
                std::process::exit(2);
            }
        },
    };
    let rate_limit = match RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("grpc").quota(Quota::per_minute(per_minute)))
        .build()
    {
        Ok(layer) => layer,
        Err(error) => {
            eprintln!("RATE_LIMIT_PER_MINUTE: {error}");
            std::process::exit(2);
        }
    };

    let layers = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(SecurityHeadersLayer::api())
        .layer(rate_limit)
        .into_inner();

    println!("listening on http://{local}");
    let _ = std::io::stdout().flush();

    let served = Server::builder()
        .layer(layers)
        .add_service(health_service)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown_signal())
        .await;
    if let Err(error) = served {
        eprintln!("server error: {error}");
        std::process::exit(1);
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
}
