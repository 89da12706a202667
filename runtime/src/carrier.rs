//! Carriers: long-lived coroutines on pooled, guarded stacks.
//!
//! A carrier is a corosensei coroutine whose body is a loop: it waits for a job (a
//! process to activate), runs it, reports the outcome, and waits for the next job.
//! A handler process borrows a carrier only while it handles messages; if a handler
//! suspends mid-way (yield, join), the carrier stays with the process until the
//! handler returns, and then goes back to a worker's pool. A free-running process
//! keeps its carrier for its whole life.
//!
//! Each worker keeps a pool of idle carriers, so activating a process costs a
//! context switch (a few ns) instead of an `mmap` + `mprotect` (about 9 µs here).
//!
//! A carrier holds no thread-local state across a suspension: every time it is
//! resumed it re-publishes its [`Frame`] in this thread's `CURRENT` slot. That is
//! what makes moving a suspended carrier to another worker thread sound.

use std::any::Any;
use std::cell::Cell;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::Arc;

use corosensei::stack::{DefaultStack, Stack};
use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::process::{Run, Task};
use crate::state::{Deadline, Wait};

/// Reductions a process may spend (messages received, messages sent) before it
/// yields its worker to the others. Erlang uses 4,000 reductions of a finer grain;
/// 2,000 coarse ones keeps a chatty process's slice in the tens of microseconds.
pub(crate) const REDUCTION_BUDGET: u32 = 2_000;

/// What the worker passes into a carrier.
pub(crate) enum Resume {
    /// Start activating this process (the carrier was idle). The pointer stays
    /// valid for the whole activation: see [`Frame::process`].
    Start(*const dyn Run),
    /// Continue the suspended activation.
    Continue,
    /// Unwind the activation (if any) and end the carrier: runtime shutdown.
    Cancel,
}

/// What a carrier reports back to the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// The activation ended; the carrier is free again.
    Finished(Outcome),
    /// Put the process at the back of the run queue and resume it later.
    Yield,
    /// Suspend until the wait ends (see `state.rs`).
    Wait(Wait, Deadline),
}

/// How an activation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A handler process emptied its mailbox: it goes idle, with a deadline if it
    /// armed its idle timeout.
    Idle(Deadline),
    /// A handler process used up its budget with messages left: requeue it.
    More,
    /// The process ended (its exit was already recorded).
    Exited,
}

/// The panic payload used to unwind a cancelled carrier's stack.
pub(crate) struct Cancelled;

/// What an activation can see of the carrier it runs on.
pub(crate) struct Frame<'y> {
    /// Suspends the carrier.
    yielder: &'y Yielder<Resume, Suspend>,
    /// The process being activated. Not a counted reference: the holder of the
    /// run rights owns one for the whole activation (see `process.rs`).
    process: *const dyn Run,
    /// Reductions spent since the process was last resumed.
    reductions: Cell<u32>,
    /// Set once the carrier is being unwound; no more suspensions are allowed.
    cancelled: Cell<bool>,
}

thread_local! {
    /// The frame of the activation running on this thread, or null.
    static CURRENT: Cell<*const Frame<'static>> = const { Cell::new(ptr::null()) };
}

/// Runs `f` with the frame of the process running on this thread, if any.
///
/// Never inlined: the thread a carrier runs on can change at every suspension, so
/// the thread-local's address must be computed afresh on each call.
#[inline(never)]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Frame<'_>>) -> R) -> R {
    let frame = CURRENT.with(Cell::get);
    // Safety: CURRENT is non-null only while the frame's carrier runs on this thread
    // (set on every resume, cleared before every suspension), and the frame lives on
    // that carrier's stack for the whole activation.
    f(unsafe { frame.as_ref() })
}

#[inline(never)]
fn set_current(frame: *const Frame<'_>) {
    CURRENT.with(|c| c.set(frame.cast()));
}

impl Frame<'_> {
    /// The process being activated.
    pub(crate) fn process(&self) -> &dyn Run {
        // Safety: the holder of the process's run rights owns a strong reference to
        // it for as long as the activation lasts, running or suspended (the
        // invariant at the top of process.rs), and the frame lives no longer.
        unsafe { &*self.process }
    }

    /// A counted reference to the process being activated.
    pub(crate) fn task(&self) -> Task {
        // Safety: the pointer came from `Arc::as_ptr` of a live Arc (see `process`),
        // so adding a strong count and rebuilding an Arc from it is sound.
        unsafe {
            Arc::increment_strong_count(self.process);
            Arc::from_raw(self.process)
        }
    }

    /// Suspends the activation and returns once the worker resumes it.
    pub(crate) fn suspend(&self, why: Suspend) {
        if self.cancelled.get() {
            // A destructor tried to block while the stack unwinds at shutdown. There
            // is no worker left to resume it, and unwinding again from inside an
            // unwind would abort anyway: say why first.
            if std::thread::panicking() {
                eprintln!(
                    "fibra: a destructor blocked (receive, join, sleep, call, a socket) \
                     while the runtime shut down and unwound its process; aborting"
                );
                std::process::abort();
            }
            panic::resume_unwind(Box::new(Cancelled));
        }
        // Calls this activation dropped unanswered are settled before it leaves its
        // thread (call.rs, step 5).
        crate::call::settle_dropped_replies();
        set_current(ptr::null::<Frame<'static>>());
        match self.yielder.suspend(why) {
            Resume::Continue => {
                self.reductions.set(0);
                set_current(self);
                self.take_fatal_signal();
            }
            Resume::Cancel => {
                self.cancelled.set(true);
                panic::resume_unwind(Box::new(Cancelled));
            }
            Resume::Start(_) => unreachable!("a busy carrier was given a second job"),
        }
    }

    /// Ends the process (by unwinding its stack) if a fatal signal is pending: a
    /// kill, a stop, or a linked failure it does not trap.
    pub(crate) fn take_fatal_signal(&self) {
        // Nothing pending is the common case: one load, checked first on this path
        // that every resume takes. A process already unwinding (a destructor that
        // blocked or sent during a panic) is ending anyway; a second unwind would
        // abort the whole program.
        if self.process().header().signals.is_empty() || std::thread::panicking() {
            return;
        }
        // Safety: the frame's process is the one running, its signal queue's consumer.
        if let Some(exit) = unsafe { crate::signal::take_fatal(self.process()) } {
            panic::resume_unwind(Box::new(crate::signal::Terminated(exit)));
        }
    }

    /// Counts one reduction and yields the worker when the budget is spent.
    pub(crate) fn tick(&self) {
        let spent = self.reductions.get() + 1;
        if spent >= REDUCTION_BUDGET && !self.cancelled.get() {
            self.suspend(Suspend::Yield);
        } else {
            self.reductions.set(spent);
        }
    }

    /// Whether the reduction budget is spent.
    pub(crate) fn budget_spent(&self) -> bool {
        self.reductions.get() >= REDUCTION_BUDGET
    }

    /// Spends `n` reductions without yielding.
    pub(crate) fn spend(&self, n: u32) {
        self.reductions.set(self.reductions.get().saturating_add(n));
    }
}

