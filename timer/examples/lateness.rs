//! Measures how late the timer thread fires: one timer at a time, so the thread is
//! asleep for each deadline, as on an idle runtime. Run it on a quiet machine:
//!
//! ```text
//! cargo run -p fibra-timer --release --example lateness [samples]
//! ```
//!
//! It prints one line: `name=timer_lateness samples=N late_p50_us=.. late_p99_us=..
//! late_max_us=.. early=0`.

use fibra_timer::TimerThread;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let samples: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(500);
    let (fired, fired_rx) = mpsc::channel();
    let timers = TimerThread::start("timers", move |deadline: Instant| {
        let _ = fired.send((deadline, Instant::now()));
    })?;
    let handle = timers.handle();

    let mut seed = 0x1234_5678_9ABC_DEF1_u64;
    let mut late = Vec::with_capacity(samples);
    let mut early = 0;
    for _ in 0..samples {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // 1 to 10 ms, in whole microseconds.
        let delay = Duration::from_micros(1_000 + seed % 9_000);
        let deadline = Instant::now() + delay;
        if handle.insert(deadline, deadline).is_err() {
            eprintln!("the timer thread stopped");
            return Ok(());
        }
        let Ok((deadline, at)) = fired_rx.recv_timeout(Duration::from_secs(5)) else {
            eprintln!("a timer did not fire within 5 s");
            return Ok(());
        };
        match at.checked_duration_since(deadline) {
            Some(by) => late.push(by),
            None => early += 1,
        }
    }
    late.sort();
    let pick = |q: f64| {
        late.get(((late.len() as f64 - 1.0) * q) as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!(
        "name=timer_lateness samples={samples} late_p50_us={:.1} late_p99_us={:.1} late_max_us={:.1} early={early}",
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    Ok(())
}
