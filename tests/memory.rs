//! What a process that has ended leaves behind on the processes that outlive it:
//! nothing. Measured with a counting allocator, so this file holds tests that must
//! not run beside others that allocate; they take turns.

mod common;

use std::sync::atomic::Ordering;

use common::within;
use fibra::prelude::*;
use fibra::Builder;

#[global_allocator]
static ALLOCATOR: common::CountingAllocator = common::CountingAllocator;

/// A process that does nothing and lives as long as the test.
struct Idle;

impl Process for Idle {
    type Message = ();
    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
}

/// A short-lived process that monitors `target` and stops at once.
struct Watcher {
    /// The long-lived process it watches.
    target: AnyPid,
}

impl Process for Watcher {
    type Message = ();

    fn started(&mut self, cx: &mut Context<Self>) {
        cx.monitor(&self.target);
        cx.stop();
    }

    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
}

#[test]
fn watchers_that_exit_leave_no_monitor_on_a_long_lived_target() {
    let _serial = common::one_at_a_time();
    within(120, || {
        const WATCHERS: usize = 10_000;
        /// Watchers alive at once.
        const BATCH: usize = 100;
        // A monitor left on the target keeps its entry and the dead watcher's whole
        // allocation (a `Weak` to it): hundreds of bytes a watcher. What may move
        // meanwhile is bounded and reached in the warm-up (stack pools, queues,
        // tables, the allocator's caches).
        let limit = (WATCHERS * 24) as isize;
        let rt = Builder::default().workers(2).build().expect("runtime");
        let target = rt.spawn(Idle).unwrap().any();
        let watch = move |rt: &Runtime, n: usize| {
            let target = target.clone();
            rt.block_on(move |cx| {
                for _ in 0..n / BATCH {
                    let watchers: Vec<_> = (0..BATCH)
                        .map(|_| {
                            cx.spawn(Watcher {
                                target: target.clone(),
                            })
                        })
                        .collect();
                    for watcher in &watchers {
                        common::await_end(cx, watcher);
                    }
                }
                assert!(target.is_alive());
            });
        };
        watch(&rt, 1_000);
        let before = common::LIVE_BYTES.load(Ordering::SeqCst);
        watch(&rt, WATCHERS);
        let grown = common::LIVE_BYTES.load(Ordering::SeqCst) - before;
        assert!(
            grown < limit,
            "{WATCHERS} watchers that exited left {grown} bytes on their target"
        );
    });
}

/// Sends itself the next number after no delay, until `last`; reports when it
/// reaches `checkpoints`.
struct SelfTimer {
    last: u32,
    checkpoints: Vec<u32>,
    reached: std::sync::mpsc::Sender<u32>,
}

impl Process for SelfTimer {
    type Message = u32;
    fn handle(&mut self, n: u32, cx: &mut Context<Self>) {
        if self.checkpoints.contains(&n) {
            self.reached.send(n).unwrap();
        }
        if n < self.last {
            cx.pid()
                .send_after(n + 1, std::time::Duration::ZERO)
                .expect("the process is alive");
        }
    }
}

#[test]
fn delivered_send_after_letters_leave_nothing_on_a_long_lived_target() {
    let _serial = common::one_at_a_time();
    within(120, || {
        const LETTERS: u32 = 30_000;
        // A delivered letter's binding is a key and a slot (about 40 bytes); kept for
        // good, 30,000 of them would hold over a megabyte.
        let limit = 64 * 1024;
        let rt = Builder::default().workers(2).build().expect("runtime");
        let (reached, checkpoints) = std::sync::mpsc::channel();
        let ticker = rt
            .spawn(SelfTimer {
                last: LETTERS,
                checkpoints: vec![1_000, LETTERS],
                reached,
            })
            .unwrap();
        ticker.send(0).unwrap();
        assert_eq!(checkpoints.recv().unwrap(), 1_000);
        let before = common::LIVE_BYTES.load(Ordering::SeqCst);
        assert_eq!(checkpoints.recv().unwrap(), LETTERS);
        let grown = common::LIVE_BYTES.load(Ordering::SeqCst) - before;
        assert!(ticker.is_alive());
        assert!(
            grown < limit,
            "{} delivered letters left {grown} bytes on their target",
            LETTERS - 1_000
        );
    });
}
