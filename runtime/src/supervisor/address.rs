//! A running supervisor as others see it: its address, what it reports about its
//! children, and why it may end.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::call::{CallError, ReplyTo};
use crate::error::{Exit, SpawnError};
use crate::free::FnContext;
use crate::handler::{Context, Process};
use crate::process::{AnyPid, Pid, ProcessId};
use crate::runtime::{Handle, Runtime};

use super::dynamic::{DynControl, DynamicSupervisorPid};
use super::{ChildSpec, Restart, Supervisor};

/// What a supervisor's mailbox takes.
pub(crate) enum Control {
    /// Report the children.
    WhichChildren(ReplyTo<Vec<ChildInfo>>),
    /// Add a child and start it.
    StartChild(ChildSpec, ReplyTo<Result<AnyPid, ChildError>>),
    /// Stop a child, keeping its spec (a temporary child's goes).
    TerminateChild(String, ReplyTo<Result<(), ChildError>>),
    /// Start a stopped child again.
    RestartChild(String, ReplyTo<Result<AnyPid, ChildError>>),
    /// Forget a stopped child's spec.
    DeleteChild(String, ReplyTo<Result<(), ChildError>>),
}

/// Why an operation on a running supervisor's children failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChildError {
    /// No child has this id.
    NotFound(String),
    /// The child with this id is running (delete or restart it only once it is
    /// stopped).
    Running(String),
    /// A child with this id exists already (running or not).
    Duplicate(String),
    /// The child's start failed with this reason; a new child is not kept.
    StartFailed(Exit),
    /// The child's `init` said [`Init::Ignore`](crate::Init::Ignore): it does not
    /// run. A supervisor keeps its spec, as in OTP; a dynamic supervisor keeps
    /// nothing.
    Ignored(String),
    /// The spec may not be a child of this supervisor; this says why (a
    /// significant child of a supervisor without auto-shutdown, say).
    Invalid(String),
    /// A dynamic supervisor has as many children as it may have
    /// ([`DynamicSupervisor::max_children`](super::DynamicSupervisor::max_children)).
    MaxChildren(usize),
    /// A dynamic supervisor started this child, which runs, but it takes
    /// messages of another type than the caller asked for
    /// ([`DynamicSupervisorPid::start_child_typed`](super::DynamicSupervisorPid::start_child_typed)).
    WrongType(AnyPid),
    /// The supervisor did not answer (it ended, or the call timed out).
    Call(CallError),
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildError::NotFound(id) => write!(f, "no child has the id {id:?}"),
            ChildError::Running(id) => write!(f, "the child {id:?} is running"),
            ChildError::Duplicate(id) => write!(f, "a child with the id {id:?} exists already"),
            ChildError::StartFailed(reason) => write!(f, "the child failed to start: {reason}"),
            ChildError::Invalid(why) => write!(f, "not a valid child here: {why}"),
            ChildError::Ignored(id) => write!(f, "the child {id:?} ignored its start"),
            ChildError::MaxChildren(max) => {
                write!(f, "the supervisor has its maximum of {max} children")
            }
            ChildError::WrongType(pid) => {
                write!(f, "the child {} takes messages of another type", pid.id())
            }
            ChildError::Call(err) => write!(f, "the supervisor did not answer: {err}"),
        }
    }
}

impl std::error::Error for ChildError {}

/// How many children a supervisor has, of each kind ([`SupervisorPid::count_children`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChildCounts {
    /// Child specs, running or not.
    pub specs: usize,
    /// Children running now.
    pub active: usize,
    /// Specs of child supervisors.
    pub supervisors: usize,
    /// Specs of workers.
    pub workers: usize,
}

impl ChildCounts {
    /// The counts of these children.
    pub(super) fn of(children: &[ChildInfo]) -> ChildCounts {
        ChildCounts {
            specs: children.len(),
            active: children.iter().filter(|c| c.pid().is_some()).count(),
            supervisors: children.iter().filter(|c| c.is_supervisor()).count(),
            workers: children.iter().filter(|c| !c.is_supervisor()).count(),
        }
    }
}

