//! The runtime: its builder, the handle processes and threads use to reach it, and
//! the orderly shutdown.
//!
//! # Shutdown, step by step
//!
//! 1. The process table closes: every later spawn fails with
//!    [`SpawnError::Shutdown`].
//! 2. The workers are told to stop. Each finishes the activation it is in (a
//!    process runs until its next suspension) and waits.
//! 3. The timeout thread stops: pending `send_after` and `send_interval` messages
//!    are dropped, and timed waits lose their timers (step 4 ends them anyway).
//! 4. Every process is ended with [`Exit::Shutdown`]: a suspended stack is unwound
//!    on the worker it suspended on (the destructors of its locals run there; while
//!    it unwinds a process cannot suspend, so a destructor that joins or calls
//!    gets [`Exit::Shutdown`] at once, and one that sleeps returns at once), the
//!    mailbox is closed and emptied, the process value is dropped and joiners are
//!    woken. From then on every send fails and hands its message back. A parked
//!    process's rights reference (see `process.rs`) is released with it.
//! 5. The workers unmap their pooled stacks and exit; the runtime joins them.
//!
//! [`Runtime::shutdown_timeout`] bounds steps 2 and 5: a worker that does not
//! stop in time (a process in a CPU loop, or in a blocking system call) is left
//! running, detached, and the processes whose suspended stacks it holds are left
//! to it: they end, and their destructors run, only if it ever comes back; nothing
//! else waits for it. Dropping the last [`Runtime`] inside one of its own
//! processes hands the shutdown to a thread of its own, since a worker cannot wait
//! for itself; the drop returns at once and the shutdown completes once that
//! process suspends or ends.

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use fibra_timer::{TimerHandle, TimerThread};

use crate::error::{BuildError, Exit, SpawnError};
use crate::free::FnContext;
use crate::handler::Process;
use crate::join::JoinHandle;
use crate::process::Pid;
use crate::rights::RunRights;
use crate::scheduler::{Config, Shared, WorkerCore};
use crate::shutdown::Draining;
use crate::time::TimerAction;
use crate::watch::Watch;

/// The default stack size of a process: enough for ordinary Rust code with some
/// formatting and collections on the stack. Only processes that are mid-handler or
/// free-running hold a stack; an idle handler process holds none.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = fibra_runtime::Runtime::builder()
///     .workers(2)
///     .stack_size(128 * 1024)
///     .name("app")
///     .build()
///     .unwrap();
/// assert_eq!(rt.workers(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    /// Worker threads; `None` is one per core.
    workers: Option<usize>,
    /// Bytes of stack per process.
    stack_size: usize,
    /// Name of the runtime and prefix of its threads.
    name: String,
    /// See [`Builder::handoff_after`].
    handoff_after: Duration,
    /// See [`Builder::blocked_after`].
    blocked_after: Duration,
    /// See [`Builder::std_panic_hook`].
    std_panic_hook: bool,
    /// See [`Builder::trace_processes`].
    trace_processes: bool,
}

/// The default of [`Builder::handoff_after`].
pub const DEFAULT_HANDOFF_AFTER: Duration = Duration::from_millis(1);

/// The default of [`Builder::blocked_after`].
pub const DEFAULT_BLOCKED_AFTER: Duration = Duration::from_millis(10);

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: None,
            stack_size: DEFAULT_STACK_SIZE,
            name: "fibra".to_owned(),
            handoff_after: DEFAULT_HANDOFF_AFTER,
            blocked_after: DEFAULT_BLOCKED_AFTER,
            std_panic_hook: false,
            trace_processes: false,
        }
    }
}

impl Builder {
    /// Sets the number of worker threads (default: one per core).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Sets the stack size of each process in bytes (default
    /// [`DEFAULT_STACK_SIZE`]); rounded up to whole pages, plus a guard page.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Sets how long a process woken by a send may wait in its waker's worker
    /// (default [`DEFAULT_HANDOFF_AFTER`]).
    ///
    /// A process woken by a send runs next on the sender's worker, as soon as the
    /// sender's activation ends: a message chain stays on one core. If that
    /// activation goes on computing, a watch thread hands the woken process to
    /// another worker after one to two of these intervals (only a process that is
    /// not suspended mid-activation: a stack in use never changes threads). A
    /// runtime with one worker has nobody to hand to.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = fibra_runtime::Runtime::builder()
    ///     .workers(2)
    ///     .handoff_after(Duration::from_micros(500))
    ///     .build()
    ///     .unwrap();
    /// # drop(rt);
    /// ```
    pub fn handoff_after(mut self, interval: Duration) -> Self {
        self.handoff_after = interval;
        self
    }

