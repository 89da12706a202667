//! What the loom models share: a park permit for loom threads, and the
//! preemption bound.
#![allow(dead_code)]

use std::time::Instant;

use fibra_runtime::chan::{Park, Unpark};
use loom::sync::{Arc, Condvar, Mutex};

/// A thread's park permit, as std's: an unpark before the park is kept.
/// (Built from a mutex and a condvar rather than loom's `thread::park`: loom
/// clears a pending unpark when the thread later blocks on a mutex, which
/// std's park does not, and would report wake-ups as lost that are not.)
#[derive(Default)]
pub struct Permit {
    /// Whether an unpark is pending.
    set: Mutex<bool>,
    /// Where the thread waits for one.
    cond: Condvar,
}

/// Wakes the thread that owns the permit.
#[derive(Clone)]
pub struct Waker(Arc<Permit>);

impl Unpark for Waker {
    fn unpark(&self) {
        *self.0.set.lock().unwrap() = true;
        self.0.cond.notify_one();
    }
}

/// One thread's way to park; no deadlines in these models.
#[derive(Default)]
pub struct Parker(Arc<Permit>);

impl Park for Parker {
    type Unparker = Waker;

    fn unparker(&self) -> Waker {
        Waker(self.0.clone())
    }

    fn park(&self, deadline: Option<Instant>) -> bool {
        assert!(deadline.is_none(), "the models use no deadlines");
        let mut set = self.0.set.lock().unwrap();
        while !*set {
            set = self.0.cond.wait(set).unwrap();
        }
        *set = false;
        true
    }

    fn spins(&self) -> bool {
        false
    }
}

/// Most preemptions loom tries per execution. Two threads that each take several
/// locks make the full space too large for CI; the wake-up races here need one or
/// two preemptions (a change landing between a waiter's registration and its
/// park), and three leaves a margin.
pub const PREEMPTION_BOUND: usize = 3;

/// Runs `f` under loom within [`PREEMPTION_BOUND`], unless `LOOM_MAX_PREEMPTIONS`
/// asks for another bound.
pub fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(PREEMPTION_BOUND);
    }
    builder.check(f);
}
