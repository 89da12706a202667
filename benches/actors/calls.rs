//! What the request/reply workloads (`call`, `restart`, `dynamic_churn`) share between the runtimes:
//! their sizes, the answer a server gives, and the checks and metrics computed from
//! what the drivers saw.

use std::time::Duration;

use super::ns_per;
use super::timing::percentile;

/// Round trips timed in `call`.
pub const CALLS: u64 = 1_000_000;
/// The timeout of every fibra call. Never reached: a reply comes within microseconds.
/// fibra's `call` always has one; the tokio caller awaits its `oneshot` without one, as
/// a tokio user who wants no timeout would write it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Crashes timed in `restart`.
pub const RESTART_CRASHES: usize = 10_000;
/// Crashes before the clock starts, so that the supervisor's state, the registry and
/// the allocator have seen a few restarts. Picked out of thin air.
pub const RESTART_WARM_UP: usize = 100;
/// The restart intensity the `restart` supervisor allows, per `RESTART_PERIOD`: far
/// more than the workload's crashes, so the supervisor never gives up. Each crash takes
/// microseconds, so even all of them in one period stay well below it.
pub const RESTART_INTENSITY: u32 = 1_000_000;
/// The period the `restart` intensity applies to.
pub const RESTART_PERIOD: Duration = Duration::from_secs(1);
/// The name every incarnation of the `restart` child is registered under.
pub const RESTART_CHILD: &str = "bench-restart-child";
/// How long the `restart` driver looks for a new incarnation before it gives up. A
/// restart takes microseconds; one that takes seconds is lost, not slow.
pub const RESTART_PATIENCE: Duration = Duration::from_secs(5);

/// Calls timed in `async_call`: fewer than `call`'s, as each crosses between the
/// two runtimes' threads on fibra's side.
pub const ASYNC_CALLS: u64 = 100_000;

/// The `async_call` metric: wall time per call, over `ASYNC_CALLS` calls, each
/// reply checked against [`answer`].
pub fn async_call(elapsed: Duration) -> String {
    format!("ns_per_call={:.1}", ns_per(elapsed, ASYNC_CALLS))
}

/// Awaits timed in `block_on_future` with a future that is ready at once.
pub const READY_AWAITS: u64 = 1_000_000;
/// Awaits timed in `block_on_future` with a future another thread completes.
pub const REMOTE_AWAITS: u64 = 50_000;

/// The `block_on_future` metric: wall time per await.
pub fn block_on_future(elapsed: Duration, awaits: u64) -> String {
    format!("ns_per_op={:.1}", ns_per(elapsed, awaits))
}

/// Cycles timed in `dynamic_churn`.
pub const CHURN_CYCLES: u64 = 100_000;
/// Cycles run before the clock starts, so that the supervisor's maps, the stack pool
/// and the allocator have seen a few children. Picked out of thin air.
pub const CHURN_WARM_UP: u64 = 1_000;

/// What a server answers to request `n`. Not `n` itself, so that a server that echoes
/// or a reply to another request fails the caller's check.
pub fn answer(n: u64) -> u64 {
    n.wrapping_mul(3).wrapping_add(1)
}

/// The `call` metric: wall time per round trip, over `CALLS` round trips. Each reply
/// was checked against [`answer`] by the caller as it came.
pub fn call(elapsed: Duration) -> String {
    format!("ns_per_call={:.1}", ns_per(elapsed, CALLS))
}

/// The `dynamic_churn` metric: wall time per cycle (a child started, called once
/// and stopped), over `CHURN_CYCLES` cycles. Each reply was checked against
/// [`answer`] as it came, and each child's end awaited.
pub fn dynamic_churn(elapsed: Duration) -> String {
    format!(
        "cycles={CHURN_CYCLES} ns_per_cycle={:.1}",
        ns_per(elapsed, CHURN_CYCLES)
    )
}

/// What a restart run saw.
pub struct RestartOutcome {
    /// For each timed crash, from just before the driver sent the crash to the moment
    /// a new incarnation's answer came back.
    pub samples: Vec<Duration>,
    /// How many times the supervisor says it restarted the child, warm-up included.
    pub restarts: u64,
}

/// Checks that every crash was timed and that the supervisor restarted the child once
/// per crash, and returns the percentiles of the time to a working replacement.
pub fn restart(outcome: RestartOutcome) -> String {
    let RestartOutcome {
        mut samples,
        restarts,
    } = outcome;
    assert_eq!(samples.len(), RESTART_CRASHES, "wrong number of samples");
    assert_eq!(
        restarts,
        (RESTART_WARM_UP + RESTART_CRASHES) as u64,
        "the supervisor restarted the child a different number of times than it crashed"
    );
    samples.sort_unstable();
    let micros = |d: Duration| d.as_nanos() as f64 / 1_000.0;
    format!(
        "crashes={RESTART_CRASHES} p50_us={:.1} p99_us={:.1}",
        micros(percentile(&samples, 50)),
        micros(percentile(&samples, 99))
    )
}
