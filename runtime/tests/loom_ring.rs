//! Loom models of the broadcast ring (`ring.rs`): the real `Ring` with loom
//! threads for the publisher and the subscribers. A slot written while a
//! subscriber reads it is a data race on loom's `UnsafeCell`, which fails the
//! model; a lost wake-up is a thread parked for ever (a deadlock); an event
//! lost, doubled or out of order fails the sums.
//!
//! Each model runs within a preemption bound (`loom_park/mod.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p fibra-runtime --release --test loom_ring`
#![cfg(loom)]

mod loom_park;

use fibra_runtime::ring::{Cursor, Ring};
use loom::sync::Arc;
use loom::thread;
use loom_park::{model, Parker, Waker};

type Shared = Arc<Ring<u32, Waker>>;

/// Publishes `events` one at a time, waiting for room, then closes.
fn publish(ring: &Shared, events: &[u32]) {
    for (seq, &value) in events.iter().enumerate() {
        assert!(ring.claim(1, &Parker::default(), None));
        // Safety: this thread is the ring's one publisher, and `seq` is claimed.
        unsafe { ring.write(seq as u64, value) };
        ring.commit(seq as u64 + 1);
    }
    ring.close();
}

/// Reads until the publisher is gone and everything is read; returns the
/// events in order.
fn subscribe(ring: &Shared, cursor: &Cursor) -> Vec<u32> {
    let mut seen = Vec::new();
    loop {
        let from = ring.position(cursor);
        let published = ring
            .wait_for_events(from, &Parker::default(), None)
            .expect("no deadline");
        if published == from {
            assert!(ring.is_closed());
            return seen;
        }
        for seq in from..published {
            // Safety: `seq` is committed and at or past this cursor.
            seen.push(unsafe { ring.read(seq, |v| *v) });
        }
        ring.advance(cursor, published);
    }
}

/// A ring of one slot, two events, one subscriber: the publisher must wait
/// for the subscriber to read the first before it overwrites the slot, and
/// each side wakes the other.
#[test]
fn the_slowest_subscriber_gates_the_publisher() {
    model(|| {
        let ring: Shared = Arc::new(Ring::new(1));
        let cursor = ring.subscribe();
        let publisher = {
            let ring = ring.clone();
            thread::spawn(move || publish(&ring, &[1, 2]))
        };
        assert_eq!(subscribe(&ring, &cursor), [1, 2]);
        publisher.join().unwrap();
    });
}

/// Two subscribers read one slot at once and both see the end. (One event:
/// with two, the three threads' interleavings take minutes to explore; the
/// gate is the first model's.)
#[test]
fn two_subscribers_each_get_every_event() {
    model(|| {
        let ring: Shared = Arc::new(Ring::new(1));
        let first = ring.subscribe();
        let second = ring.subscribe();
        let other = {
            let ring = ring.clone();
            thread::spawn(move || subscribe(&ring, &second))
        };
        let publisher = {
            let ring = ring.clone();
            thread::spawn(move || publish(&ring, &[7]))
        };
        assert_eq!(subscribe(&ring, &first), [7]);
        assert_eq!(other.join().unwrap(), [7]);
        publisher.join().unwrap();
    });
}

/// A subscriber that goes while the publisher waits for it opens the gate.
#[test]
fn a_subscriber_that_leaves_opens_the_gate() {
    model(|| {
        let ring: Shared = Arc::new(Ring::new(1));
        let cursor = ring.subscribe();
        let publisher = {
            let ring = ring.clone();
            thread::spawn(move || publish(&ring, &[1, 2]))
        };
        ring.unsubscribe(&cursor);
        publisher.join().unwrap();
    });
}
