//! The run rights of a process, as a value.
//!
//! Whoever holds a process's run rights may run it, schedule it, and touch the
//! parts of it that only its runner touches (the carrier of a suspended
//! activation). [`RunRights`] is that permission as a type:
//!
//! * Only two things produce one: spawning a process ([`RunRights::new_process`],
//!   which checks that nobody else has seen the process), and winning the
//!   process's state word in [`wake`] (a sender, an event, a timer, a signal) or
//!   in the shutdown drain ([`RunRights::seize`]).
//! * It owns the one strong reference that belongs to the rights (see
//!   `process.rs`), so holding it keeps the process alive.
//! * Parking consumes it ([`RunRights::park`]): the reference is left with the
//!   parked process for the next winner to adopt, and the parking worker has
//!   nothing left to touch the process with. That is invariant 6 of the design:
//!   nobody touches a process after handing its rights over.
//! * Every wake-up goes through [`wake`], the one place that turns a won CAS
//!   into a token and the token into a scheduled process.

use std::sync::Arc;

use crate::carrier::Carrier;
use crate::error::Exit;
use crate::process::{Header, Run, Task};
use crate::state::{Deadline, Rights, Suspension, Wait};

/// The right to run one process, exactly once, and the reference it owns.
pub(crate) struct RunRights {
    /// The process; this strong reference belongs to the rights.
    task: Task,
}

/// Who wakes a process, and so which waits it may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waker {
    /// A message was pushed to the mailbox: ends a message wait.
    Message,
    /// An event (a join, a reply, an unpark): ends an event wait, or leaves a
    /// permit for the next one.
    Event,
    /// The timer of timed wait number `seq` fired.
    Timer(u64),
    /// A signal was pushed to the signal queue: ends every wait.
    Signal,
}

impl RunRights {
    /// The rights of a process that was just created and never scheduled, and a
    /// second reference to it for the caller.
    ///
    /// # Panics
    /// If anybody else holds a reference to the process: then it may have been
    /// scheduled already, and a second token would break "exactly once".
    pub(crate) fn new_process<T: Run>(process: Arc<T>) -> (RunRights, Arc<T>) {
        assert!(
            Arc::strong_count(&process) == 1 && Arc::weak_count(&process) == 0,
            "the rights of a new process are made before anyone else sees it"
        );
        let task: Task = Arc::clone(&process) as Task;
        (RunRights { task }, process)
    }

    /// Takes the rights of a parked process whatever it waits for: the shutdown
    /// drain, after every worker has stopped, to release the reference it holds.
    pub(crate) fn seize(process: &dyn Run) -> Option<RunRights> {
        match process.header().state.seize() {
            // Safety: seize just won the state word from a parked process.
            Rights::Acquired => Some(unsafe { RunRights::adopt(process) }),
            Rights::Failed => None,
        }
    }

    /// Rebuilds the rights reference a parked process left behind.
    ///
    /// # Safety
    /// The caller has just acquired the process's rights from its state word (so
    /// the process is parked and owns the reference `park` left), and adopts it at
    /// most once.
    #[inline]
    unsafe fn adopt(process: &dyn Run) -> RunRights {
        // Safety: every process lives in an `Arc<dyn Run>`; `park` leaked this very
        // reference with `Arc::into_raw`, and an Arc's data pointer does not change.
        // A `&dyn Run` reached through another trait object of the same process
        // points at the same data, and its vtable describes the same type.
        let task = unsafe { Arc::from_raw(process as *const dyn Run) };
        RunRights { task }
    }

    /// The process.
    pub(crate) fn process(&self) -> &dyn Run {
        &*self.task
    }

    /// The process as a scheduler task (for running it).
    pub(crate) fn task(&self) -> &Task {
        &self.task
    }

    /// The fields every process has.
    pub(crate) fn header(&self) -> &Header {
        self.task.header()
    }

    /// Takes the carrier of the process's suspended activation, if it has one.
    #[inline]
    pub(crate) fn take_carrier(&self) -> Option<Box<Carrier>> {
        // Safety: the token is the run rights, held by this one owner.
        unsafe { self.header().take_carrier() }
    }

    /// Leaves the carrier of a suspended activation with the process.
    #[inline]
    pub(crate) fn put_carrier(&self, carrier: Box<Carrier>) {
        // Safety: the token is the run rights; whoever takes them next is ordered
        // after this write by the state word's SeqCst publication.
        unsafe { self.header().put_carrier(carrier) }
    }

    /// The worker a suspended activation of this process must resume on, if it has
    /// one in progress (a stack in use never changes threads).
    #[inline]
    pub(crate) fn home(&self) -> Option<usize> {
        // Safety: the token is the run rights, so nobody else touches the carrier.
        unsafe { self.header().carrier_home() }.or_else(|| self.header().pinned())
    }

    /// Publishes a suspension (see [`StateWord::suspend`]): `Ok(())` if the process
    /// is parked, and then the rights have been handed over; `Err(self)` if the
    /// check found work, and the caller keeps the rights.
    ///
    /// [`StateWord::suspend`]: crate::state::StateWord::suspend
    #[inline]
    pub(crate) fn park(self, wait: Wait, deadline: Deadline) -> Result<(), RunRights> {
        let header = self.task.header();
        let outcome = header.state.suspend(wait, deadline, || {
            // Signals end every wait; messages end a message wait (and an idle
            // handler's wait is a message wait).
            header.signals.has_new()
                || (matches!(wait, Wait::Message | Wait::Any) && self.task.has_new())
        });
        match outcome {
            Suspension::Resumed => Err(self),
            Suspension::Parked => {
                // The parked process owns this reference now; the next winner adopts
                // it. Nothing after the publication above reads the process.
                let _ = Arc::into_raw(self.task);
                Ok(())
            }
        }
    }

    /// Ends a process that will never run again (it exited): its reference is
    /// dropped like any other.
    pub(crate) fn retire(self) {
        drop(self.task);
    }

    /// Ends the process from outside any carrier with `exit` (runtime shutdown, no
    /// stack to be had), then retires the rights.
    pub(crate) fn terminate(self, exit: Exit) {
        self.process().terminate(exit);
        self.retire();
    }
}

/// Tries to wake `process` on behalf of `waker`; whoever wins its state word
/// schedules it, exactly once. This is the one place where a won CAS becomes a
/// scheduled process.
#[inline]
pub(crate) fn wake(process: &dyn Run, waker: Waker) {
    wake_at(process.header(), || process, waker);
}

/// [`wake`], for a caller that reaches the header without the `&dyn Run` (a
/// `Pid`): `process` is asked for only when the CAS is won.
#[inline]
pub(crate) fn wake_at<'a>(header: &'a Header, process: impl FnOnce() -> &'a dyn Run, waker: Waker) {
    let state = &header.state;
    let won = match waker {
        Waker::Message => state.wake_for_message(),
        Waker::Event => state.notify(),
        Waker::Timer(seq) => state.expire(seq),
        Waker::Signal => state.interrupt(),
    };
    if won == Rights::Acquired {
        // Safety: the CAS above just acquired the rights of the parked process.
        let rights = unsafe { RunRights::adopt(process()) };
        header.shared.schedule_woken(rights);
    }
}
