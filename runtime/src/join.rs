//! Joining a free-running process: where it leaves its result ([`Completion`]),
//! and the [`JoinHandle`] that waits for it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use parking_lot::Mutex;

use crate::carrier::{with_suspendable, Suspend};
use crate::error::Exit;
use crate::process::{Pid, ProcessId};
use crate::state::{Deadline, Wait};
use crate::waiter::Waiter;

/// Where a free-running process leaves its result for its [`JoinHandle`].
pub(crate) struct Completion<T> {
    /// The result, once there is one, and who waits for it.
    slot: Mutex<(Option<Result<T, Exit>>, Waiter)>,
    /// Set once the result is in the slot.
    done: AtomicBool,
}

impl<T> Completion<T> {
    pub(crate) fn new() -> Completion<T> {
        Completion {
            slot: Mutex::new((None, Waiter::None)),
            done: AtomicBool::new(false),
        }
    }

    /// Stores the result and wakes whoever waits for it.
    pub(crate) fn complete(&self, result: Result<T, Exit>) {
        let waiter = {
            let mut slot = self.slot.lock();
            slot.0 = Some(result);
            self.done.store(true, Ordering::Release);
            std::mem::replace(&mut slot.1, Waiter::None)
        };
        waiter.wake();
    }

    /// Takes the result if it is in; otherwise records `waker` to be woken when it
    /// is (a future's poll).
    pub(crate) fn poll(&self, waker: &std::task::Waker) -> Option<Result<T, Exit>> {
        let mut slot = self.slot.lock();
        if let Some(result) = slot.0.take() {
            return Some(result);
        }
        if !matches!(&slot.1, Waiter::Async(w) if w.will_wake(waker)) {
            slot.1 = Waiter::Async(waker.clone());
        }
        None
    }

    /// Waits for the result: suspends the calling process, or parks the calling
    /// thread outside any process (and in a process that unwinds, which may not
    /// suspend). In a shutdown drain it fails at once with [`Exit::Shutdown`]
    /// instead of waiting (see `shutdown::draining`).
    fn wait(&self) -> Result<T, Exit> {
        with_suspendable(|frame| loop {
            let mut slot = self.slot.lock();
            if let Some(result) = slot.0.take() {
                return result;
            }
            match frame {
                Some(frame) => {
                    slot.1 = Waiter::Process(frame.task());
                    drop(slot);
                    let _ = frame.suspend(Suspend::Wait(Wait::Event, Deadline::None));
                }
                None if crate::shutdown::draining() => return Err(Exit::Shutdown),
                None => {
                    slot.1 = Waiter::Thread(thread::current());
                    drop(slot);
                    // A wake-up between the unlock and the park leaves the thread's
                    // token set, so park returns at once.
                    thread::park();
                }
            }
        })
    }
}

/// The handle of a free-running process: its address, and its result once it ends.
///
/// Dropping the handle detaches the process; it runs on.
pub struct JoinHandle<T, M> {
    /// Where the result arrives.
    completion: Arc<Completion<T>>,
    /// The process's address.
    pid: Pid<M>,
}

impl<T, M> JoinHandle<T, M> {
    pub(crate) fn new(completion: Arc<Completion<T>>, pid: Pid<M>) -> Self {
        JoinHandle { completion, pid }
    }

    /// Where the result arrives (for the future, future.rs).
    pub(crate) fn completion(&self) -> &Completion<T> {
        &self.completion
    }
}

impl<T, M: Send + 'static> JoinHandle<T, M> {
    /// The process's address.
    pub fn pid(&self) -> Pid<M> {
        self.pid.clone()
    }

    /// The process's id.
    pub fn id(&self) -> ProcessId {
        self.pid.id()
    }

    /// Whether the process has ended (so [`join`](JoinHandle::join) will not wait).
    pub fn is_finished(&self) -> bool {
        self.completion.done.load(Ordering::Acquire)
    }

    /// Waits for the process to end and returns what its closure returned, or why it
    /// ended otherwise ([`Exit::Panicked`] with the panic message, or
    /// [`Exit::Shutdown`]).
    ///
    /// Inside a process this suspends only the calling process; on a plain thread it
    /// blocks the thread.
    pub fn join(self) -> Result<T, Exit> {
        self.completion.wait()
    }
}

impl<T, M: Send + 'static> fmt::Debug for JoinHandle<T, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("pid", &self.pid)
            .field("finished", &self.completion.done.load(Ordering::Acquire))
            .finish()
    }
}
