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
//! A carrier with an activation in progress is *pinned*: it is resumed only on the
//! worker it started on (its home, see `scheduler.rs`), because user code may hold
//! thread-bound state across a suspension. [`Carrier::resume`] asserts it. An idle
//! carrier holds no user state, so it may move between threads (a pool, a spawn).
//!
//! # Suspension points
//!
//! An activation suspends only through [`Frame::suspend`], and only when
//! [`Frame::may_suspend`] allows: never while its process unwinds (a panic, a
//! fatal exit, a shutdown), since std's panic count is per thread and the other
//! processes of the worker would see it. Each caller of `suspend` says what its
//! blocking call does instead (returns at once, fails, or blocks the thread).
//!
//! # Sticky exits
//!
//! A fatal signal (kill, stop, an untrapped linked failure) is recorded in the
//! frame when it is taken, and raised as an unwind. A `catch_unwind` in user code
//! can stop the unwind, but not the exit: it is raised again at every later
//! suspension point and reduction, and the activation ends with it even if the
//! process's code returns normally.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use corosensei::stack::{DefaultStack, Stack};
use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::error::Exit;
use crate::process::{Header, Run, Task};
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
    process: Cell<*const dyn Run>,
    /// Its header, looked up once (every suspension reads it).
    header: Cell<*const Header>,
    /// Reductions spent since the process was last resumed.
    reductions: Cell<u32>,
    /// Set once the carrier is being unwound; no more suspensions are allowed.
    cancelled: Cell<bool>,
    /// The fatal exit this process was given, once it was (see "Sticky exits").
    exit: RefCell<Option<Exit>>,
    /// Whether `exit` holds one: the one load the hot paths make.
    doomed: Cell<bool>,
    /// Work to finish before the activation suspends or ends (a call whose reply
    /// the process dropped unanswered is settled then, see call.rs).
    deferred: RefCell<Vec<Box<dyn FnOnce()>>>,
}

/// Whether [`Frame::suspend`] suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a refused suspension must be handled by the blocking call"]
pub(crate) enum Suspended {
    /// The activation was suspended and has been resumed.
    Resumed,
    /// The process is unwinding and may not suspend; nothing happened.
    Refused,
}

thread_local! {
    /// The frame of the activation running on this thread, or null.
    static CURRENT: Cell<*const Frame<'static>> = const { Cell::new(ptr::null()) };
}

/// Runs `f` with the frame of the process running on this thread, if any.
///
/// Never inlined, so that the thread-local's address is computed afresh on each
/// call: an activation never changes threads, but an idle carrier does (pools,
/// spares), and its job loop goes on, on the new thread, from where it suspended.
#[inline(never)]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Frame<'_>>) -> R) -> R {
    let frame = CURRENT.with(Cell::get);
    // Safety: CURRENT is non-null only while the frame's carrier runs on this thread
    // (set on every resume, cleared before every suspension), and the frame lives on
    // that carrier's stack for the whole activation.
    f(unsafe { frame.as_ref() })
}

