//! Loom models of the mailbox, run against the real code through `src/sync.rs`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p fibra-mailbox --release --test loom
//! ```
//!
//! Every model here explores its full state space (no preemption bound is needed).

#![cfg(loom)]

use fibra_mailbox::Mailbox;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Two producers push two messages each while one consumer pops: every message arrives
/// exactly once, and each producer's messages arrive in the order it pushed them.
#[test]
fn two_producers_one_consumer() {
    loom::model(|| {
        let mailbox = Arc::new(Mailbox::new());
        let producers: Vec<_> = (0..2)
            .map(|id| {
                let mailbox = Arc::clone(&mailbox);
                thread::spawn(move || {
                    for seq in 0..2 {
                        assert!(mailbox.push((id, seq)).is_ok());
                    }
                })
            })
            .collect();

        let mut next_seq = [0; 2];
        let mut received = 0;
        while received < 4 {
            // Safety: this thread is the only consumer.
            match unsafe { mailbox.pop() } {
                Some((id, seq)) => {
                    assert_eq!(seq, next_seq[id]);
                    next_seq[id] += 1;
                    received += 1;
                }
                None => thread::yield_now(),
            }
        }
        for producer in producers {
            producer.join().unwrap();
        }
        // Safety: as above.
        assert!(unsafe { mailbox.pop() }.is_none());
        assert_eq!(mailbox.len(), 0);
    });
}

/// A message that counts its drops, unless push handed it back and it was disarmed.
struct Probe {
    id: usize,
    armed: bool,
    drops: std::sync::Arc<[std::sync::atomic::AtomicUsize; 2]>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        if self.armed {
            self.drops[self.id].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A producer pushes two messages while the consumer pops once and then closes: each
/// message ends up either handed back by `push` or dropped by the mailbox side, exactly
/// once.
#[test]
fn push_racing_close() {
    loom::model(|| {
        // Bookkeeping only: loom runs its threads one at a time on one OS thread, so
        // std atomics here are exact and add no states to explore.
        let drops = std::sync::Arc::new([0, 0].map(std::sync::atomic::AtomicUsize::new));
        let mailbox = Arc::new(Mailbox::new());
        let producer = {
            let (mailbox, drops) = (Arc::clone(&mailbox), std::sync::Arc::clone(&drops));
            thread::spawn(move || {
                let mut handed_back = [false; 2];
                for id in 0..2 {
                    let msg = Probe {
                        id,
                        armed: true,
                        drops: std::sync::Arc::clone(&drops),
                    };
                    if let Err(mut msg) = mailbox.push(msg) {
                        assert_eq!(msg.id, id);
                        msg.armed = false;
                        handed_back[id] = true;
                    }
                }
                handed_back
            })
        };

        // Safety: this thread is the only consumer.
        let popped = usize::from(unsafe { mailbox.pop() }.is_some());
        // Safety: as above.
        let closed = unsafe { mailbox.close() };
        let handed_back = producer.join().unwrap();

        for id in 0..2 {
            let dropped = drops[id].load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(dropped + usize::from(handed_back[id]), 1, "message {id}");
        }
        let refused = handed_back.iter().filter(|&&b| b).count();
        assert_eq!(popped + closed + refused, 2);
        assert!(mailbox.is_closed());
        assert_eq!(mailbox.len(), 0);
    });
}

/// The reschedule protocol's store-then-load: a sender pushes and then reads the process
/// state; the receiver stores "suspended" and then calls `has_new`. At least one of them
/// must see the other's store, or the message is never noticed (a lost wake-up).
#[test]
fn has_new_and_state_word_never_both_miss() {
    const RUNNING: usize = 0;
    const SUSPENDED: usize = 1;

    loom::model(|| {
        let mailbox = Arc::new(Mailbox::new());
        let state = Arc::new(AtomicUsize::new(RUNNING));
        // Loom orders SeqCst accesses only among themselves, and the initial values are
        // not SeqCst stores. Give both words a SeqCst last write before the threads
        // start, as they have in a process that has been running: the consumer's SeqCst
        // swap of `head` when it took a message, and a SeqCst store of the state.
        mailbox.push(0).unwrap();
        // Safety: this thread is the only consumer.
        assert_eq!(unsafe { mailbox.pop() }, Some(0));
        state.store(RUNNING, Ordering::SeqCst);

        let sender = {
            let (mailbox, state) = (Arc::clone(&mailbox), Arc::clone(&state));
            thread::spawn(move || {
                mailbox.push(1).unwrap();
                state.load(Ordering::SeqCst) == SUSPENDED
            })
        };

        state.store(SUSPENDED, Ordering::SeqCst);
        let receiver_saw_message = mailbox.has_new();
        let sender_saw_suspended = sender.join().unwrap();
        assert!(
            receiver_saw_message || sender_saw_suspended,
            "lost wake-up: neither side saw the other"
        );
    });
}
