//! Signals: what processes tell each other about their lives, beside their typed
//! messages. They travel in a second, untyped queue per process, and they reach
//! a process whatever it waits for.
//!
//! * **Links** are bidirectional. When a process ends, every linked process gets
//!   an exit signal with the reason. Any reason but [`Exit::Normal`] ends the
//!   receiver too, with the same reason, unless it traps exits; then the signal
//!   becomes a [`Notice`]. A normal exit signal is dropped unless trapped. As in
//!   OTP, that includes a stop and a shutdown: when a supervisor stops a worker, the
//!   helpers linked to it end with it instead of leaking. (Whether an exit is a
//!   *failure*, [`Exit::is_failure`], decides restarts, not propagation.)
//! * **Monitors** are one-way: the watcher gets exactly one [`Down`] notice when the
//!   watched process ends (at once if it had ended already). After `demonitor`
//!   returns, no notice for that monitor arrives, not even one already queued.
//! * **Kill** ends a process whatever it does (it cannot be trapped); **stop** asks
//!   it to end: a handler process finishes its current message, runs its `stopped`
//!   hook and exits with [`Exit::Stopped`].
//!
//! # Delivery, step by step
//!
//! 1. The sender puts the signal in the target's signal queue: a kill or a stop
//!    sets a flag, an exit signal or a `Down` is pushed (each a `SeqCst`
//!    read-modify-write, as a message push is); a closed queue means the target has
//!    ended, and the signal is dropped.
//! 2. It then tries to take the target's run rights from whatever wait the target
//!    is in ([`StateWord::interrupt`](crate::state::StateWord::interrupt)); the
//!    winner schedules it; a target that holds its rights gets a `SIGNALED` mark.
//!    A worker checks the signal queue before it publishes a wait, and again when
//!    a mark makes the publication fail, exactly as for the mailbox, so no signal
//!    is stranded: the check sees a new signal, and a pending fatal one wherever
//!    it sits.
//! 3. The target handles fatal signals whenever it resumes (one load when there
//!    are none), and notices when it asks for them (handler processes: between
//!    messages, through [`Process::notice`]).
//!
//! Where the signals wait, why kills and stops are flags rather than queued
//! signals, and the lost stop that taught us so, is in `signal/queue.rs`.
//!
//! A process's links and watchers live behind a short lock in its header. An
//! ending process takes that lock, marks itself ended and sends its signals while
//! still holding it; `monitor`, `link` and `demonitor` take the same lock, so each
//! of them happens wholly before the end (and the end sees it) or wholly after
//! (and sees the process as ended).
//!
//! # What an ending process lets go of
//!
//! Besides telling others, an ending process releases what others keep on its
//! account, so that a long-lived process does not collect the remains of short-lived
//! ones:
//!
//! 1. **Timers addressed to it** (`send_after` letters, `send_interval`s) are
//!    cancelled, their messages and closures dropped. They are bound to it when
//!    armed (in its relations, under the lock, refused once it has exited) and
//!    unbound when delivered or cancelled. The ending process takes them out under
//!    its lock *before* it announces its end, and cancels them with the lock
//!    released, since dropping a message runs user code; so by the time a watcher
//!    gets the `Down`, they are gone.
//! 2. **Its own monitors** are removed from the processes it watched, after the
//!    announcement and with its own lock released, one target lock at a time: a
//!    target that ends meanwhile holds its own lock while it signals, and never
//!    takes another process's relations lock, so no two locks are ever held in
//!    opposite orders. A watcher that reads a `Down` forgets that monitor then.
//!
//! Every list here is a slab: a monitor, a hook or a timer knows its slot and is
//! removed in O(1), never by scanning, and a list that empties gives its memory
//! back.
//!
//! [`Process::notice`]: crate::Process::notice

mod queue;

use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use slab::Slab;

use crate::error::Exit;
use crate::group::GroupNotice;
use crate::process::{Header, ProcessId, Run, Task};
use crate::rights::{wake, Waker};
use crate::time::BoundTimer;

use queue::Flagged;
pub(crate) use queue::Signals;

