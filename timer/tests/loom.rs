//! Loom models of the timer thread, run against the real thread loop and handles through
//! `src/sync.rs`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p fibra-timer --release --test loom
//! ```
//!
//! Loom has no clock, and under it a timed park waits until unparked. So a deadline an
//! hour away never comes in a model, a deadline already past is due at once, and a
//! wake-up that gets lost leaves the timer thread parked forever: loom reports that as a
//! deadlock, since the test is blocked waiting for what the thread should have fired.
//!
//! Every model explores its full state space (no preemption bound is needed).

#![cfg(loom)]

use fibra_timer::TimerThread;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::mpsc;
use loom::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An hour away: never reached in a model.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// Already past: due at the thread's next turn.
fn past() -> Instant {
    Instant::now()
}

/// (1) The early-wake protocol. The thread takes a turn, finds only the far deadline and
/// decides to sleep for it, while the test inserts a deadline that is already due. In
/// every interleaving the thread must come to fire it: either its turn sees the insert
/// in the queue, or the insert sees the far deadline the thread published and unparks it.
#[test]
fn an_earlier_insert_racing_the_decision_to_sleep_is_never_missed() {
    loom::model(|| {
        let (fired, fired_rx) = mpsc::channel();
        let timers = TimerThread::start("timers", move |payload: &'static str| {
            fired.send(payload).unwrap();
        })
        .unwrap();
        let handle = timers.handle();
        handle.insert(far(), "far").unwrap();
        handle.insert(past(), "due").unwrap();
        assert_eq!(fired_rx.recv().unwrap(), "due");
        assert_eq!(handle.stats().pending, 1);
        drop(timers);
    });
}

/// (1b) The same with an idle thread: it has nothing pending and parks with no deadline,
/// and any insert must wake it.
#[test]
fn an_insert_wakes_an_idle_thread() {
    loom::model(|| {
        let (fired, fired_rx) = mpsc::channel();
        let timers = TimerThread::start("timers", move |payload: u32| {
            fired.send(payload).unwrap();
        })
        .unwrap();
        let handle = timers.handle();
        handle.insert(past(), 1).unwrap();
        assert_eq!(fired_rx.recv().unwrap(), 1);
        // The thread goes back to sleep, now with nothing at all; wake it again.
        handle.insert(past(), 2).unwrap();
        assert_eq!(fired_rx.recv().unwrap(), 2);
        drop(timers);
    });
}

/// A payload that counts how often it is dropped.
#[derive(Debug)]
struct Probe {
    /// Which timer it belongs to.
    id: u32,
    /// Incremented by its destructor.
    drops: Arc<AtomicUsize>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// (2) Cancel racing fire. Both timers are due at once; the test cancels them while the
/// thread may be taking them out to fire. Each payload must come out exactly once:
/// fired, or handed back by `cancel`, never both and never neither. Every payload is
/// dropped exactly once and nothing leaks (loom also checks its `Arc`s are freed).
#[test]
fn cancel_racing_fire_hands_out_each_payload_exactly_once() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let fired = Arc::new(Mutex::new(Vec::new()));
        let mut timers = {
            let fired = fired.clone();
            TimerThread::start("timers", move |probe: Probe| {
                fired.lock().unwrap().push(probe.id);
            })
            .unwrap()
        };
        let handle = timers.handle();
        let keys = [1, 2].map(|id| {
            let probe = Probe {
                id,
                drops: drops.clone(),
            };
            (id, handle.insert(past(), probe).unwrap())
        });
        let cancelled: Vec<u32> = keys
            .iter()
            .filter_map(|&(_, key)| handle.cancel(key))
            .map(|probe| probe.id)
            .collect();
        // Every timer was either cancelled or taken out for firing before the shutdown,
        // so none is left pending for it to drop.
        timers.shutdown();

        let fired = fired.lock().unwrap().clone();
        for (id, _) in keys {
            let times = usize::from(fired.contains(&id)) + usize::from(cancelled.contains(&id));
            assert_eq!(
                times, 1,
                "timer {id}: fired {fired:?}, cancelled {cancelled:?}"
            );
        }
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        let stats = handle.stats();
        assert_eq!(stats.fired + stats.cancelled, 2);
    });
}

/// Shutdown racing an insert from another thread: the insert either fails and hands the
/// payload back, or succeeds and the payload is then fired or dropped by the shutdown.
/// Either way it is dropped exactly once, and the thread exits.
#[test]
fn shutdown_racing_an_insert_drops_the_payload_exactly_once() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut timers = TimerThread::start("timers", drop::<Probe>).unwrap();
        let inserter = {
            let handle = timers.handle();
            let drops = drops.clone();
            loom::thread::spawn(move || {
                let probe = Probe { id: 1, drops };
                // A refused payload comes back here, and is dropped here.
                let _ = handle.insert(far(), probe);
            })
        };
        timers.shutdown();
        inserter.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(timers.handle().stats().pending, 0);
    });
}
