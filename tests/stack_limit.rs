//! When the kernel refuses more stacks (vm.max_map_count), spawning a
//! free-running process fails with an error naming the limit; a handler process
//! waits for a stack with its messages kept; nothing crashes or hangs, and the
//! runtime recovers once stacks are freed.
//!
//! Its own test binary: while it runs, any other spawn in the OS process would fail.

mod common;

use common::within;
use fibra::prelude::*;
use fibra::Builder;

/// Reports every message it handles.
struct Echo {
    handled: std::sync::mpsc::Sender<u32>,
}

impl Process for Echo {
    type Message = u32;
    fn handle(&mut self, n: u32, _cx: &mut Context<Self>) {
        let _ = self.handled.send(n);
    }
}

#[test]
fn running_out_of_mappings_is_a_clear_spawn_error() {
    let limit: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530);
    // Every stack takes two mappings, so the limit is reached near limit / 2.
    let cap = limit / 2 + 1_000;
    if cap > 300_000 {
        eprintln!("vm.max_map_count is {limit}: too high to reach in a test; skipped");
        return;
    }
    within(300, move || {
        let rt = Builder::default()
            .workers(2)
            .stack_size(16 * 1024)
            .build()
            .unwrap();
        let mut parked = Vec::new();
        let error = loop {
            match rt.spawn_fn(|cx: &mut FnContext<()>| cx.receive()) {
                Ok(handle) => parked.push(handle),
                Err(err) => break err,
            }
            assert!(parked.len() < cap, "no error after {cap} stacks");
        };
        assert!(matches!(error, SpawnError::Stack { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("vm.max_map_count"), "{text}");
        assert!(
            parked.len() > 1_000,
            "only {} stacks before the error",
            parked.len()
        );

        // A handler process needs a stack only to run; with none to be had it waits
        // for one, its messages kept, and handles them once stacks are freed.
        let (handled, got) = std::sync::mpsc::channel();
        let starved = rt
            .spawn(Echo { handled })
            .expect("spawning a handler needs no stack");
        starved.send(1).unwrap();
        starved.send(2).unwrap();
        assert_eq!(
            got.recv_timeout(std::time::Duration::from_millis(200)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout),
            "a handler ran without a stack"
        );
        assert!(starved.is_alive(), "a handler without a stack gave up");

        // Free them all: every process ends normally.
        for handle in &parked {
            handle.pid().send(()).unwrap();
        }
        for handle in parked {
            handle.join().unwrap();
        }
        // The starved handler got its stack and every message, in order.
        assert_eq!(got.recv_timeout(std::time::Duration::from_secs(60)), Ok(1));
        assert_eq!(got.recv_timeout(std::time::Duration::from_secs(60)), Ok(2));
        // The runtime goes on.
        let again = rt.spawn_fn(|_: &mut FnContext<()>| 7).unwrap();
        assert_eq!(again.join().unwrap(), 7);
    });
}
