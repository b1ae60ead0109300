//! What the demo gives its operators: the log lines (`LOG_FORMAT`), the Prometheus recorder
//! and its own `GET /metrics` listener (`METRICS_ADDR`), and the bound on the demo's own
//! security events.
//!
//! The recorder is installed before `app::build`: the layers register their metric handles
//! when they are built, and a handle registered before a recorder exists records nothing.

use std::io::IsTerminal;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::LogFormat;

/// The content type of the Prometheus text exposition format.
static PROMETHEUS_TEXT: HeaderValue = HeaderValue::from_static("text/plain; version=0.0.4");
static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// How often the recorder drains its histograms when nobody scrapes (so they do not grow).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the stderr subscriber: tracing-subscriber's text lines, or with
/// [`LogFormat::Json`] one JSON object per line with the event's fields flattened to the top
/// level (`{"timestamp":…,"level":"WARN","event":"ratelimit.exceeded","policy":"auth",…,
/// "target":"tower_shield::security"}`).
pub(crate) fn init_logging(format: LogFormat, level: tracing::Level) {
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_max_level(level)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_max_level(level)
            .init(),
    }
}

/// Installs a Prometheus recorder as the global `metrics` recorder, describes tower-shield's
/// metrics to it, and returns the handle that renders them. Call it before building the
/// layers, and at most once.
pub(crate) fn install_recorder() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|_| "a metrics recorder is already installed".to_owned())?;
    tower_shield::metrics::describe();
    Ok(handle)
}

/// Drains the recorder's histograms now and then (the exporter's own HTTP listener would;
/// this one is ours).
pub(crate) fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

/// The metrics listener's router: `GET /metrics` (and `HEAD`), a 404 for anything else,
/// another method on `/metrics` included.
pub(crate) fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let handle = handle.clone();
                async move { render(&handle) }
            }),
        )
        .method_not_allowed_fallback(not_found)
        .fallback(not_found)
}

fn render(handle: &PrometheusHandle) -> Response {
    let mut response = handle.render().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, PROMETHEUS_TEXT.clone());
    headers.insert(header::CACHE_CONTROL, NO_STORE.clone());
    response
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

/// How many events of one kind the demo logs per [`EVENT_WINDOW_SECS`] per process; the
/// ones over are counted and reported in `suppressed` of the next one logged. (Per client,
/// the `auth` policy already bounds them: 10 `/auth/*` requests per minute per IP.)
const EVENTS_PER_WINDOW: u64 = 100;
/// The window of [`EVENTS_PER_WINDOW`].
const EVENT_WINDOW_SECS: u64 = 60;

/// A per-process bound on one kind of the demo's security events (the library's own
/// `EventGate` is crate-private).
#[derive(Debug)]
pub(crate) struct EventBudget {
    state: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    index: u64,
    seen: u64,
    suppressed: u64,
}

impl EventBudget {
    pub(crate) const fn new() -> Self {
        Self {
            state: Mutex::new(Window {
                index: 0,
                seen: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(events suppressed since the last one logged)` when this one is logged, `None`
    /// when it is only counted.
    pub(crate) fn admit(&self) -> Option<u64> {
        let index = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            / EVENT_WINDOW_SECS;
        let mut window = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if window.index != index {
            window.index = index;
            window.seen = 0;
        }
        if window.seen < EVENTS_PER_WINDOW {
            window.seen += 1;
            Some(std::mem::take(&mut window.suppressed))
        } else {
            window.suppressed += 1;
            None
        }
    }
}
