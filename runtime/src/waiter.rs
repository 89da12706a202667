//! Who waits for a one-off event (a join, a call's reply): a process suspended on
//! it, or a plain thread parked on it.

use std::thread::Thread;

use crate::process::Task;
use crate::rights::{wake, Waker};

/// Who waits for an outcome.
pub(crate) enum Waiter {
    /// Nobody yet, or the waiter was woken already.
    None,
    /// A process suspended in an event wait.
    Process(Task),
    /// A plain thread parked.
    Thread(Thread),
    /// A future, polled by an async executor (async.rs).
    Async(std::task::Waker),
}

impl Waiter {
    /// Wakes the waiter; call it after releasing the lock that guards the outcome,
    /// which the woken side takes first.
    pub(crate) fn wake(self) {
        match self {
            Waiter::None => {}
            Waiter::Thread(thread) => thread.unpark(),
            Waiter::Process(task) => wake(&*task, Waker::Event),
            Waiter::Async(waker) => waker.wake(),
        }
    }
}
