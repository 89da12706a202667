//! The name registry and the process groups as a user reaches them: methods of
//! [`Handle`], the runtime's assembly, over the services in `registry.rs` and
//! `group.rs` (which know nothing of the assembly).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::call::{CallError, ReplyTo, StopError};
use crate::error::{Exit, SendError, SpawnError};
use crate::group::GroupMonitor;
use crate::handler::Process;
use crate::process::{AnyPid, Pid};
use crate::registry::RegisterError;
use crate::runtime::Handle;
use crate::scope::Scope;

/// The name registry.
impl Handle {
    /// Registers `pid` under `name`, so that [`whereis`](Handle::whereis) and
    /// [`send_named`](Handle::send_named) reach it. The name is freed when the
    /// process ends, and can then be given to another process (a restarted one, say).
    ///
    /// Fails if a live process holds the name ([`RegisterError::Taken`]), if the
    /// process has exited ([`RegisterError::Exited`]), or if it has a name already
    /// ([`RegisterError::AlreadyNamed`]): as in Erlang, a process has at most one
    /// name.
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(1).build().unwrap();
    /// let got = rt.block_on(|cx| {
    ///     let logger = cx.spawn_fn(|cx: &mut FnContext<String>| cx.receive());
    ///     let registry = cx.runtime();
    ///     registry.register("logger", &logger.pid()).unwrap();
    ///     assert!(registry.register("logger", &cx.pid()).is_err());
    ///
    ///     // Anywhere else in the program:
    ///     registry.send_named("logger", "hello".to_string()).unwrap();
    ///     logger.join().unwrap()
    /// });
    /// assert_eq!(got, "hello");
    /// assert!(rt.handle().whereis_any("logger").is_none());
    /// ```
    pub fn register<M: Send + 'static>(
        &self,
        name: impl Into<String>,
        pid: &Pid<M>,
    ) -> Result<(), RegisterError> {
        self.shared().registry.register(name.into(), pid)
    }

    /// The process registered under `name`, if it is alive and its messages are of
    /// type `M`. A name held by a process of another message type gives `None`, as
    /// an unknown name does; [`whereis_any`](Handle::whereis_any) finds it whatever
    /// its type.
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(1).build().unwrap();
    /// rt.block_on(|cx| {
    ///     let counter = cx.spawn_fn(|cx: &mut FnContext<u64>| cx.receive());
    ///     let handle = cx.runtime();
    ///     handle.register("counter", &counter.pid()).unwrap();
    ///     assert_eq!(handle.whereis::<u64>("counter"), Some(counter.pid()));
    ///     assert_eq!(handle.whereis::<String>("counter"), None);
    ///     assert_eq!(handle.whereis_any("counter"), Some(counter.pid().any()));
    ///     counter.pid().send(1).unwrap();
    /// });
    /// ```
    pub fn whereis<M: Send + 'static>(&self, name: &str) -> Option<Pid<M>> {
        self.shared().registry.whereis(name)
    }

    /// The live process registered under `name`, whatever its message type.
    pub fn whereis_any(&self, name: &str) -> Option<AnyPid> {
        self.shared().registry.whereis_any(name)
    }

    /// Frees `name`. Returns true if a live process held it; the process itself
    /// goes on, nameless, and may be registered again.
    pub fn unregister(&self, name: &str) -> bool {
        self.shared().registry.unregister(name)
    }

    /// Sends `msg` to the process registered under `name`. Fails, handing the
    /// message back, if no live process of message type `M` holds the name, or if
    /// it exits before the message is queued.
    pub fn send_named<M: Send + 'static>(&self, name: &str, msg: M) -> Result<(), SendError<M>> {
        match self.whereis::<M>(name) {
            Some(pid) => pid.send(msg),
            None => Err(SendError::Exited(msg)),
        }
    }

    /// Calls the process registered under `name` (see [`Pid::call`]). Fails with
    /// [`CallError::Exited`]`(`[`Exit::NoProc`]`)` at once if no live process of
    /// message type `M` holds the name.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// struct Adder;
    /// impl Process for Adder {
    ///     type Message = (u64, ReplyTo<u64>);
    ///     fn handle(&mut self, (n, reply): (u64, ReplyTo<u64>), _cx: &mut Context<Self>) {
    ///         reply.reply(n + 1);
    ///     }
    /// }
    ///
    /// let rt = Runtime::builder().workers(1).build().unwrap();
    /// let handle = rt.handle();
    /// handle.register("adder", &rt.spawn(Adder).unwrap()).unwrap();
    /// let t = Duration::from_secs(5);
    /// assert_eq!(handle.call_named("adder", |r| (41u64, r), t), Ok(42u64));
    /// assert_eq!(
    ///     handle.call_named::<(u64, ReplyTo<u64>), u64>("nobody", |r| (1, r), t),
    ///     Err(CallError::Exited(Exit::NoProc))
    /// );
    /// ```
    pub fn call_named<M: Send + 'static, R: Send + 'static>(
        &self,
        name: &str,
        make_request: impl FnOnce(ReplyTo<R>) -> M,
        timeout: Duration,
    ) -> Result<R, CallError> {
        match self.whereis::<M>(name) {
            Some(pid) => pid.call(make_request, timeout),
            None => Err(CallError::Exited(Exit::NoProc)),
        }
    }

    /// Asks the process registered under `name` to stop (see [`AnyPid::stop`]),
    /// whatever its message type. Returns false, doing nothing, if no live process
    /// holds the name.
    pub fn stop_named(&self, name: &str) -> bool {
        match self.whereis_any(name) {
            Some(pid) => {
                pid.stop();
                true
            }
            None => false,
        }
    }

    /// Stops the process registered under `name` and waits for its end (see
    /// [`AnyPid::stop_and_wait`]), whatever its message type; fails with
    /// [`StopError::NoProc`] at once if no live process holds the name.
    pub fn stop_named_and_wait(&self, name: &str, timeout: Duration) -> Result<Exit, StopError> {
        match self.whereis_any(name) {
            Some(pid) => pid.stop_and_wait(timeout),
            None => Err(StopError::NoProc),
        }
    }

    /// [`stop_named_and_wait`](Self::stop_named_and_wait), ending the process
    /// with `reason` (see [`AnyPid::stop_with`]).
    pub fn stop_named_and_wait_with(
        &self,
        name: &str,
        reason: Exit,
        timeout: Duration,
    ) -> Result<Exit, StopError> {
        match self.whereis_any(name) {
            Some(pid) => pid.stop_and_wait_with(reason, timeout),
            None => Err(StopError::NoProc),
        }
    }

    /// Spawns a handler process registered under `name` from the start: its
    /// `started` hook, and anyone else, find it by name before it first runs. If
    /// the name cannot be had (held by a live process, for one), the process
    /// never runs and [`SpawnError::Name`] says why.
    pub fn spawn_named<P: Process>(
        &self,
        name: impl Into<String>,
        process: P,
    ) -> Result<Pid<P::Message>, SpawnError> {
        crate::handler::spawn_as(self.shared(), process, None, Some(name.into()))
    }

    /// The names held by live processes, sorted.
    pub fn registered(&self) -> Vec<String> {
        self.shared().registry.registered()
    }
}

