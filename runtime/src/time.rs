//! Time in processes: sleeping, waiting for a message with a deadline, and
//! messages delivered later or periodically. All of it rests on the timeout thread
//! of `fibra-timer`, which hands each [`TimerAction`] back here when its deadline
//! passes.
//!
//! A timer that wakes a process carries the process (a counted reference, never a
//! raw pointer) and the sequence number of the wait it belongs to. Firing it is one
//! more contender for the process's state word (see `state.rs`): if a message won
//! first, the timer's CAS fails and the process cancels the timer when it runs.
//!
//! # Timers die with their target
//!
//! A `send_after` letter or a `send_interval` is *bound* to its target (see
//! "What an ending process lets go of" in signal.rs), as Erlang cancels a timer to
//! a pid once that process is not alive:
//!
//! 1. Arming binds the timer to the target, under the target's relations lock, and
//!    the timer carries its [`Binding`]. A target that has exited already gets no
//!    timer: the message (or the interval's closure) is dropped at once.
//! 2. Delivering a letter, cancelling it, or stopping an interval unbinds it, in
//!    O(1).
//! 3. A target that ends cancels every timer still bound to it, so its letters'
//!    messages, its intervals' closures and the references they hold to it (its
//!    whole allocation) are released at its end, not at their deadline an hour
//!    later.
//!
//! # User code on the timeout thread
//!
//! The timeout thread runs user code: a `send_interval` closure at every tick, the
//! destructor of a message whose target exited, the last drop of a process. The
//! runtime's ending processes and cancels run message destructors too. None of
//! that may take the timeout thread down (every timed wait, `sleep`, call timeout,
//! IO deadline and supervisor backoff of the runtime would silently lose its
//! deadline), nor unwind out of an ending process (which would abort). So each of
//! those places catches a panic and *reports* it, and goes on:
//!
//! * as a `tracing` error event, for programs that collect them;
//! * and on standard error, as one line starting with `fibra:`, for programs with no
//!   subscriber, which would otherwise never learn that an interval stopped. (The
//!   panic hook prints the panic itself as usual.)
//!
//! A panicking `send_interval` closure stops its interval (and only it:
//! [`Interval::is_active`] turns false); a panicking destructor loses nothing else.
//! Anything else the timeout thread runs is caught by `fibra-timer` itself.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra_timer::{TimerHandle, TimerKey};
use parking_lot::Mutex;

use crate::carrier::{with_current, Frame, Suspend, Suspended};
use crate::error::{panic_message, SendError};
use crate::process::{Pid, Task};
use crate::rights::{wake, Waker};
use crate::signal::{bind_timer, unbind_timer, Binding};
use crate::state::{Deadline, Wait};

/// The deadline `delay` from now; a delay too large for the clock means "never"
/// in practice (a century from now) instead of an overflow.
pub(crate) fn deadline_after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Reports a panic caught where it must not spread (see the module comment).
fn report_panic(what: &str, payload: Box<dyn Any + Send>) {
    let message = panic_message(payload.as_ref());
    tracing::error!("{what} panicked: {message}; the runtime goes on");
    eprintln!("fibra: {what} panicked: {message}; the runtime goes on");
    // A payload whose own destructor panics is not worth a second report.
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Drops `value`, whose destructor is user code, where a panic must not spread: on
/// the timeout thread, in an ending process, in a cancel that may itself run during
/// an unwind. A panic is reported and goes no further.
pub(crate) fn drop_quietly<T>(what: &str, value: T) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(value))) {
        report_panic(what, payload);
    }
}

/// What the timeout thread does when a deadline passes.
pub(crate) enum TimerAction {
    /// End timed wait number `seq` of `process`, unless something else ended it.
    Wake {
        /// The waiting process.
        process: Task,
        /// The number of the wait the timer belongs to.
        seq: u64,
    },
    /// Deliver a message (`send_after`).
    Deliver(Box<dyn Delivery>),
    /// Deliver the next message of an interval and arm the one after.
    Tick(Arc<IntervalState>),
    /// Wake a future whose deadline has come (future.rs), through the waker it
    /// was last polled with.
    WakeFuture(Arc<parking_lot::Mutex<Option<std::task::Waker>>>),
}

