//! The gateway's admin HTTP listener: `/metrics` (Prometheus), `/health`, `/ready` and a
//! status page at `/`.
//!
//! [`http::HttpConnection`] is the sans-IO HTTP/1.1 machine; [`Admin`] answers its requests
//! from what the gateway's state machines count ([`iggy_kafka_core::stats::Registry`], the
//! group coordinator, the backend); [`serve`] is the one loop that drives an admin
//! connection on any runtime, through the small [`AdminIo`] trait a runtime adapter
//! implements. Admin work never runs on a Kafka connection's task and takes no lock the
//! Kafka path holds for more than a copy, so a slow or hostile scraper cannot stall it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod http;
pub mod metrics;
pub mod process;
pub mod status;
pub mod view;

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_lite::future;
use iggy_kafka_core::driver::Shared;
use iggy_kafka_core::stats::Registry;

use crate::http::{HttpConnection, HttpRequest, HttpResponse, WRITE_TIMEOUT};
use crate::view::{Cached, Lag, Limits};

/// How long a computed lag is reused: scrapes and page views within it ask the backend
/// nothing more.
pub const LAG_REFRESH: Duration = Duration::from_secs(2);

/// The most admin connections open at once; more are closed as they are accepted.
pub const MAX_CONNECTIONS: usize = 32;

/// What the admin endpoints report about the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    /// The gateway's version.
    pub version: String,
    /// `tokio` or `smol`.
    pub runtime: String,
    /// `embedded` or `iggy`.
    pub backend: String,
}

/// Answers admin requests (see the crate documentation).
#[derive(Debug)]
pub struct Admin {
    build: [(&'static str, String); 3],
    limits: Limits,
    registry: Arc<Registry>,
    /// What the connections share, once the backend is up.
    shared: OnceLock<Arc<Shared>>,
    started: (Instant, SystemTime),
    listening: AtomicBool,
    lag: Cached<Lag>,
    connections: AtomicUsize,
}

impl Admin {
    /// An admin service over the gateway's connections (`registry`). It answers from the
    /// start (`/health`, and `/ready` with 503); the backend and groups show once
    /// [`Self::attach`] gives what the connections share.
    #[must_use]
    pub fn new(build: Build, limits: Limits, registry: Arc<Registry>) -> Self {
        Self {
            build: [
                ("version", build.version),
                ("runtime", build.runtime),
                ("backend", build.backend),
            ],
            limits,
            registry,
            shared: OnceLock::new(),
            started: (Instant::now(), SystemTime::now()),
            listening: AtomicBool::new(false),
            lag: Cached::default(),
            connections: AtomicUsize::new(0),
        }
    }

    /// The backend is up: what the connections share.
    pub fn attach(&self, shared: Arc<Shared>) {
        let _ = self.shared.set(shared);
    }

    /// The Kafka listener is bound: the gateway may be ready.
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::Release);
    }

