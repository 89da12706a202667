//! Free-running processes: a closure that runs on its own carrier from spawn to
//! return, receiving messages when it chooses (`receive`, `receive_matching`), and
//! whose result its [`JoinHandle`] collects.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra_mailbox::Mailbox;
use parking_lot::Mutex;

use crate::carrier::{Cancelled, Frame, Outcome, Suspend, Suspended};
use crate::error::{Exit, SpawnError};
use crate::info::ProcessKind;
use crate::init::InitAck;
use crate::join::{Completion, JoinHandle};
use crate::process::{Core, Deliver, Described, Pid, ProcessId, Run, Task};
use crate::rights::RunRights;
use crate::scheduler::Shared;
use crate::scope::Scope;
use crate::signal::{exit_from_unwind, take_notice, Notice};
use crate::state::{Deadline, Wait};
use crate::time::{deadline_after, sleep_until, WaitTimer};

/// A free-running process as the runtime stores it; `repr(C)` with its [`Core`]
/// first, as [`Run`] requires.
#[repr(C)]
struct FnCell<F, T, M> {
    /// Header and mailbox.
    core: Core<M>,
    /// The closure until it starts. Touched only by the holder of the run rights.
    body: UnsafeCell<Option<F>>,
    /// Where the result goes.
    completion: Arc<Completion<T>>,
}

// Safety: `body` is only touched by the holder of the run rights, one thread at a
// time, hand-overs ordered by the state word; F: Send lets it move between them.
unsafe impl<F: Send, T: Send, M: Send> Sync for FnCell<F, T, M> {}

impl<F, T, M> FnCell<F, T, M>
where
    M: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
{
    fn finish(&self, result: Result<T, Exit>) {
        // A stop sent with a reason ends the process with that reason.
        let result = result.map_err(|exit| crate::signal::stop_reason(self, exit));
        let exit = match &result {
            Ok(_) => Exit::Normal,
            Err(exit) => exit.clone(),
        };
        if self.core.retire(&exit) {
            self.completion.complete(result);
            Core::<M>::announce(self, &exit);
        }
    }
}

// Safety: `repr(C)`, and the first field is the process's `Core`.
unsafe impl<F, T, M> Run for FnCell<F, T, M>
where
    M: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
{
    fn has_new(&self) -> bool {
        self.core.mailbox.has_new()
    }

    fn activate(&self, frame: &Frame<'_>) -> Outcome {
        // Safety: activate runs only for the holder of the run rights.
        let Some(body) = (unsafe { (*self.body.get()).take() }) else {
            return Outcome::Exited;
        };
        let me = Pid::new(
            frame
                .task()
                .into_any()
                .downcast::<Self>()
                .unwrap_or_else(|_| unreachable!("a frame always runs its own process")),
        );
        let mut cx = FnContext {
            scope: Scope { frame },
            me: &me,
            core: &self.core,
            frame,
        };
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            // Killed before it first ran?
            frame.take_fatal_signal();
            body(&mut cx)
        }));
        // A fatal exit recorded in the frame is the reason, also if the closure
        // caught its unwind and returned normally.
        match (frame.recorded_exit(), result) {
            (_, Err(payload)) if payload.is::<Cancelled>() => panic::resume_unwind(payload),
            (Some(exit), _) => self.finish(Err(exit)),
            (None, Ok(value)) => self.finish(Ok(value)),
            (None, Err(payload)) => self.finish(Err(exit_from_unwind(payload))),
        }
        Outcome::Exited
    }

    fn terminate(&self, exit: Exit) {
        // Safety: the caller holds the run rights or has stopped every worker.
        drop(unsafe { (*self.body.get()).take() });
        self.finish(Err(exit));
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn describe(&self) -> Described {
        let len = self.core.mailbox.len();
        let mut described = Described::of::<M>(self, ProcessKind::Free, len);
        // It holds a stack from its first run to its end.
        described.memory += self.core.header.shared.config.stack_size;
        described
    }
}

impl<F, T, M> Deliver<M> for FnCell<F, T, M>
where
    M: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
{
    fn core(&self) -> &Core<M> {
        &self.core
    }

    fn as_run(&self) -> &dyn Run {
        self
    }

    fn task(self: Arc<Self>) -> Task {
        self
    }
}

/// Spawns a free-running process on `shared`'s runtime. Its stack is mapped now, so
/// a refusal by the OS is reported here.
pub(crate) fn spawn<M, T, F>(
    shared: &Arc<Shared>,
    body: F,
    linked: Option<&Task>,
) -> Result<JoinHandle<T, M>, SpawnError>
where
    M: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
{
    spawn_as(shared, body, linked, None)
}

