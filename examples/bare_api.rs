//! The demo's `/health` and `/api/me` with no tower-shield layer at all: the baseline of
//! `benches/load.sh`. Not a service to copy: it has no security whatsoever (`/api/me` answers
//! a fixed body without any authentication).
//!
//! ```text
//! BIND_ADDR=127.0.0.1:0 cargo run --release --example bare_api
//! ```

use std::io::Write;

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::json;

#[tokio::main]
async fn main() {
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .expect("BIND_ADDR is a free socket address");
    let router = Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route(
            "/api/me",
            get(|| async {
                Json(json!({
                    "sub": "user_00000000000000000000000000000000",
                    "role": "user",
                    "email": "load@example.com",
                }))
            }),
        );
    println!(
        "listening on http://{}",
        listener.local_addr().expect("bound")
    );
    let _ = std::io::stdout().flush();
    axum::serve(listener, router).await.expect("serve");
}
