//! What every process can do about other processes' lives, whatever its kind:
//! spawning them, links, monitors, trapping exits and ending itself; so that
//! neither kind of process has to know the other. Both [`Context`] and
//! [`FnContext`] dereference to a [`Scope`].
//!
//! [`Context`]: crate::Context
//! [`FnContext`]: crate::FnContext

use std::panic;
use std::sync::Arc;
use std::time::Duration;

use crate::carrier::Frame;
use crate::error::{Exit, SpawnError};
use crate::free::FnContext;
use crate::group::GroupMonitor;
use crate::handler::Process;
use crate::join::JoinHandle;
use crate::process::{AnyPid, Pid};
use crate::runtime::Handle;
use crate::signal::{self, MonitorRef, Terminated};

/// The running process's view of its relations to others.
pub struct Scope<'a> {
    /// The activation's frame on its carrier.
    pub(crate) frame: &'a Frame<'a>,
}

impl Scope<'_> {
    /// This process's address, without its message type.
    pub fn me(&self) -> AnyPid {
        AnyPid(self.frame.task())
    }

    /// Bounds this process's mailbox to `capacity` messages, or lifts the
    /// bound (`None`); see
    /// [`Process::mailbox_capacity`](crate::Process::mailbox_capacity) for what a
    /// bound does. Messages already queued stay, even past the new capacity;
    /// sends that start after the call see it. A larger capacity lets waiting
    /// senders go on.
    ///
    /// # Panics
    ///
    /// If `capacity` is `Some(0)`: a mailbox that holds nothing could never be
    /// sent to.
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// rt.block_on(|cx| {
    ///     let child = cx.spawn_fn(|cx: &mut FnContext<u32>| {
    ///         cx.set_mailbox_capacity(Some(1));
    ///         let _ = cx.receive();
    ///         cx.receive()
    ///     });
    ///     child.pid().send_wait(1).unwrap();
    ///     child.pid().send_wait(2).unwrap();
    ///     assert_eq!(child.join(), Ok(2));
    /// });
    /// ```
    pub fn set_mailbox_capacity(&self, capacity: Option<usize>) {
        assert_ne!(
            capacity,
            Some(0),
            "a mailbox needs room for at least one message"
        );
        let process = self.frame.process();
        process
            .header()
            .set_mailbox_capacity(capacity, process.describe().mailbox_len);
    }

    /// Links this process to `other`: when either ends with any reason but
    /// [`Exit::Normal`] (a failure, but also a stop or a shutdown, as in OTP), the
    /// other ends too with the same reason, unless it traps exits (then it gets a
    /// [`Notice::Exit`](crate::Notice::Exit)). Linking to a process that has ended
    /// works like its ending now, with [`Exit::NoProc`].
    pub fn link(&self, other: impl Into<AnyPid>) {
        signal::link(&self.frame.task(), &other.into().0);
        self.frame.take_fatal_signal();
    }

    /// Removes a link, in both directions.
    pub fn unlink(&self, other: impl Into<AnyPid>) {
        signal::unlink(&self.frame.task(), &other.into().0);
    }

    /// Watches `target`: exactly one [`Down`](crate::Down) notice comes when it
    /// ends, at once if it has ended already (with [`Exit::NoProc`]).
    pub fn monitor(&self, target: impl Into<AnyPid>) -> MonitorRef {
        signal::monitor(&self.frame.task(), &target.into().0)
    }

    /// Watches the process registered under `name` now (see [`monitor`](Self::monitor)):
    /// the name is looked up once, so the monitor follows that process, not the
    /// name. Fails with [`Exit::NoProc`] if no live process holds the name; OTP
    /// delivers a `Down` with `noproc` then, which fibra says at once instead.
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// rt.block_on(|cx| {
    ///     let worker = cx.spawn_fn(|cx: &mut FnContext<()>| cx.receive());
    ///     cx.runtime().register("worker", &worker.pid()).unwrap();
    ///     let monitor = cx.monitor_named("worker").unwrap();
    ///     worker.pid().send(()).unwrap();
    ///     match cx.receive_notice() {
    ///         Notice::Down(down) => assert_eq!(down.monitor, monitor),
    ///         other => panic!("{other:?}"),
    ///     }
    ///     assert_eq!(cx.monitor_named("worker"), Err(Exit::NoProc));
    /// });
    /// ```
    pub fn monitor_named(&self, name: &str) -> Result<MonitorRef, Exit> {
        let target = self.runtime().whereis_any(name).ok_or(Exit::NoProc)?;
        Ok(self.monitor(target))
    }

    /// Watches `group` (of the runtime's default group scope; see
    /// [`GroupScope::monitor`](crate::GroupScope::monitor) for others): every
    /// join and leave from now on comes as a [`Notice::Group`](crate::Notice::Group),
    /// in the order they happen, until the monitor is removed or this process
    /// ends. Returns the monitor and the members now, in the order they first
    /// joined, each as many times as it joined (OTP's `pg:monitor/1`).
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// rt.block_on(|cx| {
    ///     let (monitor, members) = cx.monitor_group("pool");
    ///     assert!(members.is_empty());
    ///     let worker = cx.spawn_fn(|cx: &mut FnContext<()>| cx.receive());
    ///     cx.runtime().join_group("pool", &worker.pid());
    ///     match cx.receive_notice() {
    ///         Notice::Group(notice) => {
    ///             assert_eq!(notice.monitor, monitor);
    ///             assert_eq!(notice.change, Membership::Joined);
    ///             assert_eq!(notice.pid, worker.pid().any());
    ///         }
    ///         other => panic!("{other:?}"),
    ///     }
    ///     worker.pid().send(()).unwrap();
    ///     // It left as it ended.
    ///     match cx.receive_notice() {
    ///         Notice::Group(notice) => assert_eq!(notice.change, Membership::Left),
    ///         other => panic!("{other:?}"),
    ///     }
    ///     cx.demonitor_group(&monitor);
    /// });
    /// ```
    pub fn monitor_group(&self, group: &str) -> (GroupMonitor, Vec<AnyPid>) {
        self.runtime().group_scope("").monitor(self, group)
    }

    /// Removes a group monitor: once this returns, no notice of it arrives, not
    /// even one already on its way. Only the process that made it can remove it;
    /// called by any other, this does nothing.
    pub fn demonitor_group(&self, monitor: &GroupMonitor) {
        let groups = std::sync::Arc::clone(&self.frame.header().shared.groups);
        if groups.demonitor(self.frame.process(), monitor) {
            signal::forget_group_notices(self.frame.process(), monitor);
        }
    }

    /// Stops watching: once this returns, no `Down` for `monitor` arrives, not
    /// even one that was already on its way. Only the process that created the
    /// monitor can remove it, as in OTP: called by any other process (a copy of
    /// the ref can travel in a message), this does nothing, and the owner still
    /// gets its `Down`.
    pub fn demonitor(&self, monitor: &MonitorRef) {
        signal::demonitor(self.frame.process(), monitor);
    }

    /// Whether exit signals from linked processes become notices (true) or end
    /// this process when they carry a failure (false, the default). Returns the
    /// previous setting. Kills cannot be trapped.
    pub fn trap_exits(&self, trap: bool) -> bool {
        signal::set_trap_exits(self.frame.process(), trap)
    }

    /// A handle on the runtime this process runs in.
    pub fn runtime(&self) -> Handle {
        Handle::from_shared(Arc::clone(&self.frame.header().shared))
    }

    /// Spawns a handler process. See [`Handle::spawn`].
    ///
    /// # Panics
    /// If the runtime is shutting down; [`Scope::try_spawn`] returns the error.
    pub fn spawn<P: Process>(&self, process: P) -> Pid<P::Message> {
        crate::runtime::expect_spawn(self.try_spawn(process))
    }

    /// Spawns a handler process, or says why it could not.
    pub fn try_spawn<P: Process>(&self, process: P) -> Result<Pid<P::Message>, SpawnError> {
        crate::handler::spawn(&self.frame.header().shared, process, None)
    }

    /// Spawns a handler process pinned to this process's worker thread for its
    /// whole life: every message it handles, it handles on that thread (for
    /// thread-bound state: a thread-local FFI handle, a GUI toolkit's thread).
    /// Idle handler processes otherwise move to whichever worker has time; a
    /// pinned one waits for its own, so a busy pinned worker delays it.
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// struct WhereAmI;
    /// impl Process for WhereAmI {
    ///     type Message = ReplyTo<std::thread::ThreadId>;
    ///     fn handle(&mut self, reply: ReplyTo<std::thread::ThreadId>, _cx: &mut Context<Self>) {
    ///         reply.reply(std::thread::current().id());
    ///     }
    /// }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// rt.block_on(|cx| {
    ///     let pinned = cx.spawn_pinned(WhereAmI).unwrap();
    ///     let t = std::time::Duration::from_secs(5);
    ///     let first = pinned.call(|r| r, t).unwrap();
    ///     for _ in 0..100 {
    ///         assert_eq!(pinned.call(|r| r, t).unwrap(), first);
    ///     }
    /// });
    /// ```
    pub fn spawn_pinned<P: Process>(&self, process: P) -> Result<Pid<P::Message>, SpawnError> {
        crate::handler::spawn_pinned(&self.frame.header().shared, process)
    }

    /// Spawns a free-running process pinned to this process's worker thread (see
    /// [`spawn_pinned`](Self::spawn_pinned)): it first runs there, and a
    /// free-running process never leaves the thread of its first run.
    pub fn spawn_fn_pinned<M, T, F>(&self, body: F) -> Result<JoinHandle<T, M>, SpawnError>
    where
        M: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
    {
        crate::free::spawn_pinned(&self.frame.header().shared, body)
    }

    /// Spawns a handler process and waits for its `init` (see [`Handle::start`]).
    pub fn start<P: Process>(
        &self,
        process: P,
        timeout: Duration,
    ) -> Result<Pid<P::Message>, SpawnError> {
        crate::handler::start_as(&self.frame.header().shared, process, None, None, timeout)
    }

    /// Spawns a handler process linked to this one, atomically, and waits for its
    /// `init` (OTP's `gen_server:start_link`). A failed `init` comes back as the
    /// error, not as an exit signal: the new process unlinks this one before it
    /// ends. So does a start given up at the timeout (the process is killed).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// struct Picky;
    /// impl Process for Picky {
    ///     type Message = ();
    ///     fn init(&mut self, _cx: &mut Context<Self>) -> Init {
    ///         Init::Stop(Exit::error(std::io::Error::other("no config")))
    ///     }
    ///     fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
    /// }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let still_here = rt.block_on(|cx| {
    ///     let err = cx.start_link(Picky, Duration::from_secs(5)).unwrap_err();
    ///     assert!(matches!(err, SpawnError::InitFailed(_)));
    ///     "still here" // not killed by the failed start
    /// });
    /// assert_eq!(still_here, "still here");
    /// ```
    pub fn start_link<P: Process>(
        &self,
        process: P,
        timeout: Duration,
    ) -> Result<Pid<P::Message>, SpawnError> {
        let me = self.frame.task();
        crate::handler::start_as(&me.header().shared, process, Some(&me), None, timeout)
    }

    /// Spawns a free-running process. See [`Handle::spawn_fn`].
    ///
    /// # Panics
    /// If the runtime is shutting down or no stack can be mapped;
    /// [`Scope::try_spawn_fn`] returns the error.
    pub fn spawn_fn<M, T, F>(&self, body: F) -> JoinHandle<T, M>
    where
        M: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
    {
        crate::runtime::expect_spawn(self.try_spawn_fn(body))
    }

    /// Spawns a free-running process, or says why it could not.
    pub fn try_spawn_fn<M, T, F>(&self, body: F) -> Result<JoinHandle<T, M>, SpawnError>
    where
        M: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
    {
        crate::free::spawn(&self.frame.header().shared, body, None)
    }

    /// Spawns a handler process linked to this one, atomically: the child cannot
    /// end before the link exists.
    ///
    /// # Panics
    /// If the runtime is shutting down; [`Scope::try_spawn_link`] returns the error.
    pub fn spawn_link<P: Process>(&self, process: P) -> Pid<P::Message> {
        crate::runtime::expect_spawn(self.try_spawn_link(process))
    }

    /// Spawns a handler process linked to this one, or says why it could not.
    pub fn try_spawn_link<P: Process>(&self, process: P) -> Result<Pid<P::Message>, SpawnError> {
        let me = self.frame.task();
        crate::handler::spawn(&me.header().shared, process, Some(&me))
    }

    /// Spawns a free-running process linked to this one, atomically.
    ///
    /// # Panics
    /// If the runtime is shutting down or no stack can be mapped;
    /// [`Scope::try_spawn_fn_link`] returns the error.
    pub fn spawn_fn_link<M, T, F>(&self, body: F) -> JoinHandle<T, M>
    where
        M: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
    {
        crate::runtime::expect_spawn(self.try_spawn_fn_link(body))
    }

    /// Spawns a free-running process linked to this one, or says why it could not.
    pub fn try_spawn_fn_link<M, T, F>(&self, body: F) -> Result<JoinHandle<T, M>, SpawnError>
    where
        M: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
    {
        let me = self.frame.task();
        crate::free::spawn(&me.header().shared, body, Some(&me))
    }

    /// Sends `target` an exit signal with `reason`, as OTP's `exit/2` does.
    ///
    /// * [`Exit::Killed`] ends it at once, whatever it does: it cannot be trapped,
    ///   and its linked processes and monitors see `Killed`.
    /// * [`Exit::Normal`] is dropped by a target that does not trap exits.
    /// * Any other reason ends a target that does not trap exits, with that
    ///   reason, at its next suspension point or between two messages.
    /// * A target that traps exits gets [`Notice::Exit`](crate::Notice::Exit)
    ///   from this process instead (for every reason but `Killed`).
    ///
    /// No link is made or ended. Unlike OTP, a normal exit signal sent to oneself
    /// is dropped too; [`exit`](Self::exit) ends oneself.
    pub fn send_exit(&self, target: impl Into<AnyPid>, reason: Exit) {
        signal::send_exit(self.frame.process(), &*target.into().0, reason);
        // One sent to oneself takes effect here, as a signal from another would
        // at the next suspension point.
        self.frame.take_fatal_signal();
    }

    /// Ends this process now with `reason` (its stack unwinds; a handler's `stopped`
    /// hook does not run). Linked processes and monitors see `reason`. The exit is
    /// final: a `catch_unwind` may stop the unwind, but the process still ends with
    /// `reason`, at its next suspension point or when its code returns.
    pub fn exit(&self, reason: Exit) -> ! {
        self.frame.record_exit(reason.clone());
        panic::resume_unwind(Box::new(Terminated(reason)))
    }

    /// Forgets a stop that was taken as a fatal exit, so that the process can end
    /// in order (a supervisor shutting its children down first). Kills and other
    /// exits stay. Returns whether there was a stop to forget.
    pub(crate) fn forget_stop(&self) -> bool {
        self.frame.forget_stop()
    }
}