impl TimerAction {
    /// Runs the action; called on the timeout thread.
    pub(crate) fn fire(self, timers: &TimerHandle<TimerAction>) {
        match self {
            TimerAction::Wake { process, seq } => wake(&*process, Waker::Timer(seq)),
            TimerAction::Deliver(delivery) => delivery.deliver(),
            TimerAction::Tick(interval) => interval.tick(timers),
            TimerAction::WakeFuture(waker) => {
                let waker = waker.lock().take();
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
        }
    }
}

/// A timer bound to its target's life (see the module comment): what the target
/// cancels when it ends.
pub(crate) enum BoundTimer {
    /// A `send_after` letter, by its timer.
    Letter(TimerKey),
    /// A `send_interval`.
    Interval(Arc<IntervalState>),
}

impl BoundTimer {
    /// Cancels the timer and drops what it held (step 3 of the module comment).
    /// Called by the ending target, with no lock held.
    pub(crate) fn release(self, timers: &TimerHandle<TimerAction>) {
        match self {
            BoundTimer::Letter(key) => drop_quietly(
                "the destructor of a send_after message (its target exited)",
                timers.cancel(key),
            ),
            BoundTimer::Interval(interval) => interval.stop(timers, Unbind::Unbound),
        }
    }
}

/// A message waiting for its delivery time.
pub(crate) trait Delivery: Send {
    /// Sends it (a failure means the target exited; the message is dropped).
    fn deliver(self: Box<Self>);
    /// Unbinds it from its target (step 2 of the module comment): it was cancelled.
    fn unbind(&self);
    /// For handing the message back if it could not be scheduled.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// A message and where it goes.
struct Letter<M> {
    /// The addressee.
    to: Pid<M>,
    /// The message.
    msg: M,
    /// Where the letter is bound to its addressee.
    binding: Binding,
}

impl<M: Send + 'static> Delivery for Letter<M> {
    fn deliver(self: Box<Self>) {
        self.unbind();
        let Letter { to, msg, .. } = *self;
        match to.send(msg) {
            Ok(()) => {}
            // The target ended after this timer fired but before it could cancel it.
            Err(SendError::Exited(msg)) => drop_quietly(
                "the destructor of a send_after message (its target exited)",
                msg,
            ),
            // The timeout thread may not wait for room: the message is dropped,
            // and said so.
            Err(error) => {
                tracing::warn!(
                    pid = %to.id(),
                    "a timed message was dropped: its target's bounded mailbox was full"
                );
                drop_quietly(
                    "the destructor of a send_after message (its target's mailbox was full)",
                    error.into_inner(),
                );
            }
        }
    }

