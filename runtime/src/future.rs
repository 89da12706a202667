//! Talking to async code: futures for a call's reply and a free-running process's
//! end, so that a tokio task (or any executor's) awaits them without blocking its
//! thread, and [`block_on`], which lets a process (or a thread) wait for a future.
//!
//! A future waits in the same slots as a process or a thread does (call.rs,
//! join.rs): its waker is recorded as the waiter, and whatever settles the slot
//! wakes it. A call's timeout is a timer on the runtime's timeout thread that
//! wakes the future at its deadline; the future then closes the slot, so a late
//! reply is dropped as with [`Pid::call`].
//!
//! [`block_on`] polls a future with a waker that notifies the calling process
//! (an event wait on its state word, like a join's) or unparks the calling
//! thread. The future's own wake-ups must come from somewhere: futures that need
//! a reactor (tokio's sockets and timers) must run where that reactor is, and
//! only their result be awaited here (a tokio `JoinHandle` or `oneshot` is fine).

use std::future::{Future, IntoFuture};
use std::mem::ManuallyDrop;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use fibra_timer::TimerKey;
use parking_lot::Mutex;

use crate::call::{send_request, Call, CallError, ReplyTo, Waiting};
use crate::carrier::{with_suspendable, Suspend};
use crate::error::Exit;
use crate::join::JoinHandle;
use crate::process::{Pid, Task};
use crate::rights::{wake, Waker as Wakes};
use crate::state::{Deadline, Wait};
use crate::time::{deadline_after, TimerAction};

impl<M: Send + 'static> Pid<M> {
    /// [`call`](Pid::call) as a future: sends the request now, and resolves to the
    /// reply, or why there is none, when it comes or at the timeout. For async
    /// code (a tokio task), which must not block its thread; inside a process,
    /// use `call`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// struct Doubler;
    /// impl Process for Doubler {
    ///     type Message = (u64, ReplyTo<u64>);
    ///     fn handle(&mut self, (n, reply): (u64, ReplyTo<u64>), _cx: &mut Context<Self>) {
    ///         reply.reply(n * 2);
    ///     }
    /// }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let doubler = rt.spawn(Doubler).unwrap();
    /// let reply = block_on(doubler.call_async(|r| (21, r), Duration::from_secs(5)));
    /// assert_eq!(reply, Ok(42));
    /// ```
    pub fn call_async<R: Send + 'static>(
        &self,
        make_request: impl FnOnce(ReplyTo<R>) -> M,
        timeout: Duration,
    ) -> CallFuture<R> {
        let state = match send_request(self, make_request) {
            Ok(call) => State::Waiting {
                call,
                deadline: deadline_after(timeout),
                timer: None,
            },
            Err(e) => State::Done(Some(e)),
        };
        CallFuture { state }
    }
}

/// The future of [`Pid::call_async`]. Dropping it gives the call up: a reply that
/// comes later is dropped.
#[must_use = "a call's reply is lost unless the future is awaited"]
pub struct CallFuture<R: 'static> {
    state: State<R>,
}

enum State<R: 'static> {
    Waiting {
        call: Call<R>,
        deadline: Instant,
        /// The deadline's timer and the waker it wakes, once armed.
        timer: Option<(TimerKey, Arc<Mutex<Option<Waker>>>)>,
    },
    /// Failed before it was sent, or finished (then `None`).
    Done(Option<CallError>),
}

impl<R: Send + 'static> Future for CallFuture<R> {
    type Output = Result<R, CallError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let State::Waiting {
            call,
            deadline,
            timer,
        } = &mut this.state
        else {
            let State::Done(failed) = &mut this.state else {
                unreachable!("matched above");
            };
            return Poll::Ready(Err(failed.take().expect("polled after it finished")));
        };
        let outcome = match call.take_or_watch(&Waiting::Async(cx.waker())) {
            Some(outcome) => outcome,
            None if Instant::now() >= *deadline => call.take_or_time_out(),
            None => {
                match timer {
                    Some((_, waker)) => *waker.lock() = Some(cx.waker().clone()),
                    None => {
                        let waker = Arc::new(Mutex::new(Some(cx.waker().clone())));
                        let action = TimerAction::WakeFuture(Arc::clone(&waker));
                        // A runtime that has shut down has failed the call already
                        // (its callee ended), so the slot wakes the future anyway.
                        if let Ok(key) = call.timers().insert(*deadline, action) {
                            *timer = Some((key, waker));
                        }
                    }
                }
                return Poll::Pending;
            }
        };
        if let Some((key, _)) = timer.take() {
            call.timers().cancel(key);
        }
        this.state = State::Done(None);
        Poll::Ready(outcome)
    }
}

impl<R: 'static> Drop for CallFuture<R> {
    fn drop(&mut self) {
        if let State::Waiting {
            call,
            timer: Some((key, _)),
            ..
        } = &mut self.state
        {
            call.timers().cancel(*key);
        }
    }
}

impl<R: 'static> std::fmt::Debug for CallFuture<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallFuture").finish_non_exhaustive()
    }
}

