//! The state word: one atomic per process that says whether the process holds its
//! run rights (running or queued), or is suspended and on what.
//!
//! # The reschedule protocol
//!
//! Whoever moves a process out of a suspended state with a successful
//! compare-and-swap *owns the right to reschedule it*, exactly once. The losers do
//! nothing more. (Above this module, `rights.rs` turns a won CAS into a
//! `RunRights` token, and every wake-up goes through its one `wake` function.)
//! The parties:
//!
//! 1. **The worker that ran the process.** When the process suspends, the worker
//!    switches off its stack first and only then parks it ([`StateWord::suspend`]).
//!    No other worker can therefore resume a stack that is still in use
//!    (invariant 3: no resume before switch-out).
//! 2. **Senders.** A sender pushes its message (a `SeqCst` CAS on the mailbox head)
//!    and then loads the state word (`SeqCst`); if the process waits for a message
//!    it tries to take the rights with a CAS ([`StateWord::wake_for_message`]).
//! 3. **Event sources** (a finished child's join, replies, an unparker) call
//!    [`StateWord::notify`]: it wakes a process that waits for an event, and
//!    otherwise leaves a `NOTIFIED` permit that the next event wait consumes.
//! 4. **Signals** ([`StateWord::interrupt`]) end any wait; **timers**
//!    ([`StateWord::expire`]) end the timed wait they were armed for (below).
//!
//! The race that matters is the parking worker against a sender: the worker
//! stores "parking" and then re-checks the mailbox; the sender pushes and then
//! checks the state. Both sides are store-then-load on *two different* words, so
//! both are `SeqCst`: with acquire/release alone each side may read the other's
//! old value and the wake-up is lost (invariant 1).
//!
//! ```text
//!   worker (receiver side)                 sender
//!   ----------------------                 ------
//!   state := WAIT_MSG|PARKING (SeqCst)     mailbox.push(m)      (SeqCst CAS)
//!   mailbox.has_new()?        (SeqCst)     load state           (SeqCst)
//!     yes: back to RUNNING, run it again     WAIT_MSG|PARKING: set WOKEN
//!     no:  CAS PARKING off                   WAIT_MSG: CAS -> RUNNING
//!          failed on WOKEN: run it again          won: schedule it
//!          done: published, hands off             lost: someone else owns it
//! ```
//!
//! In a total order of the four `SeqCst` operations at least one side sees the
//! other's write: the worker finds the message, or the sender finds the word
//! parking (and leaves `WOKEN`, which makes the worker's final CAS fail) or
//! parked (and takes the rights with a CAS that lets exactly one party win,
//! invariant 2). A winner never hands the rights back (invariant 4): even if it
//! finds nothing to do, it schedules the process, which re-checks and suspends
//! again by itself.
//!
//! The `PARKING` step is what keeps invariant 6: while it is set the worker still
//! holds the rights, so its re-check reads a process nobody else can run (or end,
//! or free); its final CAS is the publication and its last access.

//! # Timed waits
//!
//! A wait with a deadline adds a fourth party, the timeout thread, which races the
//! others with the same CAS ([`StateWord::expire`]). A timeout names the wait it
//! belongs to by the wait's *sequence number*, kept in the upper bits of the word,
//! so a timer left over from an earlier wait can never end a later one
//! (invariant 5 refers to the process itself by key, not pointer; see timer.rs).
//!
//! 1. The running process starts a timed wait with
//!    [`StateWord::begin_timed_wait`], which bumps the sequence number, then arms
//!    a timer carrying that number.
//! 2. The worker parks the process with the `TIMED` flag after switching off its
//!    stack.
//! 3. The timer fires: if the word still holds that sequence number and a timed
//!    wait, the timeout thread takes the rights. If the process has not published
//!    its wait yet (a very short deadline), the timer leaves an `EXPIRED` permit
//!    instead, and the park in step 2 consumes it and keeps the rights; if it is
//!    parking, the timer leaves `WOKEN`, and the worker runs it again.
//! 4. A message (or notification) that wins instead clears `TIMED`; the late timer
//!    then fails its CAS, and the process cancels it when it runs.

use crate::sync::{seqcst_order_for_loom, AtomicU64, Ordering::SeqCst};

