//! Where the driver gets wall-clock time from.

use std::fmt;
use std::time::SystemTime;

/// A source of wall-clock time, injected so that rotation can run on
/// simulated time.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The operating system's wall clock ([`SystemTime::now`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Wall-clock time that advances with `tokio::time`: a fixed wall time
/// pinned to the tokio instant at which the clock was made.
///
/// Under `tokio::time::pause()` it moves exactly as far as tokio's timers
/// do, so certificate times, the schedule and `tokio::time::sleep` agree.
/// With a running clock it drifts from the system clock if the latter is
/// stepped; prefer [`SystemClock`] in production.
#[derive(Clone, Copy)]
pub struct TokioClock {
    origin_wall: SystemTime,
    origin: tokio::time::Instant,
}

impl fmt::Debug for TokioClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioClock")
            .field("now", &self.now())
            .finish_non_exhaustive()
    }
}

impl TokioClock {
    /// A clock that reads `wall` now (at the current `tokio::time`
    /// instant) and advances with tokio's time from there.
    pub fn starting_at(wall: SystemTime) -> Self {
        Self {
            origin_wall: wall,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        self.origin_wall
            .checked_add(elapsed)
            .unwrap_or(self.origin_wall)
    }
}