/// [`spawn`], registered under `name` before it first runs, if a name is given;
/// if the name cannot be had, the process never runs.
pub(crate) fn spawn_as<M, T, F>(
    shared: &Arc<Shared>,
    body: F,
    linked: Option<&Task>,
    name: Option<String>,
) -> Result<JoinHandle<T, M>, SpawnError>
where
    M: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
{
    let (rights, _, handle) = prepare(shared, body, linked, name)?;
    shared.schedule_spawned(rights);
    Ok(handle)
}

/// A free-running process that first runs on a chosen worker, the caller's (as
/// [`crate::handler::spawn_pinned`] picks it), and so runs there for its whole
/// life: its stack, once in use, never changes threads.
pub(crate) fn spawn_pinned<M, T, F>(
    shared: &Arc<Shared>,
    body: F,
) -> Result<JoinHandle<T, M>, SpawnError>
where
    M: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
{
    let (rights, cell, handle) = prepare(shared, body, None, None)?;
    // Safety: the process is not scheduled yet, so nobody else reads its pin.
    unsafe { cell.core.header.pin_to_spawner() };
    shared.schedule_spawned(rights);
    Ok(handle)
}

/// [`spawn_as`] for a body that acknowledges its own start (init.rs): waits at
/// most `timeout` for it to say it is up. The supervisors start so.
pub(crate) fn start_as<M, T, F>(
    shared: &Arc<Shared>,
    body: F,
    linked: Option<&Task>,
    name: Option<String>,
    timeout: Duration,
) -> Result<JoinHandle<T, M>, SpawnError>
where
    M: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut FnContext<'_, M>, InitAck) -> T + Send + 'static,
{
    // Filled in before the process first runs: the acknowledgement needs the
    // process, and the process needs its body.
    let slot: Arc<Mutex<Option<InitAck>>> = Arc::default();
    let filled = Arc::clone(&slot);
    let (rights, cell, handle) = prepare(
        shared,
        move |cx: &mut FnContext<'_, M>| {
            let ack = filled.lock().take().expect("filled before the first run");
            body(cx, ack)
        },
        linked,
        name,
    )?;
    crate::init::start(shared, rights, &(cell as Task), linked, timeout, |ack| {
        *slot.lock() = Some(ack);
    })?;
    Ok(handle)
}

/// A new free-running process with its stack, admitted, named and linked, but
/// not yet scheduled: the caller schedules it with the rights.
#[allow(clippy::type_complexity)]
fn prepare<M, T, F>(
    shared: &Arc<Shared>,
    body: F,
    linked: Option<&Task>,
    name: Option<String>,
) -> Result<(RunRights, Arc<FnCell<F, T, M>>, JoinHandle<T, M>), SpawnError>
where
    M: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut FnContext<'_, M>) -> T + Send + 'static,
{
    let carrier = shared.carrier()?;
    let completion = Arc::new(Completion::new());
    let (rights, cell) = RunRights::new_process(Arc::new(FnCell {
        core: Core::new(Arc::clone(shared), shared.next_id()),
        body: UnsafeCell::new(Some(body)),
        completion: Arc::clone(&completion),
    }));
    rights.put_carrier(carrier);
    let pid = Pid::new(Arc::clone(&cell) as Arc<dyn Deliver<M>>);
    let rights = shared.enrol(rights, Arc::clone(&cell) as Task, &pid, name, linked)?;
    tracing::trace!(pid = %ProcessId(cell.core.header.id), "spawned a free-running process");
    Ok((rights, cell, JoinHandle::new(completion, pid)))
}

/// A wait without a deadline was asked for while the process unwinds, where it
/// may not suspend and nothing could ever end the wait: say so and abort, since
/// neither returning nor a second unwind is possible.
#[cold]
fn refuse_to_wait_forever(id: u64, call: &str) -> ! {
    eprintln!(
        "fibra: process {} called {call} with nothing queued while unwinding (a \
         destructor during a panic or a fatal exit); a process that unwinds cannot \
         wait, so this {call} could never return; aborting",
        ProcessId(id)
    );
    std::process::abort();
}

/// Takes the oldest message; handed to `FnContext::receive_until` (or `poll`) as
/// its `take`.
fn pop_next<M>(mailbox: &Mailbox<M>) -> Option<M> {
    // Safety: only the receive loops (`receive_until`, `poll`) call this, for the
    // process that owns the mailbox, which is its one consumer.
    unsafe { mailbox.pop() }
}

