//! Child specs: how a supervisor starts one child, when it restarts it, and how it
//! stops it.

use std::any::Any;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{Exit, SpawnError};
use crate::free::FnContext;
use crate::handler::Process;
use crate::process::{AnyPid, Pid, Task};
use crate::registry::RegisterError;
use crate::runtime::Handle;

use super::Supervisor;

/// When a supervisor restarts a child that has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Restart {
    /// Always, whatever the exit reason (the default).
    Permanent,
    /// Only after a failure ([`Exit::is_failure`]): a child that exits normally or
    /// was stopped stays down.
    Transient,
    /// Never. The child is forgotten once it ends, and its end never restarts its
    /// siblings, whatever the strategy.
    Temporary,
}

/// How a supervisor stops a child: when it shuts down, and when it stops siblings
/// of a failed child under [`Strategy::OneForAll`](super::Strategy::OneForAll) or
/// [`Strategy::RestForOne`](super::Strategy::RestForOne).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shutdown {
    /// Kill it at once ([`AnyPid::kill`]).
    Kill,
    /// Ask it to stop ([`AnyPid::stop`]) and kill it if it has not ended after this
    /// long. The default for workers is 5 seconds, as in Erlang/OTP.
    Timeout(Duration),
    /// Ask it to stop and wait for as long as it takes. The default for child
    /// supervisors, which need the time to stop their own children.
    Infinity,
}

/// The default shutdown timeout of a worker child.
const WORKER_SHUTDOWN: Duration = Duration::from_secs(5);

/// One incarnation of a child, as its start function reports it.
pub(crate) struct Started {
    /// The new process.
    pub(crate) pid: AnyPid,
    /// Its `Pid<M>`, for [`ChildInfo::pid`](super::ChildInfo::pid).
    pub(crate) typed: Arc<dyn Any + Send + Sync>,
}

impl Started {
    pub(super) fn new<M: Send + 'static>(pid: Pid<M>) -> Started {
        Started {
            pid: pid.any(),
            typed: Arc::new(pid),
        }
    }
}

/// Starts one incarnation of a child, linked to the supervisor (the task), and
/// registers it under the name if there is one; a handler child's start waits, at
/// most the timeout, for its `init`. `Ok(None)`: its `init` said ignore. An `Err`
/// is the reason the start failed, treated like an exit of the child.
pub(crate) type StartFn =
    dyn Fn(&Task, Option<&str>, Duration) -> Result<Option<Started>, Exit> + Send + Sync;

/// How long a supervisor waits for a child's `init` unless told otherwise.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start, restart and stop one child of a [`Supervisor`].
///
/// A child spec holds a factory, not a process: every start calls it for a fresh
/// value, so a restarted child never sees its predecessor's state. The defaults are
/// [`Restart::Permanent`], and [`Shutdown::Timeout`] of 5 s for workers or
/// [`Shutdown::Infinity`] for child supervisors.
///
/// ```
/// use std::time::Duration;
/// use fibra_runtime::*;
///
/// struct Cache;
/// impl Process for Cache {
///     type Message = ();
///     fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
/// }
///
/// let cache = ChildSpec::handler("cache", || Cache)
///     .name("cache")
///     .shutdown(Shutdown::Timeout(Duration::from_millis(500)));
/// let poller = ChildSpec::free("poller", || {
///     |cx: &mut FnContext<()>| loop {
///         cx.sleep(Duration::from_secs(1));
///     }
/// })
/// .restart(Restart::Transient);
/// assert_eq!(cache.id(), "cache");
/// assert_eq!(poller.restart_type(), Restart::Transient);
/// ```
#[derive(Clone)]
pub struct ChildSpec {
    /// Unique among the supervisor's children; names it in logs and reports.
    pub(crate) id: String,
    /// When to restart it.
    pub(crate) restart: Restart,
    /// How to stop it.
    pub(crate) shutdown: Shutdown,
    /// The registered name each incarnation gets, if any.
    pub(crate) name: Option<String>,
    /// Whether the child is a supervisor itself.
    pub(crate) supervisor: bool,
    /// Whether the spec starts one given value, once ([`ChildSpec::handler_once`],
    /// [`ChildSpec::free_once`]).
    pub(crate) once: bool,
    /// Whether its own end may end the supervisor ([`ChildSpec::significant`]).
    pub(crate) significant: bool,
    /// How long a start waits for the child's `init`.
    pub(crate) start_timeout: Duration,
    /// Starts an incarnation.
    pub(crate) start: Arc<StartFn>,
}