    fn unbind(&self) {
        // What the binding held is only the timer's key.
        drop(unbind_timer(self.to.header(), self.binding));
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// A message scheduled with `send_after`. Dropping the handle does not cancel it.
#[derive(Debug)]
pub struct TimerRef {
    /// The pending timer.
    key: TimerKey,
    /// The timeout thread that holds it.
    timers: TimerHandle<TimerAction>,
}

impl TimerRef {
    /// Cancels the delivery. Returns true if the message had not been delivered yet
    /// (it is dropped now), false if it was already sent, or dropped because its
    /// target exited. A panic in the message's destructor is reported, not raised
    /// (see [`Pid::send_after`]).
    pub fn cancel(&self) -> bool {
        let Some(action) = self.timers.cancel(self.key) else {
            return false;
        };
        if let TimerAction::Deliver(delivery) = &action {
            delivery.unbind();
        }
        drop_quietly("the destructor of a cancelled send_after message", action);
        true
    }
}

/// Schedules `msg` for `to` after `delay`, bound to `to`'s life. Hands the message
/// back if `to` has exited or the runtime has shut down.
pub(crate) fn send_after<M: Send + 'static>(
    timers: &TimerHandle<TimerAction>,
    to: &Pid<M>,
    msg: M,
    delay: Duration,
) -> Result<TimerRef, SendError<M>> {
    let deadline = deadline_after(delay);
    let mut unsent = Some(msg);
    let armed = bind_timer(to.header(), |binding| {
        let Some(msg) = unsent.take() else {
            unreachable!("a binding arms once");
        };
        let letter: Box<dyn Delivery> = Box::new(Letter {
            to: to.clone(),
            msg,
            binding,
        });
        // Handed back on failure, to be unpacked outside the lock.
        match timers.insert(deadline, TimerAction::Deliver(letter)) {
            Ok(key) => (Some(BoundTimer::Letter(key)), Ok(key)),
            Err(action) => (None, Err(action)),
        }
    });
    match armed {
        Some(Ok(key)) => Ok(TimerRef {
            key,
            timers: timers.clone(),
        }),
        Some(Err(TimerAction::Deliver(letter))) => {
            match letter.into_any().downcast::<Letter<M>>() {
                Ok(letter) => Err(SendError::Exited(letter.msg)),
                Err(_) => unreachable!("the letter was built just above"),
            }
        }
        Some(Err(_)) => unreachable!("insert hands back what it was given"),
        // The target has exited: the message comes back, as from a send.
        None => match unsent {
            Some(msg) => Err(SendError::Exited(msg)),
            None => unreachable!("not armed, so not taken"),
        },
    }
}

/// Makes and sends an interval's next message; false once the target has exited.
type SendNext = Box<dyn FnMut() -> bool + Send>;

/// Whether stopping an interval still has to unbind it from its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unbind {
    /// Yes: it stops on its own (cancelled, or its closure panicked).
    Bound,
    /// No: the target is ending and took it out of its list already.
    Unbound,
}

/// The state of a `send_interval`, shared by its handle, its pending timer and its
/// target's list of bound timers.
pub(crate) struct IntervalState {
    /// Time between two messages.
    period: Duration,
    /// Set by cancel, once the target has exited, or when the closure panicked.
    stopped: AtomicBool,
    /// The pending timer and the deadline it is armed for; the lock orders re-arming
    /// against cancel.
    armed: Mutex<(Option<TimerKey>, Instant)>,
    /// The closure, until the interval stops and drops it. The timeout thread takes
    /// it out while it runs it, so that no lock is held meanwhile (the closure may
    /// cancel its own interval).
    send_next: Mutex<Option<SendNext>>,
    /// The target and the interval's binding to it, until the interval stops.
    target: Mutex<Option<(Task, Binding)>>,
}

impl IntervalState {
    /// Delivers one message and arms the next tick, at a fixed rate: the next
    /// deadline is one period after the previous one, not after now, unless the
    /// interval fell more than a period behind.
    fn tick(self: Arc<Self>, timers: &TimerHandle<TimerAction>) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let Some(mut send_next) = self.send_next.lock().take() else {
            return;
        };
        match panic::catch_unwind(AssertUnwindSafe(&mut send_next)) {
            Ok(true) => {}
            Ok(false) => {
                self.put_back(send_next);
                self.stop(timers, Unbind::Bound);
                return;
            }
            Err(payload) => {
                report_panic("a send_interval closure (the interval is stopped)", payload);
                self.put_back(send_next);
                self.stop(timers, Unbind::Bound);
                return;
            }
        }
        if !self.put_back(send_next) {
            return;
        }
        let mut armed = self.armed.lock();
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let mut next = armed.1 + self.period;
        if next <= now {
            next = now + self.period;
        }
        armed.1 = next;
        armed.0 = timers
            .insert(next, TimerAction::Tick(Arc::clone(&self)))
            .ok();
    }

    /// Returns the closure after a tick ran it; if the interval stopped meanwhile,
    /// drops it instead and returns false.
    fn put_back(&self, send_next: SendNext) -> bool {
        let mut slot = self.send_next.lock();
        // Checked under the lock that `stop` takes after setting the flag: either
        // this sees the flag, or `stop` finds the closure back in place.
        if self.stopped.load(Ordering::Acquire) {
            drop(slot);
            drop_quietly("the destructor of a send_interval closure", send_next);
            return false;
        }
        *slot = Some(send_next);
        true
    }

    /// Stops the interval for good: no message is sent after this returns (unless a
    /// tick is running the closure right now), the pending timer is cancelled, and the
    /// closure and the reference to the target are dropped.
    pub(crate) fn stop(&self, timers: &TimerHandle<TimerAction>, unbind: Unbind) {
        self.stopped.store(true, Ordering::Release);
        let key = self.armed.lock().0.take();
        if let Some(key) = key {
            // An `Arc` of this state: never the last, the caller holds one.
            drop(timers.cancel(key));
        }
        let target = self.target.lock().take();
        if let (Some((target, binding)), Unbind::Bound) = (&target, unbind) {
            // Another `Arc` of this state, as above.
            drop(unbind_timer(target.header(), *binding));
        }
        drop(target);
        // Taken under the lock, dropped without it.
        let send_next = self.send_next.lock().take();
        drop_quietly("the destructor of a send_interval closure", send_next);
    }
}

