//! What the kernel accounts for the processes the parts measure: CPU time of a thread, of a
//! process and of the whole machine, and resident memory, read from `/proc`.

use std::time::Duration;

use anyhow::Context;

/// The kernel's clock tick for `/proc/*/stat` and `/proc/stat` (`USER_HZ`): 100 on every Linux
/// there is.
const TICK: Duration = Duration::from_millis(10);

/// The CPU time the calling thread has used, from `/proc/thread-self/schedstat` (nanoseconds).
pub fn thread_cpu() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat")?;
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .context("unexpected /proc/thread-self/schedstat")?;
    Ok(Duration::from_nanos(ns))
}

/// The CPU time (user and system, all threads) process `pid` has used, from `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(TICK * stat_cpu_ticks(&stat).with_context(|| format!("unexpected {path}"))?)
}

/// utime + stime, in ticks, of the text of a `/proc/<pid>/stat` file.
fn stat_cpu_ticks(stat: &str) -> Option<u32> {
    // The command name (field 2) may hold spaces: count the fields after its closing
    // parenthesis, which start at field 3 (state); utime is field 14, stime field 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u32 = fields.get(11)?.parse().ok()?;
    let stime: u32 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// How long every CPU of the machine has been busy (not idle, not waiting for I/O), from the
/// first line of `/proc/stat`.
pub fn machine_busy() -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let ticks: Vec<u32> = stat
        .lines()
        .next()
        .context("empty /proc/stat")?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    anyhow::ensure!(ticks.len() == 8, "unexpected /proc/stat");
    let total: u32 = ticks.iter().sum();
    Ok(TICK * (total - ticks[3] - ticks[4]))
}

/// The resident memory of process `pid` (`VmRSS`), in MB (10^6 bytes).
pub fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024.0 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194304 100 0 0 0 120 180 0 0 20 0 1 0";
        assert_eq!(stat_cpu_ticks(stat), Some(300));
        assert_eq!(stat_cpu_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu_and_memory() {
        let spin: u64 = (0..5_000_000u64).map(std::hint::black_box).sum();
        assert!(spin > 0);
        assert!(thread_cpu().unwrap() > Duration::ZERO);
        assert!(rss_mb(std::process::id()).unwrap() > 0.0);
        assert!(machine_busy().unwrap() > Duration::ZERO);
        let _ = process_cpu(std::process::id()).unwrap();
    }
}
