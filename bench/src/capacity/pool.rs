//! The load generator of the capacity benchmark: simulated nodes over a small pool of
//! keep-alive HTTP/1.1 connections to the master, that register once and then heartbeat on a
//! schedule, recording each request's latency from when it was sent and from when it was due.
//!
//! Its own module because it is the part of the benchmark that talks HTTP (hyper's client
//! connection, redialled when it breaks); [`super`] plans the steps and reports the figures.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::{MIN_ACHIEVED, P99_LIMIT, Plan, Step, ms};
use crate::{stats, system};

/// The port every simulated node claims (never dialled).
const SIM_PORT: u16 = 7000;

/// How long one request (registration or heartbeat) may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A heartbeat's body: an idle node of the default capacity.
const HEARTBEAT: &[u8] = br#"{"in_flight":0,"capacity":1024,"served":0}"#;

/// The generator's keep-alive connections to the master.
pub(super) struct Pool {
    conns: Vec<Conn>,
}

impl Pool {
    pub(super) fn new(addr: SocketAddr, size: usize) -> Self {
        let host = HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header");
        Self {
            conns: (0..size.max(1))
                .map(|_| Conn {
                    addr,
                    host: host.clone(),
                    sender: None,
                })
                .collect(),
        }
    }

    /// Registers simulated nodes `from..to`, spread over the connections; fails on any refusal.
    pub(super) async fn register(&mut self, from: usize, to: usize) -> anyhow::Result<()> {
        let stride = self.conns.len();
        let jobs = self
            .conns
            .iter_mut()
            .enumerate()
            .map(|(k, conn)| async move {
                for i in (from + k..to).step_by(stride) {
                    let body = serde_json::to_vec(&distribution_shared::wire::RegisterRequest {
                        addr: Some(sim_addr(i)),
                        ..distribution_shared::wire::RegisterRequest::new(sim_id(i), SIM_PORT)
                    })?;
                    let status = conn.send(Method::POST, "/v1/nodes", body.into()).await?;
                    anyhow::ensure!(
                        status == StatusCode::OK,
                        "registering {}: {status}",
                        sim_id(i)
                    );
                }
                anyhow::Ok(())
            });
        for result in futures::future::join_all(jobs).await {
            result?;
        }
        Ok(())
    }

    /// Runs one step: nodes `0..nodes` heartbeat once every `period`, node `i` at `i / nodes`
    /// of each period, for the plan's warm-up and measured rounds (of one period each). Each
    /// connection carries the nodes `k, k + pool, ...` one request at a time.
    pub(super) async fn heartbeats(
        &mut self,
        nodes: usize,
        period: Duration,
        plan: &Plan,
        master: u32,
    ) -> anyhow::Result<Step> {
        let t0 = Instant::now() + Duration::from_millis(50);
        let window_start = t0 + period * plan.warmup_rounds;
        let window_end = window_start + period * plan.rounds;
        // Every loop below ends by this time, whatever the master does.
        let hard_end = window_end + Duration::from_secs(5);
        let stride = self.conns.len();
        let total_rounds = plan.warmup_rounds + plan.rounds;
        let jobs = self
            .conns
            .iter_mut()
            .enumerate()
            .map(|(k, conn)| async move {
                let mut record = Record::default();
                'rounds: for round in 0..total_rounds {
                    let measured = round >= plan.warmup_rounds;
                    for i in (k..nodes).step_by(stride) {
                        let due = t0 + period * round + period.mul_f64(i as f64 / nodes as f64);
                        tokio::time::sleep_until(due).await;
                        let sent = Instant::now();
                        if sent >= hard_end {
                            break 'rounds;
                        }
                        let path = format!("/v1/nodes/{}/heartbeat", sim_id(i));
                        let result = conn
                            .send(Method::PUT, &path, Bytes::from_static(HEARTBEAT))
                            .await;
                        let done = Instant::now();
                        if !measured {
                            continue;
                        }
                        match result {
                            Ok(StatusCode::OK) => {
                                record.ok += 1;
                                record.service_us.push(micros(done - sent));
                                record.sched_us.push(micros(done - due));
                                record.last_done = record.last_done.max(Some(done));
                            }
                            _ => record.errors += 1,
                        }
                    }
                }
                record
            });
        let cpu = async {
            tokio::time::sleep_until(window_start).await;
            // The generator is this one thread (a current-thread runtime).
            let start = (
                Instant::now(),
                system::process_cpu(master)?,
                system::thread_cpu()?,
            );
            tokio::time::sleep_until(window_end).await;
            let end = (
                Instant::now(),
                system::process_cpu(master)?,
                system::thread_cpu()?,
            );
            let seconds = (end.0 - start.0).as_secs_f64();
            let pct = |cpu: Duration| cpu.as_secs_f64() / seconds * 100.0;
            anyhow::Ok((pct(end.1 - start.1), pct(end.2 - start.2)))
        };
        let (records, cpu) = futures::join!(futures::future::join_all(jobs), cpu);
        let (master_cpu_pct, generator_cpu_pct) = cpu?;

