//! Handler processes: a [`Process`] value that handles one message at a time on a
//! stack borrowed from the worker's pool. When its mailbox is empty it goes idle
//! and gives the stack back, so an idle handler process costs only its struct and
//! mailbox.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra_timer::TimerKey;

use crate::carrier::{Cancelled, Frame, Outcome, Suspend};
use crate::error::{panic_message, Exit, SpawnError};
use crate::info::ProcessKind;
use crate::init::{Init, InitAck};
use crate::process::{Core, Deliver, Described, Pid, ProcessId, Run, Task};
use crate::rights::RunRights;
use crate::scheduler::Shared;
use crate::scope::Scope;
use crate::signal::{exit_from_unwind, take_fatal, take_notice, Notice, Terminated};
use crate::state::Deadline;
use crate::time::{arm, deadline_after, disarm, sleep_until};

/// A process defined by how it handles its messages.
///
/// The runtime calls [`started`](Process::started) once, then
/// [`handle`](Process::handle) for each message in arrival order, one at a time.
/// Inside any of them the code may block: [`Context::yield_now`], or
/// [`JoinHandle::join`](crate::JoinHandle::join) on a free-running child, suspend this process only, never
/// the worker thread.
///
/// # Suspension points
///
/// A process suspends only at these calls, and each suspends the process, never
/// its worker thread:
///
/// * receiving: `FnContext::receive` and its `_matching`, `_timeout`, `_either`
///   and `_notice` forms, `try_receive` (which only yields, when the budget is
///   spent);
/// * time: [`sleep`](crate::sleep), `Context::sleep`, `FnContext::sleep`;
/// * waiting for others: [`Pid::call`](crate::Pid::call),
///   [`JoinHandle::join`](crate::JoinHandle::join),
///   [`blocking`](crate::blocking), [`park_until`](crate::park::park_until);
/// * sockets: every `fibra::net` call that has to wait (accept, connect, read,
///   write, send, receive), and [`consume_budget`](crate::park::consume_budget)
///   after one that did not;
/// * `yield_now`, and supervisor calls that wait for an answer (they are calls).
///
/// Nothing else suspends: [`Pid::send`](crate::Pid::send) never does, so it is
/// safe with a lock held; a handler process is also rescheduled between two
/// messages when its budget is spent.
///
/// Across a suspension point the process stays on the thread it was on (a stack
/// in use never changes threads), so thread-bound state held across one (a lock
/// guard, a `thread_local!` borrow, a span guard, `thread_rng()`) is sound; it
/// does keep the lock or the borrow for as long as the process waits. While a
/// process unwinds (a panic, a kill, a stop, a shutdown) it never suspends: a
/// destructor that calls one of these waits on its thread instead (`sleep`
/// sleeps the thread, `join` and `call` block it), a receive with a timeout
/// returns `None` at once, and in a shutdown `join` and `call` fail at once with
/// [`Exit::Shutdown`](crate::Exit::Shutdown).
///
/// # Exits are final
///
/// A kill, a stop, an untrapped linked failure and `exit` unwind the process's
/// stack. A `catch_unwind` in its code may stop that unwind, but not the exit: it
/// is raised again at the next suspension point (and at the next send), and the
/// process ends with that reason however its code returns.
///
/// ```
/// use fibra_runtime::*;
///
/// struct Counter { n: u64 }
/// enum Msg { Add(u64), Report(Pid<u64>) }
///
/// impl Process for Counter {
///     type Message = Msg;
///     fn handle(&mut self, msg: Msg, _cx: &mut Context<Self>) {
///         match msg {
///             Msg::Add(k) => self.n += k,
///             Msg::Report(to) => { let _ = to.send(self.n); }
///         }
///     }
/// }
///
/// let rt = Runtime::builder().workers(2).build().unwrap();
/// let total = rt.block_on(|cx| {
///     let counter = cx.spawn(Counter { n: 0 });
///     let child = cx.spawn_fn(|cx: &mut FnContext<u64>| cx.receive());
///     for k in 1..=4 { counter.send(Msg::Add(k)).unwrap(); }
///     counter.send(Msg::Report(child.pid())).unwrap();
///     child.join().unwrap()
/// });
/// assert_eq!(total, 10);
/// ```
pub trait Process: Sized + Send + 'static {
    /// The type of the messages this process receives.
    type Message: Send + 'static;

    /// Runs once, first of all, before any message or notice: OTP's `init`.
    /// Returning [`Init::Ignore`] ends the process normally, and
    /// [`Init::Stop`] ends it with the reason given; neither runs `stopped`.
    ///
    /// A process spawned with [`Handle::start`](crate::Handle::start) or
    /// [`Scope::start_link`](crate::Scope::start_link) (as a supervisor's handler
    /// children are) makes its starter wait for this: the start returns the
    /// process once `init` returns `Ok`, or fails with what `init` said (or with
    /// the reason it panicked), and a failed `init` does not reach a linked
    /// starter as an exit signal. Spawned with `spawn`, nobody waits.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// struct Db { url: &'static str }
    /// impl Process for Db {
    ///     type Message = ();
    ///     fn init(&mut self, _cx: &mut Context<Self>) -> Init {
    ///         if self.url.starts_with("db://") {
    ///             Init::Ok
    ///         } else {
    ///             Init::Stop(Exit::error(std::io::Error::other("bad url")))
    ///         }
    ///     }
    ///     fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
    /// }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let t = Duration::from_secs(5);
    /// assert!(rt.handle().start(Db { url: "db://x" }, t).is_ok());
    /// match rt.handle().start(Db { url: "x" }, t) {
    ///     Err(SpawnError::InitFailed(reason)) => assert_eq!(reason.to_string(), "error: bad url"),
    ///     other => panic!("{other:?}"),
    /// }
    /// ```
    fn init(&mut self, cx: &mut Context<'_, Self>) -> Init {
        let _ = cx;
        Init::Ok
    }

    /// The most messages this process's mailbox holds; `None` (the default)
    /// for no bound. Asked once, when the process is spawned (by any spawn or
    /// start, and by a supervisor for its children), so a process can take it
    /// from its own fields. A send to a full mailbox fails with
    /// [`SendError::Full`](crate::SendError::Full), handing the message back;
    /// [`Pid::send_wait`](crate::Pid::send_wait) and `send_timeout` wait for
    /// room, and a [`Pid::call`](crate::Pid::call) waits within its timeout.
    /// Signals (exits, downs, stops, kills) never wait for room. See
    /// [`Scope::set_mailbox_capacity`](crate::Scope::set_mailbox_capacity) to
    /// change it while the process runs.
    ///
    /// # Panics
    ///
    /// The spawn panics if this returns `Some(0)`: a mailbox that holds nothing
    /// could never be sent to.
    fn mailbox_capacity(&self) -> Option<usize> {
        None
    }

    /// Runs once, before the first message, right after `init` returned
    /// [`Init::Ok`].
    fn started(&mut self, cx: &mut Context<'_, Self>) {
        let _ = cx;
    }

    /// Handles one message.
    fn handle(&mut self, msg: Self::Message, cx: &mut Context<'_, Self>);

    /// Runs for each notice: a [`Down`](crate::Down) from a monitor, an exit
    /// signal from a link while the process traps exits
    /// ([`Scope::trap_exits`]), or a join or leave in a monitored group
    /// ([`Scope::monitor_group`]). Notices are handled before queued messages.
    fn notice(&mut self, notice: Notice, cx: &mut Context<'_, Self>) {
        let _ = (notice, cx);
    }

    /// Runs when the process has had no message for the duration set with
    /// [`Context::set_idle_timeout`], and again after each further such period.
    fn timeout(&mut self, cx: &mut Context<'_, Self>) {
        let _ = cx;
    }

    /// Runs once when the process stops itself with [`Context::stop`]. It does not
    /// run after a panic, nor when the runtime shuts down (the value is dropped then).
    fn stopped(&mut self, cx: &mut Context<'_, Self>) {
        let _ = cx;
    }
}

