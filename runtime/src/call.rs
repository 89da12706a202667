//! Request and reply: [`Pid::call`] sends a request that carries a [`ReplyTo`] and
//! waits, at most for a timeout, for the one answer.
//!
//! # The protocol, step by step
//!
//! The answer does not travel through a mailbox. The caller and the [`ReplyTo`]
//! share a one-shot *slot*: a single allocation that holds, behind a short lock, the
//! outcome so far and who waits for it.
//!
//! 1. The caller allocates the slot and registers an exit hook on the callee
//!    *before* it sends anything, so the callee cannot end unobserved in between.
//!    If the callee has ended already (its state word says so, or the hook runs
//!    at once), the call fails at once with `Exited(NoProc)`; the request is never
//!    built.
//! 2. It builds the request around a `ReplyTo` and sends it. A failed send means
//!    the callee is ending: the request is dropped on the spot, its `ReplyTo` with
//!    it, and step 5 explains why that still reports the exit reason.
//! 3. It waits. A process first yields and looks, up to twice: the send put a
//!    callee that runs on the same worker into the worker's LIFO slot, so it has
//!    usually replied by then, and that round trip needs no waiter, no timer and no
//!    clock. Otherwise
//!    (and always on a plain thread) the caller computes its deadline, records
//!    itself as the slot's waiter under the lock, and then a process suspends on an
//!    event wait bounded by a timer, a thread parks with a timeout. A wake-up proves
//!    nothing (every signal interrupts a wait, and a notification can be left over
//!    from an earlier event), so the caller looks at the slot again each time, until
//!    it holds an outcome or the deadline has passed.
//! 4. Three parties can settle the slot, and the first one wins and wakes the
//!    waiter: [`ReplyTo::reply`] with the value, the drop of an unused `ReplyTo`
//!    ("no reply"), and the exit hook with the callee's exit reason.
//! 5. The one exception to "first wins": an exit reason replaces "no reply". A
//!    callee that ends can drop an unanswered `ReplyTo` before its exit hooks run,
//!    in two ways. Its mailbox is closed, and the requests still queued dropped,
//!    before the hooks run:
//!
//!    ```text
//!      callee, ending                           caller
//!      --------------                           ------
//!      state := EXITED
//!      mailbox closed: the request is dropped
//!        ReplyTo::drop: slot := Dropped  --->  wakes: Dropped, but the callee
//!                                              has exited: waits on
//!      exit hook: slot := Exited(reason) --->  wakes: returns Exited(reason)
//!    ```
//!
//!    So the caller takes "no reply" as final only while the callee is alive; the
//!    slot's lock orders the `EXITED` store before the caller's look. And a callee
//!    that panics (or is killed) with the `ReplyTo` in hand drops it while it
//!    unwinds, still alive. That drop runs on the callee's own carrier, which is
//!    how `ReplyTo::drop` recognises it: it records `Unwound`, which is never final
//!    and wakes nobody, and the exit hook follows. (Should the callee catch the
//!    panic itself and live on, the call ends at its timeout.)
//!
//!    Last, a callee that drops the `ReplyTo` itself, not unwinding, may be about
//!    to end all the same: a handler that calls `cx.stop()` drops the request as
//!    `handle` returns, a free-running process drops it as its closure returns.
//!    Whether it ends is only known once it gets that far, so such a drop records
//!    `DroppedByCallee`, which is not final either and wakes nobody, and leaves the
//!    slot in a list of its thread. The callee settles that list (turns each into
//!    `Dropped` and wakes the caller) when it next suspends or its activation ends
//!    (deferred on its frame, run by the carrier), by which time it has either
//!    ended, and its exit reason replaced the drop, or it lives on, and "no reply"
//!    is the truth:
//!
//!    ```text
//!      callee (a handler)                       caller
//!      ------------------                       ------
//!      handle: cx.stop(); returns, dropping
//!        the ReplyTo: DroppedByCallee           (not woken; a look finds
//!                                               nothing final)
//!      stopped hook; state := EXITED
//!      exit hook: slot := Exited(Normal) --->  wakes: Exited(Normal)
//!      activation ends: settles its list;
//!        Dropped is refused: already exited
//!    ```
//!
//!    The list never outlives the activation's stay on its thread: an activation
//!    settles it before every switch away from its stack. A callee whose `stopped`
//!    hook blocks (sleeps, calls) settles it there, so its callers get "no reply".
//! 6. The caller takes the outcome, or gives up at the deadline, and *closes* the
//!    slot in the same critical section. Whatever arrives later finds it closed and
//!    is dropped where it is, so a late reply never shows up anywhere: there is no
//!    mailbox on this path for it to land in, and `reply` returns false.
//! 7. Last, the caller removes its exit hook (always: a long-lived callee would
//!    otherwise collect one per call) and cancels its timer. Both also happen when
//!    the caller unwinds out of the wait (it was killed, or the runtime shut down).
//!
//! Per call that is one allocation for the slot and one for the boxed exit hook,
//! and a lock on the callee's relations to add the hook and another to remove it.
//! A process that has to wait adds one timer, armed and cancelled.

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::carrier::{with_current, with_suspendable, Frame, Suspend, Suspended};
use crate::error::{Exit, SendError};
use crate::process::{AnyPid, Pid, Run, Task};
use crate::signal::{on_exit, remove_exit_hook, ExitHook, ExitSink, HookId};
use crate::state::Wait;
use crate::time::{deadline_after, WaitTimer};
use crate::waiter::Waiter;