        let mut service: Vec<u32> = Vec::new();
        let mut sched: Vec<u32> = Vec::new();
        let (mut ok, mut errors, mut last_done) = (0, 0, None);
        for record in records {
            ok += record.ok;
            errors += record.errors;
            service.extend(record.service_us);
            sched.extend(record.sched_us);
            last_done = last_done.max(record.last_done);
        }
        service.sort_unstable();
        sched.sort_unstable();
        let offered = nodes as f64 / period.as_secs_f64();
        let span = last_done
            .map_or(Duration::ZERO, |done| done - window_start)
            .max(period * plan.rounds);
        let achieved = ok as f64 / span.as_secs_f64();
        let p99 = ms(stats::percentile(&service, 99.0));
        let p99_from_schedule = ms(stats::percentile(&sched, 99.0));
        // Judged from the schedule: a heartbeat due at t and sent late because the generator
        // was held up waits as long as one the master answered late (no coordinated omission).
        let passed = errors == 0
            && p99_from_schedule < P99_LIMIT.as_secs_f64() * 1e3
            && achieved >= MIN_ACHIEVED * offered;
        Ok(Step {
            nodes,
            period_s: period.as_secs_f64(),
            offered_per_s: offered,
            achieved_per_s: achieved,
            ok,
            errors,
            p50_ms: ms(stats::percentile(&service, 50.0)),
            p99_ms: p99,
            max_ms: ms(stats::percentile(&service, 100.0)),
            p99_from_schedule_ms: p99_from_schedule,
            master_cpu_pct,
            cpu_samples_pct: Vec::new(),
            generator_cpu_pct,
            master_rss_mb: 0.0,
            registered: 0,
            registration_s: 0.0,
            passed,
        })
    }
}

/// What one connection saw in a step's measured rounds.
#[derive(Default)]
struct Record {
    ok: u64,
    errors: u64,
    service_us: Vec<u32>,
    sched_us: Vec<u32>,
    last_done: Option<Instant>,
}

/// One keep-alive HTTP/1.1 connection, redialled when it breaks.
struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// Sends one JSON request and reads the whole answer: its status. Bounded by
    /// [`REQUEST_TIMEOUT`]; a failed connection is dropped and redialled by the next request.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<StatusCode> {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.try_send(method, path, body)).await;
        match result {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(err)) => {
                self.sender = None;
                Err(err)
            }
            Err(_) => {
                self.sender = None;
                anyhow::bail!("no answer from the master within {REQUEST_TIMEOUT:?}")
            }
        }
    }

    async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<StatusCode> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            // Ends when the sender is dropped or the master closes the connection.
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("dialled above");
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(body))?;
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// The id of simulated node `i`.
fn sim_id(i: usize) -> String {
    format!("sim-{i}")
}

/// The address simulated node `i` registers: distinct for every `i` below 2^24, never dialled.
pub(super) fn sim_addr(i: usize) -> String {
    format!(
        "10.{}.{}.{}:{SIM_PORT}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// A duration in whole microseconds, saturating.
fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_addresses_are_distinct_and_valid() {
        let addrs: std::collections::HashSet<String> = (0..70_000).map(sim_addr).collect();
        assert_eq!(addrs.len(), 70_000);
        assert_eq!(sim_addr(0x01_02_03), "10.1.2.3:7000");
    }
}
