//! The work-stealing scheduler.
//!
//! Every worker thread has a crossbeam-deque `Worker` (FIFO) plus a LIFO slot that
//! holds the process most recently woken by a send from this worker, so a
//! ping-pong pair stays on one core with hot caches. Work from outside the workers
//! goes to a global `Injector`. A worker without work searches: its inbox and the
//! injector first, then the other workers' deques from a random victim, stealing
//! half a queue at a time. If that finds nothing it parks (see `idle.rs` for how
//! parking and waking meet without stranding work).
//!
//! # A stack in use never changes threads
//!
//! User code may hold thread-bound state across a suspension (`thread_rng()`, a
//! `stdout().lock()`, a `thread_local!` borrow, a lock guard, a span guard), and
//! the compiler may keep a thread-local's address across the switch. So an
//! activation that suspended mid-way (its carrier is busy) resumes on the worker it
//! suspended on, its *home*:
//!
//! * Only stackless work goes where others can steal it (the deques, the
//!   injector): idle handler processes, whose next activation starts on a fresh
//!   carrier wherever it runs, and free-running processes that have not started.
//! * A suspended activation that is woken on its home worker goes to its LIFO slot
//!   or its `pinned` queue, which nobody else sees; woken anywhere else (another
//!   worker, the timeout thread, the poller, a plain thread) it goes to its home
//!   worker's `inbox`, and that worker is woken if it sleeps.
//! * [`RunRights::home`] is the one place that decides, and the carrier itself
//!   asserts on every resume that it is on its home worker.
//!
//! # Fairness
//!
//! Every [`INJECTOR_INTERVAL`] runs, and after every yield, a worker looks at its
//! inbox and the injector before its own queues, so processes woken from outside
//! (timers, other workers, the poller) are not starved by a busy local queue or a
//! process that yields in a loop.
//!
//! The LIFO slot wakes nobody (a ping-pong pair stays on one core), so a process
//! woken into it would wait for as long as its waker's activation goes on: a
//! handler that sends and then computes for a second keeps it a second, while
//! other workers idle. The watch thread (`watch.rs`) looks at every worker once per
//! hand-off interval; a worker still in the activation it was in last time, with
//! a stackless process in its slot, has that process taken from it (`lifo.rs`
//! says how the slot is shared) and put where idle workers are woken for it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::CachePadded;

use crate::carrier::{with_suspendable, Carrier, Outcome, Suspend};
use crate::error::{Exit, SpawnError};
use crate::group::Groups;
use crate::idle::{Idle, Woken};
use crate::lifo::LifoSlot;
use crate::metrics::{bump, ExitCounters, WorkerCounters};
use crate::overflow;
use crate::process::Pid;
use crate::registry::Registry;
use crate::rights::RunRights;
use crate::shutdown::{Drain, Draining};
use crate::state::Wait;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering};
use crate::table::Table;
use crate::time::TimerAction;
use fibra_timer::TimerHandle;

/// Consecutive runs from the LIFO slot before the deque gets a turn; without a
/// cap two processes messaging each other would starve the rest of the queue.
/// tokio picks 3; a ping-pong pair here costs ~60 ns a round, so 16 bounds the
/// unfairness to about a microsecond.
const LIFO_STREAK: u32 = 16;

/// Every this many runs a worker looks at its inbox and the injector before its
/// own queue, so work from outside is not starved by a busy local queue (a prime,
/// as in tokio).
const INJECTOR_INTERVAL: u32 = 61;

/// A local queue at least this long makes a worker alternate its own work with
/// single tasks from the injector (see `next_local`). Short queues drain soon
/// anyway; picked so that the check costs nothing in message ping-pong, where the
/// local queue holds at most a task or two.
const LOCAL_BACKLOG: usize = 64;

/// Idle carriers a worker keeps. Each is a mapped stack; beyond this, returned
/// carriers go to the shared spares (see [`SPARE_CAPACITY`]). Picked so that
/// bursts of free-running processes reuse stacks while an idle runtime holds at
/// most a few dozen MiB of address space.
const POOL_CAPACITY: usize = 128;

