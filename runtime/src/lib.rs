//! fibra's process runtime: stackful processes, the reschedule protocol and the
//! work-stealing scheduler. Most users depend on the `fibra` facade crate, which
//! re-exports everything here; see its documentation for the tour.
#![warn(missing_docs, unsafe_op_in_unsafe_fn)]

#[cfg(not(loom))]
mod blocking;
#[cfg(not(loom))]
mod call;
#[cfg(not(loom))]
mod carrier;
#[cfg(not(loom))]
pub mod channel;
#[cfg(not(loom))]
mod error;
#[cfg(not(loom))]
mod free;
#[cfg(not(loom))]
mod future;
#[cfg(not(loom))]
mod group;
#[cfg(not(loom))]
mod handler;
#[cfg(not(loom))]
mod info;
#[cfg(not(loom))]
mod init;
#[cfg(not(loom))]
mod join;
#[cfg(not(loom))]
mod metrics;
#[cfg(not(loom))]
mod names;
#[cfg(not(loom))]
mod os_signal;
#[cfg(not(loom))]
mod overflow;
#[cfg(not(loom))]
mod panic_report;
#[cfg(not(loom))]
pub mod park;
#[cfg(not(loom))]
mod process;
#[cfg(not(loom))]
mod registry;
#[cfg(not(loom))]
mod request;
#[cfg(not(loom))]
mod rights;
#[cfg(not(loom))]
mod runtime;
#[cfg(not(loom))]
mod scheduler;
#[cfg(not(loom))]
mod scope;
#[cfg(not(loom))]
mod shared;
#[cfg(not(loom))]
mod shutdown;
#[cfg(not(loom))]
mod signal;
#[cfg(not(loom))]
mod supervisor;
#[cfg(not(loom))]
mod table;
#[cfg(not(loom))]
mod time;
#[cfg(not(loom))]
mod waiter;
#[cfg(not(loom))]
mod watch;

mod sync;

/// Parking and waking idle workers. Public only under `--cfg loom`, for the model
/// checker.
#[cfg(loom)]
pub mod idle;
#[cfg(not(loom))]
mod idle;

/// A worker's LIFO slot and its owner/thief handshake. Public only under
/// `--cfg loom`, for the model in `tests/loom_lifo.rs`.
#[cfg(loom)]
pub mod lifo;
#[cfg(not(loom))]
mod lifo;

/// Bounded mailboxes' places and waiting senders. Public only under
/// `--cfg loom`, for the model in `tests/loom_bounded.rs`.
#[cfg(loom)]
pub mod bounded;
#[cfg(not(loom))]
mod bounded;

/// The protocol under the channels: a queue and its wait lists. Public only
/// under `--cfg loom`, for the model in `tests/loom_channel.rs`.
#[cfg(loom)]
pub mod chan;
#[cfg(not(loom))]
mod chan;

/// The broadcast ring's slots and positions. Public only under `--cfg loom`,
/// for the model in `tests/loom_ring.rs`.
#[cfg(loom)]
pub mod ring;
#[cfg(not(loom))]
mod ring;

/// The state word and its reschedule protocol. Public only under `--cfg loom`, for
/// the model checker.
#[cfg(loom)]
pub mod state;
#[cfg(not(loom))]
mod state;

#[cfg(not(loom))]
pub use blocking::blocking;
#[cfg(not(loom))]
pub use call::{CallError, ReplyTo, StopError};
#[cfg(not(loom))]
pub use error::{BuildError, Exit, ExitError, SendError, SpawnError};
#[cfg(not(loom))]
pub use free::{FnContext, Received};
#[cfg(not(loom))]
pub use future::{block_on, CallFuture, JoinFuture};
#[cfg(not(loom))]
pub use group::{GroupMonitor, GroupNotice, Membership};
#[cfg(not(loom))]
pub use handler::{Context, Process};
#[cfg(not(loom))]
pub use info::{ProcessInfo, ProcessKind, ProcessState, WaitingOn};
#[cfg(not(loom))]
pub use init::Init;
#[cfg(not(loom))]
pub use join::JoinHandle;
#[cfg(not(loom))]
pub use metrics::{ExitedMetrics, Metrics, WorkerMetrics};
#[cfg(not(loom))]
pub use names::GroupScope;
#[cfg(not(loom))]
pub use os_signal::{OsSignal, OsSignals};
#[cfg(not(loom))]
pub use process::{AnyPid, Pid, ProcessId};
#[cfg(not(loom))]
pub use registry::RegisterError;
#[cfg(not(loom))]
pub use request::{Request, Requests};
#[cfg(not(loom))]
pub use runtime::{
    Builder, Handle, Runtime, DEFAULT_BLOCKED_AFTER, DEFAULT_HANDOFF_AFTER, DEFAULT_STACK_SIZE,
};
#[cfg(not(loom))]
pub use scope::Scope;
#[cfg(not(loom))]
pub use shared::{Published, Shared, Write, WriteError};
#[cfg(not(loom))]
pub use signal::{Down, MonitorRef, Notice};
#[cfg(not(loom))]
pub use supervisor::{
    AutoShutdown, Backoff, ChildCounts, ChildError, ChildInfo, ChildSpec, DynamicSupervisor,
    DynamicSupervisorPid, Restart, Shutdown, SpawnSupervisor, Strategy, Supervisor,
    SupervisorError, SupervisorPid, DEFAULT_START_TIMEOUT,
};
#[cfg(not(loom))]
pub use time::{sleep, Interval, TimerRef};
