//! Signals: what processes tell each other about their lives, beside their typed
//! messages. They travel in a second, untyped queue per process, and they reach
//! a process whatever it waits for.
//!
//! * **Links** are bidirectional. When a process ends, every linked process gets
//!   an exit signal with the reason. A failure ends the receiver too, with the same
//!   reason, unless it traps exits; then the signal becomes a [`Notice`]. A normal
//!   exit signal is dropped unless trapped.
//! * **Monitors** are one-way: the watcher gets exactly one [`Down`] notice when the
//!   watched process ends (at once if it had ended already). After `demonitor`
//!   returns, no notice for that monitor arrives, not even one already queued.
//! * **Kill** ends a process whatever it does (it cannot be trapped); **stop** asks
//!   it to end: a handler process finishes its current message, runs its `stopped`
//!   hook and exits with [`Exit::Stopped`].
//!
//! # Delivery, step by step
//!
//! 1. The sender pushes the signal onto the target's signal queue (a `SeqCst` CAS,
//!    as for messages); a closed queue means the target has ended, and the signal
//!    is dropped.
//! 2. It then tries to take the target's run rights from whatever wait the target
//!    is in ([`StateWord::interrupt`](crate::state::StateWord::interrupt)); the
//!    winner schedules it. A worker that publishes a wait re-checks the signal queue
//!    afterwards, exactly as it re-checks the mailbox, so no signal is stranded.
//! 3. The target handles fatal signals whenever it resumes, and notices when it asks
//!    for them (handler processes: between messages, through [`Process::notice`]).
//!
//! A process's links and watchers live behind a short lock in its header. An
//! ending process takes that lock, marks itself ended and sends its signals while
//! still holding it; `monitor`, `link` and `demonitor` take the same lock, so each
//! of them happens wholly before the end (and the end sees it) or wholly after
//! (and sees the process as ended).
//!
//! [`Process::notice`]: crate::Process::notice

use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::error::Exit;
use crate::process::{ProcessId, Run, Task};
use crate::rights::{wake, Waker};

/// A signal in a process's signal queue.
pub(crate) enum Signal {
    /// A linked process ended.
    Exit {
        /// Who ended.
        from: ProcessId,
        /// Why.
        reason: Exit,
    },
    /// End now, untrappably.
    Kill,
    /// End gracefully.
    Stop,
    /// A monitored process ended.
    Down(Down),
}

/// A monitor, as returned by `monitor` and carried by its [`Down`] notice.
#[derive(Clone)]
pub struct MonitorRef {
    /// Unique within the runtime.
    id: u64,
    /// The watched process.
    target: Weak<dyn Run>,
}

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
    /// A linked process ended, and this process traps exits.
    Exit {
        /// The linked process.
        from: ProcessId,
        /// Why it ended.
        reason: Exit,
    },
}

/// A process's links, watchers and flags.
#[derive(Default)]
pub(crate) struct Relations {
    /// Set when the process ends; links and monitors made later see it.
    ended: bool,
    /// Whether exit signals from links become notices instead of ending the process.
    trap_exits: bool,
    /// The lists, allocated on first use: most processes never link or get watched.
    lists: Option<Box<Lists>>,
}

/// Who to tell when the process ends.
#[derive(Default)]
struct Lists {
    /// Linked processes.
    links: Vec<(ProcessId, Weak<dyn Run>)>,
    /// Monitors on this process, with their watchers.
    watchers: Vec<(MonitorRef, Weak<dyn Run>)>,
    /// Code to run when the process ends (name registry, groups, calls).
    hooks: Vec<(u64, ExitHook)>,
}

/// Code run once when a process ends, with its exit reason, on the thread of the
/// ending process and under its relations lock: it must be short and must not
/// touch that process's relations.
pub(crate) type ExitHook = Box<dyn FnOnce(&Exit) + Send>;

/// Identifies an exit hook, to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HookId(u64);

/// Registers `hook` to run when `target` ends. If it has ended already, the hook
/// runs now with [`Exit::NoProc`] and None is returned.
pub(crate) fn on_exit(target: &dyn Run, hook: ExitHook) -> Option<HookId> {
    let id = target.header().shared.next_id();
    let mut relations = target.header().relations.lock();
    if relations.ended {
        drop(relations);
        hook(&Exit::NoProc);
        return None;
    }
    relations.lists().hooks.push((id, hook));
    Some(HookId(id))
}

/// Removes an exit hook; true if it was still registered (so it will never run).
pub(crate) fn remove_exit_hook(target: &dyn Run, hook: HookId) -> bool {
    let mut relations = target.header().relations.lock();
    let Some(lists) = relations.lists.as_mut() else {
        return false;
    };
    let before = lists.hooks.len();
    lists.hooks.retain(|(id, _)| *id != hook.0);
    lists.hooks.len() != before
}