/// A handler process as the runtime stores it; `repr(C)` with its [`Core`] first,
/// as [`Run`] requires.
#[repr(C)]
pub(crate) struct ProcessCell<P: Process> {
    /// Header and mailbox.
    core: Core<P::Message>,
    /// The user's value; `None` once the process has ended. Touched only by the
    /// holder of the run rights.
    user: UnsafeCell<Option<P>>,
    /// Whether `started` has run. Touched only by the holder of the run rights.
    started: UnsafeCell<bool>,
    /// The idle timeout, if the process set one, and the starter's acknowledgement
    /// while a start waits for `init`. Touched only by the holder of the run
    /// rights; boxed because few processes use either.
    extras: UnsafeCell<Option<Box<Extras>>>,
}

/// What few handler processes have.
#[derive(Default)]
struct Extras {
    /// The idle timeout, if the process set one.
    idle: Option<IdleTimeout>,
    /// Whom to tell how `init` went, for a process being started synchronously
    /// ([`Handle::start`](crate::Handle::start)); taken by the first activation.
    ack: Option<InitAck>,
}

/// A handler's idle timeout: [`Process::timeout`] runs when no message came for
/// `after`.
struct IdleTimeout {
    /// How long without a message before the hook runs.
    after: Duration,
    /// When the process last handled a message (or last timed out).
    last_active: Instant,
    /// The timer armed while the process is idle.
    timer: Option<TimerKey>,
}