impl ChildSpec {
    /// A child that is a handler process: each start spawns `factory()`.
    pub fn handler<P, F>(id: impl Into<String>, factory: F) -> ChildSpec
    where
        P: Process,
        F: Fn() -> P + Send + Sync + 'static,
    {
        ChildSpec::worker(id, move |sup: &Task, name: Option<&str>, timeout| {
            start_handler(sup, factory(), name, timeout)
        })
    }

    /// A child that is a free-running process: each start spawns the closure that
    /// `factory()` returns. What the closure returns is dropped; returning is a
    /// normal exit.
    pub fn free<M, T, B, F>(id: impl Into<String>, factory: F) -> ChildSpec
    where
        M: Send + 'static,
        T: Send + 'static,
        B: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
        F: Fn() -> B + Send + Sync + 'static,
    {
        ChildSpec::worker(id, move |sup: &Task, name: Option<&str>, _| {
            let body = factory();
            let child =
                crate::free::spawn(&sup.header().shared, body, Some(sup)).map_err(spawn_failure)?;
            register(sup, name, child.pid()).map(Some)
        })
    }

    /// A child that is this handler process, started once: for a process built
    /// from something that cannot be made twice (a connection's socket). Such a
    /// child is always [`Restart::Temporary`]: when it ends, it is forgotten.
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// struct Session { peer: String }
    /// impl Process for Session {
    ///     type Message = ();
    ///     fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
    /// }
    ///
    /// let spec = ChildSpec::handler_once("session", Session { peer: "a".into() });
    /// assert_eq!(spec.restart_type(), Restart::Temporary);
    /// ```
    pub fn handler_once<P: Process>(id: impl Into<String>, process: P) -> ChildSpec {
        let slot = Mutex::new(Some(process));
        ChildSpec::worker(id, move |sup: &Task, name: Option<&str>, timeout| {
            start_handler(sup, take_once(&slot)?, name, timeout)
        })
        .one_shot()
    }

    /// A child that is this free-running process, started once (see
    /// [`ChildSpec::handler_once`]): always [`Restart::Temporary`].
    pub fn free_once<M, T, B>(id: impl Into<String>, body: B) -> ChildSpec
    where
        M: Send + 'static,
        T: Send + 'static,
        B: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
    {
        let slot = Mutex::new(Some(body));
        ChildSpec::worker(id, move |sup: &Task, name: Option<&str>, _| {
            let body = take_once(&slot)?;
            let child =
                crate::free::spawn(&sup.header().shared, body, Some(sup)).map_err(spawn_failure)?;
            register(sup, name, child.pid()).map(Some)
        })
        .one_shot()
    }

    /// A child that is a supervisor: each start spawns a copy of `supervisor`,
    /// which stops its own children before it ends. Its shutdown defaults to
    /// [`Shutdown::Infinity`].
    pub fn supervisor(id: impl Into<String>, supervisor: Supervisor) -> ChildSpec {
        let mut spec = ChildSpec::worker(id, move |sup: &Task, name: Option<&str>, timeout| {
            let mut supervisor = supervisor.clone();
            if let Some(name) = name {
                supervisor.name = Some(name.to_string());
            }
            supervisor.start_timeout = timeout;
            match super::spawn(&sup.header().shared, supervisor, Some(sup)) {
                Ok(child) => Ok(Some(Started::new(child.pid().clone()))),
                Err(SpawnError::InitFailed(reason)) => Err(reason),
                Err(err) => Err(spawn_failure(err)),
            }
        });
        spec.supervisor = true;
        spec.shutdown = Shutdown::Infinity;
        spec
    }

    /// Marks a spec that starts its value once.
    fn one_shot(mut self) -> ChildSpec {
        self.once = true;
        self.restart = Restart::Temporary;
        self
    }

    pub(super) fn worker(
        id: impl Into<String>,
        start: impl Fn(&Task, Option<&str>, Duration) -> Result<Option<Started>, Exit>
            + Send
            + Sync
            + 'static,
    ) -> ChildSpec {
        ChildSpec {
            id: id.into(),
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(WORKER_SHUTDOWN),
            name: None,
            supervisor: false,
            once: false,
            significant: false,
            start_timeout: DEFAULT_START_TIMEOUT,
            start: Arc::new(start),
        }
    }