/// How many times a calling process yields, looking for the reply after each, before
/// it arms a timer and waits for the reply. One yield covers a callee on the same
/// worker that answers at once; the second, one that lets another process run
/// before it answers (a supervisor starting a child through the child's `init`:
/// `dynamic_churn` went from 4.0–5.0 to 3.6 µs a cycle, `restart`'s p50 from 8.0
/// to 5.3 µs). More would mostly spin for a callee on another worker.
const YIELDS_BEFORE_WAITING: u32 = 2;

/// The address of a process, for comparing identities.
fn process_address(process: &dyn Run) -> usize {
    process as *const dyn Run as *const () as usize
}

/// Why a [`Pid::call`] returned no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No reply came within the timeout. A reply that comes later is dropped.
    Timeout,
    /// The callee ended before it replied, with this reason; [`Exit::NoProc`] if it
    /// had ended before the call. Reported as soon as the callee ends, not at the
    /// timeout.
    Exited(Exit),
    /// The [`ReplyTo`] was dropped without a reply, and the callee lives on.
    NoReply,
    /// A process called itself: it could only wait out the timeout for a reply
    /// that it would have to give itself, so the call fails at once (OTP's
    /// `calling_self`).
    CallingSelf,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout => f.write_str("the call timed out before a reply came"),
            CallError::Exited(reason) => {
                write!(f, "the called process ended before replying: {reason}")
            }
            CallError::NoReply => {
                f.write_str("the called process dropped the reply handle without replying")
            }
            CallError::CallingSelf => {
                f.write_str("a process called itself, and could never reply while it waits")
            }
        }
    }
}

impl std::error::Error for CallError {}

/// How far a call has got.
enum Reply<R> {
    /// Nothing has happened yet.
    Pending,
    /// The callee replied.
    Value(R),
    /// The `ReplyTo` was dropped unused. Final only while the callee is alive (step 5
    /// of the protocol).
    Dropped,
    /// The callee dropped the `ReplyTo` unused while it unwound: it is ending, and
    /// its exit hook will bring the reason (step 5).
    Unwound,
    /// The callee dropped the `ReplyTo` unused, running: `Dropped` once it next
    /// suspends or its activation ends, unless its exit comes first (step 5).
    DroppedByCallee,
    /// The callee ended, with this reason.
    Exited(Exit),
    /// The caller took the outcome or gave up; whatever comes now is dropped.
    Closed,
}

/// What the slot's lock guards.
struct SlotState<R> {
    /// The outcome so far.
    reply: Reply<R>,
    /// Who to wake when it changes.
    waiter: Waiter,
}

