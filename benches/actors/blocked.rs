//! What the `blocked_worker` workload shares between the runtimes: its sizes and
//! the metric computed from the round trips the pingers timed.

use std::time::Duration;

use super::timing::percentile;

/// Ping-pong pairs running while one process blocks its worker.
pub const PAIRS: usize = 100;
/// Round trips each pair times.
pub const ROUND_TRIPS: usize = 1_000;
/// How long each of the blocking process's calls blocks its thread.
pub const BLOCK: Duration = Duration::from_millis(50);

/// Checks that every round trip was timed and returns the percentiles.
pub fn blocked_worker(mut samples: Vec<Duration>) -> String {
    assert_eq!(
        samples.len(),
        PAIRS * ROUND_TRIPS,
        "round trips went missing"
    );
    samples.sort_unstable();
    let micros = |d: Duration| d.as_nanos() as f64 / 1_000.0;
    format!(
        "rt_p50_us={:.1} rt_p99_us={:.1} rt_max_us={:.1}",
        micros(percentile(&samples, 50)),
        micros(percentile(&samples, 99)),
        micros(*samples.last().expect("samples"))
    )
}