/// The process holds its run rights: it is running, or it sits on a run queue.
const RUNNING: u64 = 0;
/// Suspended until a message arrives (a free-running process in `receive`, or an
/// idle handler process).
const WAIT_MSG: u64 = 1;
/// Suspended until [`StateWord::notify`] (a join, later a reply).
const WAIT_EVENT: u64 = 2;
/// Suspended until its timer fires, and nothing else (`sleep`).
const WAIT_SLEEP: u64 = 3;
/// The process has ended; nobody may schedule it again.
const EXITED: u64 = 4;
/// Mask of the bits above.
const KIND: u64 = 0b111;
/// A notification arrived while the process was not waiting for one; the next
/// event wait returns at once instead of suspending.
const NOTIFIED: u64 = 1 << 3;
/// The current wait has a deadline: the timer of the current sequence number may
/// end it.
const TIMED: u64 = 1 << 4;
/// The timer of the current sequence number fired while the process still held its
/// rights; the next timed wait returns at once.
const EXPIRED: u64 = 1 << 5;
/// The process is being parked: the kind bits say what it will wait for, but its
/// worker still holds the rights and re-checks the mailbox and signals. A waker
/// that finds this flag cannot take the rights; it sets `WOKEN` instead.
const PARKING: u64 = 1 << 6;
/// A waker found the process `PARKING`: its worker keeps the rights and runs it
/// again instead of finishing the park.
const WOKEN: u64 = 1 << 7;
/// What a process that was parking and runs again clears.
const PARKED_BITS: u64 = KIND | TIMED | PARKING | WOKEN;
/// The sequence number of the current timed wait starts at this bit.
const SEQ_SHIFT: u32 = 8;
/// One step of the sequence number.
const SEQ_ONE: u64 = 1 << SEQ_SHIFT;

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

/// What a process waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// A message (senders wake it).
    Message,
    /// An event notification ([`StateWord::notify`]).
    Event,
    /// Only its timer.
    Sleep,
}

/// Whether a wait has a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// The wait lasts until something wakes it.
    None,
    /// The timer of the current sequence number may end the wait.
    Timed,
}

/// One process's state word.
#[derive(Debug)]
pub struct StateWord {
    /// Kind bits, the `NOTIFIED`/`TIMED`/`EXPIRED` flags and the sequence number.
    word: AtomicU64,
}

impl StateWord {
    /// A new process holds its run rights: it is about to be scheduled.
    pub fn new_running() -> Self {
        StateWord {
            word: AtomicU64::new(RUNNING),
        }
    }

    /// Running process side: starts a new timed wait and returns its sequence
    /// number, for the timer to carry. Forgets a permit left by an older timer.
    /// The caller must hold the run rights.
    pub fn begin_timed_wait(&self) -> u64 {
        let mut current = self.word.load(SeqCst);
        loop {
            let next = current.wrapping_add(SEQ_ONE) & !EXPIRED;
            match self
                .word
                .compare_exchange_weak(current, next, SeqCst, SeqCst)
            {
                Ok(_) => return next >> SEQ_SHIFT,
                Err(actual) => current = actual,
            }
        }
    }

    /// Worker side, after switching off the process's stack: parks the process,
    /// unless a permit for the wait is pending (a notification for an event wait, an
    /// expiry for a timed wait), in which case the permit is consumed and the caller
    /// keeps the rights. The caller must hold the run rights.
    ///
    /// Parking takes two steps, so that the caller never touches the process once
    /// somebody else may own it (invariant 6):
    ///
    /// 1. Mark the word `PARKING` with the wait's kind. From here on a waker cannot
    ///    take the rights; it sets `WOKEN` instead.
    /// 2. Re-check with `pending` (`SeqCst` loads of whatever can end the wait and
    ///    was pushed before step 1: the mailbox for a message wait, the signal
    ///    queue for every wait). Work found: clear the mark and keep the rights.
    /// 3. Clear `PARKING` with a CAS that fails if a waker set `WOKEN` meanwhile
    ///    (then the caller keeps the rights). A successful CAS is the publication:
    ///    the rights, and the reference they own, belong to the next waker, and the
    ///    caller must not read the process again.
    pub fn suspend(
        &self,
        wait: Wait,
        deadline: Deadline,
        pending: impl FnOnce() -> bool,
    ) -> Suspension {
        let (kind, permit) = match wait {
            Wait::Message => (WAIT_MSG, 0),
            Wait::Event => (WAIT_EVENT, NOTIFIED),
            Wait::Sleep => (WAIT_SLEEP, 0),
        };
        let (timed, permit) = match deadline {
            Deadline::None => (0, permit),
            Deadline::Timed => (TIMED, permit | EXPIRED),
        };
        let mut current = self.word.load(SeqCst);
        loop {
            debug_assert_eq!(
                current & KIND,
                RUNNING,
                "suspending a process we do not own"
            );
            let (next, outcome) = if current & permit != 0 {
                (current & !permit, Suspension::Resumed)
            } else {
                (current | kind | timed | PARKING, Suspension::Parked)
            };
            match self
                .word
                .compare_exchange_weak(current, next, SeqCst, SeqCst)
            {
                Ok(_) if outcome == Suspension::Resumed => return outcome,
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        seqcst_order_for_loom();
        if pending() {
            self.unpark_self();
            return Suspension::Resumed;
        }
        let mut current = self.word.load(SeqCst);
        loop {
            let (next, outcome) = if current & WOKEN != 0 {
                (current & !PARKED_BITS, Suspension::Resumed)
            } else {
                (current & !PARKING, Suspension::Parked)
            };
            match self
                .word
                .compare_exchange_weak(current, next, SeqCst, SeqCst)
            {
                // After a successful publication: not one more access.
                Ok(_) => return outcome,
                Err(actual) => current = actual,
            }
        }
    }

    /// Parking side: the re-check found work; back to running with the rights.
    fn unpark_self(&self) {
        self.word.fetch_and(!PARKED_BITS, SeqCst);
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
                WAIT_EVENT if current & PARKING != 0 => {
                    if current & WOKEN != 0 {
                        return Rights::Failed;
                    }
                    current | WOKEN
                }
                WAIT_EVENT => current & !KIND & !NOTIFIED & !TIMED,
                EXITED => return Rights::Failed,
                _ if current & NOTIFIED != 0 => return Rights::Failed,
                _ => current | NOTIFIED,
            };
            match self
                .word
                .compare_exchange_weak(current, next, SeqCst, SeqCst)
            {
                Ok(_) if current & KIND == WAIT_EVENT && current & PARKING == 0 => {
                    return Rights::Acquired
                }
                Ok(_) => return Rights::Failed,
                Err(actual) => current = actual,
            }
        }
    }