/// A periodic message scheduled with `send_interval`. It runs until cancelled, until
/// its target exits, until its closure panics, or until the runtime shuts down;
/// dropping the handle does not stop it.
pub struct Interval {
    /// Shared with the pending timer.
    state: Arc<IntervalState>,
    /// The timeout thread.
    timers: TimerHandle<TimerAction>,
}

impl Interval {
    /// Stops the interval: no message is sent after this returns, and its closure
    /// is dropped (a panic in its destructor is reported, not raised).
    pub fn cancel(&self) {
        self.state.stop(&self.timers, Unbind::Bound);
    }

    /// Whether the interval still runs: not cancelled, its target alive, its
    /// closure never panicked.
    pub fn is_active(&self) -> bool {
        !self.state.stopped.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interval")
            .field("period", &self.state.period)
            .field("active", &self.is_active())
            .finish()
    }
}

/// Sends `make()` to `to` every `period`, the first after one period; bound to
/// `to`'s life.
pub(crate) fn send_interval<M: Send + 'static>(
    timers: &TimerHandle<TimerAction>,
    to: &Pid<M>,
    mut make: impl FnMut() -> M + Send + 'static,
    period: Duration,
) -> Interval {
    // A zero period would make the timeout thread spin: one tick per microsecond
    // at most.
    let period = period.max(Duration::from_micros(1));
    let first = deadline_after(period);
    let state = Arc::new(IntervalState {
        period,
        stopped: AtomicBool::new(false),
        armed: Mutex::new((None, first)),
        send_next: Mutex::new(Some(Box::new({
            let to = to.clone();
            move || to.send(make()).is_ok()
        }))),
        target: Mutex::new(None),
    });
    let armed = bind_timer(to.header(), |binding| {
        *state.target.lock() = Some((to.any().0, binding));
        let mut armed = state.armed.lock();
        match timers.insert(first, TimerAction::Tick(Arc::clone(&state))) {
            Ok(key) => {
                armed.0 = Some(key);
                (Some(BoundTimer::Interval(Arc::clone(&state))), true)
            }
            // The runtime is shutting down; what comes back is a clone of `state`.
            Err(_) => (None, false),
        }
    });
    if armed != Some(true) {
        // The target has exited, or the runtime shuts down: nothing was bound.
        state.stop(timers, Unbind::Unbound);
    }
    Interval {
        state,
        timers: timers.clone(),
    }
}

/// Arms a timer that ends the current process's next timed wait at `deadline`.
/// Returns None if the runtime is shutting down (the wait then has no deadline,
/// and shutdown ends it).
pub(crate) fn arm(frame: &Frame<'_>, deadline: Instant) -> Option<TimerKey> {
    let process = frame.process();
    let seq = process.header().state.begin_timed_wait();
    process
        .header()
        .shared
        .timers
        .insert(
            deadline,
            TimerAction::Wake {
                process: frame.task(),
                seq,
            },
        )
        .ok()
}

/// Cancels a wake-up timer; its reference to the process is dropped.
pub(crate) fn disarm(frame: &Frame<'_>, key: TimerKey) {
    drop(frame.process().header().shared.timers.cancel(key));
}

/// The timer of the running process's timed wait, cancelled when dropped, so it
/// never outlives its wait, also when the wait unwinds (a kill, a stop).
pub(crate) struct WaitTimer<'a, 'y> {
    /// The waiting process's frame.
    frame: &'a Frame<'y>,
    /// The armed timer, if any.
    key: Option<TimerKey>,
}

impl<'a, 'y> WaitTimer<'a, 'y> {
    pub(crate) fn new(frame: &'a Frame<'y>) -> Self {
        WaitTimer { frame, key: None }
    }

    /// Arms a fresh timer for the next timed wait (each wait needs its own: the
    /// sequence number changes), dropping the previous one. Says how the wait is
    /// bounded: `None` if the runtime is shutting down and no timer could be armed.
    pub(crate) fn rearm(&mut self, deadline: Instant) -> Deadline {
        if let Some(key) = self.key.take() {
            disarm(self.frame, key);
        }
        self.key = arm(self.frame, deadline);
        match self.key {
            Some(_) => Deadline::Timed,
            None => Deadline::None,
        }
    }
}

impl Drop for WaitTimer<'_, '_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            disarm(self.frame, key);
        }
    }
}