/// The next notice, or else the next message: `take` for `receive_either`.
fn notice_or_message<M>(frame: &Frame<'_>, mailbox: &Mailbox<M>) -> Option<Received<M>> {
    // Safety: only the receive loops call this, for the running process, the one
    // consumer of its signal queue; fatal signals were taken when it last resumed.
    match unsafe { take_notice(frame.process()) } {
        Some(notice) => Some(Received::Notice(notice)),
        None => pop_next(mailbox).map(Received::Message),
    }
}

/// What [`FnContext::receive_either`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received<M> {
    /// A message.
    Message(M),
    /// A notice: a monitor's `Down`, or a trapped exit signal.
    Notice(Notice),
}

/// What a free-running process sees of itself and its runtime.
///
/// Its receives, [`FnContext::sleep`] and [`FnContext::yield_now`] are suspension
/// points, with the others listed in the [`Process`](crate::Process) docs ("Suspension points"):
/// they suspend this process only, resume it on the same thread, and never
/// suspend it while it unwinds.
pub struct FnContext<'a, M> {
    /// Links, monitors and the rest, shared with handler processes.
    scope: Scope<'a>,
    /// This process's address.
    me: &'a Pid<M>,
    /// Header and mailbox.
    core: &'a Core<M>,
    /// The activation's frame on its carrier.
    frame: &'a Frame<'a>,
}

impl<M: Send + 'static> FnContext<'_, M> {
    /// Waits for the next message and returns it.
    pub fn receive(&mut self) -> M {
        self.receive_until(None, pop_next)
            .unwrap_or_else(|| unreachable!("a wait without a deadline ends with a message"))
    }

    /// Waits for the first message, in arrival order, for which `pred` returns true.
    /// Other messages stay queued, in their order, for later receives.
    pub fn receive_matching(&mut self, mut pred: impl FnMut(&M) -> bool) -> M {
        self.receive_until(None, |mailbox| {
            // Safety: passed on from receive_until's contract.
            unsafe { mailbox.pop_matching(&mut pred) }
        })
        .unwrap_or_else(|| unreachable!("a wait without a deadline ends with a message"))
    }

    /// Waits at most `timeout` for the next message. A zero timeout only looks at
    /// what is queued; a huge one waits, in practice, for ever.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(1).build().unwrap();
    /// let got = rt.block_on(|cx| {
    ///     let child = cx.spawn_fn(|cx: &mut FnContext<u32>| {
    ///         (cx.receive_timeout(Duration::from_millis(1)), cx.receive_timeout(Duration::from_secs(60)))
    ///     });
    ///     fibra_runtime::sleep(Duration::from_millis(20));
    ///     child.pid().send(7).unwrap();
    ///     child.join().unwrap()
    /// });
    /// assert_eq!(got, (None, Some(7)));
    /// ```
    pub fn receive_timeout(&mut self, timeout: Duration) -> Option<M> {
        if timeout.is_zero() {
            return self.poll(pop_next);
        }
        self.receive_until(Some(deadline_after(timeout)), pop_next)
    }

    /// Waits at most `timeout` for the first message for which `pred` returns true;
    /// other messages stay queued in order.
    pub fn receive_matching_timeout(
        &mut self,
        mut pred: impl FnMut(&M) -> bool,
        timeout: Duration,
    ) -> Option<M> {
        let take = |mailbox: &Mailbox<M>| {
            // Safety: passed on from receive_until's (and poll's) contract.
            unsafe { mailbox.pop_matching(&mut pred) }
        };
        if timeout.is_zero() {
            return self.poll(take);
        }
        self.receive_until(Some(deadline_after(timeout)), take)
    }

    /// Suspends this process for `duration` (see [`sleep`](crate::sleep)).
    pub fn sleep(&mut self, duration: Duration) {
        if !duration.is_zero() {
            sleep_until(self.frame, deadline_after(duration));
        }
    }

    /// A look at what is queued, without waiting: `take` as for
    /// [`receive_until`](Self::receive_until).
    fn poll<R>(&mut self, mut take: impl FnMut(&Mailbox<M>) -> Option<R>) -> Option<R> {
        self.apply_pending();
        let received = take(&self.core.mailbox);
        if received.is_some() {
            self.core.header.took_message();
        }
        if received.is_some() {
            self.frame.tick();
        }
        received
    }

    /// Runs the writes queued for values this process publishes (shared.rs),
    /// in order, before it looks at its mailbox.
    fn apply_pending(&self) {
        // Safety: the running process is its signal queue's one consumer.
        while let Some(apply) = unsafe { crate::signal::take_apply(self.frame.process()) } {
            (apply.0)();
        }
    }

