use super::Mailbox;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

/// Counts, per message id, how many times a [`Probe`] with that id was dropped.
#[derive(Debug)]
struct DropLog(Vec<AtomicUsize>);

impl DropLog {
    fn new(ids: usize) -> Arc<Self> {
        Arc::new(Self((0..ids).map(|_| AtomicUsize::new(0)).collect()))
    }

    fn drops(&self, id: usize) -> usize {
        self.0[id].load(Ordering::SeqCst)
    }

    fn all(&self) -> Vec<usize> {
        (0..self.0.len()).map(|id| self.drops(id)).collect()
    }
}

/// A message that records its drop in a [`DropLog`].
#[derive(Debug)]
struct Probe {
    id: usize,
    log: Arc<DropLog>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.log.0[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

fn probe(id: usize, log: &Arc<DropLog>) -> Probe {
    Probe {
        id,
        log: Arc::clone(log),
    }
}

/// Pops everything (as the only consumer) and returns it in order.
fn drain<T>(mailbox: &Mailbox<T>) -> Vec<T> {
    let mut out = Vec::new();
    // Safety: every test is the only consumer of its mailboxes.
    while let Some(msg) = unsafe { mailbox.pop() } {
        out.push(msg);
    }
    out
}

#[test]
fn empty_mailbox_is_24_bytes_whatever_the_message() {
    assert_eq!(size_of::<Mailbox<u64>>(), 24);
    assert_eq!(size_of::<Mailbox<[u8; 4096]>>(), 24);
}

#[test]
fn mailbox_is_send_and_sync() {
    fn assert_send_sync<S: Send + Sync>() {}
    assert_send_sync::<Mailbox<Box<u64>>>();
    assert_send_sync::<Mailbox<std::cell::Cell<u64>>>();
}

#[test]
fn const_new_and_default() {
    static MAILBOX: Mailbox<u32> = Mailbox::new();
    assert!(MAILBOX.is_empty());
    let mailbox: Mailbox<u32> = Mailbox::default();
    assert!(mailbox.is_empty() && !mailbox.is_closed());
}

#[test]
fn pops_in_arrival_order() {
    let mailbox = Mailbox::new();
    for i in 0..100 {
        mailbox.push(i).unwrap();
    }
    assert_eq!(drain(&mailbox), (0..100).collect::<Vec<_>>());
    // Safety: only consumer.
    assert_eq!(unsafe { mailbox.pop() }, None);
}

#[test]
fn arrival_order_holds_across_batches() {
    let mailbox = Mailbox::new();
    mailbox.push(1).unwrap();
    mailbox.push(2).unwrap();
    // Safety: only consumer.
    assert_eq!(unsafe { mailbox.pop() }, Some(1));
    // 2 is on the private list, 3 and 4 on the shared stack: 2 must still come first.
    mailbox.push(3).unwrap();
    mailbox.push(4).unwrap();
    // Safety: only consumer.
    assert_eq!(unsafe { mailbox.pop() }, Some(2));
    mailbox.push(5).unwrap();
    assert_eq!(drain(&mailbox), [3, 4, 5]);
}

#[test]
fn each_producer_is_fifo_when_producers_interleave() {
    const PRODUCERS: usize = 3;
    const PER_PRODUCER: usize = 20_000;
    let mailbox = Arc::new(Mailbox::new());
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let mailbox = Arc::clone(&mailbox);
            thread::spawn(move || {
                for seq in 0..PER_PRODUCER {
                    mailbox.push((id, seq)).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0; PRODUCERS];
    let mut received = 0;
    let mut from_other_producer_in_between = false;
    let mut last_id = usize::MAX;
    while received < PRODUCERS * PER_PRODUCER {
        // Safety: this thread is the only consumer.
        match unsafe { mailbox.pop() } {
            Some((id, seq)) => {
                assert_eq!(seq, next[id], "producer {id} out of order");
                next[id] += 1;
                received += 1;
                from_other_producer_in_between |= last_id != usize::MAX && last_id != id;
                last_id = id;
            }
            None => thread::yield_now(),
        }
    }
    for producer in producers {
        producer.join().unwrap();
    }
    assert!(from_other_producer_in_between);
    assert!(mailbox.is_empty() && !mailbox.has_new());
}

#[test]
fn pop_matching_takes_the_first_match_and_keeps_the_rest_in_order() {
    let mailbox = Mailbox::new();
    for i in 0..10 {
        mailbox.push(i).unwrap();
    }
    // Safety (every call below): this test is the only consumer.
    unsafe {
        assert_eq!(mailbox.pop_matching(|&m| m % 2 == 1), Some(1));
        assert_eq!(mailbox.pop_matching(|&m| m == 5), Some(5));
        assert_eq!(mailbox.pop_matching(|&m| m == 0), Some(0));
    }
    // New arrivals land on the shared stack; the scan must take them in after the
    // private list, in their own order.
    for i in 10..15 {
        mailbox.push(i).unwrap();
    }
    unsafe {
        assert_eq!(mailbox.pop_matching(|&m| m >= 12), Some(12));
    }
    for i in 15..20 {
        mailbox.push(i).unwrap();
    }
    unsafe {
        // Matches in the second batch, the one before it is skipped over.
        assert_eq!(mailbox.pop_matching(|&m| m > 16), Some(17));
        // The last message of everything, then one that does not exist.
        assert_eq!(mailbox.pop_matching(|&m| m == 19), Some(19));
        assert_eq!(mailbox.pop_matching(|&m| m == 100), None);
    }
    assert_eq!(mailbox.len(), 14);
    assert_eq!(
        drain(&mailbox),
        [2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 18]
    );
}

#[test]
fn pop_matching_looks_at_each_message_once_in_order() {
    let mailbox = Mailbox::new();
    for i in 0..4 {
        mailbox.push(i).unwrap();
    }
    let mut seen = Vec::new();
    // Safety: only consumer.
    let found = unsafe {
        mailbox.pop_matching(|&m| {
            seen.push(m);
            false
        })
    };
    assert_eq!(found, None);
    assert_eq!(seen, [0, 1, 2, 3]);
    // Everything was taken into the private list; nothing was removed.
    assert!(!mailbox.has_new());
    assert_eq!(mailbox.len(), 4);
}

#[test]
fn len_is_empty_and_has_new_follow_the_queue() {
    let mailbox = Mailbox::new();
    assert_eq!(mailbox.len(), 0);
    assert!(mailbox.is_empty() && !mailbox.has_new());
    mailbox.push('a').unwrap();
    mailbox.push('b').unwrap();
    assert_eq!(mailbox.len(), 2);
    assert!(!mailbox.is_empty() && mailbox.has_new());
    // Safety: only consumer.
    assert_eq!(unsafe { mailbox.pop() }, Some('a'));
    // 'b' moved to the private list: still queued, but no longer new.
    assert_eq!(mailbox.len(), 1);
    assert!(!mailbox.is_empty() && !mailbox.has_new());
    mailbox.push('c').unwrap();
    assert!(mailbox.has_new());
    assert_eq!(drain(&mailbox), ['b', 'c']);
    assert_eq!(mailbox.len(), 0);
    assert!(mailbox.is_empty() && !mailbox.has_new());
}

#[test]
fn len_reads_a_count_briefly_below_zero_as_zero() {
    let mailbox = Mailbox::<u8>::new();
    // What the counts hold when the consumer took a message whose producer has not
    // counted it yet.
    mailbox.popped.store(1, Ordering::Relaxed);
    assert_eq!(mailbox.len(), 0);
    assert!(mailbox.is_empty());
    mailbox.pushed.store(1, Ordering::Relaxed);
    mailbox.push(7).unwrap();
    assert_eq!(mailbox.len(), 1);
    // Both counts wrap at 2^32; the difference stays the length.
    mailbox.pushed.store(u32::MAX, Ordering::Relaxed);
    mailbox.popped.store(u32::MAX - 1, Ordering::Relaxed);
    assert_eq!(mailbox.len(), 1);
    mailbox.push(8).unwrap();
    assert_eq!(mailbox.len(), 2);
}

#[test]
fn close_drops_queued_messages_once_and_turns_pushes_away() {
    let log = DropLog::new(6);
    let mailbox = Mailbox::new();
    for id in 0..3 {
        mailbox.push(probe(id, &log)).unwrap();
    }
    // Safety: only consumer.
    let first = unsafe { mailbox.pop() }.unwrap();
    assert_eq!(first.id, 0);
    drop(first);
    // 1 and 2 are now on the private list; 3 and 4 go on the shared stack.
    for id in 3..5 {
        mailbox.push(probe(id, &log)).unwrap();
    }
    assert_eq!(log.all(), [1, 0, 0, 0, 0, 0]);

    // Safety: only consumer.
    assert_eq!(unsafe { mailbox.close() }, 4);
    assert_eq!(log.all(), [1, 1, 1, 1, 1, 0]);
    assert!(mailbox.is_closed() && mailbox.is_empty() && !mailbox.has_new());

    let refused = mailbox.push(probe(5, &log)).unwrap_err();
    assert_eq!(refused.id, 5);
    assert_eq!(
        log.drops(5),
        0,
        "a refused message is handed back, not dropped"
    );
    drop(refused);

    // Closing again and dropping the mailbox drop nothing more.
    // Safety: only consumer.
    unsafe {
        assert_eq!(mailbox.close(), 0);
        assert!(mailbox.pop().is_none());
        assert!(mailbox.pop_matching(|_| true).is_none());
    }
    drop(mailbox);
    assert_eq!(log.all(), [1; 6]);
}

#[test]
fn dropping_the_mailbox_frees_both_lists() {
    let log = DropLog::new(6);
    let mailbox = Mailbox::new();
    for id in 0..3 {
        mailbox.push(probe(id, &log)).unwrap();
    }
    // Safety: only consumer.
    drop(unsafe { mailbox.pop() });
    for id in 3..6 {
        mailbox.push(probe(id, &log)).unwrap();
    }
    assert_eq!(log.all(), [1, 0, 0, 0, 0, 0]);
    drop(mailbox);
    assert_eq!(log.all(), [1; 6]);
    assert_eq!(Arc::strong_count(&log), 1);
}

#[test]
fn a_panicking_predicate_leaves_the_mailbox_intact() {
    let log = DropLog::new(9);
    let mailbox = Mailbox::new();
    for id in 0..6 {
        mailbox.push(probe(id, &log)).unwrap();
    }
    // Panic in the middle of the private list.
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        // Safety: only consumer.
        unsafe { mailbox.pop_matching(|m| if m.id == 3 { panic!("boom") } else { false }) }
    }));
    assert!(result.is_err());
    // Panic in a batch of new arrivals that the scan has just appended.
    for id in 6..9 {
        mailbox.push(probe(id, &log)).unwrap();
    }
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        // Safety: only consumer.
        unsafe { mailbox.pop_matching(|m| if m.id == 7 { panic!("boom") } else { false }) }
    }));
    assert!(result.is_err());
    assert_eq!(log.all(), [0; 9], "nothing dropped by a panic");
    assert_eq!(mailbox.len(), 9);

    // The match after a panic still works and everything is still in order.
    // Safety: only consumer.
    let four = unsafe { mailbox.pop_matching(|m| m.id == 4) }.unwrap();
    assert_eq!(four.id, 4);
    let ids: Vec<_> = drain(&mailbox).iter().map(|m| m.id).collect();
    assert_eq!(ids, [0, 1, 2, 3, 5, 6, 7, 8]);
    drop(four);
    assert_eq!(log.all(), [1; 9]);
}