/// A signal in a process's signal queue.
pub(crate) enum Signal {
    /// A linked process ended, or a process sent an exit signal
    /// ([`Scope::send_exit`](crate::Scope::send_exit)).
    Exit {
        /// Who ended, or who sent it.
        from: ProcessId,
        /// Why.
        reason: Exit,
        /// Whether it comes from a link (which it then ends): an exit signal sent
        /// with `send_exit` leaves links alone.
        linked: bool,
    },
    /// End now, untrappably. Kept as a flag, never in the queue proper.
    Kill,
    /// End gracefully. Kept as a flag, never in the queue proper.
    Stop,
    /// A monitored process ended.
    Down(Down),
    /// A process joined or left a monitored group.
    Group(GroupNotice),
    /// Work for the process itself to run ahead of its next message: a write
    /// to a value it publishes (shared.rs).
    Apply(Apply),
}

/// A closure that a process runs on itself, ahead of its next message.
pub(crate) struct Apply(pub(crate) Box<dyn FnOnce() + Send>);

/// A monitor, as returned by `monitor` and carried by its [`Down`] notice.
#[derive(Clone)]
pub struct MonitorRef {
    /// Unique within the runtime.
    id: u64,
    /// The watched process.
    target: Weak<dyn Run>,
    /// Its slot among the target's watchers (`NO_SLOT` if the target had ended).
    at_target: usize,
    /// Its slot among the watcher's own monitors.
    at_watcher: usize,
    /// The watcher's id: only the process that created the monitor removes it.
    watcher: u64,
}

/// The slot of a monitor that is in no list.
const NO_SLOT: usize = usize::MAX;

impl MonitorRef {
    /// The watched process's id.
    pub fn target(&self) -> Option<ProcessId> {
        self.target.upgrade().map(|t| ProcessId(t.header().id))
    }
}

impl PartialEq for MonitorRef {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for MonitorRef {}

impl std::hash::Hash for MonitorRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl fmt::Debug for MonitorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MonitorRef(#{})", self.id)
    }
}

/// A monitored process has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    /// The monitor this notice ends.
    pub monitor: MonitorRef,
    /// The process that ended.
    pub id: ProcessId,
    /// Why it ended ([`Exit::NoProc`] if it had ended before it was monitored).
    pub reason: Exit,
}

/// What a process learns about others besides its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A monitored process ended.
    Down(Down),
    /// A linked process ended, or a process sent this one an exit signal
    /// ([`Scope::send_exit`](crate::Scope::send_exit)), and this process traps
    /// exits.
    Exit {
        /// The linked process, or the sender.
        from: ProcessId,
        /// Why it ended, or the reason sent.
        reason: Exit,
    },
    /// A process joined or left a group this process monitors
    /// ([`Scope::monitor_group`](crate::Scope::monitor_group)).
    Group(GroupNotice),
}

/// A process's links, watchers and the rest of what its end concerns. (Whether it
/// traps exits is a flag of its signal queue.)
pub(crate) struct Relations {
    /// Set when the process ends; links and monitors made later see it.
    ended: bool,
    /// When the process was spawned, in whole seconds since its runtime started
    /// (see info.rs); kept here, in what would be padding, for introspection.
    pub(crate) started: u32,
    /// The lists, allocated on first use: most processes never link or get watched.
    lists: Option<Box<Lists>>,
}

/// Who to tell, and what to release, when the process ends.
#[derive(Default)]
struct Lists {
    /// Linked processes.
    links: Vec<(ProcessId, Weak<dyn Run>)>,
    /// Monitors on this process, with their watchers; a monitor's `at_target` is
    /// its slot.
    watchers: Slab<(MonitorRef, Weak<dyn Run>)>,
    /// Monitors this process holds on others, removed from them when it ends; a
    /// monitor's `at_watcher` is its slot.
    monitoring: Slab<MonitorRef>,
    /// Code to run when the process ends (name registry, groups, calls), with
    /// each hook's id.
    hooks: Slab<(u64, ExitHook)>,
    /// Exit hooks registered so far: the id of the last one.
    hook_ids: u64,
    /// Timers addressed to this process, cancelled when it ends, with each
    /// binding's id.
    timers: Slab<(u64, BoundTimer)>,
    /// The process that spawned this one linked to it (a supervisor, or the
    /// caller of a `spawn_link`), for introspection.
    parent: Option<ProcessId>,
    /// The reason of the first stop sent with one ([`stop_with`]): the process
    /// ends with it instead of `Stopped`.
    stop_reason: Option<Exit>,
}

/// A slab that has emptied out after holding this many entries gives its memory
/// back. Below it, keeping the allocation saves churn for the next few entries;
/// above it, a burst (ten thousand callers, say) would otherwise pin its peak.
/// Picked out of thin air.
const KEEP_EMPTY_SLOTS: usize = 64;