impl<R> SlotState<R> {
    /// Takes the outcome if it is final, and closes the slot; None while the call
    /// goes on.
    fn take(&mut self, callee: &Task) -> Option<Result<R, CallError>> {
        let result = match mem::replace(&mut self.reply, Reply::Closed) {
            Reply::Value(value) => Ok(value),
            Reply::Exited(reason) => Err(CallError::Exited(reason)),
            Reply::Dropped if !callee.header().state.is_exited() => Err(CallError::NoReply),
            unsettled => {
                self.reply = unsettled;
                return None;
            }
        };
        self.waiter = Waiter::None;
        Some(result)
    }
}

impl<R: Send + 'static> ExitSink for Slot<R> {
    fn ended(&self, exit: &Exit) {
        let _ = self.settle(Reply::Exited(exit.clone()));
    }
}

/// The one-shot slot that a call's [`ReplyTo`] and its caller share.
struct Slot<R> {
    /// The outcome and the waiter.
    state: Mutex<SlotState<R>>,
    /// The callee's address, to tell whether a `ReplyTo` is dropped by the callee
    /// itself. Only an address to compare: the call holds the callee alive, so no
    /// other process can have it while the comparison matters.
    callee: usize,
}

impl<R> Slot<R> {
    /// A slot for a call to the process at `callee` (see [`process_address`]).
    fn new(callee: usize) -> Slot<R> {
        Slot {
            state: Mutex::new(SlotState {
                reply: Reply::Pending,
                waiter: Waiter::None,
            }),
            callee,
        }
    }

    /// Whether the thread runs the callee, unwinding (a panic, a kill or `exit` is
    /// ending it) or not.
    fn dropped_by(&self) -> Dropper {
        let callee_here = with_current(|frame| {
            frame.is_some_and(|frame| process_address(frame.process()) == self.callee)
        });
        match (callee_here, thread::panicking()) {
            (true, true) => Dropper::CalleeUnwinding,
            (true, false) => Dropper::CalleeRunning,
            // A shutdown drain unwinds suspended activations with no frame current;
            // every process ends there with the shutdown, which the caller hears of
            // through the callee's exit.
            (false, true) if crate::shutdown::draining() => Dropper::CalleeUnwinding,
            (false, _) => Dropper::Other,
        }
    }

    /// Records `reply` and wakes the caller, unless the call is settled already
    /// (an exit reason still replaces a dropped `ReplyTo`, step 5). A refused outcome is
    /// handed back, so that it is dropped outside the lock.
    fn settle(&self, reply: Reply<R>) -> Result<(), Reply<R>> {
        let waiter = {
            let mut state = self.state.lock();
            let accepted = matches!(
                (&state.reply, &reply),
                (Reply::Pending, _)
                    | (
                        Reply::Dropped | Reply::Unwound | Reply::DroppedByCallee,
                        Reply::Exited(_)
                    )
                    | (Reply::DroppedByCallee, Reply::Dropped)
            );
            if !accepted {
                return Err(reply);
            }
            // An unwinding callee is no news for the caller: its exit will be; nor
            // is a callee that dropped the handle itself, until it settles it.
            let waiter = match reply {
                Reply::Unwound | Reply::DroppedByCallee => Waiter::None,
                _ => mem::replace(&mut state.waiter, Waiter::None),
            };
            state.reply = reply;
            waiter
        };
        waiter.wake();
        Ok(())
    }
}

/// Who dropped a `ReplyTo` unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropper {
    /// The callee, while it unwinds: it is ending.
    CalleeUnwinding,
    /// The callee, running: it may be about to end.
    CalleeRunning,
    /// Another process or thread.
    Other,
}

/// A slot whose `ReplyTo` the callee dropped itself, to be settled as "no reply"
/// once the callee suspends or its activation ends (step 5).
trait SettleDropped {
    /// Turns `DroppedByCallee` into `Dropped` and wakes the caller, unless the call
    /// is settled otherwise by now.
    fn settle_dropped(&self);
}

impl<R: 'static> SettleDropped for Slot<R> {
    fn settle_dropped(&self) {
        // Refused if the callee's exit came first, or the caller gave up: nothing of
        // a value is dropped either way.
        let _ = self.settle(Reply::Dropped);
    }
}

