//! The work-stealing scheduler.
//!
//! Every worker thread has a crossbeam-deque `Worker` (FIFO) plus a LIFO slot that
//! holds the process most recently woken by a send from this worker, so a
//! ping-pong pair stays on one core with hot caches. Work from outside the workers
//! goes to a global `Injector`. A worker without work searches: the injector first,
//! then the other workers' deques from a random victim, stealing half a queue at a
//! time. If that finds nothing it parks.
//!
//! # Waking parked workers
//!
//! Parking and waking cost syscalls (a futex wake is ~20 µs on the machines this
//! runs on), so the send path makes none while the workers are busy:
//!
//! 1. A message wake goes to the LIFO slot and wakes nobody: this worker will run
//!    it as soon as the sender suspends.
//! 2. Work pushed to a deque or the injector wakes one parked worker only when
//!    nobody is searching already (`searching == 0`) and somebody sleeps.
//! 3. A parking worker first registers as a sleeper, then (after a `SeqCst` fence)
//!    looks at every queue once more; a pusher pushes, fences, then reads the
//!    sleeper count. One of the two sees the other: no work is stranded while a
//!    worker sleeps.
//! 4. The waker counts the woken worker as searching on its behalf, so a burst of
//!    pushes wakes one worker, not all of them; a searcher that finds work while
//!    more is visible passes the baton by waking the next.

use std::cell::{Cell, RefCell};
use std::ptr;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::CachePadded;
use parking_lot::{Condvar, Mutex};

use crate::carrier::{Carrier, Outcome, Suspend};
use crate::error::{Exit, SpawnError};
use crate::group::Groups;
use crate::overflow;
use crate::process::Task;
use crate::registry::Registry;
use crate::state::{Suspension, Wait};
use crate::table::Table;
use crate::time::TimerAction;
use fibra_timer::TimerHandle;

/// Consecutive runs from the LIFO slot before the deque gets a turn; without a
/// cap two processes messaging each other would starve the rest of the queue.
/// tokio picks 3; a ping-pong pair here costs ~60 ns a round, so 16 bounds the
/// unfairness to about a microsecond.
const LIFO_STREAK: u32 = 16;

/// Every this many runs a worker looks at the injector before its own queue, so
/// work from outside is not starved by a busy local queue (a prime, as in tokio).
const INJECTOR_INTERVAL: u32 = 61;

/// A local queue at least this long makes a worker alternate its own work with
/// single tasks from the injector (see `next_local`). Short queues drain soon
/// anyway; picked so that the check costs nothing in message ping-pong, where the
/// local queue holds at most a task or two.
const LOCAL_BACKLOG: usize = 64;

/// Idle carriers a worker keeps. Each is a mapped stack; beyond this, returned
/// carriers are unmapped. Picked so that bursts of free-running processes reuse
/// stacks while an idle runtime holds at most a few dozen MiB of address space.
const POOL_CAPACITY: usize = 128;

/// Rounds of stealing a searching worker tries before it parks, with a growing
/// pause between rounds. About 30 µs in all on this hardware: longer than a
/// cross-core hand-off, shorter than a futex round trip.
const SEARCH_ROUNDS: u32 = 8;

/// How the runtime was configured.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Worker threads.
    pub(crate) workers: usize,
    /// Bytes of stack per process (without the guard page).
    pub(crate) stack_size: usize,
    /// The runtime's name, used for its threads.
    pub(crate) name: String,
}

/// Lets one worker sleep until another wakes it.
struct Parker {
    /// A pending wake-up: `Some(true)` if the waker counted this worker as
    /// searching, `Some(false)` for a shutdown wake-up.
    wake: Mutex<Option<bool>>,
    /// Signalled on wake-up.
    condvar: Condvar,
}

impl Parker {
    fn new() -> Parker {
        Parker {
            wake: Mutex::new(None),
            condvar: Condvar::new(),
        }
    }

    /// Sleeps until woken; returns whether the waker counted us as searching.
    fn park(&self) -> bool {
        let mut wake = self.wake.lock();
        loop {
            if let Some(searching) = wake.take() {
                return searching;
            }
            self.condvar.wait(&mut wake);
        }
    }

    fn unpark(&self, searching: bool) {
        let mut wake = self.wake.lock();
        *wake = Some(wake.unwrap_or(false) || searching);
        self.condvar.notify_one();
    }
}

/// Which workers sleep and which search.
struct Idle {
    /// Workers looking for work to steal (or woken to do so).
    searching: CachePadded<AtomicUsize>,
    /// Workers registered as asleep (the length of `sleepers`, readable without the
    /// lock).
    sleeping: CachePadded<AtomicUsize>,
    /// The indices of the sleeping workers.
    sleepers: Mutex<Vec<usize>>,
    /// One parker per worker.
    parkers: Box<[Parker]>,
}

