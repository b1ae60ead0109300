//! Timing helpers shared by the benches: the paired-rounds harness of `benches/request_id.rs`
//! and `benches/security_headers.rs` (per-call means over pre-built requests, and 31 rounds of
//! bare / ours / theirs / floor back to back whose per-round overheads give the medians), and the
//! batched timing loop of `benches/cors.rs` and `benches/jwt.rs`, and the callgrind drivers
//! (`drive`, `drive_fn`) of `benches/jwt.rs` and `benches/rate_limit.rs`.
#![allow(dead_code, unreachable_pub)]

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use http::{Request, Response};
use tower::{Service, ServiceExt};

/// Mean time of one call, in ns, over `n` calls on clones of `service`; the requests are built
/// before the clock starts.
pub async fn time_calls<S>(service: &S, n: usize, make_request: fn() -> Request<()>) -> f64
where
    S: Service<Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    let requests: Vec<_> = (0..n).map(|_| make_request()).collect();
    let start = Instant::now();
    for request in requests {
        std::hint::black_box(service.clone().oneshot(request).await.unwrap());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The [`median`] of each set of samples, in the order given.
pub fn medians<const N: usize>(samples: [Vec<f64>; N]) -> [f64; N] {
    samples.map(|mut v| median(&mut v))
}

/// One contender of [`paired`]: a round of 20,000 timed calls, in ns per call.
pub type Contender<'a> = Box<dyn Fn() -> f64 + 'a>;

/// `service` as a [`paired`] contender, run on `runtime` with requests from `make_request`.
pub fn contender<'a, S>(
    runtime: &'a tokio::runtime::Runtime,
    service: S,
    make_request: fn() -> Request<()>,
) -> Contender<'a>
where
    S: Service<Request<()>> + Clone + 'a,
    S::Error: std::fmt::Debug,
{
    Box::new(move || runtime.block_on(time_calls(&service, 20_000, make_request)))
}

/// A paired measurement that survives a busy machine: 31 rounds, each timing the bare
/// service, ours, theirs and the floor back to back (in rotating order), and the medians of
/// the per-round overheads over bare.
///
/// The floor is the least any implementation can do: the same writes as ours, hand-written
/// with pre-built values and no layer, so `ours - floor` is what the layer's own logic costs.
pub fn paired(label: &str, [bare, ours, theirs, floor]: [Contender<'_>; 4]) {
    let contenders = [bare, ours, theirs, floor];
    let mut over: [Vec<f64>; 3] = Default::default();
    for round in 0..31 {
        let mut times = [0.0; 4];
        // Rotate the order, so a slow phase of the machine does not always hit one side.
        for i in 0..4 {
            let which = (round + i) % 4;
            times[which] = contenders[which]();
        }
        for (k, over) in over.iter_mut().enumerate() {
            over.push(times[k + 1] - times[0]);
        }
    }
    let [ours_over, theirs_over, floor_over] = medians(over);
    println!(
        "{label}: paired medians of 31 rounds over bare: tower-shield +{ours_over:.0} ns, \
         tower-http +{theirs_over:.0} ns, floor +{floor_over:.0} ns; overhead ratio {:.2}; \
         tower-shield beyond the floor +{:.0} ns",
        ours_over / theirs_over,
        ours_over - floor_over
    );
}

/// Requests per batch of [`run_batched`]: built before, and their responses dropped after,
/// the timed region.
pub const BATCH: u64 = 1024;

/// Times `iters` calls of `service` (`ready().await` + `call().await` on one service, no clone
/// per request), building requests with `make` and dropping responses untimed, in batches of
/// [`BATCH`].
pub async fn run_batched<S, B, R>(
    service: &mut S,
    mut make: impl FnMut() -> Request<R>,
    iters: u64,
) -> Duration
where
    S: Service<Request<R>, Response = Response<B>, Error = Infallible>,
{
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = BATCH.min(iters - done);
        let requests: Vec<_> = (0..n).map(|_| make()).collect();
        let mut responses = Vec::with_capacity(requests.len());
        let start = Instant::now();
        for request in requests {
            let Ok(ready) = service.ready().await;
            let Ok(response) = ready.call(black_box(request)).await;
            responses.push(black_box(response));
        }
        total += start.elapsed();
        drop(responses);
        done += n;
    }
    total
}

/// `requests` through `service`, each `poll_ready` + `call` + one poll of the future (every
/// service driven this way answers at once); the responses are returned, to be dropped after.
/// Never inlined, so callgrind can count exactly this: `--toggle-collect='*support::drive*'`.
#[inline(never)]
pub fn drive<S, R, B>(service: &mut S, requests: Vec<R>) -> Vec<Response<B>>
where
    S: Service<R, Response = Response<B>, Error = Infallible>,
{
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut responses = Vec::with_capacity(requests.len());
    for request in requests {
        let ready = service.poll_ready(&mut cx);
        assert!(
            ready.is_ready(),
            "every service driven here is always ready"
        );
        let mut future = std::pin::pin!(service.call(request));
        let std::task::Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
            panic!("every service driven here answers at once");
        };
        responses.push(black_box(response));
    }
    responses
}

/// `n` runs of `f`, never inlined (the same callgrind toggle as [`drive`]).
#[inline(never)]
pub fn drive_fn<T>(n: usize, mut f: impl FnMut() -> T) {
    for _ in 0..n {
        black_box(f());
    }
}

/// `TS_BENCH_RECORDER=1`: installs a Prometheus recorder (what a service exporting metrics
/// runs) before any layer is built, so the figures include recording every metric. Without
/// it the layers record into the `metrics` facade's no-op.
#[allow(dead_code)]
pub fn maybe_install_recorder() {
    if std::env::var_os("TS_BENCH_RECORDER").is_some() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        if metrics::set_global_recorder(recorder).is_err() {
            eprintln!("a metrics recorder was already installed");
        }
    }
}