/// Records a slot the running callee dropped unanswered, to be settled as "no
/// reply" before its activation suspends or ends (step 5).
fn defer_dropped(slot: Arc<dyn SettleDropped>) {
    with_current(|frame| match frame {
        Some(frame) => frame.defer(Box::new(move || slot.settle_dropped())),
        None => slot.settle_dropped(),
    });
}

/// The handle a callee answers a [`Pid::call`] with. It travels inside the request;
/// [`reply`](ReplyTo::reply) sends the one answer back to the caller.
///
/// It can be sent anywhere (another process may answer on the callee's behalf),
/// but not cloned: a call gets one reply. Dropping it without replying ends the
/// call with [`CallError::NoReply`]; if the callee ends without replying, the call
/// fails with [`CallError::Exited`] and the callee's exit reason instead, also when
/// the callee dropped the handle itself just before it ended (a handler that calls
/// `cx.stop()` without replying, a free-running process that returns with the
/// request in hand). So a drop by another process fails the call at once; a drop
/// by the callee itself, once the callee next waits or ends its activation.
///
/// `R: 'static`, as for every call (see [`Pid::call`]).
pub struct ReplyTo<R: 'static> {
    /// The slot shared with the caller; `reply` takes it, so the drop that follows
    /// does nothing.
    slot: Option<Arc<Slot<R>>>,
}

impl<R: 'static> ReplyTo<R> {
    /// Answers the call. Returns true if the caller was still waiting and gets
    /// `value`; false if the call was already over (the caller timed out, was
    /// killed, or learnt that the callee had ended), in which case `value` is
    /// dropped here and nothing of it reaches the caller, then or later.
    pub fn reply(mut self, value: R) -> bool {
        match self.slot.take() {
            Some(slot) => slot.settle(Reply::Value(value)).is_ok(),
            None => false,
        }
    }
}

impl<R: 'static> Drop for ReplyTo<R> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        match slot.dropped_by() {
            Dropper::CalleeUnwinding => {
                let _ = slot.settle(Reply::Unwound);
            }
            Dropper::CalleeRunning => {
                if slot.settle(Reply::DroppedByCallee).is_ok() {
                    defer_dropped(slot);
                }
            }
            Dropper::Other => {
                let _ = slot.settle(Reply::Dropped);
            }
        }
    }
}

impl<R: 'static> fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyTo").finish_non_exhaustive()
    }
}

/// The caller's side of a call in progress. Dropping it, on return or while the
/// caller unwinds, closes the slot and removes the exit hook (step 7).
pub(crate) struct Call<R> {
    /// The slot shared with the `ReplyTo`.
    slot: Arc<Slot<R>>,
    /// The callee.
    callee: Task,
    /// The exit hook registered on the callee.
    hook: HookId,
    /// Whether the slot is closed already (the wait took the outcome or timed out).
    closed: bool,
}

impl<R> Call<R> {
    /// The runtime's timers, for a future's deadline (async.rs).
    pub(crate) fn timers(&self) -> &fibra_timer::TimerHandle<crate::time::TimerAction> {
        &self.callee.header().shared.timers
    }