/// A free-running process's end, awaited: what [`join`](JoinHandle::join) returns,
/// without blocking the awaiting thread. `.await` a [`JoinHandle`] to get one (it
/// is [`IntoFuture`]; the handle itself stays a plain value, so dropping it to
/// detach the process is no dropped future).
///
/// ```
/// use fibra_runtime::*;
///
/// let rt = Runtime::builder().workers(2).build().unwrap();
/// let child = rt.spawn_fn(|_: &mut FnContext<()>| 6 * 7).unwrap();
/// assert_eq!(block_on(child), Ok(42));
/// ```
#[must_use = "a future does nothing unless awaited"]
pub struct JoinFuture<T, M> {
    handle: JoinHandle<T, M>,
}

impl<T, M: Send + 'static> IntoFuture for JoinHandle<T, M> {
    type Output = Result<T, Exit>;
    type IntoFuture = JoinFuture<T, M>;

    fn into_future(self) -> JoinFuture<T, M> {
        JoinFuture { handle: self }
    }
}

impl<T, M: Send + 'static> Future for JoinFuture<T, M> {
    type Output = Result<T, Exit>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.handle.completion().poll(cx.waker()) {
            Some(result) => Poll::Ready(result),
            None => Poll::Pending,
        }
    }
}

impl<T, M: Send + 'static> std::fmt::Debug for JoinFuture<T, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JoinFuture").field(&self.handle).finish()
    }
}

/// Waits for `future` and returns its output: inside a process only the process
/// waits (its worker runs others meanwhile), on a plain thread the thread blocks.
/// The future is polled on the calling process's or thread's stack; its wake-ups
/// resume it there.
///
/// The future must be woken by something that runs without this process: another
/// process or thread, fibra's own futures ([`Pid::call_async`], a
/// [`JoinHandle`]), or an executor's channels. A future that needs a reactor to
/// make progress (tokio's sockets and timers) must run on that reactor, with only
/// its result awaited here.
///
/// ```
/// use fibra_runtime::*;
///
/// let rt = Runtime::builder().workers(2).build().unwrap();
/// let got = rt.block_on(|cx| {
///     // Any future another party completes: here a child's end, as a future.
///     let child = cx.spawn_fn(|cx: &mut FnContext<u64>| cx.receive() + 1);
///     child.pid().send(41).unwrap();
///     block_on(child)
/// });
/// assert_eq!(got, Ok(42));
/// ```
pub fn block_on<F: IntoFuture>(future: F) -> F::Output {
    let mut future = pin!(future.into_future());
    with_suspendable(|frame| match frame {
        Some(frame) => {
            let task = frame.task();
            let waker = borrowed_waker(&task);
            let mut cx = Context::from_waker(&waker);
            loop {
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return output;
                }
                // A wake-up since the poll left a permit: the wait returns at once.
                let _ = frame.suspend(Suspend::Wait(Wait::Event, Deadline::None));
            }
        }
        None => {
            let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
            let mut cx = Context::from_waker(&waker);
            loop {
                if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                    return output;
                }
                // A wake-up since the poll left the thread's token set.
                thread::park();
            }
        }
    })
}

/// A waker for `task` that lives on the caller's stack and allocates nothing: a
/// future that is ready at once, or only wakes through the reference it is
/// handed, costs no allocation. A future that keeps a waker clones it, and the
/// clone is a [`ProcessWaker`] of its own.
fn borrowed_waker(task: &Task) -> ManuallyDrop<Waker> {
    let data: *const Task = task;
    // Safety: the vtable's functions treat `data` as a `&Task` and only for the
    // duration of each call; the waker built here is only lent out (through a
    // `Context`) while `task` is borrowed, since `block_on` drops the future's
    // context before it returns, and it is never dropped through the vtable (it
    // is `ManuallyDrop`, and `drop_borrowed` does nothing anyway). Clones are
    // independent, counted wakers.
    ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(data.cast(), &BORROWED)) })
}

/// The vtable of [`borrowed_waker`].
static BORROWED: RawWakerVTable =
    RawWakerVTable::new(clone_borrowed, wake_borrowed, wake_borrowed, drop_borrowed);

/// # Safety
/// `data` is the `&Task` of a live [`borrowed_waker`].
unsafe fn clone_borrowed(data: *const ()) -> RawWaker {
    // Safety: as the caller promises.
    let task = unsafe { &*data.cast::<Task>() };
    let owned = ManuallyDrop::new(Waker::from(Arc::new(ProcessWaker(Arc::clone(task)))));
    RawWaker::new(owned.data(), owned.vtable())
}

/// # Safety
/// As for [`clone_borrowed`].
unsafe fn wake_borrowed(data: *const ()) {
    // Safety: as the caller promises.
    let task = unsafe { &*data.cast::<Task>() };
    wake(&**task, Wakes::Event);
}

fn drop_borrowed(_: *const ()) {}

/// Wakes a process waiting in [`block_on`].
struct ProcessWaker(Task);

impl Wake for ProcessWaker {
    fn wake(self: Arc<Self>) {
        wake(&*self.0, Wakes::Event);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        wake(&*self.0, Wakes::Event);
    }
}

/// Wakes a thread waiting in [`block_on`].
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