/// The address of a running supervisor.
///
/// ```
/// use fibra_runtime::*;
///
/// let rt = Runtime::builder().workers(1).build().unwrap();
/// let sup = rt
///     .handle()
///     .spawn_supervisor(Supervisor::new(Strategy::OneForOne))
///     .unwrap();
/// let reason = rt.block_on(move |cx| {
///     cx.monitor(&sup);
///     sup.stop();
///     match cx.receive_notice() {
///         Notice::Down(down) => down.reason,
///         other => panic!("{other:?}"),
///     }
/// });
/// assert_eq!(reason, Exit::Stopped);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SupervisorPid {
    /// The supervisor process.
    pid: Pid<Control>,
}

impl SupervisorPid {
    pub(crate) fn new(pid: Pid<Control>) -> SupervisorPid {
        SupervisorPid { pid }
    }

    /// The supervisor process's typed address.
    pub(crate) fn pid(&self) -> &Pid<Control> {
        &self.pid
    }

    /// The supervisor registered under `name` (a child spec's
    /// [`name`](super::ChildSpec::name)), if that is a live supervisor.
    pub fn whereis(handle: &Handle, name: &str) -> Option<SupervisorPid> {
        handle.whereis::<Control>(name).map(SupervisorPid::new)
    }

    /// The supervisor's process id.
    pub fn id(&self) -> ProcessId {
        self.pid.id()
    }

    /// The supervisor's address without its type, for links, monitors and kill.
    pub fn any(&self) -> AnyPid {
        self.pid.any()
    }

    /// Whether the supervisor is alive (see [`Pid::is_alive`]).
    pub fn is_alive(&self) -> bool {
        self.pid.is_alive()
    }

    /// Asks the supervisor to shut down: it stops its children in reverse start
    /// order and exits with [`Exit::Stopped`]. Monitor it to learn when it is done.
    pub fn stop(&self) {
        self.pid.any().stop();
    }

    /// The children as they are now, in start order. Asks the supervisor, which
    /// answers between handling exits (not while it is stopping children), and
    /// waits at most `timeout` (see [`Pid::call`]); fails with
    /// [`CallError::Exited`] if the supervisor has ended.
    pub fn children(&self, timeout: Duration) -> Result<Vec<ChildInfo>, CallError> {
        self.pid.call(Control::WhichChildren, timeout)
    }

    /// OTP's `which_children`: the same as [`children`](Self::children).
    pub fn which_children(&self, timeout: Duration) -> Result<Vec<ChildInfo>, CallError> {
        self.children(timeout)
    }

    /// The child with this id.
    pub fn which_child(&self, id: &str, timeout: Duration) -> Result<ChildInfo, ChildError> {
        self.children(timeout)
            .map_err(ChildError::Call)?
            .into_iter()
            .find(|child| child.id() == id)
            .ok_or_else(|| ChildError::NotFound(id.to_owned()))
    }

    /// How many children the supervisor has: specs, running ones, supervisors and
    /// workers (OTP's `count_children`).
    pub fn count_children(&self, timeout: Duration) -> Result<ChildCounts, CallError> {
        self.children(timeout)
            .map(|children| ChildCounts::of(&children))
    }

    /// Adds a child to the running supervisor, after the others, and starts it;
    /// returns its process. From then on it is supervised like the children the
    /// supervisor started with (its restart type, the strategy, the intensity).
    ///
    /// Fails with [`ChildError::Duplicate`] if a child has this id already, and
    /// with [`ChildError::StartFailed`] if the start fails (the spec is not kept).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// struct Session;
    /// impl Process for Session {
    ///     type Message = ();
    ///     fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
    /// }
    ///
    /// let rt = Runtime::builder().workers(1).build().unwrap();
    /// let sup = rt.handle().spawn_supervisor(Supervisor::new(Strategy::OneForOne)).unwrap();
    /// let t = Duration::from_secs(5);
    /// let session = sup
    ///     .start_child(ChildSpec::handler("session-1", || Session).restart(Restart::Temporary), t)
    ///     .unwrap();
    /// assert_eq!(sup.count_children(t).unwrap().active, 1);
    /// sup.terminate_child("session-1", t).unwrap();
    /// assert!(!session.is_alive());
    /// // A temporary child's spec goes with it.
    /// assert_eq!(sup.count_children(t).unwrap().specs, 0);
    /// ```
    pub fn start_child(&self, spec: ChildSpec, timeout: Duration) -> Result<AnyPid, ChildError> {
        self.pid
            .call(|reply| Control::StartChild(spec, reply), timeout)
            .map_err(ChildError::Call)?
    }