#[test]
fn close_drops_the_rest_when_destructors_panic() {
    struct Bomb {
        explode: bool,
        drops: Arc<AtomicUsize>,
    }
    impl Drop for Bomb {
        fn drop(&mut self) {
            self.drops.fetch_add(1, Ordering::SeqCst);
            if self.explode {
                panic!("bomb");
            }
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let mailbox = Mailbox::new();
    for i in 0..5 {
        let bomb = Bomb {
            // Two bombs: the second goes off while the first unwinds.
            explode: i == 1 || i == 3,
            drops: Arc::clone(&drops),
        };
        assert!(mailbox.push(bomb).is_ok());
    }
    // Safety: only consumer.
    let result = panic::catch_unwind(AssertUnwindSafe(|| unsafe { mailbox.close() }));
    assert!(result.is_err());
    assert_eq!(drops.load(Ordering::SeqCst), 5);
    assert!(mailbox.is_closed() && mailbox.is_empty());
}

#[test]
fn producers_racing_one_close_lose_nothing() {
    const PRODUCERS: usize = 2;
    const PER_PRODUCER: usize = 5_000;
    let log = DropLog::new(PRODUCERS * PER_PRODUCER);
    let refused = Arc::new(AtomicUsize::new(0));
    let mailbox = Arc::new(Mailbox::new());
    let start = Arc::new(Barrier::new(PRODUCERS + 1));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (mailbox, log, refused, start) = (
                Arc::clone(&mailbox),
                Arc::clone(&log),
                Arc::clone(&refused),
                Arc::clone(&start),
            );
            thread::spawn(move || {
                start.wait();
                for seq in 0..PER_PRODUCER {
                    if let Err(msg) = mailbox.push(probe(p * PER_PRODUCER + seq, &log)) {
                        refused.fetch_add(1, Ordering::SeqCst);
                        drop(msg);
                    }
                }
            })
        })
        .collect();
    start.wait();
    while mailbox.len() < 100 {
        thread::yield_now();
    }
    // Safety: this thread is the only consumer.
    let closed = unsafe { mailbox.close() };
    for producer in producers {
        producer.join().unwrap();
    }
    // Here a refused message is dropped by its producer, so every message is dropped
    // exactly once either way; the counts must add up.
    assert_eq!(log.all(), vec![1; PRODUCERS * PER_PRODUCER]);
    assert_eq!(
        closed + refused.load(Ordering::SeqCst),
        PRODUCERS * PER_PRODUCER
    );
    assert_eq!(mailbox.len(), 0);
}

#[test]
fn debug_shows_len_and_closed() {
    let mailbox = Mailbox::new();
    mailbox.push(()).unwrap();
    assert_eq!(format!("{mailbox:?}"), "Mailbox { len: 1, closed: false }");
    // Safety: only consumer.
    unsafe { mailbox.close() };
    assert_eq!(format!("{mailbox:?}"), "Mailbox { len: 0, closed: true }");
}