/// Process groups, in the runtime's default scope.
impl Handle {
    /// Adds `pid` to `group`, creating the group if need be. Joins are counted,
    /// as in OTP's `pg`: a process that joins three times is listed three times,
    /// and has to leave three times to be out. The process leaves the group
    /// entirely when it ends. Returns false if the process has exited (it joins
    /// nothing then).
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let total = rt.block_on(|cx| {
    ///     let handle = cx.runtime();
    ///     let workers: Vec<_> = (0..3)
    ///         .map(|_| cx.spawn_fn(|cx: &mut FnContext<u64>| cx.receive() * 2))
    ///         .collect();
    ///     for worker in &workers {
    ///         assert!(handle.join_group("workers", &worker.pid()));
    ///     }
    ///     assert_eq!(handle.group_members::<u64>("workers").len(), 3);
    ///     assert_eq!(handle.broadcast("workers", 21u64), 3);
    ///     workers.into_iter().map(|w| w.join().unwrap()).sum::<u64>()
    /// });
    /// assert_eq!(total, 126);
    /// // The members ended, and left the group as they did.
    /// assert!(rt.handle().groups().is_empty());
    /// ```
    pub fn join_group<M: Send + 'static>(&self, group: impl Into<String>, pid: &Pid<M>) -> bool {
        self.group_scope("").join(group, pid)
    }

    /// Takes back one of `pid`'s joins of `group`. Returns true if it was a
    /// member and is alive.
    pub fn leave_group<M: Send + 'static>(&self, group: &str, pid: &Pid<M>) -> bool {
        self.group_scope("").leave(group, pid)
    }