/// Removes the entry at `slot` if `is_it` recognises it (a stale slot may hold a
/// newer entry), and frees the slab's storage once it is empty and large.
fn remove_slot<T>(slab: &mut Slab<T>, slot: usize, is_it: impl FnOnce(&T) -> bool) -> Option<T> {
    if !slab.get(slot).is_some_and(is_it) {
        return None;
    }
    let removed = slab.remove(slot);
    if slab.is_empty() && slab.capacity() > KEEP_EMPTY_SLOTS {
        *slab = Slab::new();
    }
    Some(removed)
}

/// Code run once when a process ends, with its exit reason, on the thread of the
/// ending process and under its relations lock: it must be short and must not
/// touch that process's relations.
pub(crate) enum ExitHook {
    /// Any code (the registry's and the groups' clean-ups).
    Fn(Box<dyn FnOnce(&Exit) + Send>),
    /// What a waiting call is told: its slot itself, so that a call, which
    /// registers and removes a hook every time, allocates nothing for it.
    Sink(Arc<dyn ExitSink>),
}

/// Something told of a process's end (see [`ExitHook::Sink`]).
pub(crate) trait ExitSink: Send + Sync {
    /// The process ended with `exit`.
    fn ended(&self, exit: &Exit);
}

impl ExitHook {
    fn run(self, exit: &Exit) {
        match self {
            ExitHook::Fn(hook) => hook(exit),
            ExitHook::Sink(sink) => sink.ended(exit),
        }
    }
}

/// Identifies an exit hook, to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HookId {
    /// Its slot in the process's hooks.
    slot: usize,
    /// Unique among the process's hooks, so that a reused slot is not mistaken
    /// for it.
    id: u64,
}

/// Registers `hook` to run when `target` ends. If it has ended already, the hook
/// runs now with [`Exit::NoProc`] and None is returned.
pub(crate) fn on_exit(target: &dyn Run, hook: ExitHook) -> Option<HookId> {
    let mut relations = target.header().relations.lock();
    if relations.ended {
        drop(relations);
        hook.run(&Exit::NoProc);
        return None;
    }
    let lists = relations.lists();
    lists.hook_ids += 1;
    let id = lists.hook_ids;
    let slot = lists.hooks.insert((id, hook));
    Some(HookId { slot, id })
}

/// Removes an exit hook, in O(1); true if it was still registered (so it will
/// never run).
pub(crate) fn remove_exit_hook(target: &dyn Run, hook: HookId) -> bool {
    let removed = {
        let mut relations = target.header().relations.lock();
        let Some(lists) = relations.lists.as_mut() else {
            return false;
        };
        remove_slot(&mut lists.hooks, hook.slot, |(id, _)| *id == hook.id)
    };
    // Dropped outside the lock, like everything a hook may hold.
    removed.is_some()
}

/// Where a timer sits among its target's bound timers, to unbind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Binding {
    /// Its slot in the target's timers.
    slot: usize,
    /// Unique within the runtime, so that a reused slot is not mistaken for it.
    id: u64,
}

/// Binds a timer to `target`'s life (see "What an ending process lets go of").
/// `arm` runs under the target's relations lock, with the binding the timer is to
/// carry; it arms the timer and returns what to cancel when the target ends (None
/// if it could not arm), and a result for the caller. Returns None, without running
/// `arm`, if the target has exited already.
///
/// `arm` may take the timer thread's lock (the one lock ever taken under a
/// relations lock besides the registry's and the groups'), but must not drop
/// anything that runs user code.
pub(crate) fn bind_timer<T>(
    target: &Header,
    arm: impl FnOnce(Binding) -> (Option<BoundTimer>, T),
) -> Option<T> {
    let id = target.shared.next_id();
    let mut relations = target.relations.lock();
    // `retire` marks a process exited before it announces its end, and the
    // announcement takes this lock to take the timers out: seen alive here, the
    // process will find this timer when it ends.
    if relations.ended || target.state.is_exited() {
        return None;
    }
    let timers = &mut relations.lists().timers;
    let entry = timers.vacant_entry();
    let (bound, result) = arm(Binding {
        slot: entry.key(),
        id,
    });
    if let Some(bound) = bound {
        entry.insert((id, bound));
    }
    Some(result)
}

