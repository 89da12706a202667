//! The runtime: its builder, the handle processes and threads use to reach it, and
//! the orderly shutdown.
//!
//! # Shutdown, step by step
//!
//! 1. The process table closes: every later spawn fails with
//!    [`SpawnError::Shutdown`].
//! 2. The workers are told to stop. Each finishes the activation it is in (a
//!    process runs until its next suspension), drops what its queues hold, unmaps
//!    its pooled stacks and exits; the runtime joins them.
//! 3. Every process still in the table is ended with [`Exit::Shutdown`]: a
//!    suspended stack is unwound (the destructors of its locals run, on the thread
//!    that shuts down and as code outside any process: a destructor that blocks,
//!    say in `sleep` or `join`, blocks that thread), the mailbox is
//!    closed and emptied, the process value is dropped and joiners are woken.
//!    From then on every send fails and hands its message back. A parked
//!    process's rights reference (see `process.rs`) is released with it.
//! 4. Whatever those destructors queued is dropped.
//!
//! Between steps 2 and 3 the timeout thread stops: pending `send_after` and
//! `send_interval` messages are dropped and timed waits lose their timers (step 3
//! ends them anyway).

use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::thread;

use fibra_timer::{TimerHandle, TimerThread};

use crate::error::{BuildError, Exit, SpawnError};
use crate::free::{FnContext, JoinHandle};
use crate::handler::Process;
use crate::process::Pid;
use crate::scheduler::{Config, Shared, WorkerCore};
use crate::state::Rights;
use crate::time::TimerAction;

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
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: None,
            stack_size: DEFAULT_STACK_SIZE,
            name: "fibra".to_owned(),
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
        let config = Config {
            workers,
            stack_size: self.stack_size,
            name: self.name,
        };
        // The timeout thread gets its own handle once it runs, for re-arming
        // intervals; nothing is inserted before that.
        let own_handle: Arc<OnceLock<TimerHandle<TimerAction>>> = Arc::default();
        let fire_handle = Arc::clone(&own_handle);
        let mut timer = TimerThread::start(&format!("{}-timer", config.name), move |action| {
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
                    stop(&shared, &mut threads);
                    timer.shutdown();
                    return Err(BuildError::Thread(err));
                }
            }
        }
        Ok(Runtime {
            handle: Handle { shared },
            threads,
            timer,
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
    /// The worker threads, joined at shutdown.
    threads: Vec<thread::JoinHandle<()>>,
    /// The timeout thread, stopped at shutdown.
    timer: TimerThread<TimerAction>,
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
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        let shared = &self.handle.shared;
        if self.threads.is_empty() && shared.is_shutdown() {
            return;
        }
        stop(shared, &mut self.threads);
        // Pending timers go with the timeout thread: their messages are dropped and
        // their references to waiting processes released.
        self.timer.shutdown();
        shared.blocking.close();
        for task in shared.table.close_and_drain() {
            // Safety: every worker has stopped, so this thread is the only one that
            // can touch a process's carrier now.
            let carrier = unsafe { task.header().take_carrier() };
            // Unwinds the suspended activation, if any, on this thread.
            drop(carrier);
            let parked = task.header().state.seize() == Rights::Acquired;
            task.terminate(Exit::Shutdown);
            if parked {
                // Safety: seize acquired the rights of a parked process, and with them
                // the reference it left behind (see process.rs); dropped once, here.
                drop(unsafe { task.adopt_rights() });
            }
        }
        shared.drain_queues();
        tracing::debug!(runtime = %shared.config.name, "runtime shut down");
    }
}

/// Stops and joins the worker threads.
fn stop(shared: &Shared, threads: &mut Vec<thread::JoinHandle<()>>) {
    shared.stop_workers();
    for thread in threads.drain(..) {
        if thread.join().is_err() {
            tracing::error!(runtime = %shared.config.name, "a worker thread panicked");
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_now();
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