    /// Stops the child with this id (as its spec's [`Shutdown`](super::Shutdown)
    /// says) and keeps its spec, so that [`restart_child`](Self::restart_child)
    /// can start it again; a temporary child's spec goes. Stopping a child that is
    /// not running does nothing. Fails with [`ChildError::NotFound`] for an
    /// unknown id.
    pub fn terminate_child(&self, id: &str, timeout: Duration) -> Result<(), ChildError> {
        self.pid
            .call(
                |reply| Control::TerminateChild(id.to_owned(), reply),
                timeout,
            )
            .map_err(ChildError::Call)?
    }

    /// Starts a stopped child again; returns its new process. Fails with
    /// [`ChildError::NotFound`] for an unknown id, [`ChildError::Running`] if it
    /// runs, [`ChildError::StartFailed`] if its start fails (the spec stays).
    pub fn restart_child(&self, id: &str, timeout: Duration) -> Result<AnyPid, ChildError> {
        self.pid
            .call(|reply| Control::RestartChild(id.to_owned(), reply), timeout)
            .map_err(ChildError::Call)?
    }

    /// Forgets a stopped child's spec. Fails with [`ChildError::NotFound`] for an
    /// unknown id and [`ChildError::Running`] if it runs.
    pub fn delete_child(&self, id: &str, timeout: Duration) -> Result<(), ChildError> {
        self.pid
            .call(|reply| Control::DeleteChild(id.to_owned(), reply), timeout)
            .map_err(ChildError::Call)?
    }
}

impl fmt::Debug for SupervisorPid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SupervisorPid({})", self.id())
    }
}

impl From<&SupervisorPid> for AnyPid {
    fn from(sup: &SupervisorPid) -> AnyPid {
        sup.any()
    }
}

/// One child of a running supervisor, as [`SupervisorPid::children`] reports it.
#[derive(Clone)]
pub struct ChildInfo {
    /// The child spec's id.
    pub(crate) id: String,
    /// The current incarnation and its `Pid<M>`; `None` while the child is down.
    pub(crate) current: Option<(AnyPid, Arc<dyn Any + Send + Sync>)>,
    /// The child's restart type.
    pub(crate) restart: Restart,
    /// Whether the child is a supervisor.
    pub(crate) supervisor: bool,
    /// How many times the child has been restarted.
    pub(crate) restarts: u64,
    /// Whether a restart of the child is under way (waiting out a backoff, or to
    /// be tried again after a failed start).
    pub(crate) restarting: bool,
}

impl ChildInfo {
    /// The child spec's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current incarnation; `None` while the child is down (waiting out a
    /// backoff, or a transient child that ended normally).
    pub fn pid(&self) -> Option<&AnyPid> {
        self.current.as_ref().map(|(pid, _)| pid)
    }

    /// The current incarnation's typed address, if it is up and its messages are
    /// of type `M`.
    pub fn address<M: Send + 'static>(&self) -> Option<Pid<M>> {
        let (_, typed) = self.current.as_ref()?;
        typed.downcast_ref::<Pid<M>>().cloned()
    }

    /// The child as a supervisor, if it is one and is up (a dynamic one is
    /// [`dynamic_supervisor`](Self::dynamic_supervisor)).
    pub fn supervisor(&self) -> Option<SupervisorPid> {
        self.address::<Control>().map(SupervisorPid::new)
    }

    /// The child as a dynamic supervisor whose children start from arguments of
    /// type `A`, if it is one and is up.
    pub fn dynamic_supervisor<A: Send + 'static>(&self) -> Option<DynamicSupervisorPid<A>> {
        self.address::<DynControl<A>>()
            .map(DynamicSupervisorPid::new)
    }

    /// Whether a restart of the child is under way: it ended and is waiting out
    /// its backoff, or its last restart failed and will be tried again. Its
    /// [`pid`](Self::pid) is `None` meanwhile.
    pub fn is_restarting(&self) -> bool {
        self.restarting
    }

    /// Whether the child is a supervisor.
    pub fn is_supervisor(&self) -> bool {
        self.supervisor
    }

    /// The child's restart type.
    pub fn restart(&self) -> Restart {
        self.restart
    }

    /// How many times the supervisor has restarted the child (a child restarted
    /// along with a sibling counts too).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

