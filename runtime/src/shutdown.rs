//! Where the workers and the shutting-down thread meet during shutdown.
//!
//! A suspended activation must unwind on the worker it suspended on (a stack in
//! use never changes threads, see `scheduler.rs`), so the shutdown drain is split
//! between the thread that shuts down and the workers:
//!
//! 1. The shutting-down thread tells the workers to stop. Each finishes the
//!    activation it is in and *arrives*: it waits until released.
//! 2. With no process running anywhere, the shutting-down thread takes the rights
//!    of every parked process. Those with a suspended activation go to their home
//!    worker's inbox; the stackless ones it ends itself.
//! 3. It *releases* the workers. Each ends every process whose rights it holds
//!    (its LIFO slot, its queues, its inbox), unwinding suspended stacks on its own
//!    thread, and *departs*.
//! 4. The shutting-down thread joins the workers that departed and ends what is
//!    left outside them (the injector).
//!
//! Steps 1 and 3 wait at most until the shutdown's deadline, if it has one
//! ([`Runtime::shutdown_timeout`](crate::Runtime::shutdown_timeout)): a worker stuck
//! in one activation (a CPU loop, a blocking system call) is left behind, with the
//! processes whose stacks it holds.

use std::cell::Cell;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

thread_local! {
    /// Whether this thread is ending processes in a shutdown drain.
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is ending processes in a shutdown drain: a
/// destructor running there must not wait for another process (that process may
/// be ended only after it, by this very thread), so joins and calls fail at once
/// with [`Exit::Shutdown`](crate::Exit::Shutdown) and sleeps return at once.
pub(crate) fn draining() -> bool {
    DRAINING.with(Cell::get)
}

/// Marks the calling thread as draining while it lives.
pub(crate) struct Draining(());

impl Draining {
    pub(crate) fn begin() -> Draining {
        DRAINING.with(|d| d.set(true));
        Draining(())
    }
}

impl Drop for Draining {
    fn drop(&mut self) {
        DRAINING.with(|d| d.set(false));
    }
}

/// Where each worker is in the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Still running activations (or stuck in one).
    Running,
    /// Waiting for the release.
    Arrived,
    /// Done ending its processes; the thread is about to exit.
    Departed,
}

/// The meeting point.
pub(crate) struct Drain {
    /// Each worker's stage, and whether the workers were released.
    state: Mutex<(Vec<Stage>, bool)>,
    /// Signalled on every change.
    changed: Condvar,
}

impl Drain {
    pub(crate) fn new(workers: usize) -> Drain {
        Drain {
            state: Mutex::new((vec![Stage::Running; workers], false)),
            changed: Condvar::new(),
        }
    }

    /// Worker side, step 1: arrives and waits for the release.
    pub(crate) fn arrive(&self, index: usize) {
        let mut state = self.state.lock();
        state.0[index] = Stage::Arrived;
        self.changed.notify_all();
        while !state.1 {
            self.changed.wait(&mut state);
        }
    }

    /// When the runtime failed to start all its workers: those from `started` on
    /// never ran, and count as departed.
    pub(crate) fn give_up_unstarted(&self, started: usize) {
        let mut state = self.state.lock();
        for stage in &mut state.0[started..] {
            *stage = Stage::Departed;
        }
    }

    /// Worker side, step 3: done.
    pub(crate) fn depart(&self, index: usize) {
        let mut state = self.state.lock();
        state.0[index] = Stage::Departed;
        self.changed.notify_all();
    }

    /// Shutdown side, step 1: waits until every worker has arrived, or the
    /// deadline passes; returns whether all did.
    pub(crate) fn wait_arrived(&self, deadline: Option<Instant>) -> bool {
        self.wait_until(deadline, |stage| stage != Stage::Running)
    }

    /// Shutdown side, step 3: lets the workers go on.
    pub(crate) fn release(&self) {
        self.state.lock().1 = true;
        self.changed.notify_all();
    }

    /// Shutdown side, step 4: waits until every worker has departed, or the
    /// deadline passes; returns which did.
    pub(crate) fn wait_departed(&self, deadline: Option<Instant>) -> Vec<bool> {
        self.wait_until(deadline, |stage| stage == Stage::Departed);
        let state = self.state.lock();
        state.0.iter().map(|&s| s == Stage::Departed).collect()
    }

    fn wait_until(&self, deadline: Option<Instant>, done: impl Fn(Stage) -> bool) -> bool {
        let mut state = self.state.lock();
        loop {
            if state.0.iter().all(|&s| done(s)) {
                return true;
            }
            match deadline {
                None => self.changed.wait(&mut state),
                Some(deadline) => {
                    if self.changed.wait_until(&mut state, deadline).timed_out() {
                        return state.0.iter().all(|&s| done(s));
                    }
                }
            }
        }
    }
}
