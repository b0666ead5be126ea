//! The HTTP load driver: a request kind ([`Workload`]) sent over and over on keep-alive
//! connections for a while, and the figures printed as JSON.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;

/// What one worker (or all of them together) saw.
#[derive(Default)]
struct WorkerStats {
    latencies_us: Vec<u32>,
    ok: u64,
    insufficient: u64,
    other: u64,
}

impl WorkerStats {
    /// Counts one request that took `took` and answered `status` (0: it failed).
    fn record(&mut self, took: Duration, status: u16) {
        self.latencies_us
            .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        match status {
            200 => self.ok += 1,
            402 => self.insufficient += 1,
            _ => self.other += 1,
        }
    }

    /// Adds another worker's figures.
    fn add(&mut self, stats: Self) {
        self.latencies_us.extend(stats.latencies_us);
        self.ok += stats.ok;
        self.insufficient += stats.insufficient;
        self.other += stats.other;
    }

    /// The figures as JSON, with `extra` fields beside them.
    fn report(
        &mut self,
        elapsed: f64,
        concurrency: usize,
        extra: serde_json::Value,
    ) -> serde_json::Value {
        self.latencies_us.sort_unstable();
        let latencies = &self.latencies_us;
        let percentile = |p: f64| -> f64 {
            if latencies.is_empty() {
                return 0.0;
            }
            let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            f64::from(latencies[index]) / 1000.0
        };
        let requests = latencies.len();
        let mut report = json!({
            "requests": requests,
            "seconds": elapsed,
            "requests_per_second": requests as f64 / elapsed,
            "p50_ms": percentile(0.50),
            "p99_ms": percentile(0.99),
            "ok": self.ok,
            "insufficient": self.insufficient,
            "errors": self.other,
            "concurrency": concurrency,
        });
        if let (Some(report), serde_json::Value::Object(extra)) = (report.as_object_mut(), extra) {
            report.extend(extra);
        }
        report
    }
}

/// One kind of request to send over and over; `pick` is a random number for choosing inputs.
pub(super) trait Workload: Send + Sync + 'static {
    fn request(&self, pick: u64) -> anyhow::Result<http::Request<Full<Bytes>>>;
}

/// One keep-alive HTTP/1.1 connection per worker, driven by hyper directly: the load generator
/// shares the machine with the server and the database, so it should cost as little as wrk.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(authority: &str) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("cannot reach {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self { sender })
    }

    /// Sends one request and returns its status.
    async fn send(&mut self, request: http::Request<Full<Bytes>>) -> anyhow::Result<u16> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// `http://host:port` into the authority and the path prefix.
pub(super) fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let uri: http::Uri = url.parse().with_context(|| format!("--url {url}"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "--url must be http://host:port"
    );
    let authority = uri
        .authority()
        .context("--url needs host:port")?
        .to_string();
    Ok((authority, uri.path().trim_end_matches('/').to_owned()))
}

/// Runs `workload` on `concurrency` connections for `duration` and prints the figures as JSON.
pub(super) async fn drive<W: Workload>(
    authority: &str,
    workload: Arc<W>,
    concurrency: usize,
    duration: Duration,
    extra: serde_json::Value,
) -> anyhow::Result<()> {
    let connections = open_connections(authority, workload.as_ref(), concurrency).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for (worker, connection) in connections.into_iter().enumerate() {
        workers.spawn(work(worker, connection, workload.clone(), deadline));
    }
    let mut all = WorkerStats::default();
    while let Some(stats) = workers.join_next().await {
        all.add(stats?);
    }
    let report = all.report(started.elapsed().as_secs_f64(), concurrency, extra);
    println!("{report}");
    anyhow::ensure!(all.other == 0, "{} requests failed", all.other);
    Ok(())
}

/// Opens every connection and checks one request before the clock starts.
async fn open_connections<W: Workload>(
    authority: &str,
    workload: &W,
    concurrency: usize,
) -> anyhow::Result<Vec<Connection>> {
    let mut connections = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        connections.push(Connection::open(authority).await?);
    }
    let status = connections[0].send(workload.request(1)?).await?;
    anyhow::ensure!(
        status == 200,
        "a first request answered {status}: run the matching `hub-bench` setup first"
    );
    Ok(connections)
}

/// One worker: sends on its connection until `deadline`, counting what it saw.
async fn work<W: Workload>(
    worker: usize,
    mut connection: Connection,
    workload: Arc<W>,
    deadline: Instant,
) -> WorkerStats {
    let mut stats = WorkerStats::default();
    // xorshift: cheap, and each worker picks its own sequence of inputs.
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ ((worker as u64 + 1) << 17);
    while Instant::now() < deadline {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let sent = Instant::now();
        let status = match workload.request(state) {
            Ok(request) => connection.send(request).await.unwrap_or(0),
            Err(_) => 0,
        };
        stats.record(sent.elapsed(), status);
    }
    stats
}
