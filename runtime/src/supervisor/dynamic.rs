//! Dynamic supervisors: many children of one kind, started at run time from a
//! template with per-child arguments (OTP's `simple_one_for_one`, Elixir's
//! `DynamicSupervisor`).

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::call::{CallError, ReplyTo};
use crate::error::SpawnError;
use crate::free::FnContext;
use crate::process::{AnyPid, Pid, ProcessId, Task};
use crate::runtime::Handle;
use crate::scope::Scope;

use super::address::{ChildCounts, ChildError, ChildInfo};
use super::spec::spawn_failure;
use super::{Backoff, ChildSpec, MAX_RESTARTS, PERIOD};

/// A child just started: its process, and its typed address as its spec made it.
pub(crate) type Started = (AnyPid, Arc<dyn Any + Send + Sync>);

/// Makes the spec of one child from its arguments.
pub(super) type Template<A> = dyn Fn(A) -> ChildSpec + Send + Sync;

/// What a dynamic supervisor's mailbox takes.
pub(crate) enum DynControl<A> {
    /// Start a child from the template with these arguments.
    Start(A, ReplyTo<Result<Started, ChildError>>),
    /// Stop this child and forget it.
    Terminate(ProcessId, ReplyTo<Result<(), ChildError>>),
    /// Report the children.
    WhichChildren(ReplyTo<Vec<ChildInfo>>),
}

/// A supervisor for many children of one kind, started while it runs: one
/// connection process per client, one worker per job. OTP's
/// `simple_one_for_one`, Elixir's `DynamicSupervisor`.
///
/// It starts with no children. [`DynamicSupervisorPid::start_child`] hands it the
/// arguments of a new child; it builds the child's [`ChildSpec`] with its template
/// and starts it. From then on the child is supervised one for one, by its spec:
/// a permanent child is restarted from the same spec (so with the same
/// arguments), a transient one only after a failure, a temporary one never; every
/// restart counts against the intensity, and too many end the supervisor as
/// [`Supervisor`](super::Supervisor)'s do. Children are addressed by their
/// process, not by an id: all of them have the template's.
///
/// When it shuts down it stops all its children at once, each as its spec's
/// [`Shutdown`](super::Shutdown) says, and waits for them all, as OTP does for
/// `simple_one_for_one`: they are alike, so no order among them matters, and
/// ten thousand connections close in the time of the slowest rather than of all of
/// them in turn.
///
/// ```
/// use std::time::Duration;
/// use fibra_runtime::*;
///
/// struct Job { n: u64 }
/// impl Process for Job {
///     type Message = ReplyTo<u64>;
///     fn handle(&mut self, reply: ReplyTo<u64>, _cx: &mut Context<Self>) {
///         reply.reply(self.n * 2);
///     }
/// }
///
/// let rt = Runtime::builder().workers(2).build().unwrap();
/// let jobs = DynamicSupervisor::new(|n: u64| ChildSpec::handler("job", move || Job { n }))
///     .max_children(100)
///     .spawn(&rt.handle())
///     .unwrap();
/// let t = Duration::from_secs(5);
/// let job = jobs.start_child(21, t).unwrap();
/// let job = jobs.children(t).unwrap()[0].address::<ReplyTo<u64>>().unwrap();
/// assert_eq!(job.call(|reply| reply, t).unwrap(), 42);
/// jobs.terminate_child(&job.any(), t).unwrap();
/// assert_eq!(jobs.count_children(t).unwrap().active, 0);
/// ```
pub struct DynamicSupervisor<A> {
    /// Makes a child's spec from its arguments.
    pub(super) template: Arc<Template<A>>,
    /// At most this many children, running or restarting.
    pub(super) max_children: Option<usize>,
    /// At most this many restarts...
    pub(super) max_restarts: u32,
    /// ...within this sliding window.
    pub(super) period: Duration,
    /// The delay before restarts.
    pub(super) backoff: Backoff,
    /// The name it registers under from its start, if any.
    pub(super) name: Option<String>,
}

