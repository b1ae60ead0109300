//! A dedicated `redis-server` on a free port (never 6379), for the tests that stop, pause or
//! restart Redis: `tests/demo/redis.rs`, `tests/it/token_redis.rs` and
//! `tests/it/rate_limit_redis_outage.rs`.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of our own on 127.0.0.1; killed (after a `SIGCONT`) on drop.
pub(crate) struct OwnRedis {
    pub(crate) port: u16,
    child: Option<Child>,
}

/// A free port on 127.0.0.1 (never Redis's default 6379).
fn free_port() -> Option<u16> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    assert_ne!(port, 6379);
    Some(port)
}

/// Starts `redis-server` on `port` and waits until it accepts connections.
fn launch(port: u16) -> Option<Child> {
    let mut child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child)
}

impl OwnRedis {
    /// Starts one on a free port, or `None` when `redis-server` is missing or does not start.
    pub(crate) fn try_start() -> Option<Self> {
        let port = free_port()?;
        let child = launch(port)?;
        Some(Self {
            port,
            child: Some(child),
        })
    }

    /// Starts one on a free port; panics when it cannot.
    pub(crate) fn start() -> Self {
        Self::try_start().expect("redis-server (must be installed for this test) did not start")
    }

    /// Starts one on `port` (e.g. the port of a stopped one); panics when it cannot.
    pub(crate) fn start_on(port: u16) -> Self {
        let child = launch(port)
            .unwrap_or_else(|| panic!("redis-server did not start on 127.0.0.1:{port}"));
        Self {
            port,
            child: Some(child),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it again on the same port after [`OwnRedis::stop`].
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none());
        self.child = Some(
            launch(self.port)
                .unwrap_or_else(|| panic!("redis-server did not restart on port {}", self.port)),
        );
    }

    /// Kills it (the port stays this server's, for [`OwnRedis::restart`]).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (e.g. `-STOP`, `-CONT`) to the running server.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused (`SIGSTOP`) server is resumed so that it can die.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.stop();
    }
}
