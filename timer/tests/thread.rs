//! The timer thread through its public API, with real threads and the real clock.
//!
//! No test sleeps to synchronise: each waits for what it expects to come out of `fire`,
//! through a channel, with a timeout that only a broken timer reaches.

#![cfg(not(loom))]

use fibra_timer::{TimerHandle, TimerThread};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Long enough that only a timer that is broken (not merely slow) makes a test wait it out.
const PATIENCE: Duration = Duration::from_secs(10);

/// A timer thread whose `fire` sends each payload, with the time it fired, to a channel.
fn timers<T: Send + 'static>() -> (TimerThread<T>, Receiver<(T, Instant)>) {
    let (fired, fired_rx) = mpsc::channel();
    let thread = TimerThread::start("test-timers", move |payload| {
        let _ = fired.send((payload, Instant::now()));
    })
    .expect("spawning the timer thread");
    (thread, fired_rx)
}

#[test]
fn fires_in_deadline_order_and_never_early() {
    let (thread, fired) = timers();
    let handle = thread.handle();
    let start = Instant::now();
    // Deadlines 100..140 ms out, inserted out of order, a few sharing a deadline. The
    // first 100 ms leave room for a slow machine to finish inserting before any is due.
    let mut expected = Vec::new();
    for i in 0..60u64 {
        let deadline = start + Duration::from_millis(100 + (i * 37) % 40);
        handle.insert(deadline, (deadline, i)).unwrap();
        expected.push((deadline, i));
    }
    expected.sort();
    for want in expected {
        let (got, at) = fired.recv_timeout(PATIENCE).expect("a timer fired");
        assert_eq!(got, want, "fired out of order");
        assert!(at >= got.0, "fired {:?} early", got.0 - at);
    }
    assert_eq!(handle.stats().fired, 60);
    assert_eq!(handle.stats().pending, 0);
}

#[test]
fn cancel_before_the_deadline_returns_the_payload_and_nothing_fires() {
    let (thread, fired) = timers();
    let handle = thread.handle();
    // 200 ms leaves room for a slow machine to get to the cancel in time.
    let cancelled = handle
        .insert_after(Duration::from_millis(200), "cancelled")
        .unwrap();
    handle
        .insert_after(Duration::from_millis(250), "kept")
        .unwrap();
    assert_eq!(handle.cancel(cancelled), Some("cancelled"));
    assert_eq!(handle.cancel(cancelled), None, "a key cancels once");
    // Had it not been cancelled, "cancelled" would have come out first.
    assert_eq!(fired.recv_timeout(PATIENCE).unwrap().0, "kept");
    let stats = handle.stats();
    assert_eq!((stats.fired, stats.cancelled, stats.pending), (1, 1, 0));
}

#[test]
fn cancel_after_firing_finds_nothing() {
    let (thread, fired) = timers();
    let handle = thread.handle();
    let key = handle.insert_after(Duration::ZERO, 7).unwrap();
    assert_eq!(fired.recv_timeout(PATIENCE).unwrap().0, 7);
    assert_eq!(handle.cancel(key), None);
}

#[test]
fn an_earlier_insert_wakes_the_sleeping_thread() {
    let (thread, fired) = timers();
    let handle = thread.handle();
    handle
        .insert_after(Duration::from_secs(10), "in 10 s")
        .unwrap();
    // Once this one has fired, the thread goes to sleep for the 10 s timer.
    handle.insert_after(Duration::ZERO, "now").unwrap();
    assert_eq!(fired.recv_timeout(PATIENCE).unwrap().0, "now");

    let start = Instant::now();
    handle
        .insert_after(Duration::from_millis(10), "in 10 ms")
        .unwrap();
    let (payload, at) = fired.recv_timeout(PATIENCE).unwrap();
    assert_eq!(payload, "in 10 ms");
    assert!(
        at - start < Duration::from_secs(1),
        "fired after {:?}",
        at - start
    );
    assert_eq!(handle.stats().pending, 1);
}

#[test]
fn zero_and_huge_delays() {
    let (thread, fired) = timers();
    let handle = thread.handle();
    let never = handle.insert_after(Duration::MAX, "never").unwrap();
    handle
        .insert(
            Instant::now() + Duration::from_secs(1_000 * 365 * 86_400),
            "later",
        )
        .unwrap();
    handle.insert_after(Duration::ZERO, "now").unwrap();
    handle
        .insert(Instant::now() - Duration::from_millis(1), "past")
        .unwrap();
    // Either order is right: "past" is due first, but "now" may fire before it arrives.
    let mut prompt = [
        fired.recv_timeout(PATIENCE).unwrap().0,
        fired.recv_timeout(PATIENCE).unwrap().0,
    ];
    prompt.sort();
    assert_eq!(prompt, ["now", "past"]);
    assert_eq!(handle.stats().pending, 2);
    assert_eq!(handle.cancel(never), Some("never"));
    assert_eq!(
        fired.recv_timeout(Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout)
    );
}