    /// Waits for the outcome, at most `timeout`: suspends the calling process, or
    /// parks the calling thread outside any process.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Result<R, CallError> {
        with_suspendable(|frame| match frame {
            Some(frame) => self.wait_in_process(frame, timeout),
            // A process that unwinds may not suspend: it blocks its thread instead,
            // unless the runtime is ending processes on this very thread.
            None if crate::shutdown::draining() => match self.try_take() {
                Some(result) => result,
                None => Err(CallError::Exited(Exit::Shutdown)),
            },
            None => self.wait_on_thread(deadline_after(timeout)),
        })
    }

    /// Takes the final outcome if there is one, closing the slot; otherwise records
    /// `waiting`'s waiter, unless one of its kind is recorded already.
    pub(crate) fn take_or_watch(&mut self, waiting: &Waiting<'_>) -> Option<Result<R, CallError>> {
        let mut state = self.slot.state.lock();
        if let Some(result) = state.take(&self.callee) {
            self.closed = true;
            return Some(result);
        }
        if !waiting.is_recorded(&state.waiter) {
            state.waiter = waiting.waiter();
        }
        None
    }

    /// Takes the final outcome if there is one, or else closes the slot with a
    /// timeout, in one critical section: a reply racing the deadline is either
    /// taken here or refused.
    pub(crate) fn take_or_time_out(&mut self) -> Result<R, CallError> {
        let mut state = self.slot.state.lock();
        let result = state.take(&self.callee).unwrap_or_else(|| {
            state.reply = Reply::Closed;
            state.waiter = Waiter::None;
            Err(CallError::Timeout)
        });
        self.closed = true;
        result
    }

    /// Takes the final outcome if there is one, closing the slot.
    pub(crate) fn try_take(&mut self) -> Option<Result<R, CallError>> {
        let result = self.slot.state.lock().take(&self.callee);
        self.closed = result.is_some();
        result
    }

    fn wait_in_process(&mut self, frame: &Frame<'_>, timeout: Duration) -> Result<R, CallError> {
        // The fast path: the request woke the callee into this worker's LIFO slot, so
        // after a yield it has usually run and replied. No waiter is recorded yet, so
        // its reply costs no wake-up, and the call needs no timer and not even a look
        // at the clock (which would be a tenth of the round trip): the timeout runs
        // from the end of the fast path, later than the send by one turn of the
        // worker's run queue.
        for _ in 0..YIELDS_BEFORE_WAITING {
            let _ = frame.suspend(Suspend::Yield);
            if let Some(result) = self.try_take() {
                return result;
            }
        }
        let deadline = deadline_after(timeout);
        wait_event(Some(frame), deadline, |waiting| self.take_or_watch(waiting))
            .unwrap_or_else(|| self.take_or_time_out())
    }

    fn wait_on_thread(&mut self, deadline: Instant) -> Result<R, CallError> {
        wait_event(None, deadline, |waiting| self.take_or_watch(waiting))
            .unwrap_or_else(|| self.take_or_time_out())
    }
}

/// Who waits for an event: the running process, the calling thread, or a future.
pub(crate) enum Waiting<'a> {
    /// The process of this frame, suspended in an event wait.
    Process(&'a Frame<'a>),
    /// The calling thread, parked.
    Thread,
    /// A future, woken through this waker.
    Async(&'a std::task::Waker),
}

impl Waiting<'_> {
    /// The waiter to record where the event will come from.
    pub(crate) fn waiter(&self) -> Waiter {
        match self {
            Waiting::Process(frame) => Waiter::Process(frame.task()),
            Waiting::Thread => Waiter::Thread(thread::current()),
            Waiting::Async(waker) => Waiter::Async((*waker).clone()),
        }
    }

    /// Whether `waiter` is of this kind already (it is then this one: a slot's
    /// waiter is only ever its one caller).
    pub(crate) fn is_recorded(&self, waiter: &Waiter) -> bool {
        match self {
            Waiting::Process(_) => matches!(waiter, Waiter::Process(_)),
            Waiting::Thread => matches!(waiter, Waiter::Thread(_)),
            // An executor may hand the next poll another waker.
            Waiting::Async(waker) => matches!(waiter, Waiter::Async(w) if w.will_wake(waker)),
        }
    }
}

