//! The state word: one atomic per process that says whether the process holds its
//! run rights (running or queued), or is suspended and on what.
//!
//! # The reschedule protocol
//!
//! Whoever moves a process out of a suspended state with a successful
//! compare-and-swap *owns the right to reschedule it*, exactly once. The losers do
//! nothing more. Three kinds of party take part:
//!
//! 1. **The worker that ran the process.** When the process suspends, the worker
//!    switches off its stack first and only then publishes the suspension
//!    ([`StateWord::suspend_for_message`] / [`StateWord::suspend_for_event`]).
//!    No other worker can therefore resume a stack that is still in use
//!    (invariant 3: no resume before switch-out).
//! 2. **Senders.** A sender pushes its message (a `SeqCst` CAS on the mailbox head)
//!    and then loads the state word (`SeqCst`); if the process waits for a message
//!    it tries to take the rights with a CAS ([`StateWord::wake_for_message`]).
//! 3. **Event sources** (a finished child's join, later replies and timeouts) call
//!    [`StateWord::notify`]: it wakes a process that waits for an event, and
//!    otherwise leaves a `NOTIFIED` permit that the next event wait consumes.
//!
//! The race that matters is the suspending worker against a sender: the worker
//! stores "waiting" and then re-checks the mailbox; the sender pushes and then
//! checks the state. Both sides are store-then-load on *two different* words, so
//! both are `SeqCst`: with acquire/release alone each side may read the other's
//! old value and the wake-up is lost (invariant 1).
//!
//! ```text
//!   worker (receiver side)                 sender
//!   ----------------------                 ------
//!   state := WAIT_MSG        (SeqCst)      mailbox.push(m)      (SeqCst CAS)
//!   mailbox.has_new()?       (SeqCst)      state == WAIT_MSG?   (SeqCst)
//!     yes: CAS WAIT_MSG->RUNNING              yes: CAS WAIT_MSG->RUNNING
//!          won: run it again                       won: schedule it
//!          lost: the sender owns it now            lost: someone else owns it
//! ```
//!
//! In a total order of the four `SeqCst` operations at least one side sees the
//! other's write, so at least one of them tries the CAS, and the CAS lets exactly
//! one win (invariant 2). A winner never hands the rights back (invariant 4): even
//! if it finds nothing to do, it schedules the process, which re-checks and
//! suspends again by itself.

use crate::sync::{seqcst_order_for_loom, AtomicU64, Ordering::SeqCst};

/// The process holds its run rights: it is running, or it sits on a run queue.
const RUNNING: u64 = 0;
/// Suspended until a message arrives (a free-running process in `receive`, or an
/// idle handler process).
const WAIT_MSG: u64 = 1;
/// Suspended until [`StateWord::notify`] (a join, later a reply or a timeout).
const WAIT_EVENT: u64 = 2;
/// The process has ended; nobody may schedule it again.
const EXITED: u64 = 3;
/// Mask of the bits above.
const KIND: u64 = 0b11;
/// A notification arrived while the process was not waiting for one; the next
/// event wait returns at once instead of suspending.
const NOTIFIED: u64 = 0b100;

/// What a party got out of an attempt to take a process's run rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rights {
    /// The caller now owns the rights and must schedule the process, exactly once.
    Acquired,
    /// Somebody else owns them (or the process exited); the caller does nothing.
    Failed,
}

/// The outcome of publishing a suspension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspension {
    /// The process is suspended; whoever wakes it will schedule it.
    Parked,
    /// The re-check found work: the caller kept the rights and must schedule the
    /// process again itself.
    Resumed,
}

/// One process's state word.
#[derive(Debug)]
pub struct StateWord {
    /// Kind bits and the `NOTIFIED` permit.
    word: AtomicU64,
}

impl StateWord {
    /// A new process holds its run rights: it is about to be scheduled.
    pub fn new_running() -> Self {
        StateWord {
            word: AtomicU64::new(RUNNING),
        }
    }

    /// Worker side, after switching off the process's stack: publish "waiting for a
    /// message", then re-check the mailbox with `has_new` (which must be a `SeqCst`
    /// load). The caller must hold the run rights.
    pub fn suspend_for_message(&self, has_new: impl FnOnce() -> bool) -> Suspension {
        // RUNNING is 0 in the kind bits, so OR-ing keeps a concurrent NOTIFIED permit.
        let before = self.word.fetch_or(WAIT_MSG, SeqCst);
        debug_assert_eq!(before & KIND, RUNNING, "suspending a process we do not own");
        seqcst_order_for_loom();
        if !has_new() {
            return Suspension::Parked;
        }
        match self.take_from(WAIT_MSG) {
            Rights::Acquired => Suspension::Resumed,
            Rights::Failed => Suspension::Parked,
        }
    }

