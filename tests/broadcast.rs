//! The broadcast ring as users use it: every subscriber gets every event in
//! order, in batches, between processes and threads; the slowest subscriber
//! gates the publisher; late joiners start with the next event; the end and
//! the timeouts; every event dropped exactly once.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{within, DropCounter};
use fibra::channel::broadcast;
use fibra::channel::{RecvError, RecvTimeoutError, TryRecvError};
use fibra::prelude::*;
use fibra::Builder;

/// A publisher process sends 50,000 events in batches of up to 64 through a
/// ring of 128 to two subscriber processes and a subscriber thread: each gets
/// all of them, in order.
#[test]
fn every_subscriber_gets_every_event_in_order() {
    within(60, || {
        const EVENTS: u64 = 50_000;
        let rt = Builder::default().workers(2).build().unwrap();
        let (mut publisher, first) = broadcast::ring::<u64>(128);
        let check = |mut subscriber: broadcast::Subscriber<u64>| {
            move || {
                let mut next = 0;
                while let Ok(events) = subscriber.recv_n(64) {
                    assert!(events.len() <= 64);
                    for &n in events.iter() {
                        assert_eq!(n, next, "out of order");
                        next += 1;
                    }
                }
                next
            }
        };
        let second = first.clone();
        let third = first.clone();
        let a = rt
            .spawn_fn({
                let mut work = check(first);
                move |_: &mut FnContext<()>| work()
            })
            .unwrap();
        let b = rt
            .spawn_fn({
                let mut work = check(second);
                move |_: &mut FnContext<()>| work()
            })
            .unwrap();
        let c = thread::spawn(check(third));
        let producer = rt
            .spawn_fn(move |_: &mut FnContext<()>| {
                let mut n = 0;
                while n < EVENTS {
                    let k = ((n % 64) + 1).min(EVENTS - n) as usize;
                    let mut batch = publisher.next_n(k);
                    for _ in 0..k {
                        batch.push(n);
                        n += 1;
                    }
                    batch.commit();
                }
            })
            .unwrap();
        producer.join().unwrap();
        assert_eq!(a.join().unwrap(), EVENTS);
        assert_eq!(b.join().unwrap(), EVENTS);
        assert_eq!(c.join().unwrap(), EVENTS);
    });
}

#[test]
fn the_slowest_subscriber_gates_the_publisher() {
    let (mut publisher, mut slow) = broadcast::ring::<u32>(4);
    let mut fast = publisher.subscribe();
    for n in 0..4 {
        publisher.send(n);
    }
    // The fast one reads all four; the slow one none: the ring stays full.
    assert_eq!(fast.recv_n(10).unwrap().len(), 4);
    assert!(publisher.try_next_n(1).is_none());
    let started = Instant::now();
    assert!(publisher
        .next_n_timeout(1, Duration::from_millis(20))
        .is_none());
    assert!(started.elapsed() >= Duration::from_millis(20));
    // The slow one reads two: two slots free up.
    let events = slow.recv_n(2).unwrap();
    assert_eq!(events.iter().copied().collect::<Vec<_>>(), [0, 1]);
    events.commit();
    assert_eq!(slow.len(), 2);
    let mut batch = publisher.try_next_n(2).expect("two free slots");
    batch.push(4);
    batch.push(5);
    batch.commit();
    // A claim that is not filled takes no slot: the ring is full again.
    assert!(publisher.try_next_n(1).is_none());
    // A subscriber that leaves stops gating.
    drop(slow);
    assert!(publisher.try_next_n(2).is_some());
}

#[test]
fn late_subscribers_start_with_the_next_event_and_clones_where_they_are() {
    let (mut publisher, mut early) = broadcast::ring::<u32>(8);
    publisher.send(1);
    let mut late = publisher.subscribe();
    let mut clone = early.clone();
    publisher.send(2);
    assert_eq!(early.recv(), Ok(1));
    assert_eq!(early.recv(), Ok(2));
    assert_eq!(late.recv(), Ok(2));
    assert_eq!(clone.recv(), Ok(1));
    assert_eq!(publisher.subscribers(), 3);
}

#[test]
fn subscribers_read_what_is_left_then_see_the_end() {
    within(30, || {
        let (mut publisher, mut subscriber) = broadcast::ring::<u32>(4);
        assert_eq!(subscriber.try_recv_n(1).err(), Some(TryRecvError::Empty));
        assert_eq!(
            subscriber
                .recv_n_timeout(1, Duration::from_millis(10))
                .err(),
            Some(RecvTimeoutError::Timeout)
        );
        publisher.send(5);
        drop(publisher);
        assert_eq!(subscriber.recv(), Ok(5));
        assert_eq!(subscriber.recv(), Err(RecvError));
        assert_eq!(
            subscriber.try_recv_n(1).err(),
            Some(TryRecvError::Disconnected)
        );
        // A subscriber waiting when the publisher goes is woken.
        let (publisher, mut subscriber) = broadcast::ring::<u32>(4);
        let waiter = thread::spawn(move || subscriber.recv_n(1).is_err());
        thread::sleep(Duration::from_millis(20));
        drop(publisher);
        assert!(waiter.join().unwrap());
    });
}

/// Each event is dropped once: when its slot is reused, or with the ring.
#[test]
fn every_event_is_dropped_exactly_once() {
    let drops = DropCounter::default();
    let (mut publisher, mut subscriber) = broadcast::ring(3);
    for _ in 0..10 {
        publisher.send(drops.token());
        subscriber.recv_n(1).unwrap().commit();
    }
    // Seven slots were reused; three events are still in the ring.
    assert_eq!(drops.get(), 7);
    drop(publisher);
    drop(subscriber);
    assert_eq!(drops.get(), 10);
}

#[test]
#[should_panic(expected = "a claim of 5 slots on a ring of 4")]
fn a_claim_larger_than_the_ring_is_refused() {
    let (mut publisher, _subscriber) = broadcast::ring::<u8>(4);
    let _ = publisher.next_n(5);
}

#[test]
#[should_panic(expected = "at least one slot")]
fn a_ring_of_no_slots_is_refused() {
    let _ = broadcast::ring::<u8>(0);
}
