//! Loom models of a bounded mailbox's places (`bounded.rs`): senders that wait
//! for a place through the channels' waiting loop, against the process giving
//! places back. A lost wake-up shows as a sender parked for ever, which loom
//! reports as a deadlock; a place handed out twice fails the count.
//!
//! Each model runs within a preemption bound (`loom_park/mod.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p fibra-runtime --release --test loom_bounded`
#![cfg(loom)]

mod loom_park;

use fibra_runtime::bounded::Bounded;
use fibra_runtime::chan::wait;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_park::{model, Parker, Waker};

type Bound = Arc<Bounded<Waker>>;

/// A sender's wait for a place, as `Pid::send_until` makes it.
fn reserve_waiting(bound: &Bound) {
    let mut attempt = || bound.reserve().then_some(());
    let got = wait(&bound.room, &Parker::default(), None, &mut attempt, || {
        bound.has_room()
    });
    assert_eq!(got, Some(()), "no deadline");
}

/// A full mailbox of one; the process takes its message out while a sender
/// waits: the sender gets the place.
#[test]
fn a_place_given_back_wakes_the_waiting_sender() {
    model(|| {
        let bound: Bound = Arc::new(Bounded::new(1, 1));
        let sender = {
            let bound = bound.clone();
            thread::spawn(move || reserve_waiting(&bound))
        };
        bound.release();
        sender.join().unwrap();
        assert!(!bound.has_room(), "the sender holds the one place");
    });
}

/// Two senders wait on a full mailbox of one; each, once through, has its
/// message taken out at once (it gives its place back), and the process takes
/// the first one out: both get through, one at a time.
#[test]
fn two_waiting_senders_take_the_place_in_turn() {
    model(|| {
        let bound: Bound = Arc::new(Bounded::new(1, 1));
        let inside = Arc::new(AtomicUsize::new(0));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (bound, inside) = (bound.clone(), inside.clone());
                thread::spawn(move || {
                    reserve_waiting(&bound);
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "one place");
                    inside.fetch_sub(1, Ordering::SeqCst);
                    bound.release();
                })
            })
            .collect();
        bound.release();
        for sender in senders {
            sender.join().unwrap();
        }
    });
}

/// A mailbox of eight, full, drained by one: above three quarters, so giving
/// the place back wakes nobody; the process then suspends, which must wake the
/// waiting sender.
#[test]
fn a_process_that_suspends_with_room_wakes_a_waiting_sender() {
    model(|| {
        let bound: Bound = Arc::new(Bounded::new(8, 8));
        let sender = {
            let bound = bound.clone();
            thread::spawn(move || reserve_waiting(&bound))
        };
        bound.release();
        bound.flush();
        sender.join().unwrap();
    });
}
