//! Child processes of the benchmark (masters and nodes of `distribution-demo`), pinned to CPUs
//! with `taskset`, and killed when their guard drops: on success, on error and on panic.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Where util-linux installs `taskset`.
pub const TASKSET: &str = "/usr/bin/taskset";

/// A child process killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Starts `command` (its output appended to `log`) as `name`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let file = std::fs::File::create(log)
            .with_context(|| format!("creating the log {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    /// The process id (for `/proc/<pid>/...`).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited (it should be serving).
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails with a clear message unless `taskset` is installed and the machine has `cores` CPUs.
pub fn require_pinning(cores: usize) -> anyhow::Result<()> {
    anyhow::ensure!(
        Path::new(TASKSET).exists(),
        "{TASKSET} not found: the benchmark pins processes to CPUs with taskset (Debian package util-linux)"
    );
    let have = std::thread::available_parallelism().map_or(1, |n| n.get());
    anyhow::ensure!(
        have >= cores,
        "this part needs {cores} CPUs (one per pinned process), the machine has {have}"
    );
    Ok(())
}

/// A command running `program args...` pinned to CPU `cpu`.
pub fn pinned(cpu: usize, program: &Path) -> Command {
    let mut command = Command::new(TASKSET);
    command.arg("-c").arg(cpu.to_string()).arg(program);
    command
}

/// Pins the calling thread to CPU `cpu` (with `taskset -p` on its thread id, so no unsafe code).
pub fn pin_this_thread(cpu: usize) -> anyhow::Result<()> {
    let link = std::fs::read_link("/proc/thread-self").context("reading /proc/thread-self")?;
    let tid = link
        .file_name()
        .and_then(|t| t.to_str())
        .context("no thread id in /proc/thread-self")?
        .to_string();
    let status = Command::new(TASKSET)
        .args(["-p", "-c", &cpu.to_string(), &tid])
        .stdout(Stdio::null())
        .status()
        .context("running taskset -p")?;
    anyhow::ensure!(status.success(), "taskset -p -c {cpu} {tid}: {status}");
    Ok(())
}

/// A free port on 127.0.0.1 (bound then released: a child process binds it next).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Starts a `distribution-demo node` registering with `master`, pinned to CPU `cpu`.
pub fn node(demo: &Path, master: SocketAddr, cpu: usize, log: &Path) -> anyhow::Result<Proc> {
    node_with_args(demo, master, cpu, log, &[])
}

/// [`node`] with `extra` flags (e.g. `--secret`).
pub fn node_with_args(
    demo: &Path,
    master: SocketAddr,
    cpu: usize,
    log: &Path,
    extra: &[&str],
) -> anyhow::Result<Proc> {
    let mut command = pinned(cpu, demo);
    command.args([
        "node",
        "--master",
        &master.to_string(),
        "--listen",
        "127.0.0.1:0",
    ]);
    command.args(extra);
    Proc::spawn(&format!("node on CPU {cpu}"), command, log)
}

/// A demo master process (registry and gateway) and its addresses.
#[derive(Debug)]
pub struct MasterProc {
    /// The process.
    pub proc: Proc,
    /// The registry API.
    pub registry: SocketAddr,
    /// The HTTP gateway (`/sum`, `/palindrom`).
    pub gateway: SocketAddr,
}

impl MasterProc {
    /// Starts `distribution-demo master` on two free ports of 127.0.0.1 and waits until its
    /// registry answers.
    pub async fn start(demo: &Path, log: &Path) -> anyhow::Result<Self> {
        let registry: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let gateway: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        Self::spawn(Command::new(demo), "master", registry, gateway, &[], log).await
    }

    /// Runs `command` (the demo binary, perhaps behind `taskset`) as `master` with its registry
    /// on `registry`, its gateway on `gateway` and `extra` flags, and waits until the registry
    /// answers.
    pub async fn spawn(
        mut command: Command,
        name: &str,
        registry: SocketAddr,
        gateway: SocketAddr,
        extra: &[String],
        log: &Path,
    ) -> anyhow::Result<Self> {
        command
            .args(["master", "--registry", &registry.to_string()])
            .args(["--gateway", &gateway.to_string()])
            .args(extra);
        let mut master = Self {
            proc: Proc::spawn(name, command, log)?,
            registry,
            gateway,
        };
        master.wait_for_nodes(0, Duration::from_secs(10)).await?;
        Ok(master)
    }

    /// Waits until the registry lists at least `n` nodes, asking every 5 ms (the failure
    /// detection part times a master restart with it).
    pub async fn wait_for_nodes(&mut self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + timeout;
        loop {
            self.proc.ensure_running()?;
            let listed = match get(self.registry, "/health").await {
                Ok((200, body)) => serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|health| health["nodes"].as_u64()),
                _ => None,
            };
            if listed.is_some_and(|nodes| nodes >= n) {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < until,
                "the master at {} did not list {n} nodes within {timeout:?}",
                self.registry
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// `GET path` on `addr` over a fresh HTTP/1.1 connection, asking for JSON: the status and body.
pub async fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    conn.abort();
    Ok((status, body))
}

/// `<out>/logs/<name>.log`, creating the folder.
pub fn log_path(out: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = out.join("logs");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.join(format!("{name}.log")))
}