/// What the workers and every process share.
pub(crate) struct Shared {
    /// How the runtime was configured.
    pub(crate) config: Config,
    /// Work from outside the workers, and overflow.
    injector: Injector<Task>,
    /// The other ends of the workers' deques.
    stealers: Box<[Stealer<Task>]>,
    /// Parking and waking.
    idle: Idle,
    /// Every live process.
    pub(crate) table: Table,
    /// The timeout thread.
    pub(crate) timers: TimerHandle<TimerAction>,
    /// Threads for blocking calls.
    pub(crate) blocking: Arc<crate::blocking::BlockingPool>,
    /// The next process id.
    next_id: AtomicU64,
    /// Set when the runtime shuts down.
    shutdown: AtomicBool,
    /// The name registry (registry.rs).
    pub(crate) registry: Arc<Registry>,
    /// The process groups (group.rs).
    pub(crate) groups: Arc<Groups>,
}

/// A worker thread's own state.
pub(crate) struct WorkerCore {
    /// This worker's index.
    index: usize,
    /// The runtime.
    shared: Arc<Shared>,
    /// The local run queue.
    deque: Worker<Task>,
    /// The process most recently woken by a message from this worker.
    lifo: Cell<Option<Task>>,
    /// Consecutive runs taken from the LIFO slot.
    lifo_streak: Cell<u32>,
    /// Runs so far, for the injector interval.
    ticks: Cell<u32>,
    /// Whether this worker counts itself in `idle.searching`.
    searching: Cell<bool>,
    /// Idle carriers. Boxed because they move to and from process headers, which
    /// keep them boxed so that an idle process stays small.
    #[allow(clippy::vec_box)]
    pool: RefCell<Vec<Box<Carrier>>>,
    /// xorshift state for picking steal victims.
    rng: Cell<u64>,
}

thread_local! {
    /// The worker running on this thread, or null.
    static WORKER: Cell<*const WorkerCore> = const { Cell::new(ptr::null()) };
}

impl Shared {
    /// Creates the shared state and the deques the workers will own.
    pub(crate) fn new(
        config: Config,
        timers: TimerHandle<TimerAction>,
    ) -> (Arc<Shared>, Vec<Worker<Task>>) {
        let deques: Vec<Worker<Task>> = (0..config.workers).map(|_| Worker::new_fifo()).collect();
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            idle: Idle {
                searching: CachePadded::new(AtomicUsize::new(0)),
                sleeping: CachePadded::new(AtomicUsize::new(0)),
                sleepers: Mutex::new(Vec::with_capacity(config.workers)),
                parkers: (0..config.workers).map(|_| Parker::new()).collect(),
            },
            table: Table::new(config.workers + 1),
            timers,
            blocking: Arc::new(crate::blocking::BlockingPool::new(&config.name)),
            next_id: AtomicU64::new(1),
            shutdown: AtomicBool::new(false),
            registry: Registry::new(),
            groups: Groups::new(),
            config,
        });
        (shared, deques)
    }

    /// A fresh process id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `f` with this thread's worker if it belongs to this runtime.
    ///
    /// Never inlined: a process can move between worker threads at any suspension,
    /// so the thread-local's address must be computed afresh on each call.
    #[inline(never)]
    fn with_worker<R>(self: &Arc<Self>, f: impl FnOnce(Option<&WorkerCore>) -> R) -> R {
        let worker = WORKER.with(Cell::get);
        // Safety: WORKER is set for the lifetime of the worker's main loop, which owns
        // the WorkerCore on its stack, and is cleared before that frame ends.
        let worker = unsafe { worker.as_ref() };
        f(worker.filter(|w| Arc::ptr_eq(&w.shared, self)))
    }

    /// Adds a new process to the process table.
    pub(crate) fn admit(self: &Arc<Self>, task: Task) -> Result<(), SpawnError> {
        let hint = self.with_worker(|w| w.map_or(self.config.workers, |w| w.index));
        self.table.insert(hint, task)
    }

    /// A carrier for a new free-running process: from this worker's pool if there is
    /// one, else freshly mapped.
    pub(crate) fn carrier(self: &Arc<Self>) -> Result<Box<Carrier>, SpawnError> {
        if self.shutdown.load(Ordering::Acquire) {
            return Err(SpawnError::Shutdown);
        }
        self.with_worker(|w| match w {
            Some(w) => w.take_carrier(),
            None => fresh_carrier(self.config.stack_size),
        })
    }

    /// Schedules a process that was just spawned.
    pub(crate) fn schedule_new(self: &Arc<Self>, task: Task) {
        self.with_worker(|w| match w {
            Some(w) => {
                w.deque.push(task);
                self.notify_one();
            }
            None => self.inject(task),
        });
    }

    /// Schedules a process whose run rights were just acquired by a wake-up.
    pub(crate) fn schedule_woken(self: &Arc<Self>, task: Task) {
        self.with_worker(|w| match w {
            Some(w) => {
                if let Some(displaced) = w.lifo.replace(Some(task)) {
                    w.deque.push(displaced);
                    self.notify_one();
                }
            }
            None => self.inject(task),
        });
    }

    fn inject(&self, task: Task) {
        self.injector.push(task);
        self.notify_one();
    }

    /// Wakes one parked worker if work was pushed, somebody sleeps and nobody is
    /// already searching (see the module comment).
    fn notify_one(&self) {
        fence(Ordering::SeqCst);
        let idle = &self.idle;
        if idle.sleeping.load(Ordering::Relaxed) == 0 || idle.searching.load(Ordering::Relaxed) > 0
        {
            return;
        }
        let woken = {
            let mut sleepers = idle.sleepers.lock();
            let woken = sleepers.pop();
            if woken.is_some() {
                idle.sleeping.fetch_sub(1, Ordering::Relaxed);
                // Count the woken worker as searching now, so the next push does not
                // wake another one for the same work.
                idle.searching.fetch_add(1, Ordering::SeqCst);
            }
            woken
        };
        if let Some(index) = woken {
            idle.parkers[index].unpark(true);
        }
    }

    /// Whether any queue a searcher can reach holds work.
    fn has_visible_work(&self) -> bool {
        !self.injector.is_empty() || self.stealers.iter().any(|s| !s.is_empty())
    }

    /// Whether the runtime has shut down.
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Stops the workers: they finish the activation they are in and exit.
    pub(crate) fn stop_workers(&self) {
        self.table.close();
        self.shutdown.store(true, Ordering::SeqCst);
        self.idle.sleepers.lock().clear();
        for parker in self.idle.parkers.iter() {
            parker.unpark(false);
        }
    }

    /// After the workers have stopped: drops whatever is still queued.
    pub(crate) fn drain_queues(&self) {
        while !self.injector.steal().is_empty() {}
    }
}