/// A coroutine on a guarded stack that runs process activations.
pub(crate) struct Carrier {
    /// The coroutine; its body is the job loop in [`Carrier::new`].
    coroutine: Coroutine<Resume, Suspend, (), DefaultStack>,
    /// The lowest address of the stack's mapping, where its guard page starts.
    limit: usize,
    /// Whether an activation is in progress on this carrier.
    busy: bool,
}

// Safety: a carrier is only ever resumed by one thread at a time (the worker that
// holds the process's run rights, or the pool's owner), and it keeps no reference to
// thread-local state across a suspension: the frame pointer in CURRENT is cleared
// before every suspension and set again after every resume, on whichever thread that
// is. User code must not hold thread-local borrows across a blocking call either,
// which the crate documentation states.
unsafe impl Send for Carrier {}

impl Carrier {
    /// Maps a fresh guarded stack of `size` bytes and starts the job loop on it.
    pub(crate) fn new(size: usize) -> io::Result<Box<Carrier>> {
        let stack = DefaultStack::new(size)?;
        let limit = stack.limit().get();
        let coroutine = Coroutine::with_stack(stack, |yielder, first: Resume| {
            let mut next = first;
            loop {
                let process = match next {
                    Resume::Start(process) => process,
                    Resume::Cancel | Resume::Continue => return,
                };
                let frame = Frame {
                    yielder,
                    process,
                    reductions: Cell::new(0),
                    cancelled: Cell::new(false),
                };
                set_current(&frame);
                let outcome =
                    panic::catch_unwind(AssertUnwindSafe(|| frame.process().activate(&frame)));
                set_current(ptr::null::<Frame<'static>>());
                crate::call::settle_dropped_replies();
                let outcome = match outcome {
                    Ok(outcome) => outcome,
                    Err(payload) if payload.is::<Cancelled>() => return,
                    Err(payload) => abort_on_escaped_panic(payload),
                };
                next = yielder.suspend(Suspend::Finished(outcome));
            }
        });
        Ok(Box::new(Carrier {
            coroutine,
            limit,
            busy: false,
        }))
    }

    /// Runs the carrier until it suspends. `process` is the process to activate
    /// when the carrier is idle (a busy carrier continues its activation instead);
    /// the caller holds its run rights.
    pub(crate) fn resume(&mut self, process: &Task) -> Suspend {
        let input = if self.busy {
            Resume::Continue
        } else {
            self.busy = true;
            Resume::Start(Arc::as_ptr(process))
        };
        match self.coroutine.resume(input) {
            CoroutineResult::Yield(suspend) => {
                if let Suspend::Finished(_) = suspend {
                    self.busy = false;
                }
                suspend
            }
            CoroutineResult::Return(()) => {
                unreachable!("a carrier's job loop ended without being cancelled")
            }
        }
    }

    /// The address range of the guard page at the bottom of the stack's mapping
    /// (corosensei's `limit()` is the start of the mapping, guard page included).
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        (self.limit, self.limit + page_size())
    }
}

impl Drop for Carrier {
    fn drop(&mut self) {
        if self.coroutine.started() && !self.coroutine.done() {
            // Unwind the activation in progress (its destructors run) and end the loop.
            match self.coroutine.resume(Resume::Cancel) {
                CoroutineResult::Return(()) => {}
                CoroutineResult::Yield(_) => {
                    // The activation caught the unwind and went on suspending; let
                    // corosensei force the unwind instead.
                    self.coroutine.force_unwind();
                }
            }
        }
    }
}

/// An activation let a panic escape; activations catch their own panics, so this is
/// a runtime bug and the state of the process is unknown.
#[cold]
fn abort_on_escaped_panic(payload: Box<dyn Any + Send>) -> ! {
    let message = crate::error::panic_message(payload.as_ref());
    eprintln!("fibra: internal error, a panic escaped a process activation: {message}");
    std::process::abort();
}

/// The system page size, read once.
pub(crate) fn page_size() -> usize {
    use std::sync::OnceLock;
    static PAGE: OnceLock<usize> = OnceLock::new();
    // Safety: sysconf has no preconditions.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    })
}

/// Turns an OS refusal to map a stack into an error a user can act on.
pub(crate) fn stack_error(size: usize, err: io::Error) -> crate::SpawnError {
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    crate::SpawnError::Stack {
        size,
        source: err,
        max_map_count: limit,
    }
}