// Safety: `user`, `started` and `extras` are only accessed by the holder of the run rights,
// which is one thread at a time, with the hand-over ordered by the state word's
// SeqCst operations. P: Send lets the value move between those threads.
unsafe impl<P: Process> Sync for ProcessCell<P> {}

/// Runs `init` and tells a waiting starter how it went; `Some` if the process is
/// to end instead of going on.
fn init<P: Process>(user: &mut P, cx: &mut Context<'_, P>, ack: Option<InitAck>) -> Option<Step> {
    let said = panic::catch_unwind(AssertUnwindSafe(|| user.init(cx)));
    let said = match said {
        Ok(said) => said,
        Err(payload) => {
            // A panic, or a kill or stop that came while `init` blocked: the start
            // failed, with the reason the process ends with.
            let reason = match payload.downcast_ref::<Terminated>() {
                Some(terminated) => terminated.0.clone(),
                None if payload.is::<Cancelled>() => Exit::Shutdown,
                None => Exit::Panicked(panic_message(payload.as_ref())),
            };
            if let Some(ack) = ack {
                ack.fail(cx.frame, reason.clone());
            }
            if payload.is::<Terminated>() || payload.is::<Cancelled>() {
                panic::resume_unwind(payload);
            }
            return Some(Step::End(reason));
        }
    };
    match said {
        Init::Ok => {
            if let Some(ack) = ack {
                ack.started();
            }
            None
        }
        Init::Ignore => {
            if let Some(ack) = ack {
                ack.ignored();
            }
            Some(Step::End(Exit::Normal))
        }
        Init::Stop(reason) => {
            if let Some(ack) = ack {
                ack.fail(cx.frame, reason.clone());
            }
            Some(Step::End(reason))
        }
    }
}

/// What the handler loop stopped on.
enum Step {
    Idle(Deadline),
    More,
    /// End gracefully (`cx.stop()` or a stop signal): the `stopped` hook runs.
    Stop(Exit),
    /// End at once (a kill or a linked failure).
    End(Exit),
}

impl<P: Process> ProcessCell<P> {
    /// The idle timeout and the start acknowledgement.
    ///
    /// # Safety
    /// The caller holds the run rights (or the process is not scheduled yet) and
    /// keeps the reference only while it does not call into user code (which may
    /// change the timeout through its context).
    #[allow(clippy::mut_from_ref)]
    unsafe fn extras(&self) -> &mut Option<Box<Extras>> {
        // Safety: as the caller promises.
        unsafe { &mut *self.extras.get() }
    }

    /// The idle timeout, if set.
    ///
    /// # Safety
    /// As for [`extras`](Self::extras).
    #[allow(clippy::mut_from_ref)]
    unsafe fn idle(&self) -> Option<&mut IdleTimeout> {
        // Safety: passed on from the caller.
        unsafe { self.extras() }
            .as_mut()
            .and_then(|extras| extras.idle.as_mut())
    }

    /// Takes the start acknowledgement, if a starter waits for one; drops the
    /// extras if nothing else is in them.
    ///
    /// # Safety
    /// As for [`extras`](Self::extras).
    unsafe fn take_ack(&self) -> Option<InitAck> {
        // Safety: passed on from the caller.
        let extras = unsafe { self.extras() };
        let ack = extras.as_mut()?.ack.take();
        if extras.as_ref().is_some_and(|e| e.idle.is_none()) {
            *extras = None;
        }
        ack
    }

