//! Loom models of the scheduler's park/wake protocol (`idle.rs`): a push of work
//! against a worker that parks, against the end of a search, and a push that only
//! one worker may take (its inbox) against that worker parking. The real `Idle`
//! runs under loom; the queues are a counter of work (the protocol only asks
//! whether a queue is empty, after its fences), pushed with a read-modify-write:
//! loom 0.7 lets a later read-modify-write miss a plain store that a condvar
//! wake-up ordered before it, a false alarm that has nothing to do with the
//! protocol. A stranded push shows up as a worker asleep for ever, which loom
//! reports as a deadlock.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p fibra-runtime --release --test loom_idle`
#![cfg(loom)]

use fibra_runtime::idle::{Idle, Woken};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// A worker's loop, cut down to the protocol: take work if there is some, else
/// park until woken. Returns once it has taken one unit. `searching` says whether
/// it starts counted as searching.
fn worker(idle: &Idle, index: usize, work: &AtomicUsize, mut searching: bool) {
    loop {
        if work.swap(0, Ordering::AcqRel) > 0 {
            if searching {
                idle.end_search();
            }
            return;
        }
        if searching {
            idle.end_search();
            searching = false;
        }
        if idle.park(index, || work.load(Ordering::Acquire) > 0) == Woken::Searching {
            searching = true;
        }
    }
}

/// Work pushed where any worker may take it, against the one worker parking.
#[test]
fn a_push_against_a_parking_worker() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(1));
        let work = Arc::new(AtomicUsize::new(0));
        let pusher = {
            let (idle, work) = (idle.clone(), work.clone());
            thread::spawn(move || {
                work.fetch_add(1, Ordering::Release);
                idle.notify_one();
            })
        };
        worker(&idle, 0, &work, false);
        pusher.join().unwrap();
    });
}

/// A push that finds a searcher wakes nobody; the searcher, ending its search and
/// parking, must see the work.
#[test]
fn a_push_against_the_end_of_a_search() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(1));
        let work = Arc::new(AtomicUsize::new(0));
        idle.begin_search();
        let pusher = {
            let (idle, work) = (idle.clone(), work.clone());
            thread::spawn(move || {
                work.fetch_add(1, Ordering::Release);
                idle.notify_one();
            })
        };
        worker(&idle, 0, &work, true);
        pusher.join().unwrap();
    });
}

/// Work only worker 1 may take (a suspended activation sent home to its inbox),
/// pushed while worker 1 parks and worker 0 is asleep already: worker 1 is woken,
/// not some other sleeper.
#[test]
fn a_push_to_one_workers_inbox_against_that_worker_parking() {
    loom::model(|| {
        let idle = Arc::new(Idle::new(2));
        let inbox = Arc::new(AtomicUsize::new(0));
        let nothing = Arc::new(AtomicUsize::new(0));
        // Worker 0 sleeps for work that never comes, until the end of the model.
        let sleeper = {
            let (idle, nothing) = (idle.clone(), nothing.clone());
            thread::spawn(move || {
                idle.park(0, || nothing.load(Ordering::Relaxed) > 0);
            })
        };
        let pusher = {
            let (idle, inbox) = (idle.clone(), inbox.clone());
            thread::spawn(move || {
                inbox.fetch_add(1, Ordering::Release);
                idle.wake_worker(1);
            })
        };
        worker(&idle, 1, &inbox, false);
        pusher.join().unwrap();
        idle.wake_all();
        sleeper.join().unwrap();
    });
}
