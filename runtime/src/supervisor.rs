//! Supervisors: processes that start other processes, watch them, and restart
//! them when they end, in the manner of Erlang/OTP.
//!
//! A [`Supervisor`] is a recipe: a restart [`Strategy`], a restart intensity, an
//! optional [`Backoff`], and an ordered list of [`ChildSpec`]s. Spawning it
//! ([`SpawnSupervisor::spawn_supervisor`], [`Supervisor::spawn_link`]) starts a
//! free-running process that traps exits and starts the children in order, each
//! linked to it (atomically, at spawn) and monitored by it. A child spec can itself
//! be a supervisor, so supervisors nest into trees.
//!
//! # What happens when a child ends
//!
//! The child's link delivers an exit notice with its reason, then its monitor a
//! `Down`; the supervisor acts on the `Down` (by then the child's name, if it had
//! one, has been freed), using the reason from the exit notice.
//!
//! 1. Its [`Restart`] type decides whether it comes back: a temporary child is
//!    forgotten, a transient one that did not fail stays down; nothing else
//!    happens in either case.
//! 2. Otherwise the restart is counted. More than `max_restarts` restarts within
//!    the last `period` means the children cannot be kept up: the supervisor shuts
//!    down (below) and exits with [`SupervisorError::IntensityExceeded`], and
//!    whoever supervises or watches it takes over. As in OTP, that exit is a clean
//!    one ([`Exit::Done`](crate::Exit::Done), OTP's `shutdown`): a parent restarts
//!    a permanent supervisor that gave up, but not a transient one.
//! 3. The strategy names the children to restart: the failed one
//!    ([`Strategy::OneForOne`]), all of them ([`Strategy::OneForAll`]), or it and
//!    the ones started after it ([`Strategy::RestForOne`]). Those still running are
//!    stopped in reverse start order, each as its [`Shutdown`] says; temporary ones
//!    among them are forgotten.
//! 4. After the backoff delay they are started again in start order, each as a
//!    fresh process from its factory, registered under its name if it has one. A
//!    start that fails (a panicking factory, a name held by another process) counts
//!    as another exit of that child. During the delay the supervisor goes on
//!    handling other children's exits, questions and its own shutdown.
//!
//! # Shutting down
//!
//! [`SupervisorPid::stop`] (or [`AnyPid::stop`]), an exit signal from the process
//! that spawned it linked, or an exceeded intensity makes the supervisor stop its
//! children in reverse start order, one at a time: stop (or kill) the child, wait
//! for its `Down`, kill it if it outlives its shutdown timeout, go on with the
//! next. Then it exits: [`Exit::Stopped`] when asked to stop, the parent's reason
//! when its parent ended, the intensity error otherwise. A kill cannot be trapped:
//! a killed supervisor ends at once, and its links take its children down with it.
//!
//! [`AnyPid::stop`]: crate::AnyPid::stop
//! [`Exit::Stopped`]: crate::Exit::Stopped

mod address;
mod dynamic;
mod dynamic_run;
mod intensity;
mod run;
mod spec;

use std::sync::Arc;
use std::time::Duration;

pub use address::{
    ChildCounts, ChildError, ChildInfo, SpawnSupervisor, SupervisorError, SupervisorPid,
};
pub use dynamic::{DynamicSupervisor, DynamicSupervisorPid};
pub use spec::{ChildSpec, Restart, Shutdown, DEFAULT_START_TIMEOUT};

use crate::error::SpawnError;
use crate::free::FnContext;
use crate::process::{ProcessId, Task};
use crate::runtime::Handle;
use crate::scheduler::Shared;
use crate::scope::Scope;

/// Which children a supervisor restarts when one of them has to be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Only the child that ended.
    OneForOne,
    /// All children: the others are stopped in reverse start order, then all are
    /// started again in start order. For children that cannot work without each
    /// other.
    OneForAll,
    /// The child that ended and those started after it, which are stopped in
    /// reverse order and started again in order. For children that depend on the
    /// ones started before them.
    RestForOne,
}