impl Relations {
    fn lists(&mut self) -> &mut Lists {
        self.lists.get_or_insert_with(Box::default)
    }
}

/// The lock that guards a process's relations.
pub(crate) type RelationsLock = Mutex<Relations>;

/// Pushes a signal to `target` and wakes it from any wait.
pub(crate) fn deliver(target: &dyn Run, signal: Signal) {
    let header = target.header();
    if header.signals.push(signal).is_err() {
        return;
    }
    wake(target, Waker::Signal);
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
            },
        ),
        (false, true) => deliver(
            &**first,
            Signal::Exit {
                from: ProcessId(second.header().id),
                reason: Exit::NoProc,
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

/// Starts monitoring `target` on behalf of `watcher`.
pub(crate) fn monitor(watcher: &Task, target: &Task) -> MonitorRef {
    let monitor = MonitorRef {
        id: watcher.header().shared.next_id(),
        target: Arc::downgrade(target),
    };
    let mut relations = target.header().relations.lock();
    if relations.ended {
        deliver(
            &**watcher,
            Signal::Down(Down {
                monitor: monitor.clone(),
                id: ProcessId(target.header().id),
                reason: Exit::NoProc,
            }),
        );
    } else {
        relations
            .lists()
            .watchers
            .push((monitor.clone(), Arc::downgrade(watcher)));
    }
    monitor
}

/// Removes a monitor; afterwards no `Down` for it reaches `watcher`, which must be
/// the running process (it purges its own signal queue).
pub(crate) fn demonitor(watcher: &dyn Run, monitor: &MonitorRef) {
    if let Some(target) = monitor.target.upgrade() {
        if let Some(lists) = target.header().relations.lock().lists.as_mut() {
            lists.watchers.retain(|(m, _)| m != monitor);
        }
    }
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

/// Sets whether the process traps exits; returns the previous setting.
pub(crate) fn set_trap_exits(process: &dyn Run, trap: bool) -> bool {
    std::mem::replace(&mut process.header().relations.lock().trap_exits, trap)
}

/// Tells links and watchers that `process` ended with `exit`. Called once, by the
/// ending process.
pub(crate) fn announce_exit(process: &dyn Run, exit: &Exit) {
    let header = process.header();
    let id = ProcessId(header.id);
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
                },
            );
        }
    }
    for (_, hook) in lists.hooks {
        hook(exit);
    }
    for (monitor, watcher) in lists.watchers {
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
}

/// The running process's pending fatal signal, if any: a kill, a stop, or a
/// failure of a linked process while it does not trap exits. Normal exit signals
/// that are not trapped are dropped on the way (with their link).
///
/// # Safety
/// `process` is the running process (its signal queue's one consumer).
pub(crate) unsafe fn take_fatal(process: &dyn Run) -> Option<Exit> {
    let header = process.header();
    if header.signals.is_empty() {
        return None;
    }
    let trap = header.relations.lock().trap_exits;
    loop {
        // Safety: passed on from the caller.
        let signal = unsafe {
            header.signals.pop_matching(|s| match s {
                Signal::Kill | Signal::Stop => true,
                Signal::Exit { .. } => !trap,
                Signal::Down(_) => false,
            })
        }?;
        match signal {
            Signal::Kill => return Some(Exit::Killed),
            Signal::Stop => return Some(Exit::Stopped),
            Signal::Exit { from, reason } => {
                forget_link(process, from);
                if reason.is_failure() {
                    return Some(reason);
                }
            }
            Signal::Down(_) => unreachable!("not matched above"),
        }
    }
}

/// The running process's next notice (a `Down`, or a trapped exit signal).
///
/// # Safety
/// `process` is the running process (its signal queue's one consumer), and it has
/// taken its fatal signals first ([`take_fatal`]).
pub(crate) unsafe fn take_notice(process: &dyn Run) -> Option<Notice> {
    let header = process.header();
    if header.signals.is_empty() {
        return None;
    }
    // Exit signals are notices only while the process traps them; otherwise they
    // are left for `take_fatal`.
    let trap = header.relations.lock().trap_exits;
    // Safety: passed on from the caller.
    let signal = unsafe {
        header.signals.pop_matching(|s| match s {
            Signal::Down(_) => true,
            Signal::Exit { .. } => trap,
            Signal::Kill | Signal::Stop => false,
        })
    }?;
    match signal {
        Signal::Down(down) => Some(Notice::Down(down)),
        Signal::Exit { from, reason } => {
            forget_link(process, from);
            Some(Notice::Exit { from, reason })
        }
        Signal::Kill | Signal::Stop => unreachable!("not matched above"),
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
