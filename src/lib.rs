//! # fibra
//!
//! An actor-model process runtime: Erlang's process model with Rust's types.
//!
//! A **process** is a lightweight, isolated unit of work with a mailbox. Processes
//! share nothing; they talk by sending typed messages to each other's [`Pid`]. A
//! pool of worker threads, one per core, runs them, stealing work from each other
//! so every core stays busy.
//!
//! Processes are stackful coroutines, so code inside a process can block — wait
//! for a message, join a child, yield — with no `async`/`await`: only the process
//! waits, never the worker thread. There are two kinds:
//!
//! * **Handler processes** implement [`Process`]: one `handle` call per message.
//!   A handler borrows a pooled stack only while it runs, so an idle handler
//!   process costs a couple of hundred bytes, and a million of them fit in a few
//!   hundred MiB.
//! * **Free-running processes** are closures ([`FnContext`]) that receive when they
//!   choose, including selectively, and return a result that
//!   [`JoinHandle::join`] collects. They keep a stack for their whole life.
//!
//! ## A quick tour
//!
//! ```
//! use fibra::prelude::*;
//!
//! struct Counter { n: u64 }
//! enum Msg { Add(u64), Report(Pid<u64>) }
//!
//! impl Process for Counter {
//!     type Message = Msg;
//!     fn handle(&mut self, msg: Msg, _cx: &mut Context<Self>) {
//!         match msg {
//!             Msg::Add(k) => self.n += k,
//!             Msg::Report(to) => { let _ = to.send(self.n); }
//!         }
//!     }
//! }
//!
//! let rt = Runtime::builder().workers(4).build().unwrap();
//! let answer = rt.block_on(|cx| {
//!     let counter = cx.spawn(Counter { n: 0 });
//!     // fork-join: a free-running child that waits for the count and doubles it
//!     let child = cx.spawn_fn(|cx| { let n: u64 = cx.receive(); n * 2 });
//!     for _ in 0..7 { counter.send(Msg::Add(3)).unwrap(); }
//!     counter.send(Msg::Report(child.pid())).unwrap();
//!     child.join().unwrap()
//! });
//! assert_eq!(answer, 42);
//! ```
//!
//! ## What to expect
//!
//! * Sending never blocks and never panics: to an exited process it fails and hands
//!   the message back ([`SendError`]).
//! * A panic ends only the process that panicked, with [`Exit::Panicked`] carrying
//!   the message; it is reported once, through `tracing`, with the process, where
//!   it happened and (with `RUST_BACKTRACE`) a backtrace, instead of also by std's
//!   panic hook ([`Builder::std_panic_hook`] keeps that one too).
//! * Dropping the [`Runtime`] (or [`Runtime::shutdown`]) stops every process,
//!   runs their destructors and joins the threads; later spawns fail with
//!   [`SpawnError::Shutdown`].
//! * A process that overflows its stack hits a guard page; the runtime prints which
//!   process it was and aborts.
//!
//! ## Supervision
//!
//! A [`Supervisor`] starts its children from [`ChildSpec`]s, in order, and
//! restarts them by their [`Restart`] type and its [`Strategy`], as OTP's do; a
//! [`DynamicSupervisor`] holds many children of one kind, started while it runs
//! from a template and per-child arguments. Supervisors nest, and a supervisor's
//! address ([`SupervisorPid`], [`DynamicSupervisorPid`]) reports and changes its
//! children while it runs.
//!
//! ```
//! use std::time::Duration;
//! use fibra::prelude::*;
//!
//! struct Session { user: String }
//! impl Process for Session {
//!     type Message = ReplyTo<String>;
//!     fn handle(&mut self, reply: ReplyTo<String>, _cx: &mut Context<Self>) {
//!         reply.reply(format!("hello, {}", self.user));
//!     }
//! }
//!
//! let rt = Runtime::builder().workers(2).build().unwrap();
//! let sessions = DynamicSupervisor::new(|user: String| {
//!     ChildSpec::handler("session", move || Session { user: user.clone() })
//!         .restart(Restart::Transient)
//! });
//! let top = rt
//!     .handle()
//!     .spawn_supervisor(
//!         Supervisor::new(Strategy::RestForOne)
//!             .child(sessions.child_spec("sessions")),
//!     )
//!     .unwrap();
//! let t = Duration::from_secs(5);
//! let sessions = top.which_child("sessions", t).unwrap();
//! let sessions = sessions.dynamic_supervisor::<String>().unwrap();
//! sessions.start_child("ada".to_string(), t).unwrap();
//! let session = sessions.children(t).unwrap()[0].address::<ReplyTo<String>>().unwrap();
//! assert_eq!(session.call(|r| r, t).unwrap(), "hello, ada");
//! assert_eq!(top.count_children(t).unwrap().supervisors, 1);
//! ```
//!
//! ## Channels
//!
//! Besides mailboxes, processes (and plain threads) can talk over typed
//! [`channel`]s: bounded single-producer, bounded and unbounded multi-producer,
//! many-to-many, and oneshot, with std's and crossbeam's errors, and
//! [`channel::Select`] to wait on several at once. A process that waits on a
//! channel suspends like one in `receive`; its worker runs other processes.
//!
//! ```
//! use fibra::channel::mpsc;
//! use fibra::prelude::*;
//!
//! let rt = Runtime::builder().workers(2).build().unwrap();
//! let sum = rt.block_on(|cx| {
//!     let (tx, rx) = mpsc::bounded::<u64>(16);
//!     cx.spawn_fn(move |_: &mut FnContext<()>| (1..=100).for_each(|n| tx.send(n).unwrap()));
//!     rx.iter().sum::<u64>()
//! });
//! assert_eq!(sum, 5050);
//! ```
//!
//! ## Time
//!
//! A dedicated timeout thread keeps every deadline in one heap and fires within
//! about 100 µs of it. On top of it: [`FnContext::receive_timeout`] (and its
//! selective form), [`sleep`] anywhere a process runs, [`Pid::send_after`],
//! [`Pid::send_interval`], and a handler's idle timeout
//! ([`Context::set_idle_timeout`] with [`Process::timeout`]).
//!
//! ## What the runtime logs
//!
//! Through `tracing`, at levels a production service can keep at `info`:
//!
//! * `error`: a process panicked (once per panic, with the process, where it
//!   happened and, with `RUST_BACKTRACE`, a backtrace), a message or value
//!   panicked in its destructor, a runtime thread could not start;
//! * `warn`: a supervised child failed or failed to restart, a supervisor gave up
//!   (restart intensity), a process held its worker past
//!   [`Builder::blocked_after`], a child did not stop in time and was killed;
//! * `info`: a child ended cleanly or was restarted (and after what delay), a
//!   supervisor shut down because its parent or a significant child ended, an OS
//!   signal was not forwarded;
//! * `debug` and `trace`: every exit and spawn, supervisor internals.
//!
//! Supervisors are named by their registered name and pid.
//! [`Builder::trace_processes`] puts each activation in a `process` span, so
//! that a process's own events carry its pid.
//!
//! ## Rules for code inside a process
//!
//! * A process that suspends (in `receive`, `join`, `call`, `sleep`, socket IO,
//!   `yield_now`) resumes on the thread it suspended on, so thread-bound state (a
//!   `thread_local!` borrow, a lock guard, a span guard, `thread_rng()`) may be held
//!   across it. Only processes with no activation under way (idle handler
//!   processes, processes that have not started) move between workers.
//! * Processes are cooperative: each `send` and `receive` counts towards a budget,
//!   and a process that has spent it yields at its next suspension point (`send`
//!   itself never suspends); a long computation without suspension points should
//!   call `yield_now` now and then. A process woken by a send that then waits
//!   behind such a computation is handed to another worker after a millisecond or
//!   two ([`Builder::handoff_after`]).
#![warn(missing_docs, unsafe_op_in_unsafe_fn)]

