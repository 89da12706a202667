//! More handler processes mid-handler than the kernel lets the runtime map
//! stacks for: the ones without a stack wait for one, and no message is lost and
//! no process dies.
//!
//! Its own test binary: while stacks are exhausted, any other spawn of a
//! free-running process in the OS process would fail.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{within, DropCounter, Tracked};
use fibra::prelude::*;
use fibra::Builder;

/// Sleeps mid-handler on every message, so that it holds a stack meanwhile.
struct Napper {
    nap: Duration,
    handled: Arc<AtomicUsize>,
    _alive: Tracked,
}

impl Process for Napper {
    type Message = ();
    fn handle(&mut self, _: (), cx: &mut Context<Self>) {
        cx.sleep(self.nap);
        self.handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether, within a few seconds, mapping a stack fails: a free-running spawn
/// (which maps its stack at once) says so. A spawn that succeeds ends at once.
fn stacks_run_out(rt: &Runtime) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        match rt.spawn_fn(|_: &mut FnContext<()>| ()) {
            Err(SpawnError::Stack { .. }) => return true,
            Err(other) => panic!("{other}"),
            Ok(probe) => probe.join().unwrap(),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// No lost message when stacks run out: 40,000 handler processes each get a
/// message whose handler sleeps 1–1.5 s mid-handler (long enough for all of them
/// to start it in a debug build), so more of them want a
/// stack at once than `vm.max_map_count` lets the runtime map (each guarded
/// stack is two mappings); then each gets a second one. Those without a stack
/// must wait for one with their messages kept: all 80,000 messages are handled
/// and no process ends.
#[test]
fn handlers_wait_for_a_stack_and_lose_no_message() {
    const PROCESSES: usize = 40_000;
    let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530);
    if limit > 70_000 {
        eprintln!(
            "vm.max_map_count is {limit}: {PROCESSES} stacks fit, the limit cannot be reached; skipped"
        );
        return;
    }
    within(180, || {
        let rt = Builder::default()
            .workers(2)
            .stack_size(16 * 1024)
            .build()
            .unwrap();
        let handled = Arc::new(AtomicUsize::new(0));
        let ended = DropCounter::default();
        let pids: Vec<_> = (0..PROCESSES)
            .map(|i| {
                rt.spawn(Napper {
                    nap: Duration::from_millis(1_000 + (i % 501) as u64),
                    handled: Arc::clone(&handled),
                    _alive: ended.token(),
                })
                .expect("spawning a handler needs no stack")
            })
            .collect();
        for round in 0..2 {
            for pid in &pids {
                pid.send(())
                    .unwrap_or_else(|_| panic!("a process died in round {round}"));
            }
            if round == 0 {
                assert!(
                    stacks_run_out(&rt),
                    "the stacks never ran out: the test does not test what it says"
                );
            }
        }
        let start = Instant::now();
        while handled.load(Ordering::Relaxed) < 2 * PROCESSES {
            assert_eq!(ended.get(), 0, "a process ended");
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{} of {} messages handled",
                handled.load(Ordering::Relaxed),
                2 * PROCESSES
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(handled.load(Ordering::Relaxed), 2 * PROCESSES);
        assert_eq!(ended.get(), 0, "a process ended");
        assert_eq!(rt.processes(), PROCESSES);
        assert!(pids.iter().all(Pid::is_alive));
    });
}