/// Idle carriers the workers share: a worker whose pool is full leaves returned
/// carriers here, and one whose pool is empty takes from here before it maps a
/// fresh stack. Without it a burst of free-running processes larger than one
/// worker's pool (a thousand spawned and joined at a time) mapped a stack for
/// every spawn and unmapped one for every exit, about 10 µs each; 1,024 spare
/// stacks cost 2,048 of the default 65,530 mappings and, beyond the pages their
/// processes touched, only address space. The watch thread unmaps them while every
/// worker sleeps.
const SPARE_CAPACITY: usize = 1024;

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
    /// How long one activation may keep the process it woke in its worker's LIFO
    /// slot before the watch thread hands that process to other workers.
    pub(crate) handoff_after: Duration,
    /// How long one activation may run before the watch thread reports its
    /// worker as blocked.
    pub(crate) blocked_after: Duration,
    /// Whether std's panic hook reports panics in processes too.
    pub(crate) std_panic_hook: bool,
    /// Whether every activation runs in a `process` span.
    pub(crate) trace_processes: bool,
}

/// What the watch thread saw of one worker at its last look.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Look {
    beat: u32,
    running: u64,
    /// When it first saw this beat and process.
    since: std::time::Instant,
    /// Whether it has reported this activation as blocking its worker.
    reported: bool,
}

impl Look {
    pub(crate) fn new() -> Look {
        Look {
            beat: u32::MAX,
            running: 0,
            since: std::time::Instant::now(),
            reported: false,
        }
    }
}

/// The parts of a worker that other threads look at.
pub(crate) struct Visible {
    /// The process most recently woken on this worker, to run next here; the
    /// watch thread may take it (see `lifo.rs`).
    lifo: LifoSlot<RunRights>,
    /// Bumped by the worker at every pick: unchanged between two looks of the
    /// watch thread, it means one activation ran all that time.
    beat: AtomicU32,
    /// The id of the process whose activation the worker runs, 0 between
    /// activations: for the watch thread's report of a blocked worker.
    running: AtomicU64,
    /// The worker's counters for the metrics (metrics.rs).
    counters: WorkerCounters,
}

/// What the workers and every process share.
pub(crate) struct Shared {
    /// How the runtime was configured.
    pub(crate) config: Config,
    /// When the runtime started, on the coarse clock and as an `Instant`: what
    /// processes' spawn times count from (info.rs).
    pub(crate) epoch: (u64, std::time::Instant),
    /// Processes ended other than normally, for the metrics.
    pub(crate) exits: ExitCounters,
    /// Whole seconds since `epoch`, kept current by the watch thread: a
    /// process's spawn time, read without a clock at every spawn.
    pub(crate) clock_secs: std::sync::atomic::AtomicU32,
    /// Stackless work from outside the workers, and overflow.
    injector: Injector<RunRights>,
    /// The other ends of the workers' deques.
    stealers: Box<[Stealer<RunRights>]>,
    /// Per worker: suspended activations of that worker, woken from elsewhere.
    /// Only that worker pops its inbox.
    inboxes: Box<[CountedQueue]>,
    /// Parking and waking.
    idle: Idle,
    /// Handler processes that could not get a stack, waiting for one; any worker
    /// with a pooled stack takes from it.
    starved: CountedQueue,
    /// Carriers mapped and not yet unmapped, in pools or in use: while there are
    /// any, a process that could not get a stack can wait for one.
    mapped: AtomicUsize,
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
    /// How the workers and the shutting-down thread meet (shutdown.rs).
    pub(crate) drain: Drain,
    /// The name registry (registry.rs).
    pub(crate) registry: Arc<Registry>,
    /// The process groups (group.rs).
    pub(crate) groups: Arc<Groups>,
    /// Per worker: what the watch thread looks at.
    visible: Box<[CachePadded<Visible>]>,
    /// Idle carriers beyond the workers' pools (see [`SPARE_CAPACITY`]).
    spares: Spares,
}

/// The shared pool of idle carriers.
#[derive(Default)]
struct Spares {
    /// How many carriers `carriers` holds, readable without the lock.
    len: AtomicUsize,
    /// The carriers.
    #[allow(clippy::vec_box)]
    carriers: Mutex<Vec<Box<Carrier>>>,
}