impl fmt::Debug for ChildInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildInfo")
            .field("id", &self.id)
            .field("pid", &self.pid())
            .field("restart", &self.restart)
            .field("supervisor", &self.supervisor)
            .field("restarts", &self.restarts)
            .field("restarting", &self.restarting)
            .finish()
    }
}

/// Why a supervisor gave up. It ends with [`Exit::Done`] (too many restarts: a
/// clean end, as in OTP) or [`Exit::Error`] (a child that failed its first start)
/// carrying one of these; find it with
/// `exit_error.get().downcast_ref::<SupervisorError>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SupervisorError {
    /// More restarts than allowed within the period.
    IntensityExceeded {
        /// The restart limit.
        max_restarts: u32,
        /// The period it applies to.
        period: Duration,
        /// The child whose end would have been one restart too many.
        child: String,
        /// Why that child ended.
        reason: Exit,
    },
    /// A child could not be started when the supervisor started.
    StartFailed {
        /// The child.
        child: String,
        /// Why its start failed.
        reason: Exit,
    },
    /// A significant child ended (the last of them, under
    /// [`AutoShutdown::AllSignificant`](super::AutoShutdown::AllSignificant)),
    /// and the supervisor shut down with it.
    AutoShutdown {
        /// The significant child whose end did it.
        child: String,
    },
}

impl fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorError::IntensityExceeded {
                max_restarts,
                period,
                child,
                reason,
            } => write!(
                f,
                "restart intensity exceeded: more than {max_restarts} restarts within \
                 {period:?} (child {child:?} ended: {reason})"
            ),
            SupervisorError::StartFailed { child, reason } => {
                write!(f, "child {child:?} failed to start: {reason}")
            }
            SupervisorError::AutoShutdown { child } => {
                write!(f, "the significant child {child:?} ended: shut down")
            }
        }
    }
}

impl std::error::Error for SupervisorError {}

/// Spawning supervisors from wherever processes are spawned.
///
/// ```
/// use fibra_runtime::*;
///
/// let rt = Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(|cx| {
///     let sup = cx.spawn_supervisor(Supervisor::new(Strategy::OneForAll)).unwrap();
///     let children = sup.children(std::time::Duration::from_secs(5)).unwrap();
///     assert!(children.is_empty());
///     sup.stop();
/// });
/// ```
pub trait SpawnSupervisor {
    /// Spawns `supervisor`, unlinked (see [`Supervisor::spawn`]).
    fn spawn_supervisor(&self, supervisor: Supervisor) -> Result<SupervisorPid, SpawnError>;
}

impl SpawnSupervisor for Handle {
    fn spawn_supervisor(&self, supervisor: Supervisor) -> Result<SupervisorPid, SpawnError> {
        supervisor.spawn(self)
    }
}

impl SpawnSupervisor for Runtime {
    fn spawn_supervisor(&self, supervisor: Supervisor) -> Result<SupervisorPid, SpawnError> {
        supervisor.spawn(&self.handle())
    }
}

impl<M: Send + 'static> SpawnSupervisor for FnContext<'_, M> {
    fn spawn_supervisor(&self, supervisor: Supervisor) -> Result<SupervisorPid, SpawnError> {
        supervisor.spawn(&self.runtime())
    }
}

impl<P: Process> SpawnSupervisor for Context<'_, P> {
    fn spawn_supervisor(&self, supervisor: Supervisor) -> Result<SupervisorPid, SpawnError> {
        supervisor.spawn(&self.runtime())
    }
}