/// Unbinds a timer that was delivered or cancelled, in O(1). What it held is handed
/// back, for the caller to drop outside the lock.
pub(crate) fn unbind_timer(target: &Header, binding: Binding) -> Option<BoundTimer> {
    let mut relations = target.relations.lock();
    let lists = relations.lists.as_mut()?;
    remove_slot(&mut lists.timers, binding.slot, |(id, _)| *id == binding.id).map(|(_, t)| t)
}

impl Relations {
    fn lists(&mut self) -> &mut Lists {
        self.lists.get_or_insert_with(Box::default)
    }
}

/// The lock that guards a process's relations.
pub(crate) type RelationsLock = Mutex<Relations>;

impl Relations {
    /// A new process's relations: none yet.
    pub(crate) fn new(started: u32) -> Relations {
        Relations {
            ended: false,
            started,
            lists: None,
        }
    }
}

/// Pushes a signal to `target` and wakes it from any wait.
pub(crate) fn deliver(target: &dyn Run, signal: Signal) {
    let header = target.header();
    if header.signals.push(signal).is_err() {
        return;
    }
    wake(target, Waker::Signal);
}

/// Asks `target` to stop, ending with `reason` instead of [`Exit::Stopped`]: the
/// reason is recorded first (the first one sent wins), then the stop flagged,
/// so that the stop, once seen, finds it.
pub(crate) fn stop_with(target: &dyn Run, reason: Exit) {
    {
        let mut relations = target.header().relations.lock();
        if relations.ended {
            return;
        }
        relations.lists().stop_reason.get_or_insert(reason);
    }
    deliver(target, Signal::Stop);
}

/// The reason a process that is ending with `exit` ends with: a recorded stop
/// reason if `exit` is the stop's [`Exit::Stopped`].
pub(crate) fn stop_reason(process: &dyn Run, exit: Exit) -> Exit {
    if exit != Exit::Stopped {
        return exit;
    }
    process
        .header()
        .relations
        .lock()
        .lists
        .as_mut()
        .and_then(|lists| lists.stop_reason.take())
        .unwrap_or(exit)
}

/// Records `parent` as the process that spawned `child` linked to it.
pub(crate) fn record_parent(child: &dyn Run, parent: &dyn Run) {
    let parent = ProcessId(parent.header().id);
    let mut relations = child.header().relations.lock();
    if !relations.ended {
        relations.lists().parent = Some(parent);
    }
}

/// A process's relations as introspection reports them.
pub(crate) struct RelationsInfo {
    pub(crate) links: Vec<ProcessId>,
    pub(crate) monitors: Vec<ProcessId>,
    pub(crate) monitored_by: Vec<ProcessId>,
    pub(crate) parent: Option<ProcessId>,
    pub(crate) trap_exits: bool,
    pub(crate) signals: usize,
    pub(crate) started: u32,
}

/// `process`'s relations now.
pub(crate) fn relations_of(process: &dyn Run) -> RelationsInfo {
    let header = process.header();
    let mut info = RelationsInfo {
        links: Vec::new(),
        monitors: Vec::new(),
        monitored_by: Vec::new(),
        parent: None,
        trap_exits: header.signals.traps_exits(),
        signals: header.signals.len(),
        started: 0,
    };
    let mut targets = Vec::new();
    let relations = header.relations.lock();
    info.started = relations.started;
    if let Some(lists) = relations.lists.as_ref() {
        info.links = lists.links.iter().map(|(id, _)| *id).collect();
        targets = lists
            .monitoring
            .iter()
            .map(|(_, monitor)| Weak::clone(&monitor.target))
            .collect();
        info.monitored_by = lists
            .watchers
            .iter()
            .map(|(_, (monitor, _))| ProcessId(monitor.watcher))
            .collect();
        info.parent = lists.parent;
    }
    drop(relations);
    // Upgraded outside the lock: the last reference to a target that has ended
    // may be the one taken here, and dropping it frees the target.
    info.monitors = targets
        .iter()
        .filter_map(Weak::upgrade)
        .map(|target| ProcessId(target.header().id))
        .collect();
    info
}

