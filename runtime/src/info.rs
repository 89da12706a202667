//! Process introspection (OTP's `process_info/1` and `processes/0`): what a
//! process is, what it waits for, what it holds and whom it is tied to, read from
//! outside without stopping it.
//!
//! Everything is read without the process's run rights: the state word, the
//! mailbox and signal-queue counts, the relations under their lock, the registry.
//! So a report is a snapshot of moving parts, each part true at the moment it was
//! read; it costs the process nothing, and the only per-process bookkeeping it
//! needs is a spawn time (whole seconds, read at spawn from a clock the watch
//! thread keeps, and kept in what was padding) and a reduction total banked when
//! an activation suspends or ends.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::process::{AnyPid, ProcessId, Task};
use crate::runtime::Handle;

/// What kind of process it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessKind {
    /// A handler process ([`Process`](crate::Process)): holds a stack only while
    /// it handles a message.
    Handler,
    /// A free-running process ([`FnContext`](crate::FnContext)): holds a stack
    /// from its first run to its end.
    Free,
}

/// What a process is doing, as its state word says at the moment it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcessState {
    /// Running on a worker, or queued to run. The two are not told apart: the
    /// scheduler's path keeps no record of which, to stay as short as it is.
    Runnable,
    /// Suspended until something comes: `timed` if a deadline may end the wait
    /// first.
    Waiting {
        /// What ends the wait.
        on: WaitingOn,
        /// Whether a timer may end it first.
        timed: bool,
    },
    /// It has ended.
    Exited,
}

/// What a waiting process waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitingOn {
    /// A message or a signal: an idle handler process, or a free-running process
    /// in `receive`.
    Message,
    /// An event: a reply to a call, a joined child's end, a socket, the blocking
    /// pool, a free stack.
    Event,
    /// Only its timer (`sleep`).
    Timer,
    /// A message or an event, whichever comes first: a free-running process in
    /// a [`Select`](crate::channel::Select) over its mailbox and channels.
    MessageOrEvent,
}

/// A snapshot of one process ([`AnyPid::info`], [`Handle::process_infos`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// Its id.
    pub id: ProcessId,
    /// The name it is registered under, if any.
    pub name: Option<String>,
    /// Handler or free-running.
    pub kind: ProcessKind,
    /// The name of its message type, as [`std::any::type_name`] gives it.
    pub message_type: &'static str,
    /// What it is doing.
    pub state: ProcessState,
    /// Messages in its mailbox.
    pub mailbox_len: usize,
    /// Exit signals and notices queued for it (a pending kill or stop is a flag,
    /// not counted).
    pub signals_len: usize,
    /// The processes linked to it.
    pub links: Vec<ProcessId>,
    /// The processes it monitors, once per monitor.
    pub monitors: Vec<ProcessId>,
    /// The processes that monitor it, once per monitor.
    pub monitored_by: Vec<ProcessId>,
    /// Whether it traps exits.
    pub trap_exits: bool,
    /// The process that spawned it linked to it: its supervisor, or the caller
    /// of a `spawn_link`. `None` for a process spawned unlinked.
    pub parent: Option<ProcessId>,
    /// Reductions (messages received and sent, suspension points passed) over
    /// its life, up to its last suspension: a running activation's own are
    /// counted when it suspends or ends.
    pub reductions: u64,
    /// Approximate bytes it holds: its own allocation, its queued messages, and
    /// the reserved size of its stack if it is free-running. Its value's own heap
    /// allocations are not seen.
    pub memory: usize,
    /// When it was spawned, to the second: its runtime's start plus the whole
    /// seconds between that and its spawn.
    pub started: Instant,
}

impl AnyPid {
    /// A snapshot of the process, or `None` if it has ended.
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// rt.block_on(|cx| {
    ///     let child = cx.spawn_fn_link(|cx: &mut FnContext<u64>| cx.receive());
    ///     cx.runtime().register("child", &child.pid()).unwrap();
    ///     child.pid().send(1).unwrap();
    ///     child.pid().send(2).unwrap();
    ///     let info = child.pid().any().info().unwrap();
    ///     assert_eq!(info.name.as_deref(), Some("child"));
    ///     assert_eq!(info.kind, ProcessKind::Free);
    ///     assert_eq!(info.message_type, "u64");
    ///     assert_eq!(info.parent, Some(cx.me().id()));
    ///     assert_eq!(info.links, [cx.me().id()]);
    ///     assert!(info.mailbox_len <= 2);
    ///     cx.unlink(&child.pid());
    ///     child.join().unwrap();
    /// });
    /// ```
    pub fn info(&self) -> Option<ProcessInfo> {
        info_of(&self.0)
    }
}

impl Handle {
    /// A snapshot of every live process, in no particular order (OTP's
    /// `processes/0` with `process_info/1` of each). Takes each shard of the
    /// process table's lock for as long as it takes to copy the references out.
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// struct Idle;
    /// impl Process for Idle {
    ///     type Message = ();
    ///     fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
    /// }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let idle = rt.spawn(Idle).unwrap();
    /// let all = rt.handle().process_infos();
    /// let mine = all.iter().find(|p| p.id == idle.id()).unwrap();
    /// assert_eq!(mine.kind, ProcessKind::Handler);
    /// ```
    pub fn process_infos(&self) -> Vec<ProcessInfo> {
        let tasks = self.shared().table.snapshot();
        tasks.iter().filter_map(info_of).collect()
    }
}

/// A snapshot of `process`, or `None` if it has ended.
fn info_of(process: &Task) -> Option<ProcessInfo> {
    let header = process.header();
    let state = match header.state.observe() {
        (0, _) => ProcessState::Runnable,
        (1, timed) => ProcessState::Waiting {
            on: WaitingOn::Message,
            timed,
        },
        (2, timed) => ProcessState::Waiting {
            on: WaitingOn::Event,
            timed,
        },
        (3, timed) => ProcessState::Waiting {
            on: WaitingOn::Timer,
            timed,
        },
        (5, timed) => ProcessState::Waiting {
            on: WaitingOn::MessageOrEvent,
            timed,
        },
        _ => return None,
    };
    let described = process.describe();
    let relations = crate::signal::relations_of(&**process);
    let name = header.shared.registry.name_of(&AnyPid(Arc::clone(process)));
    let started = header.shared.epoch.1 + Duration::from_secs(relations.started.into());
    Some(ProcessInfo {
        id: ProcessId(header.id),
        name,
        kind: described.kind,
        message_type: described.message_type,
        state,
        mailbox_len: described.mailbox_len,
        signals_len: relations.signals,
        links: relations.links,
        monitors: relations.monitors,
        monitored_by: relations.monitored_by,
        trap_exits: relations.trap_exits,
        parent: relations.parent,
        reductions: header.reductions.load(Relaxed),
        memory: described.memory,
        started,
    })
}

/// Whole seconds from `epoch` (a [`coarse_now`] reading) to now, the spawn
/// time a process keeps.
pub(crate) fn seconds_since(epoch: (u64, Instant)) -> u32 {
    let secs = coarse_now().saturating_sub(epoch.0) / 1_000_000_000;
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// The coarse monotonic clock, in nanoseconds: a few nanoseconds to read (no
/// system call, no hardware counter), and a few milliseconds of resolution,
/// enough to say when a process was spawned.
pub(crate) fn coarse_now() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: `now` is a valid, writable timespec for the call's duration.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) } == 0;
    if !ok {
        return 0;
    }
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}