    /// Sets when the child is restarted (default [`Restart::Permanent`]).
    ///
    /// # Panics
    ///
    /// If the spec starts one value once ([`ChildSpec::handler_once`],
    /// [`ChildSpec::free_once`]) and `restart` is not [`Restart::Temporary`]:
    /// there is nothing to restart such a child from.
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        assert!(
            !self.once || restart == Restart::Temporary,
            "the child {:?} is started from one value, once: it cannot be {restart:?}",
            self.id
        );
        self.restart = restart;
        self
    }

    /// Marks the child significant (OTP 24's `significant`): when it ends by
    /// itself and is not restarted, a supervisor with an
    /// [`AutoShutdown`](super::AutoShutdown) other than `Never` may end with it.
    /// Only a [`Restart::Transient`] or [`Restart::Temporary`] child may be
    /// significant, and only under such a supervisor: spawning a supervisor, or
    /// starting a child, that breaks either rule fails with a clear error.
    pub fn significant(mut self, significant: bool) -> ChildSpec {
        self.significant = significant;
        self
    }

    /// Sets how long a start waits for the child's `init` (a handler child's
    /// [`Process::init`], a child supervisor's start of its own children);
    /// default [`DEFAULT_START_TIMEOUT`]. A child still in its `init` then is
    /// killed, and the start fails. Free-running children have no `init`: they
    /// count as started once spawned.
    pub fn start_timeout(mut self, timeout: Duration) -> ChildSpec {
        self.start_timeout = timeout;
        self
    }

    /// Sets how the child is stopped.
    pub fn shutdown(mut self, shutdown: Shutdown) -> ChildSpec {
        self.shutdown = shutdown;
        self
    }

    /// Registers every incarnation of the child under `name` (see
    /// [`Handle::register`]), so that whoever addresses it by name reaches the
    /// current one. The name is free while the child is down between two
    /// incarnations. A start fails if another live process holds the name.
    pub fn name(mut self, name: impl Into<String>) -> ChildSpec {
        self.name = Some(name.into());
        self
    }

    /// The child's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the child is restarted.
    pub fn restart_type(&self) -> Restart {
        self.restart
    }

    /// How the child is stopped.
    pub fn shutdown_type(&self) -> Shutdown {
        self.shutdown
    }

    /// The name its incarnations are registered under, if any.
    pub fn registered_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether the child is a supervisor.
    pub fn is_supervisor(&self) -> bool {
        self.supervisor
    }
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("name", &self.name)
            .field("supervisor", &self.supervisor)
            .finish_non_exhaustive()
    }
}

/// The value a one-shot spec starts, or the reason it cannot start again.
fn take_once<T>(slot: &Mutex<Option<T>>) -> Result<T, Exit> {
    slot.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or_else(|| Exit::error(StartedOnce))
}

/// Why a one-shot child spec failed to start a second time.
#[derive(Debug)]
struct StartedOnce;

impl fmt::Display for StartedOnce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the child was started from one value, which has been used")
    }
}

impl std::error::Error for StartedOnce {}

/// Why a child could not be spawned, as an exit reason.
pub(super) fn spawn_failure(err: SpawnError) -> Exit {
    match err {
        SpawnError::Shutdown => Exit::Shutdown,
        SpawnError::InitFailed(reason) => reason,
        err @ SpawnError::Stack { .. } => Exit::NoStack(err.to_string()),
        err => Exit::error(err),
    }
}

/// Starts a handler child, named from the start, and waits for its `init`.
fn start_handler<P: Process>(
    sup: &Task,
    process: P,
    name: Option<&str>,
    timeout: Duration,
) -> Result<Option<Started>, Exit> {
    let shared = &sup.header().shared;
    match crate::handler::start_as(shared, process, Some(sup), name.map(String::from), timeout) {
        Ok(pid) => Ok(Some(Started::new(pid))),
        Err(SpawnError::Ignored) => Ok(None),
        Err(err) => Err(spawn_failure(err)),
    }
}

/// Registers a freshly spawned child under its name, if it has one.
///
/// A child that has already ended cannot be registered; that is not a failed
/// start: its exit notice is on its way and is handled like any other. A name
/// held by another live process is: the new child is unlinked and killed, and the
/// start fails with the registry's error.
pub(super) fn register<M: Send + 'static>(
    sup: &Task,
    name: Option<&str>,
    pid: Pid<M>,
) -> Result<Started, Exit> {
    if let Some(name) = name {
        let handle = Handle::from_shared(sup.header().shared.clone());
        match handle.register(name, &pid) {
            Ok(()) | Err(RegisterError::Exited { .. }) => {}
            Err(err) => {
                let child = pid.any();
                crate::signal::unlink(sup, &child.0);
                child.kill();
                return Err(Exit::error(err));
            }
        }
    }
    Ok(Started::new(pid))
}