    /// The live members of `group` whose messages are of type `M`, in the order
    /// they first joined, each as many times as it joined. Members of other
    /// message types are left out.
    pub fn group_members<M: Send + 'static>(&self, group: &str) -> Vec<Pid<M>> {
        self.group_scope("").members(group)
    }

    /// Sends a copy of `msg` to every live member of `group` whose messages are of
    /// type `M`, once per process however often it joined; returns how many it
    /// reached.
    pub fn broadcast<M: Clone + Send + 'static>(&self, group: &str, msg: M) -> usize {
        self.group_scope("").broadcast(group, msg)
    }

    /// The groups that have live members, sorted.
    pub fn groups(&self) -> Vec<String> {
        self.group_scope("").groups()
    }

    /// The groups of scope `name`, apart from every other scope's: independent
    /// subsystems can use the same group names without meeting (OTP's `pg`
    /// scopes). The `Handle` methods above use the scope named "".
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// rt.block_on(|cx| {
    ///     let (chat, jobs) = (cx.runtime().group_scope("chat"), cx.runtime().group_scope("jobs"));
    ///     let me = cx.spawn_fn(|cx: &mut FnContext<u64>| cx.receive());
    ///     assert!(chat.join("general", &me.pid()));
    ///     assert_eq!(chat.members::<u64>("general").len(), 1);
    ///     assert!(jobs.members::<u64>("general").is_empty());
    ///     assert!(cx.runtime().group_members::<u64>("general").is_empty());
    ///     me.pid().send(0).unwrap();
    /// });
    /// ```
    pub fn group_scope(&self, name: impl Into<Arc<str>>) -> GroupScope {
        GroupScope {
            handle: self.clone(),
            name: name.into(),
        }
    }
}

/// One scope of process groups ([`Handle::group_scope`]): its groups are apart
/// from every other scope's.
#[derive(Clone)]
pub struct GroupScope {
    handle: Handle,
    name: Arc<str>,
}

impl GroupScope {
    /// The scope's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds `pid` to `group` of this scope (see [`Handle::join_group`]).
    pub fn join<M: Send + 'static>(&self, group: impl Into<String>, pid: &Pid<M>) -> bool {
        self.groups_of().join(&self.name, group.into(), pid)
    }

    /// Takes back one of `pid`'s joins (see [`Handle::leave_group`]).
    pub fn leave<M: Send + 'static>(&self, group: &str, pid: &Pid<M>) -> bool {
        self.groups_of().leave(&self.name, group, &pid.any())
    }

    /// The live members of type `M` (see [`Handle::group_members`]).
    pub fn members<M: Send + 'static>(&self, group: &str) -> Vec<Pid<M>> {
        self.groups_of().members(&self.name, group)
    }

    /// Sends a copy of `msg` to each member of type `M` once (see
    /// [`Handle::broadcast`]).
    pub fn broadcast<M: Clone + Send + 'static>(&self, group: &str, msg: M) -> usize {
        let mut members = self.members::<M>(group);
        // Once per process: a member that joined more often is listed more often.
        members.sort_unstable_by_key(Pid::id);
        members.dedup_by_key(|pid| pid.id());
        let Some((last, rest)) = members.split_last() else {
            return 0;
        };
        let sent = rest
            .iter()
            .filter(|pid| pid.send(msg.clone()).is_ok())
            .count();
        sent + usize::from(last.send(msg).is_ok())
    }

    /// The scope's groups that have live members, sorted.
    pub fn groups(&self) -> Vec<String> {
        self.groups_of().names(&self.name)
    }

    fn groups_of(&self) -> &Arc<crate::group::Groups> {
        &self.handle.shared().groups
    }

    /// Monitors `group` of this scope for the calling process (see
    /// [`Scope::monitor_group`]).
    pub fn monitor(&self, cx: &Scope<'_>, group: &str) -> (GroupMonitor, Vec<AnyPid>) {
        self.groups_of()
            .monitor(&cx.frame.task(), &self.name, group)
    }
}

impl fmt::Debug for GroupScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("GroupScope").field(&self.name).finish()
    }
}