    /// Sets how long one activation may hold its worker before the watch thread
    /// reports it (default [`DEFAULT_BLOCKED_AFTER`]): once per activation, a
    /// `tracing` warning with the process's id, name and how long it has run. A
    /// process that calls a blocking function, or computes without reaching a
    /// suspension point, holds its worker all that time; the watch thread hands
    /// the worker's queued stackless processes to the others meanwhile, whatever
    /// this is (see [`handoff_after`](Self::handoff_after)). The report is to find
    /// the process and fix it: move the call to [`blocking`](crate::blocking),
    /// or add [`yield_now`](crate::FnContext::yield_now) to the loop.
    pub fn blocked_after(mut self, threshold: Duration) -> Self {
        self.blocked_after = threshold;
        self
    }

    /// Whether a panic in a process is also reported by the panic hook installed
    /// before the runtime (std's, printing to standard error), besides the
    /// runtime's own `tracing` error (default false: one report per panic).
    ///
    /// The runtime's report names the process and carries the message, where it
    /// happened, and a backtrace when `RUST_BACKTRACE` asks for one. Panics
    /// outside processes always go to the previous hook.
    pub fn std_panic_hook(mut self, report: bool) -> Self {
        self.std_panic_hook = report;
        self
    }

    /// Runs every activation inside an INFO-level `tracing` span named `process`
    /// with the process's `pid` (default false), so that the events a process
    /// emits carry the process that emitted them. The span is entered by the
    /// worker around each activation and left when the activation suspends or
    /// ends; creating it costs every activation, so it is off unless asked for.
    ///
    /// ```
    /// let rt = fibra_runtime::Runtime::builder().trace_processes(true).build().unwrap();
    /// rt.block_on(|_cx| tracing::info!("this event is inside a `process` span"));
    /// ```
    pub fn trace_processes(mut self, trace: bool) -> Self {
        self.trace_processes = trace;
        self
    }

    /// Names the runtime; its worker threads are called `<name>-worker-<i>`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts the worker threads.
    pub fn build(self) -> Result<Runtime, BuildError> {
        let workers = match self.workers {
            Some(0) => return Err(BuildError::ZeroWorkers),
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, usize::from),
        };
        if self.stack_size == 0 {
            return Err(BuildError::ZeroStackSize);
        }
        if self.handoff_after.is_zero() {
            return Err(BuildError::ZeroHandoff);
        }
        if self.blocked_after.is_zero() {
            return Err(BuildError::ZeroBlockedAfter);
        }
        let config = Config {
            workers,
            stack_size: self.stack_size,
            name: self.name,
            handoff_after: self.handoff_after,
            blocked_after: self.blocked_after,
            std_panic_hook: self.std_panic_hook,
            trace_processes: self.trace_processes,
        };
        crate::panic_report::install();
        // The timeout thread gets its own handle once it runs, for re-arming
        // intervals; nothing is inserted before that.
        let own_handle: Arc<OnceLock<TimerHandle<TimerAction>>> = Arc::default();
        let fire_handle = Arc::clone(&own_handle);
        let timer = TimerThread::start(&format!("{}-timer", config.name), move |action| {
            if let Some(timers) = fire_handle.get() {
                TimerAction::fire(action, timers);
            }
        })
        .map_err(BuildError::Thread)?;
        let _ = own_handle.set(timer.handle());
        let (shared, deques) = Shared::new(config, timer.handle());
        let mut threads = Vec::with_capacity(workers);
        for (index, deque) in deques.into_iter().enumerate() {
            let worker_shared = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("{}-worker-{index}", shared.config.name))
                .spawn(move || WorkerCore::run_thread(worker_shared, index, deque));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(err) => {
                    // The workers that did start run the shutdown drain like any;
                    // the missing ones count as stopped.
                    shared.drain.give_up_unstarted(threads.len());
                    let parts = Parts {
                        threads,
                        timer,
                        watch: None,
                    };
                    shut_down(&shared, parts, None);
                    return Err(BuildError::Thread(err));
                }
            }
        }
        let mut parts = Parts {
            threads,
            timer,
            watch: None,
        };
        match Watch::start(&shared) {
            Ok(watch) => parts.watch = Some(watch),
            Err(err) => {
                shut_down(&shared, parts, None);
                return Err(BuildError::Thread(err));
            }
        }
        Ok(Runtime {
            handle: Handle { shared },
            parts: Some(parts),
        })
    }
}