/// Waits until `poll` has an outcome, or `deadline` has passed (then None): as the
/// process of `frame`, suspended in event waits bounded by a timer, or else as
/// the calling thread, parked. `poll` takes the outcome if there is one, and
/// otherwise records the waiter it is handed wherever the outcome will come
/// from. A wake-up proves nothing (every signal interrupts a wait, and a
/// notification can be left over from an earlier event), so `poll` runs again
/// after each, and once more at the deadline.
pub(crate) fn wait_event<T>(
    frame: Option<&Frame<'_>>,
    deadline: Instant,
    mut poll: impl FnMut(&Waiting<'_>) -> Option<T>,
) -> Option<T> {
    if let Some(frame) = frame {
        let mut timer = WaitTimer::new(frame);
        loop {
            if let Some(outcome) = poll(&Waiting::Process(frame)) {
                return Some(outcome);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // A timer of its own for every wait: one that fired early, or whose wait a
            // signal ended, must not leave the next wait without a bound.
            let bound = timer.rearm(deadline);
            if frame.suspend(Suspend::Wait(Wait::Event, bound)) == Suspended::Refused {
                // Unwinding began inside the wait (a fatal exit taken on resume was
                // caught): wait as a thread from here on.
                break;
            }
        }
    }
    loop {
        if let Some(outcome) = poll(&Waiting::Thread) {
            return Some(outcome);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        // A wake-up between the unlock and the park leaves the thread's token set,
        // so the park returns at once.
        thread::park_timeout(left);
    }
}

impl<R> Drop for Call<R> {
    fn drop(&mut self) {
        if !self.closed {
            let (reply, waiter) = {
                let mut state = self.slot.state.lock();
                (
                    mem::replace(&mut state.reply, Reply::Closed),
                    mem::replace(&mut state.waiter, Waiter::None),
                )
            };
            // Outside the lock: a reply that came too late, dropped here.
            drop((reply, waiter));
        }
        remove_exit_hook(&*self.callee, self.hook);
    }
}

/// [`Pid::call`]: the steps of the protocol at the top of this file.
pub(crate) fn call<M, R>(
    to: &Pid<M>,
    make_request: impl FnOnce(ReplyTo<R>) -> M,
    timeout: Duration,
) -> Result<R, CallError>
where
    M: Send + 'static,
    R: Send + 'static,
{
    let callee = to.any().0;
    if is_current(&callee) {
        return Err(CallError::CallingSelf);
    }
    let call = watch(callee).ok_or(CallError::Exited(Exit::NoProc))?;
    // A bounded callee may make the request wait for room, within the timeout.
    let deadline = match to.header().bounded() {
        Some(_) => crate::channel::deadline_after(timeout),
        None => None,
    };
    let mut call = send(to, call, make_request, deadline)?;
    let timeout = match deadline {
        Some(deadline) => deadline.saturating_duration_since(std::time::Instant::now()),
        None => timeout,
    };
    // Steps 3 to 6; step 7 when `call` drops.
    call.wait(timeout)
}

/// Whether `process` is the one running on this thread.
pub(crate) fn is_current(process: &Task) -> bool {
    with_current(|frame| {
        frame.is_some_and(|frame| process_address(frame.process()) == process_address(&**process))
    })
}

/// Step 1: a slot with its exit hook on `callee`, or None if it has ended.
fn watch<R: Send + 'static>(callee: Task) -> Option<Call<R>> {
    // A callee seen to have ended may not have run its exit hooks yet; it has ended
    // all the same, so this is step 1's early failure too.
    if callee.header().state.is_exited() {
        return None;
    }
    let slot = Arc::new(Slot::new(process_address(&*callee)));
    // The hook runs on the callee's thread under its relations lock: it only
    // settles the slot and wakes the caller.
    let hook = on_exit(
        &*callee,
        ExitHook::Sink(Arc::clone(&slot) as Arc<dyn ExitSink>),
    )?;
    Some(Call {
        slot,
        callee,
        hook,
        closed: false,
    })
}

/// A slot on `callee` and its `ReplyTo`, for an answer that does not travel in a
/// request (a start's acknowledgement, init.rs); None if `callee` has ended.
pub(crate) fn open_reply<R: Send + 'static>(callee: Task) -> Option<(Call<R>, ReplyTo<R>)> {
    let call = watch(callee)?;
    let reply = ReplyTo {
        slot: Some(Arc::clone(&call.slot)),
    };
    Some((call, reply))
}

/// Steps 1 and 2: the call in progress, its request sent (waiting for room
/// while a bounded callee's mailbox is full); fails at once with
/// `Exited(NoProc)` if the callee has ended.
pub(crate) fn send_request<M, R>(
    to: &Pid<M>,
    make_request: impl FnOnce(ReplyTo<R>) -> M,
) -> Result<Call<R>, CallError>
where
    M: Send + 'static,
    R: Send + 'static,
{
    let call = watch(to.any().0).ok_or(CallError::Exited(Exit::NoProc))?;
    send(to, call, make_request, None)
}

/// Step 2: builds the request around the call's `ReplyTo` and sends it; a
/// bounded callee's full mailbox makes it wait until `deadline`, then the call
/// times out.
fn send<M: Send + 'static, R: Send + 'static>(
    to: &Pid<M>,
    call: Call<R>,
    make_request: impl FnOnce(ReplyTo<R>) -> M,
    deadline: Option<std::time::Instant>,
) -> Result<Call<R>, CallError> {
    let request = make_request(ReplyTo {
        slot: Some(Arc::clone(&call.slot)),
    });
    match to.send_until(request, deadline) {
        Ok(()) => Ok(call),
        Err(SendError::Full(undelivered)) => {
            drop(undelivered);
            Err(CallError::Timeout)
        }
        // The callee ended: its exit hook settles the call with the reason.
        Err(undelivered) => {
            drop(undelivered);
            Ok(call)
        }
    }
}

/// Why [`AnyPid::stop_and_wait`] returned before the process had ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopError {
    /// The process had ended before the stop was sent (OTP's `noproc`); nothing
    /// was sent.
    NoProc,
    /// The process was still running when the timeout passed (a `stopped` hook
    /// that takes longer, or a free-running process that never blocks). The stop
    /// stands: it ends at its next chance.
    Timeout,
    /// A process asked to wait for its own end, which could never come while it
    /// waits; nothing was sent.
    StoppingSelf,
}