/// Runs `f` with the frame of the process running on this thread if that process
/// may suspend now ([`Frame::may_suspend`]), and with `None` otherwise: outside any
/// process, and in one that unwinds or ends, a blocking call waits as a plain
/// thread would.
pub(crate) fn with_suspendable<R>(f: impl FnOnce(Option<&Frame<'_>>) -> R) -> R {
    with_current(|frame| f(frame.filter(|frame| frame.may_suspend())))
}

/// Never inlined, for the reason given at [`with_current`]: the job loop calls it
/// on whichever thread resumed its carrier.
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
        unsafe { &*self.process.get() }
    }

    /// Starts the frame's next activation, of `process`.
    fn begin(&self, process: *const dyn Run) {
        self.process.set(process);
        // Safety: the holder of the run rights keeps the process alive for the whole
        // activation (see `process`).
        self.header.set(unsafe { (*process).header() });
        self.reductions.set(0);
        // `doomed` is set exactly while an exit is recorded.
        if self.doomed.replace(false) {
            self.exit.borrow_mut().take();
        }
    }

    /// The process's header.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // Safety: as for `process`: the header lives inside the process.
        unsafe { &*self.header.get() }
    }

    /// A counted reference to the process being activated.
    pub(crate) fn task(&self) -> Task {
        // Safety: the pointer came from `Arc::as_ptr` of a live Arc (see `process`),
        // so adding a strong count and rebuilding an Arc from it is sound.
        unsafe {
            Arc::increment_strong_count(self.process.get());
            Arc::from_raw(self.process.get())
        }
    }

    /// Whether the activation may suspend now: not while its process unwinds (a
    /// panic, a fatal exit, a shutdown). The activation never suspends while it
    /// unwinds and never changes threads, so std's per-thread panic count is this
    /// process's own.
    pub(crate) fn may_suspend(&self) -> bool {
        !self.cancelled.get() && !std::thread::panicking() && !self.header().state.is_exited()
    }

    /// Suspends the activation and returns once the worker resumes it; refuses
    /// (and does nothing) while the process unwinds. Re-raises a recorded fatal
    /// exit before suspending and takes new fatal signals after resuming.
    pub(crate) fn suspend(&self, why: Suspend) -> Suspended {
        if std::thread::panicking() || self.header().state.is_exited() {
            // Unwinding, or ending (destructors of its queued messages and of its
            // value run after its exit is recorded): no suspension.
            return Suspended::Refused;
        }
        if self.cancelled.get() {
            // The runtime shuts down and the activation caught the unwind that ends
            // it: the cancellation is sticky too.
            panic::resume_unwind(Box::new(Cancelled));
        }
        self.raise_recorded_exit();
        self.run_deferred();
        self.bank_reductions();
        if let Some(bounded) = self.header().bounded() {
            // bounded.rs, step 4: no sender waits for a free place while this
            // process waits for something else.
            bounded.flush();
        }
        set_current(ptr::null::<Frame<'static>>());
        match self.yielder.suspend(why) {
            Resume::Continue => {
                self.reductions.set(0);
                set_current(self);
                self.take_fatal_signal();
                Suspended::Resumed
            }
            Resume::Cancel => {
                self.cancelled.set(true);
                panic::resume_unwind(Box::new(Cancelled));
            }
            Resume::Start(_) => unreachable!("a busy carrier was given a second job"),
        }
    }

    /// Ends the process (by unwinding its stack) if a fatal signal is pending (a
    /// kill, a stop, or a linked failure it does not trap) or was recorded earlier.
    pub(crate) fn take_fatal_signal(&self) {
        self.raise_recorded_exit();
        // Nothing pending is the common case: one load, checked first on this path
        // that every resume takes.
        if self.header().signals.is_empty() {
            return;
        }
        // Safety: the frame's process is the one running, its signal queue's consumer.
        if let Some(exit) = unsafe { crate::signal::take_fatal(self.process()) } {
            self.record_exit(exit);
            self.raise_recorded_exit();
        }
    }

    /// Unwinds with the recorded fatal exit, if there is one and the process is not
    /// unwinding already (a second unwind would abort the program; the one under
    /// way ends the process with the recorded exit anyway).
    #[inline]
    fn raise_recorded_exit(&self) {
        if self.doomed.get() {
            self.raise_recorded_exit_slow();
        }
    }

    #[cold]
    fn raise_recorded_exit_slow(&self) {
        let exit = match &*self.exit.borrow() {
            Some(exit) if !std::thread::panicking() && !self.cancelled.get() => exit.clone(),
            _ => return,
        };
        panic::resume_unwind(Box::new(crate::signal::Terminated(exit)));
    }

    /// Queues `work` to run before the activation next suspends or ends.
    pub(crate) fn defer(&self, work: Box<dyn FnOnce()>) {
        self.deferred.borrow_mut().push(work);
    }

    /// Runs the deferred work (none, in the common case: one look).
    #[inline]
    fn run_deferred(&self) {
        if self.deferred.borrow().is_empty() {
            return;
        }
        let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        for work in deferred {
            work();
        }
    }

    /// Records a fatal exit (the first one counts).
    pub(crate) fn record_exit(&self, exit: Exit) {
        self.exit.borrow_mut().get_or_insert(exit);
        self.doomed.set(true);
    }

    /// Forgets a recorded stop (see `Scope::forget_stop`).
    pub(crate) fn forget_stop(&self) -> bool {
        let mut exit = self.exit.borrow_mut();
        if *exit == Some(Exit::Stopped) {
            *exit = None;
            self.doomed.set(false);
            true
        } else {
            false
        }
    }

    /// The fatal exit recorded for this process, if any: the reason it ends with,
    /// however its code returns.
    #[inline]
    pub(crate) fn recorded_exit(&self) -> Option<Exit> {
        if !self.doomed.get() {
            return None;
        }
        self.exit.borrow().clone()
    }

    /// At a suspension point: counts one reduction, and yields the worker when the
    /// budget is spent.
    pub(crate) fn tick(&self) {
        self.spend(1);
        if self.budget_spent() {
            let _ = self.suspend(Suspend::Yield);
        }
    }

    /// Adds the reductions of this stretch of the activation to the process's
    /// total, for introspection: one plain load and store, as only the holder of
    /// the run rights writes it.
    fn bank_reductions(&self) {
        let total = &self.header().reductions;
        let spent = u64::from(self.reductions.get());
        total.store(total.load(Relaxed).wrapping_add(spent), Relaxed);
    }

    /// Whether the reduction budget is spent.
    pub(crate) fn budget_spent(&self) -> bool {
        self.reductions.get() >= REDUCTION_BUDGET
    }

    /// Spends `n` reductions without yielding (a send: never a suspension point),
    /// but re-raises a recorded fatal exit.
    #[inline]
    pub(crate) fn spend(&self, n: u32) {
        self.reductions.set(self.reductions.get().saturating_add(n));
        self.raise_recorded_exit();
    }
}

