//! Stacks of ended free-running processes are kept for the next ones (beyond each
//! worker's own pool, in spares every worker shares), and handed back to the
//! kernel while the runtime idles.
//!
//! Its own test binary: it counts the OS process's memory mappings.

mod common;

use std::time::{Duration, Instant};

use common::within;
use fibra::prelude::*;
use fibra::Builder;

/// Memory mappings of this OS process (each guarded stack is two).
fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("reading /proc/self/maps")
        .lines()
        .count()
}

#[test]
fn an_idle_runtime_hands_spare_stacks_back() {
    const PROCESSES: usize = 3_000;
    within(120, || {
        let rt = Builder::default()
            .workers(2)
            .stack_size(32 * 1024)
            .build()
            .unwrap();
        let before = mappings();
        // Each blocks in receive, so all of them hold a stack at once.
        let handles: Vec<_> = (0..PROCESSES)
            .map(|n| {
                rt.spawn_fn(move |cx: &mut FnContext<()>| {
                    cx.receive();
                    n
                })
                .unwrap()
            })
            .collect();
        let during = mappings();
        assert!(
            during >= before + PROCESSES,
            "{PROCESSES} stacks took only {} mappings",
            during - before
        );
        for handle in &handles {
            handle.pid().send(()).unwrap();
        }
        let sum: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, PROCESSES * (PROCESSES - 1) / 2);

        // Kept: each worker's pool (up to 128 stacks) and the spares (up to 1,024);
        // the spares go back once the workers have slept a while.
        let pools = 2 * 128 * 2;
        let start = Instant::now();
        let mut now = mappings();
        while now > before + pools + 16 && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
            now = mappings();
        }
        assert!(
            now <= before + pools + 16,
            "an idle runtime still holds {} mappings more than before the burst",
            now - before
        );

        // And a second burst finds stacks to reuse: it works as the first did.
        let again: Vec<_> = (0..PROCESSES)
            .map(|n| rt.spawn_fn(move |_: &mut FnContext<()>| n).unwrap())
            .collect();
        let sum: usize = again.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, PROCESSES * (PROCESSES - 1) / 2);
    });
}