/// A worker thread's own state.
pub(crate) struct WorkerCore {
    /// This worker's index.
    index: usize,
    /// The runtime.
    shared: Arc<Shared>,
    /// The local run queue of stackless work (others steal from it).
    deque: Worker<RunRights>,
    /// Suspended activations of this worker that are ready to go on; nobody else
    /// can see them.
    pinned: RefCell<VecDeque<RunRights>>,
    /// Consecutive runs taken from the LIFO slot.
    lifo_streak: Cell<u32>,
    /// Runs so far, for the injector interval.
    ticks: Cell<u32>,
    /// Set after a yield: the next pick looks outside first.
    look_outside: Cell<bool>,
    /// Whether this worker counts itself in the idle searching count.
    searching: Cell<bool>,
    /// Idle carriers (beyond these, the shared spares). Boxed because they move to and from process headers, which
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
    ) -> (Arc<Shared>, Vec<Worker<RunRights>>) {
        let deques: Vec<Worker<RunRights>> =
            (0..config.workers).map(|_| Worker::new_fifo()).collect();
        let shared = Arc::new(Shared {
            injector: Injector::new(),
            stealers: deques.iter().map(Worker::stealer).collect(),
            inboxes: (0..config.workers)
                .map(|_| CountedQueue::default())
                .collect(),
            idle: Idle::new(config.workers),
            starved: CountedQueue::default(),
            mapped: AtomicUsize::new(0),
            table: Table::new(config.workers + 1),
            timers,
            blocking: Arc::new(crate::blocking::BlockingPool::new(&config.name)),
            next_id: AtomicU64::new(1),
            shutdown: AtomicBool::new(false),
            drain: Drain::new(config.workers),
            registry: Registry::new(),
            groups: Groups::new(),
            visible: (0..config.workers)
                .map(|_| {
                    CachePadded::new(Visible {
                        lifo: LifoSlot::new(),
                        beat: AtomicU32::new(0),
                        running: AtomicU64::new(0),
                        counters: WorkerCounters::default(),
                    })
                })
                .collect(),
            spares: Spares::default(),
            epoch: (crate::info::coarse_now(), std::time::Instant::now()),
            clock_secs: std::sync::atomic::AtomicU32::new(0),
            exits: ExitCounters::default(),
            config,
        });
        (shared, deques)
    }

    /// A fresh process id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Processes spawned so far (ids start at 1).
    pub(crate) fn spawned(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }

    /// Each worker's metric counters.
    pub(crate) fn worker_counters(&self) -> impl Iterator<Item = &WorkerCounters> {
        self.visible.iter().map(|visible| &visible.counters)
    }

    /// Process stacks mapped, in use or pooled.
    pub(crate) fn stacks_mapped(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Stacks in the spare pool.
    pub(crate) fn stacks_spare(&self) -> usize {
        self.spares.len.load(Ordering::Relaxed)
    }

    /// Runs `f` with this thread's worker if it belongs to this runtime.
    ///
    /// Never inlined, so that the thread-local's address is computed afresh on each
    /// call (cheap insurance; activations no longer move between threads).
    #[inline(never)]
    fn with_worker<R>(self: &Arc<Self>, f: impl FnOnce(Option<&WorkerCore>) -> R) -> R {
        let worker = WORKER.with(Cell::get);
        // Safety: WORKER is set for the lifetime of the worker's main loop, which owns
        // the WorkerCore on its stack, and is cleared before that frame ends.
        let worker = unsafe { worker.as_ref() };
        f(worker.filter(|w| Arc::ptr_eq(&w.shared, self)))
    }

    /// Whether the calling thread is one of this runtime's workers.
    pub(crate) fn on_worker(self: &Arc<Self>) -> bool {
        self.with_worker(|w| w.is_some())
    }

    /// Admits a new process (not yet scheduled) into the process table, then
    /// registers it under `name` and links it to `linked`, before it first runs,
    /// so that it cannot run unnamed nor end unobserved. If the name cannot be
    /// had, the process never runs: it ends, nobody seeing it, and the registry's
    /// error comes back.
    pub(crate) fn enrol<M: Send + 'static>(
        self: &Arc<Self>,
        rights: RunRights,
        task: crate::process::Task,
        pid: &Pid<M>,
        name: Option<String>,
        linked: Option<&crate::process::Task>,
    ) -> Result<RunRights, SpawnError> {
        // The table keeps `task`; a second reference only for a link.
        let to_link = linked.map(|_| Arc::clone(&task));
        self.admit(task)?;
        if let Some(name) = name {
            if let Err(err) = self.registry.register(name, pid) {
                rights.terminate(Exit::Normal);
                return Err(SpawnError::Name(err));
            }
        }
        if let (Some(parent), Some(task)) = (linked, to_link) {
            crate::signal::link(parent, &task);
            crate::signal::record_parent(&*task, &**parent);
        }
        Ok(rights)
    }

    /// Adds a new process to the process table.
    pub(crate) fn admit(self: &Arc<Self>, task: crate::process::Task) -> Result<(), SpawnError> {
        let hint = self.with_worker(|w| w.map_or(self.config.workers, |w| w.index));
        self.table.insert(hint, task)
    }

    /// A carrier for a new free-running process: from this worker's pool, else from
    /// the spares, else freshly mapped.
    pub(crate) fn carrier(self: &Arc<Self>) -> Result<Box<Carrier>, SpawnError> {
        if self.is_shutdown() {
            return Err(SpawnError::Shutdown);
        }
        self.with_worker(|w| match w {
            Some(w) => w.take_carrier(),
            None => self.spare_or_fresh_carrier(),
        })
    }

    /// A spare carrier, or a freshly mapped one.
    fn spare_or_fresh_carrier(&self) -> Result<Box<Carrier>, SpawnError> {
        match self.take_spare() {
            Some(carrier) => Ok(carrier),
            None => self.fresh_carrier(),
        }
    }

    /// A carrier from the shared spares, if there is one.
    fn take_spare(&self) -> Option<Box<Carrier>> {
        if self.spares.len.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut carriers = self.spares.carriers.lock();
        let carrier = carriers.pop();
        self.spares.len.store(carriers.len(), Ordering::Relaxed);
        carrier
    }

    /// Keeps an idle carrier among the spares, or unmaps it if they are full.
    fn give_spare(&self, carrier: Box<Carrier>) {
        let mut carriers = self.spares.carriers.lock();
        if carriers.len() < SPARE_CAPACITY {
            carriers.push(carrier);
            self.spares.len.store(carriers.len(), Ordering::Relaxed);
            return;
        }
        drop(carriers);
        self.unmap(carrier);
    }

    /// Unmaps half the spare carriers (the last one too): the watch thread, while
    /// every worker sleeps, so that an idle runtime gives their memory back; and
    /// all of them (`all`) at shutdown.
    pub(crate) fn trim_spares(&self, all: bool) {
        if self.spares.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let trimmed = {
            let mut carriers = self.spares.carriers.lock();
            let keep = if all { 0 } else { carriers.len() / 2 };
            let trimmed = carriers.split_off(keep);
            self.spares.len.store(carriers.len(), Ordering::Relaxed);
            trimmed
        };
        // Each is an idle job loop with nothing of any process on its stack, so any
        // thread may end it.
        for carrier in trimmed {
            self.unmap(carrier);
        }
    }

    /// Maps a new carrier, turning a refusal into a [`SpawnError`].
    fn fresh_carrier(&self) -> Result<Box<Carrier>, SpawnError> {
        let size = self.config.stack_size;
        // At the kernel's mapping limit corosensei's stack constructor can fail to
        // protect a fresh reservation and then fail to unmap it, which a debug
        // assertion of its own turns into a panic: that is a refusal to map a stack
        // too, not a reason to lose this worker thread.
        let carrier = std::panic::catch_unwind(|| Carrier::new(size))
            .unwrap_or_else(|_| Err(std::io::Error::from_raw_os_error(libc::ENOMEM)))
            .map_err(|err| crate::carrier::stack_error(size, err))?;
        self.mapped.fetch_add(1, Ordering::Relaxed);
        Ok(carrier)
    }

    /// Unmaps a carrier.
    pub(crate) fn unmap(&self, carrier: Box<Carrier>) {
        drop(carrier);
        self.mapped.fetch_sub(1, Ordering::Relaxed);
    }

    /// Schedules a process that was just spawned (it has no activation in
    /// progress). Spawned by a process that can step aside for it, it goes to its
    /// worker's LIFO slot, to run as soon as the spawner suspends:
    ///
    /// * A free-running child keeps the worker it starts on (its stack pins it), and
    ///   a spawner and its child usually talk to each other (a join, messages), so
    ///   they had better share a worker.
    /// * Children then run depth first, before the spawner's older children and
    ///   their subtrees: a tree of processes that each spawn children and wait for
    ///   their answers (skynet) keeps a fraction of the tree alive at once, not
    ///   nearly all of it (peak RSS 264 MB before, 98 MB after).
    ///
    /// What it displaces stays stealable, so a burst of spawns still spreads over
    /// the workers, and the watch thread hands it on if the spawner computes on.
    /// Spawned elsewhere (a plain thread, or a process that unwinds, which blocks
    /// its thread in a wait instead of stepping aside) it goes where any worker may
    /// take it.
    pub(crate) fn schedule_spawned(self: &Arc<Self>, rights: RunRights) {
        let next_to_spawner = with_suspendable(|frame| frame.is_some());
        let home = rights.home();
        self.with_worker(|w| match (w, home) {
            (Some(w), Some(home)) if home == w.index && next_to_spawner => w.put_lifo(rights),
            (_, Some(home)) => self.send_home(home, rights),
            (Some(w), None) if next_to_spawner => w.put_lifo(rights),
            (Some(w), None) => w.push_stealable(rights),
            (None, None) => self.inject(rights),
        });
    }

    /// The worker a process pinned by the caller goes to: the caller's own if it
    /// runs on one of this runtime's workers, else one picked by `seed`.
    pub(crate) fn pin_target(self: &Arc<Self>, seed: u64) -> usize {
        self.with_worker(|w| w.map(|w| w.index))
            .unwrap_or(seed as usize % self.config.workers)
    }

    /// Schedules a process whose run rights were just acquired by a wake-up.
    pub(crate) fn schedule_woken(self: &Arc<Self>, rights: RunRights) {
        let home = rights.home();
        self.with_worker(|w| match (w, home) {
            (Some(w), None) => w.put_lifo(rights),
            (Some(w), Some(home)) if home == w.index => w.put_lifo(rights),
            (_, Some(home)) => self.send_home(home, rights),
            (None, None) => self.inject(rights),
        });
    }

    /// The watch thread's look at every worker (see the module comment): `last`
    /// holds each worker's beat from the previous look. A worker whose beat has not
    /// moved has run one activation since then; a stackless process in its LIFO
    /// slot is handed to the injector, where idle workers are woken for it.
    pub(crate) fn hand_off_stuck(&self, looks: &mut [Look], hand_off: bool) {
        for (index, (visible, look)) in self.visible.iter().zip(looks.iter_mut()).enumerate() {
            let beat = visible.beat.load(Ordering::Relaxed);
            let running = visible.running.load(Ordering::Relaxed);
            if beat != look.beat || running != look.running {
                *look = Look {
                    beat,
                    running,
                    since: std::time::Instant::now(),
                    reported: false,
                };
                continue;
            }
            if running == 0 {
                continue;
            }
            if hand_off && visible.lifo.looks_occupied() {
                // A suspended activation must stay on its worker; only what has no
                // stack in use may go.
                if let Some(rights) = visible.lifo.steal_if(|rights| rights.home().is_none()) {
                    self.inject(rights);
                }
            }
            // Its queue is stealable, but the other workers may all be asleep.
            if hand_off && !self.stealers[index].is_empty() {
                self.idle.notify_one();
            }
            let ran = look.since.elapsed();
            if !look.reported && ran >= self.config.blocked_after {
                look.reported = true;
                let name = self.registry.name_of_id(running);
                tracing::warn!(
                    worker = index,
                    pid = %crate::process::ProcessId(running),
                    name = name.as_deref().unwrap_or(""),
                    ran_for = ?ran,
                    "a process has held its worker without yielding; its queued \
                     processes go to the other workers"
                );
            }
        }
    }

    /// Whether every worker sleeps (then none can be stuck).
    pub(crate) fn all_asleep(&self) -> bool {
        self.idle.sleeping() == self.config.workers
    }

    /// Hands a suspended activation to the worker it must resume on.
    fn send_home(&self, home: usize, rights: RunRights) {
        self.inboxes[home].push(rights);
        self.idle.wake_worker(home);
    }

    fn inject(&self, rights: RunRights) {
        debug_assert!(rights.home().is_none());
        self.injector.push(rights);
        self.idle.notify_one();
    }

    /// Whether any queue worker `index` can take from holds work.
    fn has_work_for(&self, index: usize) -> bool {
        !self.inboxes[index].is_empty()
            || !self.injector.is_empty()
            || self.stealers.iter().any(|s| !s.is_empty())
    }

    /// Whether the runtime has shut down.
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Tells the workers to stop: they finish the activation they are in and meet
    /// the shutting-down thread (see shutdown.rs).
    pub(crate) fn stop_workers(&self) {
        self.table.close();
        self.shutdown.store(true, Ordering::SeqCst);
        self.idle.wake_all();
    }

    /// During the shutdown drain: hands the token of a process that was parked to
    /// whoever may end it. A suspended activation goes to its home worker (its
    /// stack unwinds there); anything else is returned, for the caller to end.
    pub(crate) fn drain_route(&self, rights: RunRights) -> Option<RunRights> {
        match rights.home() {
            Some(home) => {
                self.inboxes[home].push(rights);
                None
            }
            None => Some(rights),
        }
    }

    /// After the workers have stopped: the stackless work still queued outside
    /// them.
    pub(crate) fn take_injected(&self) -> Vec<RunRights> {
        let mut left = Vec::new();
        while let Some(rights) = steal_one(&self.injector) {
            left.push(rights);
        }
        while let Some(rights) = self.starved.pop() {
            left.push(rights);
        }
        left
    }
}