/// Links two processes. If either has ended, the other gets an exit signal with
/// [`Exit::NoProc`].
pub(crate) fn link(a: &Task, b: &Task) {
    let (ha, hb) = (a.header(), b.header());
    if ha.id == hb.id {
        return;
    }
    // Lock in id order, so two processes linking each other cannot deadlock.
    let (first, second) = if ha.id < hb.id { (a, b) } else { (b, a) };
    let mut r1 = first.header().relations.lock();
    let mut r2 = second.header().relations.lock();
    match (r1.ended, r2.ended) {
        (false, false) => {
            add_link(&mut r1, second);
            add_link(&mut r2, first);
        }
        (true, false) => deliver(
            &**second,
            Signal::Exit {
                from: ProcessId(first.header().id),
                reason: Exit::NoProc,
                linked: true,
            },
        ),
        (false, true) => deliver(
            &**first,
            Signal::Exit {
                from: ProcessId(second.header().id),
                reason: Exit::NoProc,
                linked: true,
            },
        ),
        (true, true) => {}
    }
}

fn add_link(relations: &mut Relations, other: &Task) {
    let id = ProcessId(other.header().id);
    let links = &mut relations.lists().links;
    if !links.iter().any(|(linked, _)| *linked == id) {
        links.push((id, Arc::downgrade(other)));
    }
}

/// Removes a link in both directions.
pub(crate) fn unlink(a: &Task, b: &Task) {
    for (from, to) in [(a, b), (b, a)] {
        let id = ProcessId(to.header().id);
        if let Some(lists) = from.header().relations.lock().lists.as_mut() {
            lists.links.retain(|(linked, _)| *linked != id);
        }
    }
}

/// Starts monitoring `target` on behalf of `watcher`, the running process.
///
/// The monitor goes into two lists, one lock at a time: the watcher's own (so that
/// its end removes the monitor from the target), then the target's (so that the
/// target's end sends the `Down`).
pub(crate) fn monitor(watcher: &Task, target: &Task) -> MonitorRef {
    let id = watcher.header().shared.next_id();
    let mut monitor = MonitorRef {
        id,
        target: Arc::downgrade(target),
        at_target: NO_SLOT,
        at_watcher: NO_SLOT,
        watcher: watcher.header().id,
    };
    {
        let mut relations = watcher.header().relations.lock();
        let monitoring = &mut relations.lists().monitoring;
        let entry = monitoring.vacant_entry();
        monitor.at_watcher = entry.key();
        entry.insert(monitor.clone());
    }
    let mut relations = target.header().relations.lock();
    if relations.ended {
        drop(relations);
        deliver(
            &**watcher,
            Signal::Down(Down {
                monitor: monitor.clone(),
                id: ProcessId(target.header().id),
                reason: Exit::NoProc,
            }),
        );
        return monitor;
    }
    let watchers = &mut relations.lists().watchers;
    let entry = watchers.vacant_entry();
    monitor.at_target = entry.key();
    entry.insert((monitor.clone(), Arc::downgrade(watcher)));
    drop(relations);
    // The watcher's copy learns the target slot too, for its end to find it.
    if let Some(lists) = watcher.header().relations.lock().lists.as_mut() {
        if let Some(own) = lists.monitoring.get_mut(monitor.at_watcher) {
            if own.id == id {
                own.at_target = monitor.at_target;
            }
        }
    }
    monitor
}

/// Removes `monitor` from its target's watchers, if both are still there; what
/// the entry held is dropped after the lock is released.
fn unwatch(monitor: &MonitorRef) {
    let Some(target) = monitor.target.upgrade() else {
        return;
    };
    let removed = {
        let mut relations = target.header().relations.lock();
        relations.lists.as_mut().and_then(|lists| {
            remove_slot(&mut lists.watchers, monitor.at_target, |(m, _)| {
                m == monitor
            })
        })
    };
    drop(removed);
}

/// Removes `monitor` from the monitors `watcher` holds.
fn forget_monitor(watcher: &dyn Run, monitor: &MonitorRef) {
    let removed = {
        let mut relations = watcher.header().relations.lock();
        relations.lists.as_mut().and_then(|lists| {
            remove_slot(&mut lists.monitoring, monitor.at_watcher, |m| m == monitor)
        })
    };
    drop(removed);
}

