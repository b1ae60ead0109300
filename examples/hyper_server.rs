//! A plain hyper 1 + hyper-util server (no axum) behind `RequestIdLayer` and
//! `SecurityHeadersLayer`, composed with `tower::ServiceBuilder`.
//!
//! ```text
//! BIND_ADDR=127.0.0.1:8080 cargo run --example hyper_server
//! curl -i http://127.0.0.1:8080/
//! ```
//!
//! Every response carries `x-request-id` and the API security headers. The TCP peer address is
//! put into each request's extensions (as a `SocketAddr`), which is where tower-shield looks for
//! it (e.g. to trust `X-Forwarded-Proto` only from a proxy). SIGINT or SIGTERM stops accepting,
//! lets open connections finish (up to 10 s), and exits.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};
use tower_shield::RequestId;
use tower_shield::request_id::RequestIdLayer;
use tower_shield::security_headers::SecurityHeadersLayer;

async fn handler(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let id = request
        .extensions()
        .get::<RequestId>()
        .map(RequestId::to_string)
        .unwrap_or_default();
    let body = format!("{{\"status\":\"ok\",\"request_id\":\"{id}\"}}");
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[tokio::main]
async fn main() {
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:0".to_owned());
    let Ok(addr) = bind.parse::<SocketAddr>() else {
        eprintln!("BIND_ADDR: not a socket address (expected e.g. 127.0.0.1:8080)");
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
    println!("listening on http://{local}");
    let _ = std::io::stdout().flush();

    let service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(SecurityHeadersLayer::api())
        .service_fn(handler);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut connections = tokio::task::JoinSet::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    eprintln!("accept failed: {error}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = service.clone();
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            // Adapts the tower service to hyper's, adding the peer address on the way.
            let hyper_service =
                hyper::service::service_fn(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(peer);
                    service.clone().oneshot(request)
                });
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), hyper_service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        eprintln!("connection from {peer} ended with an error: {error}");
                    }
                }
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(());
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        eprintln!("connections still open after 10 s; exiting anyway");
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
