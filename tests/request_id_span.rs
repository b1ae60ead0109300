//! The `request` span of RequestIdLayer, in a test binary of its own.
//!
//! `tracing` caches each callsite's interest process-wide. When another test thread registers
//! the layer's span callsite (with no subscriber, so "never") while this test installs its
//! scoped subscriber, the cached "never" can survive the rebuild and the span goes missing:
//! the test failed now and then under load while it shared a process with other tests.
//! Alone in its process, nothing else registers callsites concurrently: keep it to one test,
//! in a binary of its own (not a module of `tests/it`).
#![cfg(feature = "request-id")]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use tower::{ServiceBuilder, ServiceExt};
use tower_shield::request_id::RequestIdLayer;

/// A writer that keeps everything the subscriber prints.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn inner_future_runs_in_a_request_span() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .service_fn(|_: Request<()>| async {
            tokio::task::yield_now().await;
            tracing::info!("inside the handler");
            Ok::<_, Infallible>(Response::new(()))
        });
    let response = service.oneshot(Request::new(())).await.unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        output.contains(&format!("request{{request_id={id}}}")),
        "{output}"
    );
    assert!(output.contains("inside the handler"));
}