/// Removes a monitor; afterwards no `Down` for it reaches `watcher`, which must be
/// the running process (it purges its own signal queue).
pub(crate) fn demonitor(watcher: &dyn Run, monitor: &MonitorRef) {
    if monitor.watcher != watcher.header().id {
        // Somebody else's monitor (a copy of its ref travelled here): it stays, and
        // its owner still gets its `Down`.
        return;
    }
    unwatch(monitor);
    forget_monitor(watcher, monitor);
    // A target that ended before the lock above has queued its notice already
    // (it sends under the same lock): take it back out.
    // Safety: the watcher is the running process, its signal queue's one consumer.
    let _ = unsafe {
        watcher
            .header()
            .signals
            .pop_matching(|s| matches!(s, Signal::Down(d) if d.monitor == *monitor))
    };
}

/// Takes back the queued notices of a group monitor that its watcher, the running
/// process, has just removed.
pub(crate) fn forget_group_notices(watcher: &dyn Run, monitor: &crate::group::GroupMonitor) {
    // Safety: the watcher is the running process, its signal queue's one consumer.
    while unsafe {
        watcher
            .header()
            .signals
            .pop_matching(|s| matches!(s, Signal::Group(n) if n.monitor == *monitor))
    }
    .is_some()
    {}
}

/// Sends `target` an exit signal from `from` with `reason` (OTP's `exit/2`):
/// [`Exit::Killed`] ends it untrappably, as a kill does; any other reason reaches
/// it as a linked process's end would, except that no link is involved (a
/// trapping target gets a notice, a non-trapping one ends unless the reason is
/// normal).
pub(crate) fn send_exit(from: &dyn Run, target: &dyn Run, reason: Exit) {
    let signal = match reason {
        Exit::Killed => Signal::Kill,
        reason => Signal::Exit {
            from: ProcessId(from.header().id),
            reason,
            linked: false,
        },
    };
    deliver(target, signal);
}

/// Sets whether the process traps exits; returns the previous setting.
pub(crate) fn set_trap_exits(process: &dyn Run, trap: bool) -> bool {
    process.header().signals.set_trap_exits(trap)
}

/// Tells links and watchers that `process` ended with `exit`, and lets go of what
/// others kept on its account (see the module comment). Called once, by the ending
/// process, after `retire` marked it exited.
pub(crate) fn announce_exit(process: &dyn Run, exit: &Exit) {
    let header = process.header();
    let id = ProcessId(header.id);
    // Step 1 of "What an ending process lets go of": no timer can be bound any more
    // (the process is exited), so the ones taken here are all there are.
    let timers = header
        .relations
        .lock()
        .lists
        .as_mut()
        .map(|lists| std::mem::take(&mut lists.timers));
    if let Some(timers) = timers {
        for (_, (_, timer)) in timers {
            timer.release(&header.shared.timers);
        }
    }
    let mut relations = header.relations.lock();
    relations.ended = true;
    let Some(lists) = relations.lists.take() else {
        return;
    };
    // Sent while holding the lock: see the module comment.
    for (_, linked) in &lists.links {
        if let Some(linked) = linked.upgrade() {
            deliver(
                &*linked,
                Signal::Exit {
                    from: id,
                    reason: exit.clone(),
                    linked: true,
                },
            );
        }
    }
    let Lists {
        links,
        watchers,
        monitoring,
        hooks,
        hook_ids: _,
        parent: _,
        stop_reason: _,
        timers,
    } = *lists;
    for (_, (_, hook)) in hooks {
        hook.run(exit);
    }
    for (_, (monitor, watcher)) in watchers {
        if let Some(watcher) = watcher.upgrade() {
            deliver(
                &*watcher,
                Signal::Down(Down {
                    monitor,
                    id,
                    reason: exit.clone(),
                }),
            );
        }
    }
    drop(relations);
    drop(links);
    // Empty (see step 1), but should one have slipped in, it goes too.
    for (_, (_, timer)) in timers {
        timer.release(&header.shared.timers);
    }
    // Step 2: this process's own monitors, one target lock at a time.
    for monitor in monitoring.into_iter().map(|(_, m)| m) {
        unwatch(&monitor);
    }
}

/// The running process's pending fatal signal, if any: a kill, a non-normal exit
/// of a linked process while it does not trap exits, or a stop. Normal exit
/// signals that are not trapped are dropped on the way (with their link).
///
/// With none pending, the common case, this is one load, whatever else is queued.
///
/// # Safety
/// `process` is the running process (its signal queue's one consumer).
pub(crate) unsafe fn take_fatal(process: &dyn Run) -> Option<Exit> {
    let signals = &process.header().signals;
    if !signals.has_fatal() {
        return None;
    }
    match signals.take_flagged() {
        Flagged::Kill => return Some(Exit::Killed),
        Flagged::Stop if signals.traps_exits() || !signals.has_exits() => {
            return Some(Exit::Stopped)
        }
        // A linked failure queued beside a stop ends the process with its reason;
        // the stop is spent either way.
        Flagged::Stop => {
            // Safety: passed on from the caller.
            return Some(unsafe { take_linked_failure(process) }.unwrap_or(Exit::Stopped));
        }
        Flagged::Neither => {}
    }
    // Safety: passed on from the caller.
    unsafe { take_linked_failure(process) }
}

