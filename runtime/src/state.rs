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
//! The race that matters is the parking worker against a sender. The worker
//! checks the mailbox and then publishes "waiting" with a CAS; the sender pushes
//! and then reads the state word. If the sender finds the process still holding
//! its rights (running, or about to park), it cannot take them, so it leaves a
//! mark in the word instead (`MAIL`; a signal leaves `SIGNALED`). The worker's
//! publishing CAS fails on a mark: it clears the mark, checks again, and keeps the
//! rights if there is work.
//!
//! ```text
//!   worker (receiver side)                 sender
//!   ----------------------                 ------
//!   mailbox.has_new()?        (SeqCst)     mailbox.push(m)      (SeqCst CAS)
//!     yes: keep the rights, run it again   load state           (SeqCst)
//!   CAS RUNNING -> WAIT_MSG                  RUNNING, no MAIL: CAS set MAIL
//!     failed on MAIL: CAS MAIL off,          RUNNING|MAIL: nothing to do
//!       check the mailbox again              WAIT_MSG: CAS -> RUNNING
//!     done: published, hands off               won: schedule it
//!                                              lost: someone else owns it
//! ```
//!
//! Every step on the state word is a read-modify-write except the sender's load
//! that finds `MAIL` already set, and that load is `SeqCst`: it reads a mark that
//! the worker has not cleared yet, so the worker's clear, and the mailbox check
//! after it, come later in the single order of `SeqCst` operations and see the
//! message (invariant 1). Otherwise the sender's CAS and the worker's publication
//! are two writes to one word: if the publication is first, the sender takes the
//! rights with a CAS that lets exactly one party win (invariant 2); if the mark is
//! first, the publication fails. A winner never hands the rights back (invariant
//! 4): even if it finds nothing to do, it schedules the process, which checks and
//! suspends again by itself.
//!
//! This keeps invariant 6 by construction: every check happens while the worker
//! holds the rights (the word says RUNNING, so nobody else can run, end or free
//! the process), and the publishing CAS is the worker's last access. It costs the
//! worker one read-modify-write per park, and a sender one extra only when it is
//! the first to find the process running since its last park.

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
//!    instead, and the park in step 2 consumes it and keeps the rights.
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
/// Suspended until a message arrives or [`StateWord::notify`], whichever comes
/// first (a free-running process in a `select` over its mailbox and channels).
const WAIT_ANY: u64 = 5;
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
/// A message was pushed while the process held its rights: its next message wait
/// checks the mailbox again before it publishes.
const MAIL: u64 = 1 << 6;
/// A signal was pushed while the process held its rights: its next wait of any
/// kind checks the signal queue again before it publishes.
const SIGNALED: u64 = 1 << 7;
/// For a taker that leaves a running process as it is (the shutdown drain).
const NO_MARK: u64 = 0;
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
    /// A message or an event, whichever comes first.
    Any,
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
    /// unless there is work for it, in which case the caller keeps the rights. The
    /// caller must hold the run rights.
    ///
    /// Work is a pending permit for the wait (a notification for an event wait, an
    /// expiry for a timed wait; consumed here) or whatever `pending` finds (a
    /// `SeqCst` check of what can end the wait: the mailbox for a message wait, the
    /// signal queue for every wait). A mark a waker left while the process ran
    /// (`MAIL`, `SIGNALED`) makes the publication fail: the mark is cleared and
    /// `pending` asked again. A successful publication hands the rights, and the
    /// reference they own, to the next waker: the caller must not read the process
    /// again (invariant 6).
    pub fn suspend(
        &self,
        wait: Wait,
        deadline: Deadline,
        pending: impl Fn() -> bool,
    ) -> Suspension {
        let (kind, permit, marks) = match wait {
            Wait::Message => (WAIT_MSG, 0, MAIL | SIGNALED),
            Wait::Event => (WAIT_EVENT, NOTIFIED, SIGNALED),
            Wait::Sleep => (WAIT_SLEEP, 0, SIGNALED),
            Wait::Any => (WAIT_ANY, NOTIFIED, MAIL | SIGNALED),
        };
        let (timed, permit) = match deadline {
            Deadline::None => (0, permit),
            Deadline::Timed => (TIMED, permit | EXPIRED),
        };
        'check: loop {
            seqcst_order_for_loom();
            if pending() {
                return Suspension::Resumed;
            }
            let mut current = self.word.load(SeqCst);
            loop {
                debug_assert_eq!(
                    current & KIND,
                    RUNNING,
                    "suspending a process we do not own"
                );
                let next = if current & permit != 0 {
                    current & !permit
                } else if current & marks != 0 {
                    current & !marks
                } else {
                    current | kind | timed
                };
                match self
                    .word
                    .compare_exchange_weak(current, next, SeqCst, SeqCst)
                {
                    Ok(_) if current & permit != 0 => return Suspension::Resumed,
                    Ok(_) if current & marks != 0 => continue 'check,
                    // The publication: not one more access.
                    Ok(_) => return Suspension::Parked,
                    Err(actual) => current = actual,
                }
            }
        }
    }

    /// Sender side, after a successful push: takes the rights if the process waits
    /// for a message; marks it `MAIL` if it holds its rights (so that its next
    /// message wait checks again).
    pub fn wake_for_message(&self) -> Rights {
        seqcst_order_for_loom();
        self.take_or_mark(|kind| kind == WAIT_MSG || kind == WAIT_ANY, MAIL)
    }

    /// Event side: wake the process if it waits for an event; otherwise leave a
    /// permit for its next event wait (unless it has exited).
    pub fn notify(&self) -> Rights {
        let mut current = self.word.load(SeqCst);
        loop {
            let next = match current & KIND {
                WAIT_EVENT | WAIT_ANY => current & !KIND & !NOTIFIED & !TIMED,
                EXITED => return Rights::Failed,
                _ if current & NOTIFIED != 0 => return Rights::Failed,
                _ => current | NOTIFIED,
            };
            match self
                .word
                .compare_exchange_weak(current, next, SeqCst, SeqCst)
            {
                Ok(_) if matches!(current & KIND, WAIT_EVENT | WAIT_ANY) => {
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
                WAIT_MSG | WAIT_EVENT | WAIT_SLEEP | WAIT_ANY if current & TIMED != 0 => {
                    (current & !KIND & !TIMED, Rights::Acquired)
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
    /// from whatever wait the process is in (signals end every wait); marks it
    /// `SIGNALED` if it holds its rights (so that its next wait checks again).
    pub fn interrupt(&self) -> Rights {
        seqcst_order_for_loom();
        self.take_or_mark(suspended, SIGNALED)
    }

    /// Takes the rights of a parked process, whatever it waits for, and leaves a
    /// running one alone. Used by the shutdown drain, which must release a parked
    /// process's rights reference.
    pub fn seize(&self) -> Rights {
        self.take_or_mark(suspended, NO_MARK)
    }

    /// Marks the process as ended: from now on nobody acquires its rights.
    pub fn exit(&self) {
        self.word.store(EXITED, SeqCst);
    }

    /// What the word says now, for introspection: `(kind, timed)`, where kind
    /// is 0 while the process holds its rights, 1 to 3 for a message, event or
    /// sleep wait, 4 once it has ended and 5 for a wait for a message or an
    /// event. Stale the moment it returns.
    pub fn observe(&self) -> (u8, bool) {
        let word = self.word.load(SeqCst);
        (
            (word & KIND) as u8,
            word & TIMED != 0 && word & KIND != RUNNING,
        )
    }

    /// Whether the process has ended.
    pub fn is_exited(&self) -> bool {
        self.word.load(SeqCst) & KIND == EXITED
    }

    /// Takes the rights while the word's kind is one `wakes` accepts; if the
    /// process holds its rights instead, sets `mark` (unless it is set already, or
    /// is [`NO_MARK`]).
    fn take_or_mark(&self, wakes: impl Fn(u64) -> bool, mark: u64) -> Rights {
        let mut current = self.word.load(SeqCst);
        loop {
            let kind = current & KIND;
            let (next, rights) = if wakes(kind) {
                (current & !KIND & !TIMED, Rights::Acquired)
            } else if mark != NO_MARK && kind == RUNNING && current & mark == 0 {
                (current | mark, Rights::Failed)
            } else {
                return Rights::Failed;
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
}

/// Whether `kind` is a wait (signals and the shutdown drain end every wait).
fn suspended(kind: u64) -> bool {
    matches!(kind, WAIT_MSG | WAIT_EVENT | WAIT_SLEEP | WAIT_ANY)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A `pending` check that finds nothing the first time and work from then on
    /// (a push that landed just after the first look), counting its calls.
    fn work_from_second_check(checks: &std::cell::Cell<u32>) -> impl Fn() -> bool + '_ {
        move || {
            checks.set(checks.get() + 1);
            checks.get() > 1
        }
    }

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
    fn a_message_to_a_running_process_makes_its_next_park_check_again() {
        let s = StateWord::new_running();
        assert_eq!(s.wake_for_message(), Rights::Failed);
        // The first check ran before the push landed; the mark sends it back.
        let checks = std::cell::Cell::new(0);
        assert_eq!(
            s.suspend(
                Wait::Message,
                Deadline::None,
                work_from_second_check(&checks)
            ),
            Suspension::Resumed
        );
        assert_eq!(checks.get(), 2);
        // The mark is used up: the next park publishes after one check.
        assert_eq!(park_for_message(&s, false), Suspension::Parked);
        assert_eq!(s.wake_for_message(), Rights::Acquired);
    }

    #[test]
    fn a_mark_whose_message_was_taken_already_parks_after_one_more_check() {
        let s = StateWord::new_running();
        assert_eq!(s.wake_for_message(), Rights::Failed);
        assert_eq!(s.wake_for_message(), Rights::Failed, "one mark is enough");
        assert_eq!(park_for_message(&s, false), Suspension::Parked);
        assert_eq!(s.wake_for_message(), Rights::Acquired);
    }

    #[test]
    fn a_message_mark_does_not_stop_an_event_wait_but_a_signal_mark_does() {
        let s = StateWord::new_running();
        assert_eq!(s.wake_for_message(), Rights::Failed);
        assert_eq!(
            s.suspend(Wait::Event, Deadline::None, || false),
            Suspension::Parked
        );
        assert_eq!(s.notify(), Rights::Acquired);
        assert_eq!(s.interrupt(), Rights::Failed);
        let checks = std::cell::Cell::new(0);
        assert_eq!(
            s.suspend(Wait::Event, Deadline::None, work_from_second_check(&checks)),
            Suspension::Resumed
        );
        assert_eq!(checks.get(), 2);
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