/// A running set of worker threads and the processes they run.
///
/// Dropping the runtime shuts it down (see [`Runtime::shutdown`]).
///
/// ```
/// use fibra_runtime::*;
///
/// let rt = Runtime::builder().workers(2).build().unwrap();
/// let sum: u64 = rt.block_on(|cx| {
///     let children: Vec<_> = (1..=10u64)
///         .map(|i| cx.spawn_fn(move |_cx: &mut FnContext<()>| i * i))
///         .collect();
///     children.into_iter().map(|c| c.join().unwrap()).sum()
/// });
/// assert_eq!(sum, 385);
/// ```
pub struct Runtime {
    /// The shared state, as handed out to others.
    handle: Handle,
    /// The threads; taken by the shutdown.
    parts: Option<Parts>,
}

impl Runtime {
    /// A builder with the defaults: one worker per core, [`DEFAULT_STACK_SIZE`].
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A runtime with the default configuration.
    pub fn new() -> Result<Runtime, BuildError> {
        Builder::default().build()
    }

    /// A handle for spawning from other threads or keeping in processes.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.handle.shared.config.workers
    }

    /// Runs `main` as a free-running process and blocks the calling thread until it
    /// returns, then hands back its result.
    ///
    /// # Panics
    /// If `main` panics (with the panic message), or if the runtime shuts down
    /// before `main` finishes.
    pub fn block_on<T, F>(&self, main: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(&mut FnContext<'_, ()>) -> T + Send + 'static,
    {
        let handle = expect_spawn(self.handle.spawn_fn(main));
        match handle.join() {
            Ok(value) => value,
            Err(Exit::Panicked(message)) => panic!("the main process panicked: {message}"),
            Err(exit) => panic!("the main process did not finish: {exit}"),
        }
    }

    /// Spawns a handler process. See [`Handle::spawn`].
    pub fn spawn<P: Process>(&self, process: P) -> Result<Pid<P::Message>, SpawnError> {
        self.handle.spawn(process)
    }

    /// Spawns a free-running process. See [`Handle::spawn_fn`].
    pub fn spawn_fn<M, T, F>(&self, body: F) -> Result<JoinHandle<T, M>, SpawnError>
    where
        M: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
    {
        self.handle.spawn_fn(body)
    }

    /// How many processes are alive.
    pub fn processes(&self) -> usize {
        self.handle.processes()
    }

    /// Stops every process and joins the worker threads (see the module docs for
    /// the steps). Dropping the runtime does the same.
    pub fn shutdown(mut self) {
        self.shutdown_now(None);
    }

    /// Shuts down like [`shutdown`](Runtime::shutdown), but waits at most
    /// `timeout` for the workers to stop and finish: a worker stuck in one
    /// activation past it is left running, detached (see the module docs for what
    /// happens to its processes).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// // A process that never reaches a suspension point.
    /// let _spinner = rt.spawn_fn(|_: &mut FnContext<()>| loop { std::hint::spin_loop() });
    /// let start = Instant::now();
    /// rt.shutdown_timeout(Duration::from_millis(100));
    /// assert!(start.elapsed() < Duration::from_secs(5));
    /// ```
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.shutdown_now(Some(Instant::now() + timeout));
    }

    fn shutdown_now(&mut self, deadline: Option<Instant>) {
        let Some(parts) = self.parts.take() else {
            return;
        };
        let shared = Arc::clone(&self.handle.shared);
        if shared.on_worker() {
            // Dropped inside one of its own processes: that worker cannot wait for
            // itself to stop, so another thread shuts down.
            let name = format!("{}-shutdown", shared.config.name);
            let spawned = thread::Builder::new()
                .name(name)
                .spawn(move || shut_down(&shared, parts, deadline));
            if let Err(err) = spawned {
                eprintln!("fibra: could not start a thread to shut the runtime down: {err}");
            }
            return;
        }
        shut_down(&shared, parts, deadline);
    }
}

/// What a running runtime owns besides its shared state.
struct Parts {
    /// The worker threads, joined at shutdown.
    threads: Vec<thread::JoinHandle<()>>,
    /// The timeout thread, stopped at shutdown.
    timer: TimerThread<TimerAction>,
    /// The watch thread (none if the build failed before it started), stopped at
    /// shutdown.
    watch: Option<Watch>,
}