/// Suspends the current process until `deadline`. A process that unwinds may not
/// suspend: it sleeps its thread instead (and returns at once in a shutdown
/// drain).
pub(crate) fn sleep_until(frame: &Frame<'_>, deadline: Instant) {
    if !frame.may_suspend() {
        return sleep_thread_until(deadline);
    }
    let mut timer = WaitTimer::new(frame);
    while Instant::now() < deadline {
        match timer.rearm(deadline) {
            Deadline::Timed => {
                let suspended = frame.suspend(Suspend::Wait(Wait::Sleep, Deadline::Timed));
                if suspended == Suspended::Refused {
                    drop(timer);
                    return sleep_thread_until(deadline);
                }
            }
            // Shutting down: the process is about to be stopped anyway.
            Deadline::None => {
                let _ = frame.suspend(Suspend::Yield);
                return;
            }
        }
    }
}

/// Sleeps the calling thread until `deadline`, except in a shutdown drain.
fn sleep_thread_until(deadline: Instant) {
    if !crate::shutdown::draining() {
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    }
}

/// Suspends the calling process for `duration`; on a thread outside any process,
/// sleeps the thread. Only the process waits: its worker runs others meanwhile.
/// A zero duration returns at once.
///
/// ```
/// use std::time::{Duration, Instant};
/// use fibra_runtime::*;
///
/// let rt = Runtime::builder().workers(1).build().unwrap();
/// let slept = rt.block_on(|_cx| {
///     let start = Instant::now();
///     fibra_runtime::sleep(Duration::from_millis(5));
///     start.elapsed()
/// });
/// assert!(slept >= Duration::from_millis(5));
/// ```
pub fn sleep(duration: Duration) {
    if duration.is_zero() {
        return;
    }
    let deadline = deadline_after(duration);
    let slept = with_current(|frame| match frame {
        Some(frame) => {
            sleep_until(frame, deadline);
            true
        }
        None => false,
    });
    if !slept {
        sleep_thread_until(deadline);
    }
}

/// Messages later and periodically: the timer side of [`Pid`].
impl<M: Send + 'static> Pid<M> {
    /// Sends `msg` after `delay`, from the runtime's timeout thread. The returned
    /// [`TimerRef`] can cancel it; dropping it does not. Fails, handing the message
    /// back, if the process has exited or the runtime has shut down.
    ///
    /// The timer lives no longer than the process: if the process exits before the
    /// delay is up, the timer is cancelled and the message dropped as it exits (as
    /// Erlang cancels a timer to a process that is not alive), so a long delay to a
    /// short-lived process holds nothing for long. A panic in the message's
    /// destructor, wherever the runtime drops it, is reported (a `tracing` error and
    /// a line on standard error) and goes no further.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(1).build().unwrap();
    /// let got = rt.block_on(|cx| {
    ///     let child = cx.spawn_fn(|cx: &mut FnContext<&'static str>| cx.receive());
    ///     let called_off = child.pid().send_after("never", Duration::from_secs(60)).unwrap();
    ///     assert!(called_off.cancel());
    ///     child.pid().send_after("later", Duration::from_millis(5)).unwrap();
    ///     child.join().unwrap()
    /// });
    /// assert_eq!(got, "later");
    /// ```
    pub fn send_after(&self, msg: M, delay: Duration) -> Result<TimerRef, SendError<M>> {
        send_after(&self.shared().timers, self, msg, delay)
    }

    /// Sends `make()` every `period`, the first one period from now, until the
    /// returned [`Interval`] is cancelled, this process exits, `make` panics, or the
    /// runtime shuts down. Ticks keep a fixed rate: a late tick does not push the
    /// later ones back. When the interval stops, `make` is dropped; when it stops
    /// because the process exited, that happens as the process exits, not at the
    /// next tick.
    ///
    /// `make` runs on the runtime's timeout thread, the one thread that ends every
    /// timed wait of the runtime (`sleep`, `receive_timeout`, call timeouts, IO
    /// deadlines, supervisor backoffs). So it must be quick and must not block: no
    /// locks held by processes, no blocking channel, no IO, no `call`; while it
    /// runs, every deadline of the runtime waits. If it panics, the panic is
    /// reported (a `tracing` error and a line on standard error), this interval
    /// stops ([`Interval::is_active`] turns false) and nothing else is affected.
    pub fn send_interval(
        &self,
        make: impl FnMut() -> M + Send + 'static,
        period: Duration,
    ) -> Interval {
        send_interval(&self.shared().timers, self, make, period)
    }
}