    /// Ends the process: common retirement, then the value is dropped.
    fn finish(&self, exit: &Exit) {
        // A stop sent with a reason ends the process with that reason.
        let substituted;
        let exit = if *exit == Exit::Stopped {
            substituted = crate::signal::stop_reason(self, Exit::Stopped);
            &substituted
        } else {
            exit
        };
        if self.core.retire(exit) {
            // Safety: the caller holds the run rights (see `Run::activate` and
            // `Run::terminate`).
            let user = unsafe { (*self.user.get()).take() };
            if panic::catch_unwind(AssertUnwindSafe(|| drop(user))).is_err() {
                tracing::error!(pid = %ProcessId(self.core.header.id), "process value panicked in drop");
            }
            Core::<P::Message>::announce(self, exit);
        }
    }
}

// Safety: `repr(C)`, and the first field is the process's `Core`.
unsafe impl<P: Process> Run for ProcessCell<P> {
    fn has_new(&self) -> bool {
        self.core.mailbox.has_new()
    }

    fn activate(&self, frame: &Frame<'_>) -> Outcome {
        // Safety: activate runs only for the holder of the run rights.
        let Some(user) = (unsafe { &mut *self.user.get() }).as_mut() else {
            return Outcome::Exited;
        };
        let mut cx = Context {
            cell: self,
            frame,
            scope: Scope { frame },
            stop: false,
        };
        // A message (or the timer) ended the idle wait: its timer is of no more use.
        // Safety: the run rights give exclusive access; no user code runs meanwhile.
        if let Some(key) = unsafe { self.idle() }.and_then(|i| i.timer.take()) {
            disarm(frame, key);
        }
        let step = panic::catch_unwind(AssertUnwindSafe(|| {
            // Safety: as above, the run rights give exclusive access.
            let started = unsafe { &mut *self.started.get() };
            if !*started {
                *started = true;
                // Safety: as above; no user code runs while `extras` is used.
                let ack = unsafe { self.take_ack() };
                match init(user, &mut cx, ack) {
                    None => {}
                    Some(end) => return end,
                }
                user.started(&mut cx);
                if cx.stop {
                    return Step::Stop(Exit::Normal);
                }
            }
            loop {
                // A fatal exit that user code caught ends the process all the same.
                if let Some(exit) = frame.recorded_exit() {
                    return Step::End(exit);
                }
                if frame.budget_spent() {
                    return Step::More;
                }
                // Signals first: a kill or a stop must not wait behind the mailbox.
                // (One load when there are none, the common case.)
                if !self.core.header.signals.is_empty() {
                    // Safety: the running process is its signal queue's one consumer.
                    if let Some(exit) = unsafe { take_fatal(self) } {
                        return match exit {
                            Exit::Stopped => Step::Stop(exit),
                            exit => Step::End(exit),
                        };
                    }
                    // Writes to a value this process publishes come before its
                    // notices and messages (shared.rs).
                    // Safety: as above.
                    if let Some(apply) = unsafe { crate::signal::take_apply(self) } {
                        frame.spend(1);
                        (apply.0)();
                        continue;
                    }
                    // Safety: as above, and fatal signals were taken just before.
                    if let Some(notice) = unsafe { take_notice(self) } {
                        frame.spend(1);
                        user.notice(notice, &mut cx);
                        if cx.stop {
                            return Step::Stop(Exit::Normal);
                        }
                        continue;
                    }
                }
                // Safety: the holder of the run rights is the mailbox's one consumer.
                let Some(msg) = (unsafe { self.core.mailbox.pop() }) else {
                    // Safety: run rights held; no user code runs while `idle` is used.
                    let Some(idle) = (unsafe { self.idle() }) else {
                        return Step::Idle(Deadline::None);
                    };
                    let deadline = idle.last_active + idle.after;
                    let now = Instant::now();
                    if now < deadline {
                        idle.timer = arm(frame, deadline);
                        return Step::Idle(if idle.timer.is_some() {
                            Deadline::Timed
                        } else {
                            Deadline::None
                        });
                    }
                    idle.last_active = now;
                    frame.spend(1);
                    user.timeout(&mut cx);
                    if cx.stop {
                        return Step::Stop(Exit::Normal);
                    }
                    continue;
                };
                self.core.header.took_message();
                frame.spend(1);
                user.handle(msg, &mut cx);
                if cx.stop {
                    return Step::Stop(Exit::Normal);
                }
                // Safety: run rights held; user code has returned.
                if let Some(idle) = unsafe { self.idle() } {
                    idle.last_active = Instant::now();
                }
            }
        }));
        // A fatal exit recorded during the activation is the reason, whatever the
        // handler's code made of the unwind.
        let step = match (frame.recorded_exit(), step) {
            (_, Err(payload)) if payload.is::<Cancelled>() => panic::resume_unwind(payload),
            (Some(exit), _) => Ok(Step::End(exit)),
            (None, step) => step,
        };
        if let (Some(bounded), Ok(Step::Idle(_) | Step::More)) = (self.core.header.bounded(), &step)
        {
            // bounded.rs, step 4: the places of the messages handled go back
            // before the process waits or yields.
            bounded.flush();
        }
        match step {
            Ok(Step::Idle(deadline)) => Outcome::Idle(deadline),
            Ok(Step::More) => Outcome::More,
            Ok(Step::Stop(exit)) => {
                let hook = panic::catch_unwind(AssertUnwindSafe(|| user.stopped(&mut cx)));
                let exit = match hook {
                    Ok(()) => exit,
                    Err(payload) => exit_from_unwind(payload),
                };
                self.finish(&exit);
                Outcome::Exited
            }
            Ok(Step::End(exit)) => {
                self.finish(&exit);
                Outcome::Exited
            }
            Err(payload) => {
                self.finish(&exit_from_unwind(payload));
                Outcome::Exited
            }
        }
    }

