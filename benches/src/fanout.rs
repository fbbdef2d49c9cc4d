//! What the fan-out benches (`xds_push_bench`, `xds_fanout_floor`) share:
//! CPU time from `/proc`, percentiles, and the server's own runtime.

use std::time::{Duration, Instant};

/// The name of a fan-out server's runtime threads when it runs apart from
/// its clients ([`server_runtime`]).
pub const SERVER_THREADS: &str = "xds-server";

/// User + system CPU time from a `/proc/.../stat` line (fields 14 and 15
/// after the parenthesised command name, in 10 ms clock ticks).
fn stat_cpu(stat: &str) -> Duration {
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let mut fields = after.split_whitespace().skip(11);
    let mut ticks = || {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (user, system) = (ticks(), ticks());
    Duration::from_millis((user + system) * 10)
}

/// CPU time (user + system) a process has used so far: `pid` is a process
/// id or `self` (zero where unavailable).
pub fn cpu_time(pid: &str) -> Duration {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(Duration::ZERO, |s| stat_cpu(&s))
}

/// CPU time (user + system) of this process's threads named `name` (zero
/// where unavailable).
pub fn threads_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|stat| {
            stat.split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .is_some_and(|(comm, _)| comm == name)
        })
        .map(|stat| stat_cpu(&stat))
        .sum()
}

/// A two-worker runtime whose threads are named [`SERVER_THREADS`], so a
/// server on it has its CPU time told apart from its clients'. Shut down
/// without blocking when dropped (a runtime dropped inside another's task
/// would panic).
#[derive(Debug)]
pub struct ServerRuntime(Option<tokio::runtime::Runtime>);

impl ServerRuntime {
    /// Builds the runtime.
    ///
    /// # Errors
    /// When tokio cannot start its threads.
    pub fn new() -> std::io::Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SERVER_THREADS)
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
    }

    /// Its handle, to spawn the server on.
    pub fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(tokio::runtime::Runtime::handle)
    }
}

impl Drop for ServerRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// How long a round may take before a fan-out bench gives up.
pub const ROUND_LIMIT: Duration = Duration::from_secs(60);

/// Waits until each of `clients` has the round's change, polling every
/// 5 ms from this one task (no waiter per client): `arrived_at(i)` says
/// when client `i` published it, if it has, so the figures do not depend
/// on the polling period. Returns each client's time from `start`, or
/// `None` past [`ROUND_LIMIT`].
pub async fn until_all_arrived(
    clients: usize,
    start: Instant,
    mut arrived_at: impl FnMut(usize) -> Option<Instant>,
) -> Option<Vec<Duration>> {
    let mut arrived: Vec<Option<Duration>> = vec![None; clients];
    while arrived.iter().any(Option::is_none) {
        if start.elapsed() > ROUND_LIMIT {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        for (i, slot) in arrived.iter_mut().enumerate() {
            if slot.is_none() {
                *slot = arrived_at(i).map(|at| at.saturating_duration_since(start));
            }
        }
    }
    Some(arrived.into_iter().flatten().collect())
}

/// The process's CPU time and its server threads' at one moment, to take
/// a round's share of each.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    process: Duration,
    server: Duration,
}

impl CpuMark {
    /// Now.
    pub fn now() -> Self {
        Self {
            process: cpu_time("self"),
            server: threads_cpu(SERVER_THREADS),
        }
    }

    /// (whole process, [`SERVER_THREADS`]) CPU time spent since `self`.
    pub fn since(self) -> (Duration, Duration) {
        let now = Self::now();
        (
            now.process.saturating_sub(self.process),
            now.server.saturating_sub(self.server),
        )
    }
}

/// The `p` quantile (0..=1) of sorted durations, by nearest rank (zero for
/// none).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Milliseconds, as a float for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_user_plus_system() {
        // pid (comm with ) and spaces) state ... utime=7 stime=5 ...
        let line = "42 (a) b c) S 1 2 3 4 5 6 7 8 9 10 7 5 0 0 20 0 1 0";
        assert_eq!(stat_cpu(line), Duration::from_millis(120));
        assert_eq!(stat_cpu("garbage"), Duration::ZERO);
    }

    #[test]
    fn a_named_thread_shows_up_under_its_name() {
        // Spins until its own CPU time, looked up by name, passes 20 ms: a
        // broken lookup reads zero and runs into the bound.
        let found = std::thread::Builder::new()
            .name("cpu-probe".into())
            .spawn(|| {
                let start = std::time::Instant::now();
                while start.elapsed() < Duration::from_secs(30) {
                    if threads_cpu("cpu-probe") >= Duration::from_millis(20) {
                        return true;
                    }
                    let mut x = 0u64;
                    for i in 0..100_000u64 {
                        x = x.wrapping_add(std::hint::black_box(i));
                    }
                    std::hint::black_box(x);
                }
                false
            })
            .expect("spawn")
            .join()
            .expect("join");
        assert!(
            found,
            "a spinning thread's CPU time never showed up by name"
        );
        assert_eq!(threads_cpu("no-such-thread"), Duration::ZERO);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&d, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