    /// Ready: the Kafka listener bound and the backend able to serve.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.listening.load(Ordering::Acquire)
            && self.shared.get().is_some_and(|s| s.backend().is_ready())
    }

    /// Takes a place for a new admin connection; `None` when [`MAX_CONNECTIONS`] are open.
    #[must_use]
    pub fn enter(self: &Arc<Self>) -> Option<Place> {
        let before = self.connections.fetch_add(1, Ordering::AcqRel);
        let place = Place(Arc::clone(self));
        (before < MAX_CONNECTIONS).then_some(place)
    }

    async fn lag(&self, shared: &Shared) -> Arc<Lag> {
        let now = Instant::now();
        if let Some(lag) = self.lag.fresh(now, LAG_REFRESH) {
            return lag;
        }
        let lag = view::lag(shared, self.limits).await;
        self.lag.store(now, lag)
    }

    /// The answer to `request`.
    pub async fn answer(&self, request: &HttpRequest) -> HttpResponse {
        let shared = self.shared.get();
        match (request.path.as_str(), shared) {
            ("/health", _) => HttpResponse::text(200, "ok\n"),
            ("/ready", _) if self.is_ready() => HttpResponse::text(200, "ready\n"),
            ("/ready", Some(shared)) if self.listening.load(Ordering::Acquire) => {
                HttpResponse::text(
                    503,
                    format!(
                        "not ready: the backend cannot serve ({})\n",
                        shared.backend().describe()
                    ),
                )
            }
            ("/ready" | "/metrics" | "/", _) if shared.is_none() => {
                HttpResponse::text(503, "starting: the backend is not up yet\n")
            }
            ("/ready", _) => {
                HttpResponse::text(503, "not ready: the Kafka listener is not bound yet\n")
            }
            ("/metrics", Some(shared)) => {
                let scrape = metrics::Scrape {
                    connections: self.registry.snapshot(),
                    groups: shared.groups().stats(),
                    transactions: shared.txns().stats(),
                    lag: self.lag(shared).await,
                    backend: shared.backend().metrics(),
                    ready: self.is_ready(),
                    process: process::Process::read(self.started.1),
                    build: self.build.clone(),
                    limits: self.limits,
                };
                HttpResponse {
                    status: 200,
                    content_type: metrics::CONTENT_TYPE,
                    body: Bytes::from(metrics::render(scrape)),
                }
            }
            ("/", Some(shared)) => {
                let lag = self.lag(shared).await;
                let (topics, left_out) = view::topics(shared, self.limits).await;
                let groups = shared.groups().describe_all();
                let connections = self.registry.snapshot();
                let page = status::render(&status::Status {
                    build: &self.build,
                    uptime: self.started.0.elapsed(),
                    ready: self.is_ready(),
                    backend: shared.backend().describe(),
                    topics: (&topics, left_out),
                    groups: &groups,
                    lag: &lag,
                    connections: &connections,
                });
                HttpResponse {
                    status: 200,
                    content_type: "text/html; charset=utf-8",
                    body: Bytes::from(page),
                }
            }
            _ => HttpResponse::text(404, "not found: try /metrics, /health, /ready or /\n"),
        }
    }
}

/// A place taken by an open admin connection ([`Admin::enter`]); given back when dropped.
#[derive(Debug)]
pub struct Place(Arc<Admin>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a runtime supplies to [`serve`]: reads, writes and a timer.
pub trait AdminIo {
    /// An accepted connection.
    type Stream;

    /// Reads what the stream has into `buf`; 0 at its end.
    fn read(
        stream: &mut Self::Stream,
        buf: &mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send;

    /// Writes all of `data`.
    fn write_all(
        stream: &mut Self::Stream,
        data: &[u8],
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> + Send;
}

/// Serves one admin connection until it ends: reads requests, answers them one at a time,
/// writes the answers, and keeps the machine's deadlines.
pub async fn serve<R: AdminIo>(rt: &R, mut stream: R::Stream, admin: &Admin) {
    let mut http = HttpConnection::new(Instant::now());
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(request) = http.poll_request() {
            let response = admin.answer(&request).await;
            tracing::trace!(path = %request.path, status = response.status, "admin request");
            http.respond(&request, response, Instant::now());
        }
        while let Some(chunk) = http.poll_transmit() {
            let deadline = Instant::now() + WRITE_TIMEOUT;
            let written = future::or(
                async { Some(R::write_all(&mut stream, &chunk).await) },
                async {
                    rt.sleep_until(deadline).await;
                    None
                },
            )
            .await;
            if !matches!(written, Some(Ok(()))) {
                tracing::debug!("admin response not written; closing");
                return;
            }
        }
        if http.is_closed() {
            return;
        }
        let deadline = http.poll_timeout();
        let read = future::or(
            async { Some(R::read(&mut stream, &mut buf).await) },
            async {
                match deadline {
                    Some(d) => rt.sleep_until(d).await,
                    None => future::pending::<()>().await,
                }
                None
            },
        )
        .await;
        match read {
            Some(Ok(0) | Err(_)) => http.handle_closed(),
            Some(Ok(n)) => http.handle_input(&buf[..n], Instant::now()),
            None => http.handle_timeout(Instant::now()),
        }
    }
}
