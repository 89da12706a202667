//! A process's signal queue: where kills, stops, exit signals and `Down`s wait for
//! the process to take them.
//!
//! Signals are not all alike. A kill or a stop must end the process at its next
//! resume, wherever it waits, and taking it must cost nothing when none is pending,
//! since every resume asks. Exit signals from links end the process too, unless it
//! traps exits, and then they are notices, like `Down`s: things the process reads
//! when it chooses, or never. So the queue keeps them in two places:
//!
//! * **Kill and stop are flags** in one atomic word. They need no order among
//!   themselves (a kill wins), and a flag cannot be buried behind notices.
//! * **Exit signals and `Down`s** go through a mailbox, in arrival order, and the
//!   same word counts the exit signals in it.
//!
//! The word also holds whether the process traps exits. With it, "is a fatal signal
//! pending?" is one load: a kill or stop flag, or, while not trapping, a queued exit
//! signal. That answer never depends on where a signal sits in the mailbox.
//!
//! # Why that matters: the check before publishing a wait
//!
//! A worker checks the signal queue ([`Signals::has_new`]) before it publishes a
//! wait, and again whenever the publication fails on a `SIGNALED` mark, so that a
//! signal pushed while the process was running is not stranded (the sender's
//! wake-up found the process running and could only leave the mark). The mailbox
//! alone can only say whether something is on its *shared* stack; a signal that the
//! process itself moved to its private list is invisible there. And the process
//! does move signals it is not looking for: a scan for notices takes in everything
//! queued and leaves the rest on the private list. An earlier version kept kills and
//! stops in the mailbox, and lost them exactly so:
//!
//! ```text
//!  supervisor (traps exits)                     another thread
//!  resumes for a child's exit signal
//!  takes fatal signals: none
//!                                               stop(): push Stop;
//!                                               interrupt: RUNNING, nothing to do
//!  takes a notice: scans the queue, takes in
//!  Stop, skips it (not a notice), returns
//!  the child's Down
//!  nothing left to do: waits for a message
//!  worker checks before it publishes:
//!  the shared stack is empty: parked,
//!  with Stop on its private list
//! ```
//!
//! The stop then waited for whatever message came next. With the flag, the check
//! sees it wherever the scans have left the mailbox.
//!
//! # Ordering
//!
//! Setting a flag (or counting an exit signal and pushing it) is the store half of
//! the reschedule protocol, the sender's state-word access follows it; the
//! worker's load of the word is its check after clearing the mark. All of them are
//! `SeqCst`, as for messages (see `state.rs`). An exit signal is counted *before* it
//! is pushed, so the count is never below the exit signals the mailbox holds; for a
//! moment it may be one above (the push has not landed yet), and then a check
//! resumes a process that finds nothing and waits again.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use fibra_mailbox::Mailbox;

use super::Signal;

/// A kill is pending.
const KILL: u64 = 1;
/// A stop is pending.
const STOP: u64 = 1 << 1;
/// The process traps exits: exit signals are notices, not fatal.
const TRAP: u64 = 1 << 2;
/// The process has ended: signals are refused.
const CLOSED: u64 = 1 << 3;
/// The count of exit signals in the mailbox starts at this bit.
const EXITS_SHIFT: u32 = 8;
/// One exit signal in the count.
const EXIT_ONE: u64 = 1 << EXITS_SHIFT;

/// Whether the word says a fatal signal is pending.
fn fatal_in(word: u64) -> bool {
    word & (KILL | STOP) != 0 || (word & TRAP == 0 && word >> EXITS_SHIFT != 0)
}

/// The kill or stop a process found pending, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flagged {
    /// Nothing: look for exit signals next.
    Neither,
    /// A kill (any stop pending as well stays pending).
    Kill,
    /// A stop.
    Stop,
}

/// One process's signals.
pub(crate) struct Signals {
    /// Exit signals and `Down`s, in arrival order.
    queue: Mailbox<Signal>,
    /// `KILL`, `STOP`, `TRAP` and `CLOSED`, and from `EXITS_SHIFT` up the number of
    /// exit signals counted into `queue`.
    word: AtomicU64,
}

