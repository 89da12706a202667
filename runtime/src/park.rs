//! Parking and unparking processes, for event sources outside the runtime (an IO
//! poller, a pool thread finishing a blocking call): the one primitive they need.
//!
//! A process parks with [`park_until`]: an event wait on its state word, bounded by
//! an optional deadline. An [`Unparker`] taken beforehand wakes it through
//! the state word's `notify`: if the process is not
//! parked yet, the notification stays as a permit and the next park returns at
//! once, so the usual sequence (register the unparker, re-check the condition,
//! park) loses no wake-up. Outside any process the same calls park and unpark the
//! thread, whose own token gives the same guarantee.
//!
//! A park may return without an unpark (a signal, a stale permit): callers re-check
//! their condition and park again.
//!
//! ```
//! use fibra_runtime::park::{current_unparker, park_until, ParkOutcome};
//! use fibra_runtime::*;
//!
//! let rt = Runtime::builder().workers(1).build().unwrap();
//! let woken = rt.block_on(|_cx| {
//!     let me = current_unparker();
//!     std::thread::spawn(move || me.unpark());
//!     // Loop: a park can return early, never late.
//!     loop {
//!         if let ParkOutcome::Unparked = park_until(None) {
//!             break true;
//!         }
//!     }
//! });
//! assert!(woken);
//! ```

use std::fmt;
use std::thread::{self, Thread};
use std::time::Instant;

use crate::carrier::{with_current, with_suspendable, Suspend, Suspended};
use crate::process::Task;
use crate::state::Wait;
use crate::time::WaitTimer;
use crate::waiter::Waiter;

/// Wakes one parked process, or one parked thread. Cloning it gives another handle
/// on the same waiter.
#[derive(Clone)]
pub struct Unparker {
    /// Who to wake.
    target: Target,
}

/// The waiter behind an [`Unparker`].
#[derive(Clone)]
enum Target {
    /// A process.
    Process(Task),
    /// A plain thread.
    Thread(Thread),
    /// Work to run instead of a wake-up (see [`Unparker::from_fn`]).
    Callback(std::sync::Arc<dyn Fn() + Send + Sync>),
}

impl Unparker {
    /// An unparker that runs `f` on the unparking thread instead of waking
    /// anyone: for an event source that reacts to readiness itself (an active
    /// socket reads and sends the data on as a message). `f` must not block:
    /// it runs on the thread that unparks, an IO poller say.
    pub fn from_fn(f: impl Fn() + Send + Sync + 'static) -> Unparker {
        Unparker {
            target: Target::Callback(std::sync::Arc::new(f)),
        }
    }

    /// Wakes the waiter, or leaves it a permit if it is not parked right now.
    pub fn unpark(&self) {
        match &self.target {
            Target::Process(task) => Waiter::Process(task.clone()).wake(),
            Target::Thread(thread) => thread.unpark(),
            Target::Callback(f) => f(),
        }
    }
}

impl fmt::Debug for Unparker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Process(task) => write!(f, "Unparker(process <0.{}>)", task.header().id),
            Target::Thread(thread) => write!(f, "Unparker(thread {:?})", thread.id()),
            Target::Callback(_) => f.write_str("Unparker(callback)"),
        }
    }
}

/// An unparker for the calling process, or for the calling thread outside any
/// process.
pub fn current_unparker() -> Unparker {
    with_suspendable(|frame| Unparker {
        target: match frame {
            Some(frame) => Target::Process(frame.task()),
            // A process that unwinds parks its thread (see park_until).
            None => Target::Thread(thread::current()),
        },
    })
}

/// Counts one unit of work (a socket read or write that went through without
/// waiting, say) towards the calling process's reduction budget, and lets the
/// other processes on its worker run if the budget is spent. Outside any process,
/// and while a process unwinds, it does nothing.
///
/// Event sources call it on their fast paths, so that a process that always finds
/// its socket ready still yields its worker now and then.
pub fn consume_budget() {
    with_current(|frame| {
        if let Some(frame) = frame {
            frame.tick();
        }
    });
}

/// How a park ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkOutcome {
    /// Unparked, or spuriously: re-check and park again if need be.
    Unparked,
    /// The deadline passed.
    TimedOut,
}

/// Suspends the calling process (or parks the calling thread outside any process)
/// until it is unparked or `deadline` passes. Returns at once if a permit is
/// pending.
pub fn park_until(deadline: Option<Instant>) -> ParkOutcome {
    park_for(Wait::Event, deadline)
}

/// [`park_until`] with the wait of one's choice: `Wait::Any` also ends when a
/// message arrives (a `select` that includes the mailbox).
pub(crate) fn park_for(wait: Wait, deadline: Option<Instant>) -> ParkOutcome {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return ParkOutcome::TimedOut;
    }
    let parked = with_suspendable(|frame| match frame {
        Some(frame) => {
            let mut timer = WaitTimer::new(frame);
            let bound = match deadline {
                Some(deadline) => timer.rearm(deadline),
                None => crate::state::Deadline::None,
            };
            frame.suspend(Suspend::Wait(wait, bound)) == Suspended::Resumed
        }
        None => false,
    });
    if !parked {
        // Outside any process, or in one that unwinds (which may not suspend, and
        // whose unparker is its thread's): the thread parks, unless it is ending
        // processes in a shutdown drain, where nothing may wait.
        if crate::shutdown::draining() {
            return ParkOutcome::TimedOut;
        }
        match deadline {
            Some(deadline) => {
                thread::park_timeout(deadline.saturating_duration_since(Instant::now()))
            }
            None => thread::park(),
        }
    }
    match deadline {
        Some(deadline) if Instant::now() >= deadline => ParkOutcome::TimedOut,
        _ => ParkOutcome::Unparked,
    }
}