    /// Timeout side: the timer of wait `seq` fired. Takes the rights if that wait
    /// is still published; leaves an `EXPIRED` permit if the process has not
    /// published it yet; fails if the wait is over (or another has begun).
    pub fn expire(&self, seq: u64) -> Rights {
        let mut current = self.word.load(SeqCst);
        loop {
            if (current >> SEQ_SHIFT) != seq & (u64::MAX >> SEQ_SHIFT) {
                return Rights::Failed;
            }
            let (next, rights) = match current & KIND {
                WAIT_MSG | WAIT_EVENT | WAIT_SLEEP if current & TIMED != 0 => {
                    if current & PARKING != 0 {
                        // Its worker is still parking it: it runs again instead.
                        ((current & !TIMED) | WOKEN, Rights::Failed)
                    } else {
                        (current & !KIND & !TIMED, Rights::Acquired)
                    }
                }
                RUNNING if current & EXPIRED == 0 => (current | EXPIRED, Rights::Failed),
                _ => return Rights::Failed,
            };
            match self
                .word
                .compare_exchange_weak(current, next, SeqCst, SeqCst)
            {
                Ok(_) => return rights,
                Err(actual) => current = actual,
            }
        }
    }

    /// Signal side, after a successful push to the signal queue: takes the rights
    /// from whatever wait the process is in (signals end every wait).
    pub fn interrupt(&self) -> Rights {
        seqcst_order_for_loom();
        self.seize()
    }

    /// Takes the rights of a parked process, whatever it waits for. Used by signals
    /// and by the shutdown drain, which must release a parked process's rights
    /// reference.
    pub fn seize(&self) -> Rights {
        self.take_while(|kind| matches!(kind, WAIT_MSG | WAIT_EVENT | WAIT_SLEEP))
    }

    /// Marks the process as ended: from now on nobody acquires its rights.
    pub fn exit(&self) {
        self.word.store(EXITED, SeqCst);
    }

    /// Whether the process has ended.
    pub fn is_exited(&self) -> bool {
        self.word.load(SeqCst) & KIND == EXITED
    }

    /// Moves `from` to RUNNING with a CAS, keeping the permits and the sequence.
    fn take_from(&self, from: u64) -> Rights {
        self.take_while(|kind| kind == from)
    }

    /// Takes the rights while the word's kind is one `suspended` accepts.
    fn take_while(&self, suspended: impl Fn(u64) -> bool) -> Rights {
        let mut current = self.word.load(SeqCst);
        while suspended(current & KIND) {
            match self.take_step(current) {
                Ok(rights) => return rights,
                Err(actual) => current = actual,
            }
        }
        Rights::Failed
    }