impl WorkerCore {
    /// Runs a worker thread until the runtime shuts down.
    pub(crate) fn run_thread(shared: Arc<Shared>, index: usize, deque: Worker<RunRights>) {
        let _alt_stack = overflow::prepare_thread();
        let worker = WorkerCore {
            index,
            shared,
            deque,
            pinned: RefCell::new(VecDeque::new()),
            lifo_streak: Cell::new(0),
            ticks: Cell::new(0),
            look_outside: Cell::new(false),
            searching: Cell::new(false),
            pool: RefCell::new(Vec::new()),
            rng: Cell::new(
                0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
            ),
        };
        WORKER.with(|w| w.set(&worker));
        worker.main_loop();
        worker.drain();
        WORKER.with(|w| w.set(ptr::null()));
        for carrier in worker.pool.take() {
            worker.shared.unmap(carrier);
        }
    }

    fn main_loop(&self) {
        loop {
            if self.shared.is_shutdown() {
                break;
            }
            if let Some(rights) = self.next_local() {
                self.run(rights);
                continue;
            }
            self.begin_search();
            let found = self.search();
            self.end_search(found.is_some());
            match found {
                Some(rights) => self.run(rights),
                None => self.park(),
            }
        }
        if self.searching.replace(false) {
            self.shared.idle.end_search();
        }
    }