impl fmt::Display for StopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopError::NoProc => f.write_str("the process had ended already"),
            StopError::Timeout => f.write_str("the process had not ended by the timeout"),
            StopError::StoppingSelf => f.write_str("a process cannot wait for its own end"),
        }
    }
}

impl std::error::Error for StopError {}

/// [`AnyPid::stop_and_wait`]: a call with no request, whose only outcome is the
/// target's exit (steps 1, 3 and 7 of the protocol; `signal` takes step 2's place).
pub(crate) fn signal_and_wait(
    target: &AnyPid,
    signal: impl FnOnce(),
    timeout: Duration,
) -> Result<Exit, StopError> {
    if is_current(&target.0) {
        return Err(StopError::StoppingSelf);
    }
    let mut wait = watch::<()>(Arc::clone(&target.0)).ok_or(StopError::NoProc)?;
    signal();
    // No `ReplyTo` exists, so only the exit hook or the timeout settles the slot.
    match wait.wait(timeout) {
        Err(CallError::Exited(exit)) => Ok(exit),
        Err(CallError::Timeout) => Err(StopError::Timeout),
        Ok(()) | Err(CallError::NoReply | CallError::CallingSelf) => {
            unreachable!("nothing but an exit or the timeout settles a stop's slot")
        }
    }
}