/// A payload that counts its drops.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn shutdown_drops_pending_payloads_and_later_inserts_fail() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut thread, fired) = timers();
    let handle = thread.handle();
    for _ in 0..10 {
        handle
            .insert_after(Duration::from_secs(3600), Counted(drops.clone()))
            .unwrap();
    }
    handle
        .insert_after(Duration::ZERO, Counted(drops.clone()))
        .unwrap();
    drop(fired.recv_timeout(PATIENCE).unwrap());
    assert_eq!(drops.load(Ordering::SeqCst), 1);

    thread.shutdown();
    assert_eq!(drops.load(Ordering::SeqCst), 11, "pending payloads dropped");
    assert_eq!(handle.stats().pending, 0);
    let refused = handle.insert_after(Duration::ZERO, Counted(drops.clone()));
    assert!(refused.is_err(), "insert after shutdown");
    drop(refused);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        12,
        "the refused payload came back"
    );
    thread.shutdown();
    drop(thread);
    assert!(handle.insert_after(Duration::ZERO, Counted(drops)).is_err());
}

#[test]
fn dropping_the_thread_shuts_it_down() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (thread, _fired) = timers();
    let handle = thread.handle();
    handle
        .insert_after(Duration::from_secs(3600), Counted(drops.clone()))
        .unwrap();
    drop(thread);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert!(handle.insert_after(Duration::ZERO, Counted(drops)).is_err());
}

/// A payload whose destructor uses the timer: shutdown must drop it with the lock free.
#[derive(Debug)]
struct Reinserts(TimerHandle<Reinserts>, Arc<AtomicUsize>);

