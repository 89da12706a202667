//! Time in processes: sleeping, waiting for a message with a deadline, and
//! messages delivered later or periodically. All of it rests on the timeout thread
//! of `fibra-timer`, which hands each [`TimerAction`] back here when its deadline
//! passes.
//!
//! A timer that wakes a process carries the process (a counted reference, never a
//! raw pointer) and the sequence number of the wait it belongs to. Firing it is one
//! more contender for the process's state word (see `state.rs`): if a message won
//! first, the timer's CAS fails and the process cancels the timer when it runs.

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra_timer::{TimerHandle, TimerKey};
use parking_lot::Mutex;

use crate::carrier::{with_current, Frame, Suspend, Suspended};
use crate::error::SendError;
use crate::process::{Pid, Task};
use crate::rights::{wake, Waker};
use crate::state::{Deadline, Wait};

/// The deadline `delay` from now; a delay too large for the clock means "never"
/// in practice (a century from now) instead of an overflow.
pub(crate) fn deadline_after(delay: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(delay)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
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
}

impl TimerAction {
    /// Runs the action; called on the timeout thread.
    pub(crate) fn fire(self, timers: &TimerHandle<TimerAction>) {
        match self {
            TimerAction::Wake { process, seq } => wake(&*process, Waker::Timer(seq)),
            TimerAction::Deliver(delivery) => delivery.deliver(),
            TimerAction::Tick(interval) => interval.tick(timers),
        }
    }
}

/// A message waiting for its delivery time.
pub(crate) trait Delivery: Send {
    /// Sends it (a failure means the target exited; the message is dropped).
    fn deliver(self: Box<Self>);
    /// For handing the message back if it could not be scheduled.
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// A message and where it goes.
struct Letter<M> {
    /// The addressee.
    to: Pid<M>,
    /// The message.
    msg: M,
}

impl<M: Send + 'static> Delivery for Letter<M> {
    fn deliver(self: Box<Self>) {
        let _ = self.to.send(self.msg);
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
    /// (it is dropped now), false if it was already sent.
    pub fn cancel(&self) -> bool {
        self.timers.cancel(self.key).is_some()
    }
}

/// Schedules `msg` for `to` after `delay`.
pub(crate) fn send_after<M: Send + 'static>(
    timers: &TimerHandle<TimerAction>,
    to: &Pid<M>,
    msg: M,
    delay: Duration,
) -> Result<TimerRef, SendError<M>> {
    let letter: Box<dyn Delivery> = Box::new(Letter {
        to: to.clone(),
        msg,
    });
    match timers.insert(deadline_after(delay), TimerAction::Deliver(letter)) {
        Ok(key) => Ok(TimerRef {
            key,
            timers: timers.clone(),
        }),
        Err(TimerAction::Deliver(letter)) => match letter.into_any().downcast::<Letter<M>>() {
            Ok(letter) => Err(SendError(letter.msg)),
            Err(_) => unreachable!("the letter was built just above"),
        },
        Err(_) => unreachable!("insert hands back what it was given"),
    }
}

/// The state of a `send_interval`, shared by its handle and its pending timer.
pub(crate) struct IntervalState {
    /// Time between two messages.
    period: Duration,
    /// Set by cancel, or once the target has exited.
    stopped: AtomicBool,
    /// The pending timer and the deadline it is armed for; the lock orders re-arming
    /// against cancel.
    armed: Mutex<(Option<TimerKey>, Instant)>,
    /// Makes and sends the next message; false once the target has exited.
    send_next: Mutex<Box<dyn FnMut() -> bool + Send>>,
}

impl IntervalState {
    /// Delivers one message and arms the next tick, at a fixed rate: the next
    /// deadline is one period after the previous one, not after now, unless the
    /// interval fell more than a period behind.
    fn tick(self: Arc<Self>, timers: &TimerHandle<TimerAction>) {
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        if !(self.send_next.lock())() {
            self.stopped.store(true, Ordering::Release);
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
}

/// A periodic message scheduled with `send_interval`. It runs until cancelled, until
/// its target exits, or until the runtime shuts down; dropping the handle does not
/// stop it.
pub struct Interval {
    /// Shared with the pending timer.
    state: Arc<IntervalState>,
    /// The timeout thread.
    timers: TimerHandle<TimerAction>,
}

impl Interval {
    /// Stops the interval: no message is sent after this returns.
    pub fn cancel(&self) {
        self.state.stopped.store(true, Ordering::Release);
        let key = self.state.armed.lock().0.take();
        if let Some(key) = key {
            drop(self.timers.cancel(key));
        }
    }

    /// Whether the interval still runs (not cancelled, target alive when last sent).
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

/// Sends `make()` to `to` every `period`, the first after one period.
pub(crate) fn send_interval<M: Send + 'static>(
    timers: &TimerHandle<TimerAction>,
    to: &Pid<M>,
    mut make: impl FnMut() -> M + Send + 'static,
    period: Duration,
) -> Interval {
    // A zero period would make the timeout thread spin: one tick per microsecond
    // at most.
    let period = period.max(Duration::from_micros(1));
    let to = to.clone();
    let first = deadline_after(period);
    let state = Arc::new(IntervalState {
        period,
        stopped: AtomicBool::new(false),
        armed: Mutex::new((None, first)),
        send_next: Mutex::new(Box::new(move || to.send(make()).is_ok())),
    });
    {
        let mut armed = state.armed.lock();
        match timers.insert(first, TimerAction::Tick(Arc::clone(&state))) {
            Ok(key) => armed.0 = Some(key),
            Err(_) => state.stopped.store(true, Ordering::Release),
        }
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