    /// The shutdown drain on this worker: wait until the shutting-down thread has
    /// collected every parked process, then end every process whose rights are
    /// here, unwinding suspended activations on this, their home, thread.
    fn drain(&self) {
        self.shared.drain.arrive(self.index);
        let _draining = Draining::begin();
        loop {
            let next = self
                .lifo()
                .take()
                .or_else(|| self.pinned.borrow_mut().pop_front())
                .or_else(|| self.shared.inboxes[self.index].pop())
                .or_else(|| self.deque.pop());
            match next {
                Some(rights) => self.end_at_shutdown(rights),
                None => break,
            }
        }
        self.shared.drain.depart(self.index);
    }

    /// Ends a process at shutdown, on this worker.
    fn end_at_shutdown(&self, rights: RunRights) {
        if let Some(carrier) = rights.take_carrier() {
            // Unwinds the suspended activation, if any, here on its home thread.
            self.shared.unmap(carrier);
        }
        rights.terminate(Exit::Shutdown);
    }

    /// The next process from this worker's own queues (and now and then from
    /// outside).
    fn next_local(&self) -> Option<RunRights> {
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        self.shared.visible[self.index]
            .beat
            .store(ticks, Ordering::Relaxed);
        let yielded = self.look_outside.replace(false);
        if yielded || ticks % INJECTOR_INTERVAL == 0 {
            if let Some(rights) = self.take_from_outside() {
                return Some(rights);
            }
        } else if self.deque.len() >= LOCAL_BACKLOG && !self.shared.injector.is_empty() {
            // Wake-ups from outside the workers (the timeout thread, other threads)
            // would otherwise wait behind the whole local backlog: a batch stolen
            // every INJECTOR_INTERVAL runs lands at its back. Take them one at a time
            // instead, alternating with local work.
            if let Steal::Success(rights) = self.shared.injector.steal() {
                return Some(rights);
            }
        }
        match self.lifo().take() {
            // With nothing else queued there is nobody to be fair to: keep the chain
            // (a token passed around a ring) on this core instead of handing it to
            // another worker.
            Some(rights)
                if self.lifo_streak.get() < LIFO_STREAK
                    || (self.deque.is_empty() && self.pinned.borrow().is_empty()) =>
            {
                self.lifo_streak.set(self.lifo_streak.get() + 1);
                return Some(rights);
            }
            Some(rights) => self.push_local(rights),
            None => {}
        }
        self.lifo_streak.set(0);
        if let Some(rights) = self.shared.inboxes[self.index].pop() {
            return Some(rights);
        }
        // Alternate suspended activations with stackless work; right after a yield,
        // the others first (the process that yielded waits in `pinned`).
        if !yielded && ticks % 2 == 0 {
            if let Some(rights) = self.pinned.borrow_mut().pop_front() {
                return Some(rights);
            }
        }
        self.deque
            .pop()
            .or_else(|| self.pinned.borrow_mut().pop_front())
    }

