//! Wall-clock throughput: run an operation for a time budget and count.

use std::time::{Duration, Instant};

/// How long to warm up and measure each path of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Untimed run of each path before measuring (caches, allocator, CPU
    /// frequency).
    pub warm_up: Duration,
    /// Total measured time of each path, split over `rounds`.
    pub measure: Duration,
    /// How many alternating rounds the measured time is split into.
    pub rounds: u32,
}

impl Budget {
    /// Length of one measured slice when [`from_secs_f64`](Self::from_secs_f64)
    /// splits the budget: short enough that a burst of load from another
    /// process lands on both paths of a round alike.
    pub const SLICE: Duration = Duration::from_millis(100);

    /// Measures each path for `seconds`, in rounds of about
    /// [`SLICE`](Self::SLICE) (at least 4), after a warm-up of a quarter of
    /// that. `None` unless `seconds` is finite and positive.
    pub fn from_secs_f64(seconds: f64) -> Option<Self> {
        let measure = Duration::try_from_secs_f64(seconds).ok()?;
        if measure.is_zero() {
            return None;
        }
        let slices = measure.as_nanos() / Self::SLICE.as_nanos();
        Some(Self {
            warm_up: measure / 4,
            measure,
            rounds: u32::try_from(slices).unwrap_or(u32::MAX).max(4),
        })
    }
}

/// How many operations completed in how much time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throughput {
    /// Operations completed.
    pub ops: u64,
    /// Wall time they took.
    pub elapsed: Duration,
}

impl Throughput {
    /// Operations per second (0 when nothing was measured).
    pub fn per_second(&self) -> f64 {
        if self.ops == 0 {
            return 0.0;
        }
        self.ops as f64 / self.elapsed.max(Duration::from_nanos(1)).as_secs_f64()
    }

    /// Mean wall time of one operation (zero when nothing was measured).
    pub fn mean(&self) -> Duration {
        u32::try_from(self.ops)
            .ok()
            .filter(|&n| n > 0)
            .map_or(Duration::ZERO, |n| self.elapsed / n)
    }

    fn add(&mut self, other: Self) {
        self.ops += other.ops;
        self.elapsed += other.elapsed;
    }
}

/// Runs `op` back to back until `slice` has passed (at least once) and
/// counts. Stops at the first error.
///
/// # Errors
/// The first error `op` returns.
pub fn run_for<E>(
    slice: Duration,
    op: &mut impl FnMut() -> Result<(), E>,
) -> Result<Throughput, E> {
    let start = Instant::now();
    let mut ops = 0;
    loop {
        op()?;
        ops += 1;
        let elapsed = start.elapsed();
        if elapsed >= slice {
            return Ok(Throughput { ops, elapsed });
        }
    }
}

/// Our path and a reference path, measured under the same budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Through the appnet crates, all rounds together.
    pub ours: Throughput,
    /// Through the plain libraries, all rounds together.
    pub reference: Throughput,
    /// Each round's `(ours, reference)`, measured back to back.
    pub rounds: Vec<(Throughput, Throughput)>,
}

impl Comparison {
    /// Our overall rate over the reference overall rate (1.0 = as fast).
    pub fn ratio(&self) -> f64 {
        rate_ratio(&self.ours, &self.reference)
    }

    /// Each round's ratio, sorted ascending.
    pub fn round_ratios(&self) -> Vec<f64> {
        let mut ratios: Vec<f64> = self
            .rounds
            .iter()
            .map(|(ours, reference)| rate_ratio(ours, reference))
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios
    }

    /// The median of the per-round ratios: each round times both paths back
    /// to back, so a burst of load from elsewhere skews one round, not the
    /// median. This is the figure goals are checked against.
    pub fn median_ratio(&self) -> f64 {
        let ratios = self.round_ratios();
        let n = ratios.len();
        match n {
            0 => 0.0,
            _ if n % 2 == 1 => ratios[n / 2],
            _ => (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0,
        }
    }
}

fn rate_ratio(ours: &Throughput, reference: &Throughput) -> f64 {
    let reference = reference.per_second();
    if reference == 0.0 {
        return 0.0;
    }
    ours.per_second() / reference
}

/// Warms both paths up, then times them in `budget.rounds` rounds of
/// `budget.measure / rounds` each, both paths per round, ours first in even
/// rounds and the reference first in odd ones, so drift in machine load or
/// clock speed lands on both.
///
/// # Errors
/// The first error either operation returns.
pub fn compare<E>(
    budget: &Budget,
    mut ours: impl FnMut() -> Result<(), E>,
    mut reference: impl FnMut() -> Result<(), E>,
) -> Result<Comparison, E> {
    run_for(budget.warm_up, &mut ours)?;
    run_for(budget.warm_up, &mut reference)?;
    let rounds = budget.rounds.max(1);
    let slice = budget.measure / rounds;
    let mut result = Comparison {
        ours: Throughput::default(),
        reference: Throughput::default(),
        rounds: Vec::with_capacity(rounds as usize),
    };
    for round in 0..rounds {
        let pair = if round % 2 == 0 {
            let o = run_for(slice, &mut ours)?;
            (o, run_for(slice, &mut reference)?)
        } else {
            let r = run_for(slice, &mut reference)?;
            (run_for(slice, &mut ours)?, r)
        };
        result.ours.add(pair.0);
        result.reference.add(pair.1);
        result.rounds.push(pair);
    }
    Ok(result)
}

/// Reads a bench binary's command line, which takes only `--seconds S`
/// (also `--seconds=S`; default `default_seconds`), into a [`Budget`].
///
/// # Errors
/// The exit code to return: success after `-h`/`--help` (usage printed),
/// 2 after an unknown argument or a bad or non-positive value (the reason
/// and the usage printed to stderr, prefixed with `bin`).
pub fn budget_from_args(
    bin: &str,
    usage: &str,
    default_seconds: f64,
    mut args: impl Iterator<Item = String>,
) -> Result<Budget, std::process::ExitCode> {
    let fail = |message: String| {
        eprintln!("{bin}: {message}\n{usage}");
        std::process::ExitCode::from(2)
    };
    let mut seconds = default_seconds;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => {
                eprintln!("{usage}");
                return Err(std::process::ExitCode::SUCCESS);
            }
            "--seconds" => match args.next() {
                Some(v) => v,
                None => return Err(fail("--seconds needs a value".into())),
            },
            other => match other.strip_prefix("--seconds=") {
                Some(v) => v.to_owned(),
                None => return Err(fail(format!("unknown argument {other:?}"))),
            },
        };
        seconds = value
            .parse()
            .map_err(|_| fail(format!("--seconds: {value:?} is not a number")))?;
    }
    Budget::from_secs_f64(seconds).ok_or_else(|| fail("--seconds must be positive".into()))
}