/// Request and reply: the calling side of [`Pid`].
impl<M: Send + 'static> Pid<M> {
    /// Sends a request and waits, at most `timeout`, for its reply.
    ///
    /// `make_request` builds the request around a [`ReplyTo`], which the process (or
    /// whoever it hands the handle to) answers with [`ReplyTo::reply`]. The call ends
    /// with the first of:
    ///
    /// * the reply: `Ok(value)`;
    /// * the process ending: [`CallError::Exited`] with its reason, as soon as it
    ///   ends, also when it had ended before the call (the request is then never
    ///   built) or the request could not be delivered;
    /// * the reply handle dropped unanswered while the callee lives on:
    ///   [`CallError::NoReply`], at once (when the callee drops it itself, once it
    ///   next waits, so that a callee that stops without replying reports its exit
    ///   as above);
    /// * the timeout: [`CallError::Timeout`]. A reply that comes later is dropped:
    ///   it never shows up in the caller's mailbox or anywhere else.
    ///
    /// The timeout counts from when the caller starts waiting, once the request is
    /// sent (a process first lets a callee on its own worker run). Inside a process
    /// this suspends only the calling process; on a plain thread it blocks the
    /// thread. A process that calls itself waits for the timeout.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// struct Counter { n: u64 }
    /// enum Msg { Add(u64), Get(ReplyTo<u64>) }
    ///
    /// impl Process for Counter {
    ///     type Message = Msg;
    ///     fn handle(&mut self, msg: Msg, _cx: &mut Context<Self>) {
    ///         match msg {
    ///             Msg::Add(k) => self.n += k,
    ///             Msg::Get(reply_to) => { reply_to.reply(self.n); }
    ///         }
    ///     }
    /// }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let counter = rt.spawn(Counter { n: 40 }).unwrap();
    /// // From a process: only the calling process waits.
    /// let n = rt.block_on({
    ///     let counter = counter.clone();
    ///     move |_cx| {
    ///         counter.send(Msg::Add(2)).unwrap();
    ///         counter.call(Msg::Get, Duration::from_secs(5))
    ///     }
    /// });
    /// assert_eq!(n, Ok(42));
    /// // From a plain thread: the thread blocks.
    /// assert_eq!(counter.call(Msg::Get, Duration::from_secs(5)), Ok(42));
    /// // A call to a process that ends fails as soon as it ends, whatever the timeout.
    /// counter.any().kill();
    /// let err = counter.call(Msg::Get, Duration::from_secs(60)).unwrap_err();
    /// assert!(matches!(err, CallError::Exited(_)));
    /// ```
    pub fn call<R: Send + 'static>(
        &self,
        make_request: impl FnOnce(ReplyTo<R>) -> M,
        timeout: Duration,
    ) -> Result<R, CallError> {
        call(self, make_request, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_outcome_wins_except_that_an_exit_replaces_a_dropped_reply() {
        let slot = Slot::<u32>::new(0);
        assert!(slot.settle(Reply::Dropped).is_ok());
        assert!(slot.settle(Reply::Exited(Exit::Killed)).is_ok());
        assert!(slot.settle(Reply::Value(1)).is_err());
        assert!(slot.settle(Reply::Exited(Exit::Normal)).is_err());
        assert!(matches!(
            slot.state.lock().reply,
            Reply::Exited(Exit::Killed)
        ));

        let slot = Slot::<u32>::new(0);
        assert!(slot.settle(Reply::Unwound).is_ok());
        assert!(slot.settle(Reply::Dropped).is_err());
        assert!(slot.settle(Reply::Exited(Exit::Killed)).is_ok());

        // A drop by the running callee waits to be settled, by its exit or as a drop.
        let slot = Slot::<u32>::new(0);
        assert!(slot.settle(Reply::DroppedByCallee).is_ok());
        assert!(slot.settle(Reply::Value(1)).is_err());
        assert!(slot.settle(Reply::Exited(Exit::Normal)).is_ok());
        assert!(slot.settle(Reply::Dropped).is_err(), "the exit came first");
        let slot = Slot::<u32>::new(0);
        assert!(slot.settle(Reply::DroppedByCallee).is_ok());
        assert!(slot.settle(Reply::Dropped).is_ok(), "the callee lived on");
        assert!(slot.settle(Reply::Exited(Exit::Killed)).is_ok());

        let slot = Slot::<u32>::new(0);
        assert!(slot.settle(Reply::Value(7)).is_ok());
        assert!(slot.settle(Reply::Dropped).is_err());
        assert!(slot.settle(Reply::Exited(Exit::Killed)).is_err());
        assert!(matches!(slot.state.lock().reply, Reply::Value(7)));
    }

    #[test]
    fn a_reply_to_a_closed_slot_is_refused_and_dropped() {
        let slot = Arc::new(Slot::<String>::new(0));
        slot.state.lock().reply = Reply::Closed;
        let reply_to = ReplyTo {
            slot: Some(Arc::clone(&slot)),
        };
        assert!(!reply_to.reply("late".to_owned()));
        assert!(matches!(slot.state.lock().reply, Reply::Closed));
        assert_eq!(Arc::strong_count(&slot), 1);
    }
}
