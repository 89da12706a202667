//! What the time workloads (`timers`, `timeout_churn`) share between the runtimes: their
//! sizes, the delay each timer process asks for, the report it sends when it wakes, and
//! the checks and metrics computed from those reports.

use std::time::{Duration, Instant};

use super::{ns_per, WARM_UP};

/// Timer processes in the small `timers` run.
pub const TIMERS_FEW: usize = 1_000;
/// Timer processes in the large `timers` run.
pub const TIMERS_MANY: usize = 100_000;
/// The shortest delay a timer process asks for.
const SHORTEST_DELAY: Duration = Duration::from_millis(1);
/// The longest delay a timer process asks for. With the shortest, the range the design
/// gives for this workload (1..100 ms).
const LONGEST_DELAY: Duration = Duration::from_millis(100);

/// `receive_timeout` calls timed in `timeout_churn`, both processes together.
pub const TIMEOUT_CHURN_CALLS: u64 = 1_000_000;
/// The timeout of every `receive_timeout` in `timeout_churn`. Never reached: the ball
/// is back within microseconds, so every call takes the cancel path.
pub const TIMEOUT_CHURN_TIMEOUT: Duration = Duration::from_secs(1);

/// The delay timer process `index` asks for: spread evenly over
/// `SHORTEST_DELAY..=LONGEST_DELAY` in whole microseconds, by a fixed hash of the index,
/// so both runtimes are asked for the same delays and every run for the same ones.
pub fn timer_delay(index: usize) -> Duration {
    let shortest = SHORTEST_DELAY.as_micros() as u64;
    let choices = LONGEST_DELAY.as_micros() as u64 - shortest + 1;
    Duration::from_micros(shortest + mix(index as u64) % choices)
}

/// A 64-bit mixing function (the finalizer of the SplitMix64 generator): consecutive
/// inputs give unrelated, evenly spread outputs.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What a timer process tells the driver when it wakes.
pub struct TimerReport {
    /// The process's number, which also picks its delay (`timer_delay`).
    index: usize,
    /// How long it was suspended, as the process itself measured it: from its own
    /// start to its wake-up.
    slept: Duration,
    /// When it woke.
    woke: Instant,
}

impl TimerReport {
    /// The report of process `index`, which started at `begun` and wakes now.
    pub fn woke_now(index: usize, begun: Instant) -> TimerReport {
        let woke = Instant::now();
        TimerReport {
            index,
            slept: woke - begun,
            woke,
        }
    }
}

/// What a timers run saw.
pub struct TimerOutcome {
    /// Timer processes spawned.
    pub processes: usize,
    /// Just before the first spawn.
    pub start: Instant,
    /// One per process, in the order they reached the driver.
    pub reports: Vec<TimerReport>,
}

/// Checks that every timer process reported once and none woke before its delay, and
/// returns the lateness percentiles and the wall time.
pub fn timers(outcome: TimerOutcome) -> String {
    let n = outcome.processes;
    assert_eq!(outcome.reports.len(), n, "wrong number of reports");
    let mut reported = vec![false; n];
    let mut lateness = Vec::with_capacity(n);
    let mut last_woke = outcome.start;
    for report in &outcome.reports {
        let index = report.index;
        let seen = reported
            .get_mut(index)
            .unwrap_or_else(|| panic!("report from unknown timer process {index}"));
        assert!(!*seen, "timer process {index} reported twice");
        *seen = true;
        let delay = timer_delay(index);
        let late = report.slept.checked_sub(delay).unwrap_or_else(|| {
            panic!(
                "timer process {index} woke after {:?}, before its delay of {delay:?}",
                report.slept
            )
        });
        lateness.push(late);
        last_woke = last_woke.max(report.woke);
    }
    // n reports, from n distinct processes numbered below n: every process reported.

    lateness.sort_unstable();
    let micros = |d: Duration| d.as_nanos() as f64 / 1_000.0;
    format!(
        "late_p50_us={:.1} late_p99_us={:.1} wall_secs={:.3}",
        micros(percentile(&lateness, 50)),
        micros(percentile(&lateness, 99)),
        (last_woke - outcome.start).as_secs_f64()
    )
}

/// The `p`th percentile of `sorted` (ascending, not empty), by nearest rank: the
/// smallest value that at least `p` percent of the values do not exceed.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// What a timeout_churn run saw.
pub struct TimeoutChurnOutcome {
    /// Time for `TIMEOUT_CHURN_CALLS` calls.
    pub elapsed: Duration,
    /// Balls the echo process received and sent back, warm-up included; each one came
    /// out of a `receive_timeout`.
    pub echoed: u64,
}

/// Checks that the echo process saw every ball, and returns the call rate.
pub fn timeout_churn(outcome: TimeoutChurnOutcome) -> String {
    assert_eq!(
        outcome.echoed,
        WARM_UP + TIMEOUT_CHURN_CALLS / 2,
        "the echo process missed balls"
    );
    let ns_per_call = ns_per(outcome.elapsed, TIMEOUT_CHURN_CALLS);
    format!("calls_per_sec={:.0}", 1e9 / ns_per_call)
}