impl Signals {
    /// No signals, not trapping exits.
    pub(crate) fn new() -> Signals {
        Signals {
            queue: Mailbox::new(),
            word: AtomicU64::new(0),
        }
    }

    /// Queues a signal (any thread). Hands it back once the process has ended.
    pub(crate) fn push(&self, signal: Signal) -> Result<(), Signal> {
        let flag = match signal {
            Signal::Kill => KILL,
            Signal::Stop => STOP,
            Signal::Exit { .. } => {
                // Counted first: see "Ordering" in the module comment.
                self.word.fetch_add(EXIT_ONE, SeqCst);
                return self.queue.push(signal).inspect_err(|_| {
                    self.word.fetch_sub(EXIT_ONE, SeqCst);
                });
            }
            Signal::Down(_) | Signal::Group(_) | Signal::Apply(_) => {
                return self.queue.push(signal)
            }
        };
        if self.word.fetch_or(flag, SeqCst) & CLOSED != 0 {
            return Err(signal);
        }
        Ok(())
    }

    /// The check before publishing a wait (a `SeqCst` load of each place): whether
    /// a signal arrived that the process has not seen, or a fatal one is pending
    /// wherever it sits. False once closed.
    pub(crate) fn has_new(&self) -> bool {
        let word = self.word.load(SeqCst);
        word & CLOSED == 0 && (fatal_in(word) || self.queue.has_new())
    }

    /// How many exit signals and notices are queued (not counting a pending kill
    /// or stop).
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing at all is queued or flagged: one load of each place, for the
    /// running process to skip the signal path. Like [`Mailbox::is_empty`], only an
    /// estimate while senders push; the check before a park is [`has_new`](Self::has_new).
    pub(crate) fn is_empty(&self) -> bool {
        self.word.load(SeqCst) & (KILL | STOP) == 0 && self.queue.is_empty()
    }

    /// Whether a fatal signal is pending (see the module comment): one load.
    pub(crate) fn has_fatal(&self) -> bool {
        fatal_in(self.word.load(SeqCst))
    }

    /// Whether the process traps exits.
    pub(crate) fn traps_exits(&self) -> bool {
        self.word.load(SeqCst) & TRAP != 0
    }

    /// Sets whether the process traps exits; returns the previous setting.
    pub(crate) fn set_trap_exits(&self, trap: bool) -> bool {
        let before = if trap {
            self.word.fetch_or(TRAP, SeqCst)
        } else {
            self.word.fetch_and(!TRAP, SeqCst)
        };
        before & TRAP != 0
    }

    /// Whether exit signals are counted in the mailbox (some may still be on their
    /// way in).
    pub(crate) fn has_exits(&self) -> bool {
        self.word.load(SeqCst) >> EXITS_SHIFT != 0
    }

    /// Takes a pending kill, or else a pending stop.
    pub(crate) fn take_flagged(&self) -> Flagged {
        let word = self.word.load(SeqCst);
        let (flag, flagged) = if word & KILL != 0 {
            (KILL, Flagged::Kill)
        } else if word & STOP != 0 {
            (STOP, Flagged::Stop)
        } else {
            return Flagged::Neither;
        };
        self.word.fetch_and(!flag, SeqCst);
        flagged
    }

    /// Takes the first queued exit signal or `Down`, in arrival order, for which
    /// `pred` returns true.
    ///
    /// # Safety
    /// The caller is the running process, the queue's one consumer.
    pub(crate) unsafe fn pop_matching(&self, pred: impl FnMut(&Signal) -> bool) -> Option<Signal> {
        // Safety: passed on from the caller.
        let signal = unsafe { self.queue.pop_matching(pred) }?;
        if matches!(signal, Signal::Exit { .. }) {
            self.word.fetch_sub(EXIT_ONE, SeqCst);
        }
        Some(signal)
    }