/// How long a supervisor waits before it restarts a child.
///
/// The delay grows with a child's recent restarts: a child's count starts at zero
/// and goes up by one with each restart, and goes back to zero when an incarnation
/// has run for at least the intensity period before it ended. When the restart
/// takes siblings along, the delay is that of the child that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Backoff {
    /// Restart at once (the default).
    #[default]
    None,
    /// Wait the same time before every restart.
    Fixed(Duration),
    /// Wait `initial` before the first restart, twice as long before the next,
    /// and so on, never longer than `max`.
    Exponential {
        /// The first delay.
        initial: Duration,
        /// The longest delay.
        max: Duration,
    },
}

impl Backoff {
    /// The delay before restart number `count` (counted from zero) of a child.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::Backoff;
    ///
    /// let ms = Duration::from_millis;
    /// let backoff = Backoff::Exponential { initial: ms(10), max: ms(50) };
    /// let delays: Vec<_> = (0..5).map(|n| backoff.delay(n)).collect();
    /// assert_eq!(delays, [ms(10), ms(20), ms(40), ms(50), ms(50)]);
    /// ```
    pub fn delay(&self, count: u32) -> Duration {
        match *self {
            Backoff::None => Duration::ZERO,
            Backoff::Fixed(delay) => delay,
            Backoff::Exponential { initial, max } => 2u32
                .checked_pow(count)
                .and_then(|factor| initial.checked_mul(factor))
                .map_or(max, |delay| delay.min(max)),
        }
    }
}

/// The default restart intensity: at most this many restarts...
pub(crate) const MAX_RESTARTS: u32 = 3;
/// ...within this period. Erlang/OTP allows 1 in 5 s; a little more slack lets a
/// child survive a short burst of bad input, and is still quick to give up on a
/// child that cannot start at all.
pub(crate) const PERIOD: Duration = Duration::from_secs(5);

/// A supervisor's recipe: its strategy, restart limits and children, in start
/// order. Spawn it with [`SpawnSupervisor::spawn_supervisor`] or
/// [`Supervisor::spawn_link`], or nest it as a child with
/// [`ChildSpec::supervisor`]. See the module documentation for what it does.
///
/// ```
/// use std::time::Duration;
/// use fibra_runtime::*;
///
/// let rt = Runtime::builder().workers(2).build().unwrap();
/// let sup = Supervisor::new(Strategy::OneForOne)
///     .intensity(5, Duration::from_secs(10))
///     .backoff(Backoff::Fixed(Duration::from_millis(10)))
///     .child(ChildSpec::free("ticker", || {
///         |cx: &mut FnContext<()>| loop {
///             cx.sleep(Duration::from_millis(100));
///         }
///     }));
/// let sup = rt.handle().spawn_supervisor(sup).unwrap();
/// let children = sup.children(Duration::from_secs(5)).unwrap();
/// assert_eq!(children[0].id(), "ticker");
/// assert!(children[0].pid().is_some());
/// sup.stop();
/// ```
#[derive(Debug, Clone)]
pub struct Supervisor {
    /// Which children a restart takes along.
    pub(crate) strategy: Strategy,
    /// At most this many restarts...
    pub(crate) max_restarts: u32,
    /// ...within this sliding window.
    pub(crate) period: Duration,
    /// The delay before restarts.
    pub(crate) backoff: Backoff,
    /// The children, in start order.
    pub(crate) children: Vec<ChildSpec>,
    /// Whether the end of significant children ends the supervisor.
    pub(crate) auto_shutdown: AutoShutdown,
    /// The name it registers under from its start, if any.
    pub(crate) name: Option<String>,
    /// How long `spawn` waits for the children to start.
    pub(crate) start_timeout: Duration,
}

/// When a supervisor ends by itself because its significant children did
/// ([`ChildSpec::significant`]; OTP 24's `auto_shutdown`). It then stops its
/// other children, as on any shutdown, and exits cleanly with
/// [`Exit::Done`](crate::Exit::Done) carrying [`SupervisorError::AutoShutdown`],
/// so that its own supervisor treats it as a transient child that is done.
/// Only an end that the child came to by itself counts: one that its supervisor
/// brought about (`terminate_child`, a restart of its group) does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoShutdown {
    /// Never: no child may be significant (the default).
    #[default]
    Never,
    /// When any significant child ends and is not restarted.
    AnySignificant,
    /// When every significant child has ended and none is restarted.
    AllSignificant,
}