/// Maps a new carrier, turning a refusal into a [`SpawnError`].
fn fresh_carrier(stack_size: usize) -> Result<Box<Carrier>, SpawnError> {
    Carrier::new(stack_size).map_err(|err| crate::carrier::stack_error(stack_size, err))
}

impl WorkerCore {
    /// Runs a worker thread until the runtime shuts down.
    pub(crate) fn run_thread(shared: Arc<Shared>, index: usize, deque: Worker<Task>) {
        let _alt_stack = overflow::prepare_thread();
        let worker = WorkerCore {
            index,
            shared,
            deque,
            lifo: Cell::new(None),
            lifo_streak: Cell::new(0),
            ticks: Cell::new(0),
            searching: Cell::new(false),
            pool: RefCell::new(Vec::new()),
            rng: Cell::new(
                0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
            ),
        };
        WORKER.with(|w| w.set(&worker));
        worker.main_loop();
        WORKER.with(|w| w.set(ptr::null()));
        // Queued processes are dropped here; the shutdown drain stops them.
        drop(worker.lifo.take());
        while worker.deque.pop().is_some() {}
    }

    fn main_loop(&self) {
        loop {
            if self.shared.is_shutdown() {
                break;
            }
            if let Some(task) = self.next_local() {
                self.run(task);
                continue;
            }
            self.begin_search();
            let found = self.search();
            self.end_search(found.is_some());
            match found {
                Some(task) => self.run(task),
                None => self.park(),
            }
        }
        if self.searching.replace(false) {
            self.shared.idle.searching.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The next process from this worker's own queues (and now and then the injector).
    fn next_local(&self) -> Option<Task> {
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        if ticks % INJECTOR_INTERVAL == 0 {
            if let Some(task) = self.steal_from_injector() {
                return Some(task);
            }
        } else if self.deque.len() >= LOCAL_BACKLOG && !self.shared.injector.is_empty() {
            // Wake-ups from outside the workers (the timeout thread, other threads)
            // would otherwise wait behind the whole local backlog: a batch stolen
            // every INJECTOR_INTERVAL runs lands at its back. Take them one at a time
            // instead, alternating with local work.
            if let Steal::Success(task) = self.shared.injector.steal() {
                return Some(task);
            }
        }
        match self.lifo.take() {
            // With nothing else queued there is nobody to be fair to: keep the chain
            // (a token passed around a ring) on this core instead of handing it to
            // another worker.
            Some(task) if self.lifo_streak.get() < LIFO_STREAK || self.deque.is_empty() => {
                self.lifo_streak.set(self.lifo_streak.get() + 1);
                return Some(task);
            }
            Some(task) => {
                self.deque.push(task);
                self.shared.notify_one();
            }
            None => {}
        }
        self.lifo_streak.set(0);
        self.deque.pop()
    }

    fn steal_from_injector(&self) -> Option<Task> {
        loop {
            match self.shared.injector.steal_batch_and_pop(&self.deque) {
                Steal::Success(task) => return Some(task),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    fn begin_search(&self) {
        if !self.searching.replace(true) {
            self.shared.idle.searching.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn end_search(&self, found: bool) {
        if !self.searching.replace(false) {
            return;
        }
        let was_last = self.shared.idle.searching.fetch_sub(1, Ordering::SeqCst) == 1;
        if found && was_last && (!self.deque.is_empty() || !self.shared.injector.is_empty()) {
            self.shared.notify_one();
        }
    }

    /// Looks for work in the injector and the other workers' deques.
    fn search(&self) -> Option<Task> {
        let n = self.shared.stealers.len();
        for round in 0..SEARCH_ROUNDS {
            if let Some(task) = self.steal_from_injector() {
                return Some(task);
            }
            let start = self.next_random() as usize % n;
            let mut retry = false;
            for i in 0..n {
                let victim = (start + i) % n;
                if victim == self.index {
                    continue;
                }
                match self.shared.stealers[victim].steal_batch_and_pop(&self.deque) {
                    Steal::Success(task) => return Some(task),
                    Steal::Retry => retry = true,
                    Steal::Empty => {}
                }
            }
            if self.shared.is_shutdown() {
                return None;
            }
            if !retry {
                for _ in 0..(1u32 << round.min(6)) * 16 {
                    std::hint::spin_loop();
                }
                if round >= SEARCH_ROUNDS / 2 {
                    std::thread::yield_now();
                }
            }
        }
        None
    }

    /// Sleeps until woken (see the module comment for why no work is stranded).
    fn park(&self) {
        let shared = &self.shared;
        let idle = &shared.idle;
        idle.sleepers.lock().push(self.index);
        idle.sleeping.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if shared.has_visible_work() || shared.is_shutdown() {
            let mut sleepers = idle.sleepers.lock();
            if let Some(at) = sleepers.iter().position(|&i| i == self.index) {
                sleepers.swap_remove(at);
                idle.sleeping.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            // A waker took us off the list already; its unpark is on its way.
        }
        if idle.parkers[self.index].park() {
            // The waker counted us as searching; `end_search` takes it back.
            self.searching.set(true);
        }
    }

    fn next_random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    /// A carrier from the pool, or a freshly mapped one.
    fn take_carrier(&self) -> Result<Box<Carrier>, SpawnError> {
        match self.pool.borrow_mut().pop() {
            Some(carrier) => Ok(carrier),
            None => fresh_carrier(self.shared.config.stack_size),
        }
    }

    fn give_carrier(&self, carrier: Box<Carrier>) {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOL_CAPACITY {
            pool.push(carrier);
        } else {
            drop(pool);
            drop(carrier);
        }
    }

    /// Runs one process until it suspends, then files it according to why.
    fn run(&self, task: Task) {
        let header = task.header();
        // Safety: the task came off a run queue, so this worker holds its run rights.
        let carrier = match unsafe { header.take_carrier() } {
            Some(carrier) => Ok(carrier),
            None => self.take_carrier(),
        };
        let mut carrier = match carrier {
            Ok(carrier) => carrier,
            Err(err) => {
                task.terminate(Exit::NoStack(err.to_string()));
                return;
            }
        };
        overflow::enter(
            carrier.guard_range(),
            header.id,
            self.shared.config.stack_size,
        );
        let why = carrier.resume(&task);
        overflow::leave();
        let suspension = match why {
            Suspend::Finished(outcome) => {
                self.give_carrier(carrier);
                match outcome {
                    Outcome::Idle(deadline) => {
                        header.state.suspend(Wait::Message, deadline, || {
                            task.has_new() || header.signals.has_new()
                        })
                    }
                    Outcome::More => Suspension::Resumed,
                    Outcome::Exited => return,
                }
            }
            Suspend::Yield => {
                // Safety: we still hold the rights; the deque push publishes the write.
                unsafe { header.put_carrier(carrier) };
                Suspension::Resumed
            }
            Suspend::Wait(wait, deadline) => {
                // Safety: we hold the rights and publish the suspension only below.
                unsafe { header.put_carrier(carrier) };
                // Signals end every wait; messages end a message wait.
                header.state.suspend(wait, deadline, || {
                    header.signals.has_new() || (wait == Wait::Message && task.has_new())
                })
            }
        };
        match suspension {
            Suspension::Resumed => self.deque.push(task),
            // The parked process keeps its rights reference; whoever wakes it
            // adopts it (see process.rs).
            Suspension::Parked => {
                let _ = Arc::into_raw(task);
            }
        }
    }
}