    fn terminate(&self, exit: Exit) {
        self.finish(&exit);
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn describe(&self) -> Described {
        let len = self.core.mailbox.len();
        Described::of::<P::Message>(self, ProcessKind::Handler, len)
    }
}

impl<P: Process> Deliver<P::Message> for ProcessCell<P> {
    fn core(&self) -> &Core<P::Message> {
        &self.core
    }

    fn as_run(&self) -> &dyn Run {
        self
    }

    fn task(self: Arc<Self>) -> Task {
        self
    }
}

/// Spawns a handler process on `shared`'s runtime.
pub(crate) fn spawn<P: Process>(
    shared: &Arc<Shared>,
    process: P,
    linked: Option<&Task>,
) -> Result<Pid<P::Message>, SpawnError> {
    spawn_as(shared, process, linked, None)
}

/// [`spawn`], registering the process under `name` before it first runs, so that
/// there is no moment in which it runs unnamed. If the name cannot be had, the
/// process never runs: it is dropped, and the registry's error comes back.
pub(crate) fn spawn_as<P: Process>(
    shared: &Arc<Shared>,
    process: P,
    linked: Option<&Task>,
    name: Option<String>,
) -> Result<Pid<P::Message>, SpawnError> {
    let (rights, _, pid) = prepare(shared, process, linked, name)?;
    shared.schedule_spawned(rights);
    Ok(pid)
}

/// A handler process pinned to one worker for its whole life: spawned onto it,
/// and every later activation runs there (stealing and hand-offs pass it by).
pub(crate) fn spawn_pinned<P: Process>(
    shared: &Arc<Shared>,
    process: P,
) -> Result<Pid<P::Message>, SpawnError> {
    let (rights, cell, pid) = prepare(shared, process, None, None)?;
    // Safety: the process is not scheduled yet, so nobody else reads its pin.
    unsafe { cell.core.header.pin_to_spawner() };
    shared.schedule_spawned(rights);
    Ok(pid)
}

/// [`spawn_as`], then waits at most `timeout` for the process's `init` (init.rs):
/// returns it once `init` said [`Init::Ok`], fails with what it said otherwise.
pub(crate) fn start_as<P: Process>(
    shared: &Arc<Shared>,
    process: P,
    linked: Option<&Task>,
    name: Option<String>,
    timeout: Duration,
) -> Result<Pid<P::Message>, SpawnError> {
    let (rights, cell, pid) = prepare(shared, process, linked, name)?;
    let child = Arc::clone(&cell) as Task;
    crate::init::start(shared, rights, &child, linked, timeout, |ack| {
        // Safety: the process is not scheduled yet, so nobody else touches its cell.
        *unsafe { cell.extras() } = Some(Box::new(Extras {
            idle: None,
            ack: Some(ack),
        }));
    })?;
    Ok(pid)
}

/// A new handler process, admitted, named and linked, but not yet scheduled: the
/// caller schedules it with the rights.
#[allow(clippy::type_complexity)]
fn prepare<P: Process>(
    shared: &Arc<Shared>,
    process: P,
    linked: Option<&Task>,
    name: Option<String>,
) -> Result<(RunRights, Arc<ProcessCell<P>>, Pid<P::Message>), SpawnError> {
    let capacity = process.mailbox_capacity();
    assert_ne!(
        capacity,
        Some(0),
        "Process::mailbox_capacity: a mailbox needs room for at least one message"
    );
    let core = Core::new(Arc::clone(shared), shared.next_id());
    // Before the process is visible to anyone: no send can race with it.
    core.header.set_mailbox_capacity(capacity, 0);
    let (rights, cell) = RunRights::new_process(Arc::new(ProcessCell {
        core,
        user: UnsafeCell::new(Some(process)),
        started: UnsafeCell::new(false),
        extras: UnsafeCell::new(None),
    }));
    let pid = Pid::new(Arc::clone(&cell) as Arc<dyn Deliver<P::Message>>);
    let rights = shared.enrol(rights, Arc::clone(&cell) as Task, &pid, name, linked)?;
    tracing::trace!(pid = %ProcessId(cell.core.header.id), "spawned a handler process");
    Ok((rights, cell, pid))
}

/// What a handler sees of its process and runtime while it runs.
///
/// Its blocking calls ([`Context::sleep`], [`Context::yield_now`], and the calls
/// of the [`Process`] docs' "Suspension points") suspend this process only, and
/// resume it on the same thread.
pub struct Context<'a, P: Process> {
    /// The process being run.
    cell: &'a ProcessCell<P>,
    /// The activation's frame on its carrier.
    frame: &'a Frame<'a>,
    /// Links, monitors and the rest, shared with free-running processes.
    scope: Scope<'a>,
    /// Set by [`Context::stop`].
    stop: bool,
}