    /// Sender side, after a successful push: take the rights if the process waits
    /// for a message.
    pub fn wake_for_message(&self) -> Rights {
        seqcst_order_for_loom();
        self.take_from(WAIT_MSG)
    }

    /// Event side: wake the process if it waits for an event; otherwise leave a
    /// permit for its next event wait (unless it has exited).
    pub fn notify(&self) -> Rights {
        let mut current = self.word.load(SeqCst);
        loop {
            let next = match current & KIND {
                WAIT_EVENT => (current & !KIND & !NOTIFIED) | RUNNING,
                EXITED => return Rights::Failed,
                _ if current & NOTIFIED != 0 => return Rights::Failed,
                _ => current | NOTIFIED,
            };
            match self
                .word
                .compare_exchange_weak(current, next, SeqCst, SeqCst)
            {
                Ok(_) if current & KIND == WAIT_EVENT => return Rights::Acquired,
                Ok(_) => return Rights::Failed,
                Err(actual) => current = actual,
            }
        }
    }

    /// Worker side, after switching off the process's stack: publish "waiting for an
    /// event" unless a permit is pending, in which case it is consumed and the caller
    /// keeps the rights. The caller must hold the run rights.
    pub fn suspend_for_event(&self) -> Suspension {
        let mut current = self.word.load(SeqCst);
        loop {
            debug_assert_eq!(
                current & KIND,
                RUNNING,
                "suspending a process we do not own"
            );
            let (next, outcome) = if current & NOTIFIED != 0 {
                (current & !NOTIFIED, Suspension::Resumed)
            } else {
                (current | WAIT_EVENT, Suspension::Parked)
            };
            match self
                .word
                .compare_exchange_weak(current, next, SeqCst, SeqCst)
            {
                Ok(_) => return outcome,
                Err(actual) => current = actual,
            }
        }
    }

    /// Marks the process as ended: from now on nobody acquires its rights.
    pub fn exit(&self) {
        self.word.store(EXITED, SeqCst);
    }

    /// Whether the process has ended.
    pub fn is_exited(&self) -> bool {
        self.word.load(SeqCst) & KIND == EXITED
    }

    /// Moves `from` to RUNNING with a CAS, keeping the permit bit.
    fn take_from(&self, from: u64) -> Rights {
        let mut current = self.word.load(SeqCst);
        while current & KIND == from {
            let next = current & !KIND;
            match self
                .word
                .compare_exchange_weak(current, next, SeqCst, SeqCst)
            {
                Ok(_) => return Rights::Acquired,
                Err(actual) => current = actual,
            }
        }
        Rights::Failed
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn suspend_with_no_message_parks_and_a_sender_wins_once() {
        let s = StateWord::new_running();
        assert_eq!(s.suspend_for_message(|| false), Suspension::Parked);
        assert_eq!(s.wake_for_message(), Rights::Acquired);
        assert_eq!(s.wake_for_message(), Rights::Failed);
    }

    #[test]
    fn recheck_that_finds_a_message_keeps_the_rights() {
        let s = StateWord::new_running();
        assert_eq!(s.suspend_for_message(|| true), Suspension::Resumed);
        assert_eq!(s.wake_for_message(), Rights::Failed);
    }

    #[test]
    fn notify_before_the_wait_leaves_a_permit() {
        let s = StateWord::new_running();
        assert_eq!(s.notify(), Rights::Failed);
        assert_eq!(s.suspend_for_event(), Suspension::Resumed);
        assert_eq!(s.suspend_for_event(), Suspension::Parked);
        assert_eq!(s.notify(), Rights::Acquired);
    }

    #[test]
    fn a_message_does_not_wake_an_event_wait_and_exit_blocks_everyone() {
        let s = StateWord::new_running();
        assert_eq!(s.suspend_for_event(), Suspension::Parked);
        assert_eq!(s.wake_for_message(), Rights::Failed);
        assert_eq!(s.notify(), Rights::Acquired);
        s.exit();
        assert!(s.is_exited());
        assert_eq!(s.notify(), Rights::Failed);
        assert_eq!(s.wake_for_message(), Rights::Failed);
    }
}