    /// The receive loop: `take` picks a message from the mailbox (it is called only
    /// by this process, the mailbox's one consumer, so it may use the consumer
    /// side); without one, the process waits for new messages, until `deadline` if
    /// there is one. A deadline comes from a nonzero timeout the caller has just
    /// added to the clock (a zero timeout is a [`poll`](Self::poll)), so the first
    /// look does not read the clock again: at these rates a clock read is a tenth
    /// of a `receive_timeout`.
    fn receive_until<R>(
        &mut self,
        deadline: Option<Instant>,
        mut take: impl FnMut(&Mailbox<M>) -> Option<R>,
    ) -> Option<R> {
        let mut timer = WaitTimer::new(self.frame);
        let mut first = true;
        let received = loop {
            self.apply_pending();
            if let Some(msg) = take(&self.core.mailbox) {
                self.core.header.took_message();
                break Some(msg);
            }
            let Some(deadline) = deadline else {
                let suspended = self
                    .frame
                    .suspend(Suspend::Wait(Wait::Message, Deadline::None));
                if suspended == Suspended::Refused {
                    refuse_to_wait_forever(self.core.header.id, "receive");
                }
                continue;
            };
            if !std::mem::take(&mut first) && Instant::now() >= deadline {
                break None;
            }
            // A wake-up by a message that did not match re-arms.
            let bound = timer.rearm(deadline);
            if self.frame.suspend(Suspend::Wait(Wait::Message, bound)) == Suspended::Refused {
                // Unwinding: a receive with a deadline gives up at once.
                break None;
            }
        };
        drop(timer);
        if received.is_some() {
            self.frame.tick();
        }
        received
    }

    /// Returns the next message if one is queued, without waiting.
    pub fn try_receive(&mut self) -> Option<M> {
        self.poll(pop_next)
    }

    /// This process's address.
    pub fn pid(&self) -> Pid<M> {
        self.me.clone()
    }

    /// This process's id.
    pub fn id(&self) -> ProcessId {
        self.me.id()
    }

    /// Lets the other processes on this worker run before this one goes on. While
    /// the process unwinds it does nothing.
    pub fn yield_now(&mut self) {
        let _ = self.frame.suspend(Suspend::Yield);
    }

    /// Waits for the next notice (a monitor's `Down`, or a trapped exit signal).
    /// Messages stay queued.
    pub fn receive_notice(&mut self) -> Notice {
        self.receive_notice_until(None)
            .unwrap_or_else(|| unreachable!("a wait without a deadline ends with a notice"))
    }

    /// Waits at most `timeout` for the next notice.
    pub fn receive_notice_timeout(&mut self, timeout: Duration) -> Option<Notice> {
        self.receive_notice_until(Some(deadline_after(timeout)))
    }

    /// Waits for whichever comes first, a notice or a message. Notices come first
    /// when both are queued.
    pub fn receive_either(&mut self) -> Received<M> {
        self.receive_either_until(None)
            .unwrap_or_else(|| unreachable!("a wait without a deadline ends with something"))
    }

    /// Waits at most `timeout` for a notice or a message.
    pub fn receive_either_timeout(&mut self, timeout: Duration) -> Option<Received<M>> {
        if timeout.is_zero() {
            let frame = self.frame;
            return self.poll(|mailbox| notice_or_message(frame, mailbox));
        }
        self.receive_either_until(Some(deadline_after(timeout)))
    }

    fn receive_either_until(&mut self, deadline: Option<Instant>) -> Option<Received<M>> {
        let frame = self.frame;
        self.receive_until(deadline, |mailbox| notice_or_message(frame, mailbox))
    }

    fn receive_notice_until(&mut self, deadline: Option<Instant>) -> Option<Notice> {
        loop {
            // Safety: this process is running, its signal queue's one consumer, and
            // it took its fatal signals when it last resumed.
            if let Some(notice) = unsafe { take_notice(self.frame.process()) } {
                return Some(notice);
            }
            // Only signals end a sleep-kind wait; a timer bounds it if asked.
            match deadline {
                None => {
                    let suspended = self
                        .frame
                        .suspend(Suspend::Wait(Wait::Sleep, Deadline::None));
                    if suspended == Suspended::Refused {
                        refuse_to_wait_forever(self.core.header.id, "receive_notice");
                    }
                }
                Some(deadline) if Instant::now() >= deadline => return None,
                Some(deadline) => {
                    let mut timer = WaitTimer::new(self.frame);
                    let bound = timer.rearm(deadline);
                    if self.frame.suspend(Suspend::Wait(Wait::Sleep, bound)) == Suspended::Refused {
                        return None;
                    }
                }
            }
        }
    }
}

impl<'a, M> std::ops::Deref for FnContext<'a, M> {
    type Target = Scope<'a>;

    fn deref(&self) -> &Scope<'a> {
        &self.scope
    }
}