impl<A: Send + 'static> DynamicSupervisor<A> {
    /// A dynamic supervisor whose children's specs `template` makes from their
    /// arguments; no limit on children, a restart intensity of 3 restarts in 5
    /// seconds, and no backoff. The template runs in the supervisor, once per
    /// child; a template that panics fails that child's start.
    pub fn new(template: impl Fn(A) -> ChildSpec + Send + Sync + 'static) -> DynamicSupervisor<A> {
        DynamicSupervisor {
            template: Arc::new(template),
            max_children: None,
            max_restarts: MAX_RESTARTS,
            period: PERIOD,
            backoff: Backoff::None,
            name: None,
        }
    }

    /// Registers the supervisor under `name` from its start, atomically (found
    /// with [`DynamicSupervisorPid::whereis`]); spawning fails with
    /// [`SpawnError::Name`] if the name is taken.
    pub fn name(mut self, name: impl Into<String>) -> DynamicSupervisor<A> {
        self.name = Some(name.into());
        self
    }

    /// Allows at most `max` children, running or restarting; beyond it
    /// [`start_child`](DynamicSupervisorPid::start_child) fails with
    /// [`ChildError::MaxChildren`].
    pub fn max_children(mut self, max: usize) -> DynamicSupervisor<A> {
        self.max_children = Some(max);
        self
    }

    /// The restart intensity, as [`Supervisor::intensity`](super::Supervisor::intensity).
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> DynamicSupervisor<A> {
        self.max_restarts = max_restarts;
        self.period = period;
        self
    }

    /// The delay before restarts (default [`Backoff::None`]).
    pub fn backoff(mut self, backoff: Backoff) -> DynamicSupervisor<A> {
        self.backoff = backoff;
        self
    }

    /// Spawns the supervisor on `handle`'s runtime, unlinked.
    ///
    /// Fails with [`SpawnError::InvalidSupervisor`] if the restart period is zero
    /// while restarts are allowed.
    pub fn spawn(self, handle: &Handle) -> Result<DynamicSupervisorPid<A>, SpawnError> {
        spawn(handle.shared(), self, None)
    }

    /// Spawns the supervisor linked to the calling process, atomically (as
    /// [`Supervisor::spawn_link`](super::Supervisor::spawn_link)).
    pub fn spawn_link(self, cx: &Scope<'_>) -> Result<DynamicSupervisorPid<A>, SpawnError> {
        let me = cx.frame.task();
        spawn(&me.header().shared, self, Some(&me))
    }

    /// A child spec that starts this supervisor under another one; its shutdown
    /// is [`Shutdown::Infinity`](super::Shutdown::Infinity), as for every child
    /// supervisor. Find the running one with
    /// [`ChildInfo::dynamic_supervisor`].
    pub fn child_spec(self, id: impl Into<String>) -> ChildSpec {
        let mut spec = ChildSpec::worker(id, move |sup: &Task, name: Option<&str>, _| {
            // Named from the start, like a top-level one.
            let mut dynamic = self.clone();
            if let Some(name) = name {
                dynamic.name = Some(name.to_string());
            }
            let child = spawn(&sup.header().shared, dynamic, Some(sup)).map_err(spawn_failure)?;
            Ok(Some(super::spec::Started::new(child.pid.clone())))
        });
        spec.supervisor = true;
        spec.shutdown = super::Shutdown::Infinity;
        spec
    }

    /// Why the supervisor may not run, if it may not.
    fn invalid(&self) -> Option<String> {
        (self.period.is_zero() && self.max_restarts > 0).then(|| {
            format!(
                "a restart intensity of {} restarts in a period of zero never \
                 escalates a crash loop; give the period a length",
                self.max_restarts
            )
        })
    }
}

impl<A> Clone for DynamicSupervisor<A> {
    fn clone(&self) -> Self {
        DynamicSupervisor {
            template: Arc::clone(&self.template),
            max_children: self.max_children,
            max_restarts: self.max_restarts,
            period: self.period,
            backoff: self.backoff,
            name: self.name.clone(),
        }
    }
}

impl<A> fmt::Debug for DynamicSupervisor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicSupervisor")
            .field("max_children", &self.max_children)
            .field("max_restarts", &self.max_restarts)
            .field("period", &self.period)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

/// Spawns a dynamic supervisor process, linked to `parent` if there is one.
fn spawn<A: Send + 'static>(
    shared: &Arc<crate::scheduler::Shared>,
    supervisor: DynamicSupervisor<A>,
    parent: Option<&Task>,
) -> Result<DynamicSupervisorPid<A>, SpawnError> {
    if let Some(why) = supervisor.invalid() {
        return Err(SpawnError::InvalidSupervisor(why));
    }
    let parent_id = parent.map(|p| ProcessId(p.header().id));
    let name = supervisor.name.clone();
    let child = crate::free::spawn_as(
        shared,
        move |cx: &mut FnContext<'_, DynControl<A>>| {
            super::dynamic_run::run(cx, supervisor, parent_id)
        },
        parent,
        name,
    )?;
    Ok(DynamicSupervisorPid::new(child.pid()))
}

/// The address of a running [`DynamicSupervisor`] whose children start from
/// arguments of type `A`.
pub struct DynamicSupervisorPid<A> {
    /// The supervisor process.
    pid: Pid<DynControl<A>>,
    _args: PhantomData<fn(A)>,
}