impl Supervisor {
    /// A supervisor with no children yet, a restart intensity of 3 restarts in
    /// 5 seconds, and no backoff.
    pub fn new(strategy: Strategy) -> Supervisor {
        Supervisor {
            strategy,
            max_restarts: MAX_RESTARTS,
            period: PERIOD,
            backoff: Backoff::None,
            children: Vec::new(),
            auto_shutdown: AutoShutdown::Never,
            name: None,
            start_timeout: spec::DEFAULT_START_TIMEOUT,
        }
    }

    /// Sets how long spawning the supervisor waits for its children to start
    /// (default [`DEFAULT_START_TIMEOUT`]); past it,
    /// the supervisor is killed, its children with it, and the spawn fails with
    /// [`SpawnError::InitTimeout`]. As a child, its spec's
    /// [`start_timeout`](ChildSpec::start_timeout) applies instead.
    pub fn start_timeout(mut self, timeout: Duration) -> Supervisor {
        self.start_timeout = timeout;
        self
    }

    /// Sets when the supervisor ends because its significant children did
    /// (default [`AutoShutdown::Never`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// // A job and its helper: when the job is done, so is the pair.
    /// let pair = Supervisor::new(Strategy::OneForAll)
    ///     .auto_shutdown(AutoShutdown::AnySignificant)
    ///     .child(ChildSpec::free("helper", || |cx: &mut FnContext<()>| cx.receive()))
    ///     .child(
    ///         ChildSpec::free("job", || |_: &mut FnContext<()>| { /* works, then returns */ })
    ///             .restart(Restart::Transient)
    ///             .significant(true),
    ///     );
    /// let outcome = rt.block_on(move |cx| {
    ///     let pair = cx.spawn_supervisor(pair).unwrap();
    ///     let watch = cx.monitor(&pair);
    ///     loop {
    ///         if let Notice::Down(down) = cx.receive_notice() {
    ///             if down.monitor == watch {
    ///                 break down.reason;
    ///             }
    ///         }
    ///     }
    /// });
    /// assert!(!outcome.is_failure());
    /// assert!(outcome.to_string().contains("\"job\""), "{outcome}");
    /// ```
    pub fn auto_shutdown(mut self, auto_shutdown: AutoShutdown) -> Supervisor {
        self.auto_shutdown = auto_shutdown;
        self
    }

    /// Registers the supervisor under `name` from its start, atomically (a
    /// top-level supervisor, found with [`SupervisorPid::whereis`]). Spawning
    /// fails with [`SpawnError::Name`] if the name is taken. As a child of
    /// another supervisor, every incarnation registers under it.
    pub fn name(mut self, name: impl Into<String>) -> Supervisor {
        self.name = Some(name.into());
        self
    }