    /// Refuses later signals and drops the queued ones; returns how many were
    /// queued (flags included). The rest of the word is left as it is: only
    /// `CLOSED` means anything from now on.
    ///
    /// # Safety
    /// The caller is the running process, the queue's one consumer.
    pub(crate) unsafe fn close(&self) -> usize {
        let word = self.word.fetch_or(CLOSED, SeqCst);
        let flags = usize::from(word & KILL != 0) + usize::from(word & STOP != 0);
        // Safety: passed on from the caller.
        flags + unsafe { self.queue.close() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;
    use crate::process::ProcessId;

    fn exit(reason: Exit) -> Signal {
        Signal::Exit {
            from: ProcessId(7),
            reason,
            linked: true,
        }
    }

    #[test]
    fn a_stop_scanned_past_still_counts_as_new() {
        let signals = Signals::new();
        signals.set_trap_exits(true);
        signals.push(exit(Exit::Normal)).ok().unwrap();
        signals.push(Signal::Stop).ok().unwrap();
        // A scan for something absent takes everything onto the private list.
        // Safety: this test is the one consumer.
        assert!(unsafe { signals.pop_matching(|_| false) }.is_none());
        assert!(
            !signals.queue.has_new(),
            "the mailbox alone has nothing new"
        );
        assert!(signals.has_new(), "the stop is still pending");
        assert_eq!(signals.take_flagged(), Flagged::Stop);
        assert!(!signals.has_new(), "a trapped exit signal is not fatal");
        assert_eq!(signals.take_flagged(), Flagged::Neither);
    }

    #[test]
    fn exit_signals_are_fatal_only_while_not_trapped() {
        let signals = Signals::new();
        signals.push(exit(Exit::Killed)).ok().unwrap();
        // Safety: this test is the one consumer.
        assert!(unsafe { signals.pop_matching(|_| false) }.is_none());
        assert!(signals.has_fatal() && signals.has_new());
        assert!(!signals.set_trap_exits(true));
        assert!(!signals.has_fatal() && !signals.has_new());
        assert!(signals.set_trap_exits(false));
        assert!(signals.has_fatal());
        // Safety: as above.
        let taken = unsafe { signals.pop_matching(|s| matches!(s, Signal::Exit { .. })) };
        assert!(taken.is_some());
        assert!(!signals.has_exits() && !signals.has_fatal());
    }

    #[test]
    fn unread_notices_of_a_trapping_process_leave_no_fatal_signal_to_look_for() {
        let signals = Signals::new();
        signals.set_trap_exits(true);
        for _ in 0..1_000 {
            signals.push(exit(Exit::Killed)).ok().unwrap();
        }
        // One load answers, and the queue is not even looked at: its shared stack
        // is still where the pushes left it.
        assert!(!signals.has_fatal());
        assert_eq!(signals.take_flagged(), Flagged::Neither);
        assert!(signals.queue.has_new());
        signals.push(Signal::Stop).ok().unwrap();
        assert!(signals.has_fatal());
        assert_eq!(signals.take_flagged(), Flagged::Stop);
        assert!(signals.queue.has_new());
    }

    #[test]
    fn a_kill_wins_over_a_stop_and_a_closed_queue_refuses_both() {
        let signals = Signals::new();
        signals.push(Signal::Stop).ok().unwrap();
        signals.push(Signal::Kill).ok().unwrap();
        assert!(!signals.is_empty());
        assert_eq!(signals.take_flagged(), Flagged::Kill);
        assert_eq!(signals.take_flagged(), Flagged::Stop);
        assert!(signals.is_empty());
        signals.push(Signal::Kill).ok().unwrap();
        signals.push(exit(Exit::Normal)).ok().unwrap();
        // Safety: this test is the one consumer.
        assert_eq!(unsafe { signals.close() }, 2);
        assert!(signals.push(Signal::Stop).is_err());
        assert!(signals.push(exit(Exit::Normal)).is_err());
        assert!(!signals.has_new());
    }
}