/// A coroutine on a guarded stack that runs process activations.
pub(crate) struct Carrier {
    /// The coroutine; its body is the job loop in [`Carrier::new`].
    coroutine: Coroutine<Resume, Suspend, (), DefaultStack>,
    /// The lowest address of the stack's mapping, where its guard page starts.
    limit: usize,
    /// The worker an activation in progress started on, and so must resume on;
    /// `None` while the carrier is idle.
    home: Option<usize>,
}

// Safety: a carrier with an activation in progress is resumed only on its home
// worker's thread (`resume` asserts it, and the scheduler routes suspended
// activations home), so thread-bound state that user code holds across a
// suspension stays on its thread. An idle carrier is a job loop waiting for its
// next job with nothing of any process on its stack, so moving it to another
// thread moves only memory.
unsafe impl Send for Carrier {}

impl Carrier {
    /// Maps a fresh guarded stack of `size` bytes and starts the job loop on it.
    pub(crate) fn new(size: usize) -> io::Result<Box<Carrier>> {
        let stack = DefaultStack::new(size)?;
        let limit = stack.limit().get();
        let coroutine = Coroutine::with_stack(stack, |yielder, first: Resume| {
            let Resume::Start(mut process) = first else {
                return;
            };
            // One frame for every activation this carrier runs: building and dropping
            // one per activation cost a few percent of a message round trip.
            // Safety: the holder of the run rights keeps the process alive for the
            // whole activation (see `Frame::process`).
            let header: *const Header = unsafe { (*process).header() };
            let frame = Frame {
                yielder,
                process: Cell::new(process),
                header: Cell::new(header),
                reductions: Cell::new(0),
                cancelled: Cell::new(false),
                exit: RefCell::new(None),
                doomed: Cell::new(false),
                deferred: RefCell::new(Vec::new()),
            };
            loop {
                frame.begin(process);
                set_current(&frame);
                let outcome =
                    panic::catch_unwind(AssertUnwindSafe(|| frame.process().activate(&frame)));
                frame.run_deferred();
                frame.bank_reductions();
                set_current(ptr::null::<Frame<'static>>());
                let outcome = match outcome {
                    Ok(outcome) => outcome,
                    Err(payload) if payload.is::<Cancelled>() => return,
                    Err(payload) => abort_on_escaped_panic(payload),
                };
                process = match yielder.suspend(Suspend::Finished(outcome)) {
                    Resume::Start(process) => process,
                    Resume::Cancel | Resume::Continue => return,
                };
            }
        });
        Ok(Box::new(Carrier {
            coroutine,
            limit,
            home: None,
        }))
    }

    /// The worker the activation in progress must resume on, if there is one.
    pub(crate) fn home(&self) -> Option<usize> {
        self.home
    }

    /// Runs the carrier until it suspends, on worker `worker`. `process` is the
    /// process to activate when the carrier is idle (a busy carrier continues its
    /// activation instead); the caller holds its run rights.
    ///
    /// # Panics
    /// If the carrier's activation in progress started on another worker: a stack
    /// in use never changes threads.
    #[inline]
    pub(crate) fn resume(&mut self, process: &Task, worker: usize) -> Suspend {
        let input = match self.home {
            Some(home) => {
                assert_eq!(
                    home, worker,
                    "a suspended activation resumed on another worker"
                );
                Resume::Continue
            }
            None => {
                self.home = Some(worker);
                Resume::Start(Arc::as_ptr(process))
            }
        };
        match self.coroutine.resume(input) {
            CoroutineResult::Yield(suspend) => {
                if let Suspend::Finished(_) = suspend {
                    self.home = None;
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