    /// Allows at most `max_restarts` restarts within any `period`; one more and
    /// the supervisor gives up (stops its children and exits cleanly, with
    /// [`Exit::Done`](crate::Exit::Done) carrying
    /// [`SupervisorError::IntensityExceeded`]). Zero means it gives up at the first
    /// restart.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Supervisor {
        self.max_restarts = max_restarts;
        self.period = period;
        self
    }

    /// Sets the delay before restarts (default [`Backoff::None`]).
    pub fn backoff(mut self, backoff: Backoff) -> Supervisor {
        self.backoff = backoff;
        self
    }

    /// Adds a child, started after the ones added before it. Child ids must be
    /// unique: spawning a supervisor with two children of one id fails with
    /// [`SpawnError::InvalidSupervisor`].
    pub fn child(mut self, spec: ChildSpec) -> Supervisor {
        self.children.push(spec);
        self
    }

    /// Adds children, in order (see [`Supervisor::child`]).
    pub fn children(self, specs: impl IntoIterator<Item = ChildSpec>) -> Supervisor {
        specs.into_iter().fold(self, Supervisor::child)
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The child specs, in start order.
    pub fn specs(&self) -> &[ChildSpec] {
        &self.children
    }

    /// Spawns the supervisor on `handle`'s runtime, unlinked, and waits until it
    /// has started its children, in order, each through its `init` (OTP's
    /// `supervisor:start_link`): when this returns, every child is up (or said
    /// ignore) and named.
    ///
    /// Fails with [`SpawnError::InvalidSupervisor`] if two children share an id,
    /// or if the restart period is zero while restarts are allowed (then a crash
    /// loop would never count as one and never escalate); with
    /// [`SpawnError::InitFailed`] carrying [`SupervisorError::StartFailed`] if a
    /// child failed to start (the ones started before it are stopped again); with
    /// [`SpawnError::InitTimeout`] past the [`start_timeout`](Self::start_timeout).
    pub fn spawn(self, handle: &Handle) -> Result<SupervisorPid, SpawnError> {
        spawn(handle.shared(), self, None)
    }

    /// Why the supervisor may not run, if it may not.
    fn invalid(&self) -> Option<String> {
        if self.period.is_zero() && self.max_restarts > 0 {
            return Some(format!(
                "a restart intensity of {} restarts in a period of zero never \
                 escalates a crash loop; give the period a length",
                self.max_restarts
            ));
        }
        if let Some(why) = self.children.iter().find_map(|spec| self.refuses(spec)) {
            return Some(why);
        }
        let mut ids = std::collections::HashSet::new();
        self.children
            .iter()
            .find(|spec| !ids.insert(spec.id.as_str()))
            .map(|spec| format!("two children have the id {:?}", spec.id))
    }

    /// Why `spec` may not be a child of this supervisor, if it may not.
    pub(crate) fn refuses(&self, spec: &ChildSpec) -> Option<String> {
        refuses(self.auto_shutdown, spec)
    }

    /// Spawns the supervisor linked to the calling process, atomically, and waits
    /// for its children to start as [`spawn`](Self::spawn) does: when the caller
    /// ends, whatever the reason, the supervisor stops its children and exits
    /// with the same reason; when the supervisor fails later, the caller gets its
    /// exit signal. A failed start is an error here, not an exit signal: the
    /// supervisor unlinks the caller before it ends.
    ///
    /// `cx` is the caller's context (either kind dereferences to a [`Scope`]).
    pub fn spawn_link(self, cx: &Scope<'_>) -> Result<SupervisorPid, SpawnError> {
        let me = cx.frame.task();
        spawn(&me.header().shared, self, Some(&me))
    }
}

/// Why `spec` may not be a child of a supervisor with `auto_shutdown`, if it may
/// not (OTP's rules for significant children).
pub(crate) fn refuses(auto_shutdown: AutoShutdown, spec: &ChildSpec) -> Option<String> {
    if !spec.significant {
        return None;
    }
    if spec.restart == Restart::Permanent {
        return Some(format!(
            "the child {:?} is significant and permanent: it is always restarted, so \
             its end can never be significant; make it transient or temporary",
            spec.id
        ));
    }
    if auto_shutdown == AutoShutdown::Never {
        return Some(format!(
            "the child {:?} is significant, but the supervisor's auto_shutdown is \
             Never",
            spec.id
        ));
    }
    None
}

/// Spawns a supervisor process, linked to `parent` if there is one.
pub(crate) fn spawn(
    shared: &Arc<Shared>,
    supervisor: Supervisor,
    parent: Option<&Task>,
) -> Result<SupervisorPid, SpawnError> {
    if let Some(why) = supervisor.invalid() {
        return Err(SpawnError::InvalidSupervisor(why));
    }
    let parent_id = parent.map(|p| ProcessId(p.header().id));
    let name = supervisor.name.clone();
    let timeout = supervisor.start_timeout;
    let child = crate::free::start_as(
        shared,
        move |cx: &mut FnContext<'_, address::Control>, ack| {
            run::run(cx, supervisor, parent_id, ack)
        },
        parent,
        name,
        timeout,
    )?;
    Ok(SupervisorPid::new(child.pid()))
}
