//! Stress tests with real threads: many producers, one consumer, and a close racing the
//! pushes.

#![cfg(not(loom))]

use fibra_mailbox::Mailbox;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

/// Producer threads that start together.
struct Producers {
    /// Lets the producers start once the consumer is ready too.
    start: Arc<Barrier>,
    /// How many producers have finished all their pushes.
    done: Arc<AtomicUsize>,
    /// The producer threads.
    handles: Vec<thread::JoinHandle<()>>,
}

impl Producers {
    /// Spawns `count` threads that each run `body(producer_id)` after [`Self::start`].
    fn spawn(count: usize, body: impl Fn(usize) + Send + Sync + 'static) -> Self {
        let start = Arc::new(Barrier::new(count + 1));
        let done = Arc::new(AtomicUsize::new(0));
        let body = Arc::new(body);
        let handles = (0..count)
            .map(|id| {
                let (start, done, body) =
                    (Arc::clone(&start), Arc::clone(&done), Arc::clone(&body));
                thread::spawn(move || {
                    start.wait();
                    body(id);
                    done.fetch_add(1, Ordering::Release);
                })
            })
            .collect();
        Self {
            start,
            done,
            handles,
        }
    }

    /// Releases the producers.
    fn start(&self) {
        self.start.wait();
    }

    /// Whether every push of every producer has returned (and happened before this).
    fn all_done(&self) -> bool {
        self.done.load(Ordering::Acquire) == self.handles.len()
    }

    /// Waits for the producer threads to exit.
    fn join(self) {
        for handle in self.handles {
            handle.join().expect("producer thread");
        }
    }
}

#[test]
fn four_producers_one_consumer_every_message_once_in_producer_order() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 1_000_000;

    let mailbox = Arc::new(Mailbox::new());
    let producers = Producers::spawn(PRODUCERS, {
        let mailbox = Arc::clone(&mailbox);
        move |id| {
            for seq in 0..PER_PRODUCER {
                assert!(mailbox.push((id, seq)).is_ok(), "the mailbox is open");
            }
        }
    });
    producers.start();

    let mut next_seq = [0; PRODUCERS];
    loop {
        // Read before popping: if every push had returned by then, an empty pop means
        // the mailbox has given out everything it will ever give.
        let all_pushed = producers.all_done();
        // Safety: this thread is the mailbox's only consumer.
        match unsafe { mailbox.pop() } {
            Some((id, seq)) => {
                // Each producer's messages arrive in order with none missing, so a
                // duplicate or a loss shows up here as a wrong sequence number.
                assert_eq!(seq, next_seq[id], "producer {id}");
                next_seq[id] += 1;
            }
            None if all_pushed => break,
            None => thread::yield_now(),
        }
    }
    producers.join();
    assert_eq!(next_seq, [PER_PRODUCER; PRODUCERS], "messages lost");
    assert_eq!(mailbox.len(), 0);
    assert!(!mailbox.has_new());
}

/// Counts, per message id, how often the mailbox side dropped that message.
struct DropLog(Vec<AtomicUsize>);

/// A message that records in a [`DropLog`] when it is dropped, unless it was disarmed
/// because push handed it back.
struct Probe {
    id: usize,
    armed: bool,
    log: Arc<DropLog>,
}

impl Probe {
    /// Disarms the probe and returns its id.
    fn disarm(mut self) -> usize {
        self.armed = false;
        self.id
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        if self.armed {
            self.log.0[self.id].fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn close_racing_pushes_every_message_returned_or_dropped_exactly_once() {
    const PRODUCERS: usize = 4;
    const PER_PRODUCER: usize = 20_000;
    const ROUNDS: usize = 20;
    const TOTAL: usize = PRODUCERS * PER_PRODUCER;

    for round in 0..ROUNDS {
        let log = Arc::new(DropLog((0..TOTAL).map(|_| AtomicUsize::new(0)).collect()));
        let returned: Arc<Vec<AtomicUsize>> =
            Arc::new((0..TOTAL).map(|_| AtomicUsize::new(0)).collect());
        let mailbox = Arc::new(Mailbox::new());
        let producers = Producers::spawn(PRODUCERS, {
            let (mailbox, log, returned) = (
                Arc::clone(&mailbox),
                Arc::clone(&log),
                Arc::clone(&returned),
            );
            move |p| {
                for seq in 0..PER_PRODUCER {
                    let id = p * PER_PRODUCER + seq;
                    let msg = Probe {
                        id,
                        armed: true,
                        log: Arc::clone(&log),
                    };
                    if let Err(msg) = mailbox.push(msg) {
                        assert_eq!(msg.id, id, "push hands back the message it was given");
                        returned[msg.disarm()].fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        producers.start();

        // Consume a while (these pops drop messages too), then close at a point that
        // moves from round to round, with producers still pushing.
        let close_after = (round + 1) * TOTAL / (ROUNDS * 4);
        let mut popped = 0;
        while popped < close_after {
            let all_pushed = producers.all_done();
            // Safety: this thread is the mailbox's only consumer.
            match unsafe { mailbox.pop() } {
                Some(msg) => {
                    drop(msg);
                    popped += 1;
                }
                None if all_pushed => break,
                None => thread::yield_now(),
            }
        }
        // Safety: as above.
        let closed = unsafe { mailbox.close() };
        producers.join();

        let mut total_returned = 0;
        for id in 0..TOTAL {
            let dropped = log.0[id].load(Ordering::Relaxed);
            let handed_back = returned[id].load(Ordering::Relaxed);
            assert_eq!(
                dropped + handed_back,
                1,
                "round {round}, message {id}: dropped {dropped}, handed back {handed_back}"
            );
            total_returned += handed_back;
        }
        assert_eq!(popped + closed + total_returned, TOTAL, "round {round}");
        assert!(mailbox.is_closed());
        assert_eq!(mailbox.len(), 0, "round {round}");
    }
}