    /// One attempt to take the rights of a process seen suspended in `current`:
    /// moves it to RUNNING, or, while its worker is still parking it, leaves
    /// `WOKEN` for that worker (which then keeps the rights). `Err` holds the value
    /// a failed CAS found.
    fn take_step(&self, current: u64) -> Result<Rights, u64> {
        let (next, rights) = if current & PARKING != 0 {
            if current & WOKEN != 0 {
                return Ok(Rights::Failed);
            }
            (current | WOKEN, Rights::Failed)
        } else {
            (current & !KIND & !TIMED, Rights::Acquired)
        };
        self.word
            .compare_exchange_weak(current, next, SeqCst, SeqCst)
            .map(|_| rights)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn park_for_message(s: &StateWord, has_new: bool) -> Suspension {
        s.suspend(Wait::Message, Deadline::None, || has_new)
    }

    #[test]
    fn suspend_with_no_message_parks_and_a_sender_wins_once() {
        let s = StateWord::new_running();
        assert_eq!(park_for_message(&s, false), Suspension::Parked);
        assert_eq!(s.wake_for_message(), Rights::Acquired);
        assert_eq!(s.wake_for_message(), Rights::Failed);
    }

    #[test]
    fn recheck_that_finds_a_message_keeps_the_rights() {
        let s = StateWord::new_running();
        assert_eq!(park_for_message(&s, true), Suspension::Resumed);
        assert_eq!(s.wake_for_message(), Rights::Failed);
    }

    #[test]
    fn notify_before_the_wait_leaves_a_permit() {
        let s = StateWord::new_running();
        assert_eq!(s.notify(), Rights::Failed);
        assert_eq!(
            s.suspend(Wait::Event, Deadline::None, || false),
            Suspension::Resumed
        );
        assert_eq!(
            s.suspend(Wait::Event, Deadline::None, || false),
            Suspension::Parked
        );
        assert_eq!(s.notify(), Rights::Acquired);
    }

    #[test]
    fn a_message_does_not_wake_an_event_wait_and_exit_blocks_everyone() {
        let s = StateWord::new_running();
        assert_eq!(
            s.suspend(Wait::Event, Deadline::None, || false),
            Suspension::Parked
        );
        assert_eq!(s.wake_for_message(), Rights::Failed);
        assert_eq!(s.notify(), Rights::Acquired);
        s.exit();
        assert!(s.is_exited());
        assert_eq!(s.notify(), Rights::Failed);
        assert_eq!(s.wake_for_message(), Rights::Failed);
        assert_eq!(s.expire(0), Rights::Failed);
    }

    #[test]
    fn a_timer_ends_only_its_own_timed_wait() {
        let s = StateWord::new_running();
        let first = s.begin_timed_wait();
        assert_eq!(
            s.suspend(Wait::Message, Deadline::Timed, || false),
            Suspension::Parked
        );
        // A message wins; the late timer of that wait then fails.
        assert_eq!(s.wake_for_message(), Rights::Acquired);
        assert_eq!(s.expire(first), Rights::Failed);
        // The next timed wait cannot be ended by the first wait's timer.
        let second = s.begin_timed_wait();
        assert_ne!(first, second);
        assert_eq!(
            s.suspend(Wait::Message, Deadline::Timed, || false),
            Suspension::Parked
        );
        assert_eq!(s.expire(first), Rights::Failed);
        assert_eq!(s.expire(second), Rights::Acquired);
        assert_eq!(s.wake_for_message(), Rights::Failed);
    }

    #[test]
    fn a_timer_that_fires_before_the_wait_is_published_leaves_a_permit() {
        let s = StateWord::new_running();
        let seq = s.begin_timed_wait();
        assert_eq!(s.expire(seq), Rights::Failed);
        assert_eq!(
            s.suspend(Wait::Sleep, Deadline::Timed, || false),
            Suspension::Resumed
        );
        // The permit is used up, and the next timed wait starts clean.
        let next = s.begin_timed_wait();
        assert_eq!(
            s.suspend(Wait::Sleep, Deadline::Timed, || false),
            Suspension::Parked
        );
        assert_eq!(
            s.wake_for_message(),
            Rights::Failed,
            "a message does not end a sleep"
        );
        assert_eq!(s.notify(), Rights::Failed, "nor does a notification");
        assert_eq!(s.expire(next), Rights::Acquired);
    }

    #[test]
    fn an_untimed_wait_ignores_timers() {
        let s = StateWord::new_running();
        let seq = s.begin_timed_wait();
        assert_eq!(park_for_message(&s, false), Suspension::Parked);
        assert_eq!(s.expire(seq), Rights::Failed);
        assert_eq!(s.seize(), Rights::Acquired);
    }
}
