//! Loom models of the channels' waiting protocol (`chan.rs`): the real `Chan`
//! and its wait lists, with loom threads parking for processes. A lost wake-up
//! shows as a thread parked for ever, which loom reports as a deadlock; a
//! message lost or delivered twice fails the models' counts. The channel sits in
//! an `Arc` that its ends drop as they finish, so whichever thread is last frees
//! it, possibly the one that just woke another.
//!
//! Each model runs within a preemption bound (`loom_park/mod.rs`).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p fibra-runtime --release --test loom_channel`
#![cfg(loom)]

mod loom_park;

use fibra_runtime::chan::{Chan, Park, RecvFailure, SendFailure};
use loom::sync::Arc;
use loom::thread;
use loom_park::{model, Parker, Waker};

type Channel = Arc<Chan<u32, Waker>>;

/// Receives until the channel disconnects; returns the sum of what came.
fn drain(chan: &Channel) -> u32 {
    let parker = Parker::default();
    let mut sum = 0;
    loop {
        match chan.recv(&parker, None) {
            Ok(n) => sum += n,
            Err(RecvFailure::Disconnected) => return sum,
            Err(RecvFailure::Empty) => unreachable!("no deadline"),
        }
    }
}

/// A sender fills a queue of one and waits for room for its second message,
/// while the receiver waits for messages: each side must wake the other.
#[test]
fn a_full_queue_and_an_empty_one_wake_each_other() {
    model(|| {
        let chan: Channel = Arc::new(Chan::new(Some(1)));
        let sender = {
            let chan = chan.clone();
            thread::spawn(move || {
                chan.send(1, &Parker::default(), None).unwrap();
                chan.send(2, &Parker::default(), None).unwrap();
                chan.drop_sender();
            })
        };
        assert_eq!(drain(&chan), 3);
        chan.drop_receiver();
        sender.join().unwrap();
    });
}

/// Two receivers wait on one channel; a sender sends one message and goes.
/// The message is received once and both receivers see the disconnection.
#[test]
fn two_receivers_share_the_messages_and_the_disconnection() {
    model(|| {
        let chan: Channel = Arc::new(Chan::new(None));
        chan.add_receiver();
        let other = {
            let chan = chan.clone();
            thread::spawn(move || {
                let sum = drain(&chan);
                chan.drop_receiver();
                sum
            })
        };
        let sender = {
            let chan = chan.clone();
            thread::spawn(move || {
                chan.try_send(1).unwrap();
                chan.drop_sender();
            })
        };
        let mine = drain(&chan);
        chan.drop_receiver();
        sender.join().unwrap();
        assert_eq!(mine + other.join().unwrap(), 1);
    });
}

/// One message, two receivers: one waits in `recv`, the other (a `select`
/// that found another branch ready) registers and leaves without receiving.
/// If the send's wake-up went to the one that left, it must pass it on, or the
/// waiting receiver sleeps for ever beside a queued message. The sender stays
/// alive throughout, so no disconnection rescues a lost wake-up.
#[test]
fn a_waiter_that_leaves_passes_its_wake_up_on() {
    model(|| {
        let chan: Channel = Arc::new(Chan::new(None));
        chan.add_receiver();
        let leaver = {
            let chan = chan.clone();
            thread::spawn(move || {
                let parker = Parker::default();
                drop(chan.register_receiver(parker.unparker()));
                chan.drop_receiver();
            })
        };
        let receiver = {
            let chan = chan.clone();
            thread::spawn(move || {
                let got = chan.recv(&Parker::default(), None);
                chan.drop_receiver();
                got
            })
        };
        chan.try_send(7).unwrap();
        assert_eq!(receiver.join().unwrap(), Ok(7));
        leaver.join().unwrap();
        chan.drop_sender();
    });
}

/// One message, one receiver, the sender alive throughout: the send must wake
/// the waiting receiver by itself (its fence against the receiver's).
#[test]
fn a_send_wakes_a_waiting_receiver() {
    model(|| {
        let chan: Channel = Arc::new(Chan::new(None));
        let receiver = {
            let chan = chan.clone();
            thread::spawn(move || {
                let got = chan.recv(&Parker::default(), None);
                chan.drop_receiver();
                got
            })
        };
        chan.try_send(7).unwrap();
        assert_eq!(receiver.join().unwrap(), Ok(7));
        chan.drop_sender();
    });
}

/// The receiver going wakes a sender waiting for room, whose send fails with
/// its message handed back (or, if it raced past the close, lands in a queue
/// that is then dropped).
#[test]
fn the_receiver_going_wakes_a_waiting_sender() {
    model(|| {
        let chan: Channel = Arc::new(Chan::new(Some(1)));
        chan.try_send(1).unwrap();
        let sender = {
            let chan = chan.clone();
            thread::spawn(move || {
                let outcome = chan.send(2, &Parker::default(), None);
                chan.drop_sender();
                outcome
            })
        };
        chan.drop_receiver();
        drop(chan);
        match sender.join().unwrap() {
            // Waiting, or finding the channel closed: the message comes back.
            Err(SendFailure::Disconnected(2)) => {}
            // A send whose check came before the close, landing after it: as a
            // send just before the receiver went, the message is dropped with
            // the channel's queue.
            Ok(()) => {}
            other => panic!("the send should fail: {other:?}"),
        }
    });
}

/// Two senders wait for room in a queue of one that a receiver drains: room
/// made by one pop may be taken by a sender that was not woken, and the woken
/// one passes the wake-up on.
#[test]
fn two_waiting_senders_both_get_room() {
    model(|| {
        let chan: Channel = Arc::new(Chan::new(Some(1)));
        chan.add_sender();
        let senders: Vec<_> = [1, 2]
            .into_iter()
            .map(|n| {
                let chan = chan.clone();
                thread::spawn(move || {
                    chan.send(n, &Parker::default(), None).unwrap();
                    chan.drop_sender();
                })
            })
            .collect();
        assert_eq!(drain(&chan), 3);
        chan.drop_receiver();
        for sender in senders {
            sender.join().unwrap();
        }
    });
}