impl<A: Send + 'static> DynamicSupervisorPid<A> {
    pub(super) fn new(pid: Pid<DynControl<A>>) -> DynamicSupervisorPid<A> {
        DynamicSupervisorPid {
            pid,
            _args: PhantomData,
        }
    }

    /// The dynamic supervisor registered under `name` (a child spec's
    /// [`name`](ChildSpec::name)), if that is a live one whose children start
    /// from arguments of type `A`.
    pub fn whereis(handle: &Handle, name: &str) -> Option<DynamicSupervisorPid<A>> {
        handle
            .whereis::<DynControl<A>>(name)
            .map(DynamicSupervisorPid::new)
    }

    /// Starts a child from the template with these arguments; returns its
    /// process. Waits at most `timeout` for the supervisor's answer.
    ///
    /// Fails with [`ChildError::MaxChildren`] when the supervisor has as many
    /// children as it may, [`ChildError::StartFailed`] when the child's start
    /// fails (nothing is kept), and [`ChildError::Call`] when the supervisor has
    /// ended or did not answer in time.
    pub fn start_child(&self, args: A, timeout: Duration) -> Result<AnyPid, ChildError> {
        self.start(args, timeout).map(|(pid, _)| pid)
    }

    /// Starts a child as [`start_child`](Self::start_child) does, and returns its
    /// typed address, to send to or call at once: `M` is the message type of the
    /// process the template's spec starts.
    ///
    /// If the child takes messages of another type it runs on, supervised, and
    /// the error, [`ChildError::WrongType`], hands back its process.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// struct Echo;
    /// impl Process for Echo {
    ///     type Message = ReplyTo<&'static str>;
    ///     fn handle(&mut self, reply: ReplyTo<&'static str>, _cx: &mut Context<Self>) {
    ///         reply.reply("echo");
    ///     }
    /// }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let sup = DynamicSupervisor::new(|(): ()| ChildSpec::handler("echo", || Echo))
    ///     .spawn(&rt.handle())
    ///     .unwrap();
    /// let t = Duration::from_secs(5);
    /// let echo: Pid<ReplyTo<&'static str>> = sup.start_child_typed((), t).unwrap();
    /// assert_eq!(echo.call(|r| r, t).unwrap(), "echo");
    /// let wrong = sup.start_child_typed::<u64>((), t).unwrap_err();
    /// assert!(matches!(wrong, ChildError::WrongType(_)));
    /// ```
    pub fn start_child_typed<M: Send + 'static>(
        &self,
        args: A,
        timeout: Duration,
    ) -> Result<Pid<M>, ChildError> {
        let (pid, typed) = self.start(args, timeout)?;
        typed
            .downcast_ref::<Pid<M>>()
            .cloned()
            .ok_or(ChildError::WrongType(pid))
    }

    fn start(&self, args: A, timeout: Duration) -> Result<Started, ChildError> {
        self.pid
            .call(|reply| DynControl::Start(args, reply), timeout)
            .map_err(ChildError::Call)?
    }

    /// Stops this child (as its spec's [`Shutdown`](super::Shutdown) says), waits
    /// for its end, and forgets it: it is not restarted, whatever its restart
    /// type. Fails with [`ChildError::NotFound`] if it is not a child of this
    /// supervisor (or has ended already).
    pub fn terminate_child(&self, child: &AnyPid, timeout: Duration) -> Result<(), ChildError> {
        let id = child.id();
        self.pid
            .call(|reply| DynControl::Terminate(id, reply), timeout)
            .map_err(ChildError::Call)?
    }

    /// The children as they are now, in start order; all have the template's id.
    pub fn children(&self, timeout: Duration) -> Result<Vec<ChildInfo>, CallError> {
        self.pid.call(DynControl::WhichChildren, timeout)
    }

    /// OTP's `which_children`: the same as [`children`](Self::children).
    pub fn which_children(&self, timeout: Duration) -> Result<Vec<ChildInfo>, CallError> {
        self.children(timeout)
    }

    /// How many children there are (OTP's `count_children`): `specs` counts
    /// those running and those restarting.
    pub fn count_children(&self, timeout: Duration) -> Result<ChildCounts, CallError> {
        self.children(timeout)
            .map(|children| ChildCounts::of(&children))
    }

    /// The supervisor's process id.
    pub fn id(&self) -> ProcessId {
        self.pid.id()
    }

    /// The supervisor's address without its type, for links, monitors and kill.
    pub fn any(&self) -> AnyPid {
        self.pid.any()
    }

    /// Whether the supervisor is alive.
    pub fn is_alive(&self) -> bool {
        self.pid.is_alive()
    }

    /// Asks the supervisor to shut down: it stops all its children at once and
    /// exits with [`Exit::Stopped`](crate::Exit::Stopped) once they have ended.
    pub fn stop(&self) {
        self.pid.any().stop();
    }
}

impl<A: Send + 'static> Clone for DynamicSupervisorPid<A> {
    fn clone(&self) -> Self {
        DynamicSupervisorPid {
            pid: self.pid.clone(),
            _args: PhantomData,
        }
    }
}

impl<A: Send + 'static> PartialEq for DynamicSupervisorPid<A> {
    fn eq(&self, other: &Self) -> bool {
        self.pid == other.pid
    }
}

impl<A: Send + 'static> Eq for DynamicSupervisorPid<A> {}

impl<A: Send + 'static> fmt::Debug for DynamicSupervisorPid<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DynamicSupervisorPid({})", self.pid.id())
    }
}

impl<A: Send + 'static> From<&DynamicSupervisorPid<A>> for AnyPid {
    fn from(sup: &DynamicSupervisorPid<A>) -> AnyPid {
        sup.any()
    }
}