    /// Work that reached this worker from outside its own queues: a handler waiting
    /// for a stack this worker can lend, its inbox, the injector.
    fn take_from_outside(&self) -> Option<RunRights> {
        if self.can_lend_a_stack() {
            if let Some(rights) = self.take_starved() {
                return Some(rights);
            }
        }
        self.shared.inboxes[self.index]
            .pop()
            .or_else(|| self.steal_from_injector())
    }

    /// Puts a process woken on this worker into the LIFO slot; the one it displaces
    /// goes to the local queues.
    #[inline]
    fn put_lifo(&self, rights: RunRights) {
        if let Some(displaced) = self.lifo().replace(Some(rights)) {
            self.push_local(displaced);
        }
    }

    /// This worker's metric counters (only this worker writes them).
    #[inline]
    fn counters(&self) -> &WorkerCounters {
        &self.shared.visible[self.index].counters
    }

    /// This worker's LIFO slot (only this worker calls the owner side).
    #[inline]
    fn lifo(&self) -> &LifoSlot<RunRights> {
        &self.shared.visible[self.index].lifo
    }

    /// Queues a process on this worker: a suspended activation where only this
    /// worker sees it, anything else where others may steal it.
    fn push_local(&self, rights: RunRights) {
        match rights.home() {
            Some(home) => {
                assert_eq!(home, self.index, "a suspended activation left its worker");
                self.pinned.borrow_mut().push_back(rights);
            }
            None => self.push_stealable(rights),
        }
    }