/// The shutdown (see the module docs for the steps).
fn shut_down(shared: &Arc<Shared>, mut parts: Parts, deadline: Option<Instant>) {
    let _draining = Draining::begin();
    shared.stop_workers();
    // Before the drain: from here on nothing moves between the workers' queues.
    if let Some(watch) = parts.watch.take() {
        watch.stop();
    }
    let all_stopped = shared.drain.wait_arrived(deadline);
    parts.timer.shutdown();
    shared.blocking.close();
    for task in shared.table.close_and_drain() {
        // Only parked processes give up their rights here; the others are on a
        // worker's queues, and that worker ends them.
        if let Some(rights) = RunRights::seize(&*task) {
            if let Some(rights) = shared.drain_route(rights) {
                rights.terminate(Exit::Shutdown);
            }
        }
    }
    shared.drain.release();
    let departed = shared.drain.wait_departed(deadline);
    for (thread, departed) in parts.threads.drain(..).zip(departed) {
        if !departed {
            // Detached: it goes on with the activation it is stuck in.
            continue;
        }
        if thread.join().is_err() {
            tracing::error!(runtime = %shared.config.name, "a worker thread panicked");
        }
    }
    for rights in shared.take_injected() {
        rights.terminate(Exit::Shutdown);
    }
    shared.trim_spares(true);
    if all_stopped {
        tracing::debug!(runtime = %shared.config.name, "runtime shut down");
    } else {
        tracing::warn!(
            runtime = %shared.config.name,
            "runtime shut down with workers still running past the shutdown timeout"
        );
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_now(None);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("name", &self.handle.shared.config.name)
            .field("workers", &self.handle.shared.config.workers)
            .finish()
    }
}

/// A cheap, clonable reference to a runtime, for spawning from anywhere.
#[derive(Clone)]
pub struct Handle {
    /// The runtime's shared state.
    shared: Arc<Shared>,
}

impl Handle {
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Handle {
        Handle { shared }
    }

    /// The runtime's shared state, for the `impl Handle` blocks of other modules
    /// (the registry and the process groups).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Spawns a handler process. Its [`Process::started`] hook runs soon after on a
    /// worker; it then handles messages as they come. It needs no stack until it
    /// runs, so spawning cannot run out of them.
    pub fn spawn<P: Process>(&self, process: P) -> Result<Pid<P::Message>, SpawnError> {
        crate::handler::spawn(&self.shared, process, None)
    }

    /// Spawns a handler process pinned to one worker thread for its whole life
    /// (see [`Scope::spawn_pinned`](crate::Scope::spawn_pinned)); from outside the workers, the worker is
    /// picked by the process's id.
    pub fn spawn_pinned<P: Process>(&self, process: P) -> Result<Pid<P::Message>, SpawnError> {
        crate::handler::spawn_pinned(&self.shared, process)
    }

    /// Spawns a handler process and waits, at most `timeout`, for its
    /// [`init`](Process::init) (OTP's `gen_server:start`): returns it once `init`
    /// said [`Init::Ok`](crate::Init::Ok); fails with [`SpawnError::Ignored`],
    /// [`SpawnError::InitFailed`] (what `init` stopped with, or why it
    /// panicked), or [`SpawnError::InitTimeout`] (the process is killed). Waits
    /// as a process if called from one, else blocks the thread.
    pub fn start<P: Process>(
        &self,
        process: P,
        timeout: Duration,
    ) -> Result<Pid<P::Message>, SpawnError> {
        crate::handler::start_as(&self.shared, process, None, None, timeout)
    }

    /// Spawns a free-running process running `body` on a stack of its own. The stack
    /// is mapped (or taken from a pool) now, so an OS refusal is reported here as
    /// [`SpawnError::Stack`].
    pub fn spawn_fn<M, T, F>(&self, body: F) -> Result<JoinHandle<T, M>, SpawnError>
    where
        M: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
    {
        crate::free::spawn(&self.shared, body, None)
    }

    /// How many processes are alive.
    pub fn processes(&self) -> usize {
        self.shared.table.len()
    }

    /// Whether the runtime has shut down.
    pub fn is_shutdown(&self) -> bool {
        self.shared.is_shutdown()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.shared.config.name)
            .finish()
    }
}

/// The panicking form of the `try_spawn` methods.
#[track_caller]
pub(crate) fn expect_spawn<T>(result: Result<T, SpawnError>) -> T {
    result.unwrap_or_else(|err| panic!("{err}"))
}