pub use fibra_net as net;
pub use fibra_runtime::{block_on, CallFuture, JoinFuture, OsSignal, OsSignals};
pub use fibra_runtime::{
    blocking, sleep, AnyPid, BuildError, Builder, Context, Down, Exit, ExitError, FnContext,
    Handle, Interval, JoinHandle, MonitorRef, Notice, Pid, Process, ProcessId, Received,
    RegisterError, Runtime, Scope, SendError, SpawnError, TimerRef, DEFAULT_BLOCKED_AFTER,
    DEFAULT_HANDOFF_AFTER, DEFAULT_STACK_SIZE,
};
pub use fibra_runtime::{channel, park};
pub use fibra_runtime::{
    AutoShutdown, Backoff, ChildCounts, ChildError, ChildInfo, ChildSpec, DynamicSupervisor,
    DynamicSupervisorPid, Restart, Shutdown, SpawnSupervisor, Strategy, Supervisor,
    SupervisorError, SupervisorPid, DEFAULT_START_TIMEOUT,
};
pub use fibra_runtime::{CallError, ReplyTo, Request, Requests, StopError};
pub use fibra_runtime::{ExitedMetrics, Metrics, WorkerMetrics};
pub use fibra_runtime::{GroupMonitor, GroupNotice, GroupScope, Membership};
pub use fibra_runtime::{Init, ProcessInfo, ProcessKind, ProcessState, WaitingOn};
pub use fibra_runtime::{Published, Shared, Write, WriteError};

/// The names most programs need: `use fibra::prelude::*;`.
pub mod prelude {
    pub use fibra_runtime::{
        sleep, AnyPid, Context, Down, Exit, FnContext, Handle, JoinHandle, Notice, Pid, Process,
        Received, RegisterError, Runtime, SendError, SpawnError,
    };
    pub use fibra_runtime::{
        AutoShutdown, Backoff, ChildSpec, DynamicSupervisor, DynamicSupervisorPid, Restart,
        Shutdown, SpawnSupervisor, Strategy, Supervisor, SupervisorPid,
    };
    pub use fibra_runtime::{CallError, ReplyTo, Request, Requests, StopError};
    pub use fibra_runtime::{GroupNotice, Init, Membership, OsSignal};
}

/// The README's examples, compiled and run as doc tests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