impl<P: Process> Context<'_, P> {
    /// This process's address.
    pub fn pid(&self) -> Pid<P::Message> {
        let cell = self
            .frame
            .task()
            .into_any()
            .downcast::<ProcessCell<P>>()
            .unwrap_or_else(|_| unreachable!("a context always runs its own process"));
        Pid::new(cell)
    }

    /// This process's id.
    pub fn id(&self) -> ProcessId {
        ProcessId(self.cell.core.header.id)
    }

    /// Ends this process once the current `started`/`handle` call returns; then
    /// [`Process::stopped`] runs and the process exits normally. Messages still
    /// queued are dropped.
    pub fn stop(&mut self) {
        self.stop = true;
    }

    /// Lets the other processes on this worker run before this one goes on. While
    /// the process unwinds it does nothing.
    pub fn yield_now(&mut self) {
        let _ = self.frame.suspend(Suspend::Yield);
    }

    /// Suspends this process for `duration`, mid-handler; its worker runs others
    /// meanwhile, and messages wait in the mailbox.
    pub fn sleep(&mut self, duration: Duration) {
        if !duration.is_zero() {
            sleep_until(self.frame, deadline_after(duration));
        }
    }

    /// Asks for [`Process::timeout`] to run whenever no message has come for
    /// `after` (counted from now, then from each message); `None` turns it off.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// struct Session { notify: Pid<&'static str> }
    /// impl Process for Session {
    ///     type Message = ();
    ///     fn started(&mut self, cx: &mut Context<Self>) {
    ///         cx.set_idle_timeout(Some(Duration::from_millis(10)));
    ///     }
    ///     fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
    ///     fn timeout(&mut self, cx: &mut Context<Self>) {
    ///         let _ = self.notify.send("idle for 10 ms, closing");
    ///         cx.stop();
    ///     }
    /// }
    ///
    /// let rt = Runtime::builder().workers(1).build().unwrap();
    /// let note = rt.block_on(|cx| {
    ///     let watcher = cx.spawn_fn(|cx: &mut FnContext<&'static str>| cx.receive());
    ///     cx.spawn(Session { notify: watcher.pid() });
    ///     watcher.join().unwrap()
    /// });
    /// assert_eq!(note, "idle for 10 ms, closing");
    /// ```
    pub fn set_idle_timeout(&mut self, after: Option<Duration>) {
        // Safety: the context exists only while its process runs, so its holder has
        // the run rights; no other reference into `idle` is live during user code.
        let extras = unsafe { self.cell.extras() };
        let idle = after.map(|after| IdleTimeout {
            after,
            last_active: Instant::now(),
            timer: None,
        });
        match (idle, extras.as_mut()) {
            (None, None) => {}
            (None, Some(e)) if e.ack.is_none() => *extras = None,
            (idle, _) => extras.get_or_insert_with(Box::default).idle = idle,
        }
    }
}

impl<'a, P: Process> std::ops::Deref for Context<'a, P> {
    type Target = Scope<'a>;

    fn deref(&self) -> &Scope<'a> {
        &self.scope
    }
}
