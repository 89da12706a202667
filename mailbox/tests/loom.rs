//! Loom models of the mailbox, run against the real code through `src/sync.rs`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p fibra-mailbox --release --test loom
//! ```
//!
//! `has_new_and_state_word_never_both_miss` and `push_racing_close` explore every
//! interleaving. `two_producers_one_consumer` is bounded to 5 preemptions per execution
//! (every bound up to 5 takes under 3 s in release mode; each step up costs about three
//! times more, and the full space takes minutes); set `LOOM_MAX_PREEMPTIONS` to choose
//! another bound.

#![cfg(loom)]

use fibra_mailbox::Mailbox;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Preemption bound for the models too large to explore fully, unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise.
const PREEMPTION_BOUND: usize = 5;

/// Runs `f` under loom with at most [`PREEMPTION_BOUND`] preemptions per execution.
fn bounded_model(f: impl Fn() + Send + Sync + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTION_BOUND);
    }
    builder.check(f);
}

/// Two producers push while one consumer pops: every message arrives exactly once, and
/// each producer's messages arrive in the order it pushed them.
///
/// Producer 0 pushes two messages and producer 1 one, enough for both orders to matter.
/// The consumer pops a fixed number of times while the producers run, then drains the
/// rest after joining them: popping until everything arrived would need a yield per
/// empty pop, which multiplies the interleavings without adding new ones.
#[test]
fn two_producers_one_consumer() {
    const PUSHES: [usize; 2] = [2, 1];

    bounded_model(|| {
        let mailbox = Arc::new(Mailbox::new());
        let producers: Vec<_> = (0..2)
            .map(|id| {
                let mailbox = Arc::clone(&mailbox);
                thread::spawn(move || {
                    for seq in 0..PUSHES[id] {
                        assert!(mailbox.push((id, seq)).is_ok());
                    }
                })
            })
            .collect();

        let mut received = Vec::new();
        for _ in 0..2 {
            // Safety: this thread is the only consumer.
            received.extend(unsafe { mailbox.pop() });
        }
        for producer in producers {
            producer.join().unwrap();
        }
        // Safety: as above.
        while let Some(msg) = unsafe { mailbox.pop() } {
            received.push(msg);
        }

        for (id, &pushes) in PUSHES.iter().enumerate() {
            let from_id: Vec<usize> = received
                .iter()
                .filter(|&&(from, _)| from == id)
                .map(|&(_, seq)| seq)
                .collect();
            assert_eq!(from_id, (0..pushes).collect::<Vec<_>>());
        }
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
                [0, 1].map(|id| {
                    let msg = Probe {
                        id,
                        armed: true,
                        drops: std::sync::Arc::clone(&drops),
                    };
                    match mailbox.push(msg) {
                        Ok(()) => false,
                        Err(mut msg) => {
                            assert_eq!(msg.id, id);
                            msg.armed = false;
                            true
                        }
                    }
                })
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