/// Takes the queued exit signals of a process that does not trap them, up to the
/// first one with a non-normal reason, which it returns; normal ones are dropped
/// with their link.
///
/// # Safety
/// As for [`take_fatal`].
unsafe fn take_linked_failure(process: &dyn Run) -> Option<Exit> {
    let signals = &process.header().signals;
    while signals.has_exits() && !signals.traps_exits() {
        // Safety: passed on from the caller.
        let signal = unsafe { signals.pop_matching(|s| matches!(s, Signal::Exit { .. })) };
        // Counted but not pushed yet: the sender is between the two steps.
        let Some(Signal::Exit {
            from,
            reason,
            linked,
        }) = signal
        else {
            return None;
        };
        if linked {
            forget_link(process, from);
        }
        if !reason.is_normal() {
            return Some(reason);
        }
    }
    None
}

/// The running process's next notice (a `Down`, or a trapped exit signal).
///
/// # Safety
/// `process` is the running process (its signal queue's one consumer), and it has
/// taken its fatal signals first ([`take_fatal`]).
pub(crate) unsafe fn take_notice(process: &dyn Run) -> Option<Notice> {
    let signals = &process.header().signals;
    if signals.is_empty() {
        return None;
    }
    // Exit signals are notices only while the process traps them; otherwise they
    // are left for `take_fatal`.
    let trap = signals.traps_exits();
    // Safety: passed on from the caller.
    let signal = unsafe {
        signals.pop_matching(|s| match s {
            Signal::Down(_) | Signal::Group(_) => true,
            Signal::Exit { .. } => trap,
            Signal::Kill | Signal::Stop | Signal::Apply(_) => false,
        })
    }?;
    match signal {
        Signal::Down(down) => {
            forget_monitor(process, &down.monitor);
            Some(Notice::Down(down))
        }
        Signal::Exit {
            from,
            reason,
            linked,
        } => {
            if linked {
                forget_link(process, from);
            }
            Some(Notice::Exit { from, reason })
        }
        Signal::Group(notice) => Some(Notice::Group(notice)),
        Signal::Kill | Signal::Stop => unreachable!("never queued (see queue.rs)"),
        Signal::Apply(_) => unreachable!("not matched above"),
    }
}

/// The running process's next piece of work on itself ([`Signal::Apply`]),
/// which it runs ahead of its next message.
///
/// # Safety
/// As for [`take_notice`].
pub(crate) unsafe fn take_apply(process: &dyn Run) -> Option<Apply> {
    let signals = &process.header().signals;
    if signals.is_empty() {
        return None;
    }
    // Safety: passed on from the caller.
    match unsafe { signals.pop_matching(|s| matches!(s, Signal::Apply(_))) } {
        Some(Signal::Apply(apply)) => Some(apply),
        _ => None,
    }
}

/// Drops the link to a process that has ended.
fn forget_link(process: &dyn Run, ended: ProcessId) {
    if let Some(lists) = process.header().relations.lock().lists.as_mut() {
        lists.links.retain(|(linked, _)| *linked != ended);
    }
}

/// The unwinding payload that ends a process with a given reason (a fatal signal,
/// or `exit`).
pub(crate) struct Terminated(pub(crate) Exit);

/// Why a process whose code unwound ends: a fatal signal or `exit` gives its
/// reason, any other panic [`Exit::Panicked`]. A cancellation (runtime shutdown)
/// keeps unwinding up to the carrier.
pub(crate) fn exit_from_unwind(payload: Box<dyn std::any::Any + Send>) -> Exit {
    if payload.is::<crate::carrier::Cancelled>() {
        std::panic::resume_unwind(payload);
    }
    match payload.downcast::<Terminated>() {
        Ok(terminated) => terminated.0,
        Err(payload) => Exit::Panicked(crate::error::panic_message(payload.as_ref())),
    }
}