    fn push_stealable(&self, rights: RunRights) {
        self.deque.push(rights);
        self.shared.idle.notify_one();
    }

    fn steal_from_injector(&self) -> Option<RunRights> {
        // Two loads; a steal from an empty injector costs a SeqCst fence, and this
        // runs after every yield.
        if self.shared.injector.is_empty() {
            return None;
        }
        loop {
            match self.shared.injector.steal_batch_and_pop(&self.deque) {
                Steal::Success(rights) => {
                    bump(&self.counters().injector_takes);
                    return Some(rights);
                }
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    /// Whether a handler waits for a stack and this worker has one pooled for it.
    fn can_lend_a_stack(&self) -> bool {
        self.shared.starved.has_any() && !self.pool.borrow().is_empty()
    }

    /// A process that waits for a stack, if one is there.
    fn take_starved(&self) -> Option<RunRights> {
        let rights = self.shared.starved.pop()?;
        match rights.home() {
            // A pinned process waits for a stack on its own worker.
            Some(home) if home != self.index => {
                self.shared.send_home(home, rights);
                None
            }
            _ => Some(rights),
        }
    }

    fn begin_search(&self) {
        if !self.searching.replace(true) {
            self.shared.idle.begin_search();
        }
    }

    fn end_search(&self, found: bool) {
        if !self.searching.replace(false) {
            return;
        }
        let was_last = self.shared.idle.end_search();
        if found && was_last && (!self.deque.is_empty() || !self.shared.injector.is_empty()) {
            self.shared.idle.notify_one();
        }
    }

    /// Looks for work in the inbox, the injector and the other workers' deques.
    fn search(&self) -> Option<RunRights> {
        let n = self.shared.stealers.len();
        for round in 0..SEARCH_ROUNDS {
            if let Some(rights) = self.take_from_outside() {
                return Some(rights);
            }
            let start = self.next_random() as usize % n;
            let mut retry = false;
            for i in 0..n {
                let victim = (start + i) % n;
                if victim == self.index {
                    continue;
                }
                match self.shared.stealers[victim].steal_batch_and_pop(&self.deque) {
                    Steal::Success(rights) => {
                        bump(&self.counters().steals);
                        return Some(rights);
                    }
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

    /// Sleeps until woken (see idle.rs for why no work is stranded).
    fn park(&self) {
        bump(&self.counters().parks);
        let shared = &self.shared;
        let woken = shared.idle.park(self.index, || {
            shared.has_work_for(self.index) || self.can_lend_a_stack() || shared.is_shutdown()
        });
        if woken == Woken::Searching {
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

    /// A carrier from the pool, the spares, or a freshly mapped one.
    fn take_carrier(&self) -> Result<Box<Carrier>, SpawnError> {
        match self.pool.borrow_mut().pop() {
            Some(carrier) => Ok(carrier),
            None => self.shared.spare_or_fresh_carrier(),
        }
    }

    fn give_carrier(&self, carrier: Box<Carrier>) {
        // A handler waiting for a stack gets this one: it runs here next.
        if self.shared.starved.has_any() {
            if let Some(rights) = self.take_starved() {
                self.pool.borrow_mut().push(carrier);
                self.push_stealable(rights);
                return;
            }
        }
        let mut pool = self.pool.borrow_mut();
        if pool.len() < POOL_CAPACITY {
            pool.push(carrier);
        } else {
            drop(pool);
            self.shared.give_spare(carrier);
        }
    }

    /// A handler process could not get a stack: it waits for one, messages kept,
    /// unless no stack exists anywhere to wait for.
    fn starve(&self, rights: RunRights, err: SpawnError) {
        if self.shared.mapped.load(Ordering::Relaxed) == 0 {
            let message = err.to_string();
            // Reported even without a tracing subscriber: the process is gone.
            eprintln!(
                "fibra: process {} ended: no stack can be mapped at all: {message}",
                crate::process::ProcessId(rights.header().id)
            );
            rights.terminate(Exit::NoStack(message));
            return;
        }
        self.shared.starved.push(rights);
        // A sleeping worker may have a pooled stack to lend it.
        self.shared.idle.notify_one();
    }

    /// Runs one process until it suspends, then files it according to why.
    fn run(&self, rights: RunRights) {
        let carrier = match rights.take_carrier() {
            Some(carrier) => Ok(carrier),
            None => self.take_carrier(),
        };
        let mut carrier = match carrier {
            Ok(carrier) => carrier,
            Err(err) => return self.starve(rights, err),
        };
        overflow::enter(
            carrier.guard_range(),
            rights.header().id,
            self.shared.config.stack_size,
        );
        let visible = &self.shared.visible[self.index];
        bump(&visible.counters.activations);
        visible.running.store(rights.header().id, Ordering::Relaxed);
        // Entered here, on the worker's side of the switch, and left when the
        // activation suspends or ends: never held by the process's own code across
        // a suspension, yet its events inside carry the process.
        let span = if self.shared.config.trace_processes {
            tracing::info_span!("process", pid = %crate::process::ProcessId(rights.header().id))
        } else {
            tracing::Span::none()
        };
        let entered = span.enter();
        let why = carrier.resume(rights.task(), self.index);
        drop(entered);
        visible.running.store(0, Ordering::Relaxed);
        overflow::leave();
        let parked = match why {
            Suspend::Finished(outcome) => {
                self.give_carrier(carrier);
                match outcome {
                    Outcome::Idle(deadline) => rights.park(Wait::Message, deadline),
                    Outcome::More => Err(rights),
                    Outcome::Exited => return rights.retire(),
                }
            }
            Suspend::Yield => {
                rights.put_carrier(carrier);
                self.look_outside.set(true);
                Err(rights)
            }
            Suspend::Wait(wait, deadline) => {
                rights.put_carrier(carrier);
                rights.park(wait, deadline)
            }
        };
        // Parked: the rights were handed over and the process is not ours to touch.
        if let Err(rights) = parked {
            self.push_local(rights);
        }
    }
}

/// A queue whose length lives on a line of its own, so that "is there anything?"
/// on every pick is one load: a worker's inbox (suspended activations sent home
/// to it, popped only by that worker) and the handlers waiting for a stack
/// (popped by any worker that has one).
#[derive(Default)]
struct CountedQueue {
    /// How many tokens the queue holds (pushed minus popped).
    len: CachePadded<AtomicUsize>,
    /// The tokens.
    queue: Injector<RunRights>,
}

impl CountedQueue {
    fn push(&self, rights: RunRights) {
        self.queue.push(rights);
        self.len.fetch_add(1, Ordering::SeqCst);
    }

    /// The oldest token.
    #[inline]
    fn pop(&self) -> Option<RunRights> {
        if !self.has_any() {
            return None;
        }
        let rights = steal_one(&self.queue)?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(rights)
    }

    /// Whether a token was pushed and not yet popped.
    #[inline]
    fn has_any(&self) -> bool {
        self.len.load(Ordering::SeqCst) > 0
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// One task from an injector-shaped queue, retrying contention.
fn steal_one(queue: &Injector<RunRights>) -> Option<RunRights> {
    // `is_empty` is two loads; `steal` on an empty queue costs a SeqCst fence, and
    // this runs on every pick.
    if queue.is_empty() {
        return None;
    }
    loop {
        match queue.steal() {
            Steal::Success(rights) => return Some(rights),
            Steal::Empty => return None,
            Steal::Retry => {}
        }
    }
}