impl Drop for Reinserts {
    fn drop(&mut self) {
        let again = Reinserts(self.0.clone(), Arc::new(AtomicUsize::new(0)));
        if let Err(refused) = self.0.insert_after(Duration::ZERO, again) {
            // Defuse the refused payload, or each drop would insert again.
            std::mem::forget(refused);
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn payload_destructors_may_use_the_timer() {
    let refused = Arc::new(AtomicUsize::new(0));
    let mut thread = TimerThread::start("test-timers", drop).unwrap();
    let handle = thread.handle();
    handle
        .insert_after(
            Duration::from_secs(3600),
            Reinserts(handle.clone(), refused.clone()),
        )
        .unwrap();
    thread.shutdown();
    assert_eq!(refused.load(Ordering::SeqCst), 1);
}

#[test]
fn fire_may_insert_again() {
    let (fired, fired_rx) = mpsc::channel();
    let slot = Arc::new(std::sync::OnceLock::<TimerHandle<u32>>::new());
    let thread = {
        let slot = slot.clone();
        TimerThread::start("test-timers", move |n: u32| {
            fired.send(n).unwrap();
            if n < 5 {
                let handle = slot.get().expect("set before the first insert");
                handle
                    .insert_after(Duration::from_millis(1), n + 1)
                    .unwrap();
            }
        })
        .unwrap()
    };
    let _ = slot.set(thread.handle());
    thread.handle().insert_after(Duration::ZERO, 1).unwrap();
    for n in 1..=5 {
        assert_eq!(fired_rx.recv_timeout(PATIENCE), Ok(n));
    }
}

#[test]
fn a_panic_in_fire_is_contained_and_the_thread_goes_on() {
    let (fired, fired_rx) = mpsc::channel();
    let thread = TimerThread::start("test-timers", move |n: u32| {
        assert!(n % 2 == 0, "fire panicked on purpose");
        fired.send(n).unwrap();
    })
    .unwrap();
    let handle = thread.handle();
    // A timer armed before the panics, due after them.
    handle.insert_after(Duration::from_millis(30), 100).unwrap();
    for n in 1..=6 {
        handle.insert_after(Duration::ZERO, n).unwrap();
    }
    for n in [2, 4, 6, 100] {
        assert_eq!(fired_rx.recv_timeout(PATIENCE), Ok(n));
    }
    // Still open, still firing, still keeping time.
    let start = Instant::now();
    handle.insert_after(Duration::from_millis(20), 200).unwrap();
    assert_eq!(fired_rx.recv_timeout(PATIENCE), Ok(200));
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(handle.stats().fired, 8);
}

/// A payload whose destructor panics.
#[derive(Debug)]
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("payload destructor panicked on purpose");
    }
}

#[test]
fn a_payload_destructor_that_panics_harms_neither_the_thread_nor_shutdown() {
    let drops = Arc::new(AtomicUsize::new(0));
    let (fired, fired_rx) = mpsc::channel();
    let mut thread = TimerThread::start(
        "test-timers",
        move |(n, payload): (u32, Result<Counted, PanicsOnDrop>)| {
            drop(payload);
            fired.send(n).unwrap();
        },
    )
    .unwrap();
    let handle = thread.handle();
    // Its destructor panics on the timer thread, inside `fire`, before the send.
    handle
        .insert_after(Duration::ZERO, (1, Err(PanicsOnDrop)))
        .unwrap();
    handle
        .insert_after(Duration::from_millis(5), (2, Ok(Counted(drops.clone()))))
        .unwrap();
    assert_eq!(fired_rx.recv_timeout(PATIENCE), Ok(2), "the thread went on");
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    // Abandoned at shutdown, between two that must still be dropped.
    let far = Duration::from_secs(3600);
    handle
        .insert_after(far, (3, Ok(Counted(drops.clone()))))
        .unwrap();
    handle.insert_after(far, (4, Err(PanicsOnDrop))).unwrap();
    handle
        .insert_after(far, (5, Ok(Counted(drops.clone()))))
        .unwrap();
    thread.shutdown();
    assert_eq!(drops.load(Ordering::SeqCst), 3);
    assert_eq!(handle.stats().pending, 0);
}

/// Threads insert short timers and cancel half of them as they come close to firing:
/// every payload must come out exactly once, through `fire` or through `cancel`.
#[test]
fn each_payload_is_fired_or_cancelled_exactly_once() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 5_000;
    let fired_count = Arc::new(Vec::from_iter(
        (0..THREADS * PER_THREAD).map(|_| AtomicUsize::new(0)),
    ));
    let (done, done_rx) = mpsc::channel();
    let thread = {
        let fired_count = fired_count.clone();
        TimerThread::start("test-timers", move |id: usize| {
            fired_count[id].fetch_add(1, Ordering::SeqCst);
            let _ = done.send(());
        })
        .unwrap()
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let handle = thread.handle();
            std::thread::spawn(move || {
                let mut cancelled = Vec::new();
                let mut keys = VecDeque::new();
                for i in 0..PER_THREAD {
                    let id = t * PER_THREAD + i;
                    let delay = Duration::from_micros((i % 50) as u64 * 10);
                    keys.push_back(handle.insert_after(delay, id).unwrap());
                    if i % 2 == 0 {
                        if let Some(key) = keys.pop_front() {
                            cancelled.extend(handle.cancel(key));
                        }
                    }
                }
                cancelled
            })
        })
        .collect();
    let mut cancelled_count = vec![0usize; THREADS * PER_THREAD];
    for worker in workers {
        for id in worker.join().unwrap() {
            cancelled_count[id] += 1;
        }
    }
    let cancelled_total: usize = cancelled_count.iter().sum();
    for _ in 0..THREADS * PER_THREAD - cancelled_total {
        done_rx
            .recv_timeout(PATIENCE)
            .expect("every uncancelled timer fires");
    }
    for (id, fired) in fired_count.iter().enumerate() {
        let fired = fired.load(Ordering::SeqCst);
        assert_eq!(fired + cancelled_count[id], 1, "payload {id}");
    }
    let stats = thread.handle().stats();
    assert_eq!(stats.fired as usize, THREADS * PER_THREAD - cancelled_total);
    assert_eq!(stats.cancelled as usize, cancelled_total);
}

/// Insert-then-cancel cycles with 1,000 live timeouts through the real thread: the heap
/// must stay within `2 × live + 64` entries over 1,000,000 cycles (`heap.rs` runs the
/// pure structure through 10,000,000).
#[test]
fn insert_cancel_churn_keeps_the_heap_bounded() {
    let cycles = 1_000_000;
    const LIVE: usize = 1_000;
    let (thread, fired) = timers::<usize>();
    let handle = thread.handle();
    let mut keys = VecDeque::with_capacity(LIVE + 1);
    let mut largest = 0;
    // Deadlines an hour away, in random order, so stale entries are spread through the
    // heap instead of sitting on top of it. (Multiplying by an odd constant permutes.)
    let far = Instant::now() + Duration::from_secs(3600);
    for i in 0..LIVE + cycles {
        let jitter = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % 1_000_000_000;
        let deadline = far + Duration::from_micros(jitter);
        keys.push_back(handle.insert(deadline, i).unwrap());
        if keys.len() > LIVE {
            let oldest = keys.pop_front().unwrap();
            assert_eq!(handle.cancel(oldest), Some(i - LIVE));
        }
        if i % 64 == 0 {
            largest = largest.max(handle.stats().heap_len);
        }
    }
    let stats = handle.stats();
    largest = largest.max(stats.heap_len);
    assert!(
        largest <= 2 * LIVE + 64,
        "heap reached {largest} entries with {LIVE} live timers"
    );
    assert!(stats.compactions > 0);
    assert_eq!(stats.pending, LIVE);
    assert_eq!(fired.try_recv().ok(), None);
}
