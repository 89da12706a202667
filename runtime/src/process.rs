//! What every process has, whatever its kind: the header (state word, id, carrier,
//! place in the process table), a mailbox, and the type-erased interface the
//! scheduler runs it through. Also [`Pid`], the typed address.
//!
//! # The rights reference
//!
//! Every process lives in an `Arc`. Besides the references held by `Pid`s and the
//! process table, exactly one strong reference belongs to the run rights, and it
//! moves with them, so the message path never touches the reference count:
//!
//! The reference lives inside a [`RunRights`](crate::rights::RunRights) token,
//! so holding the reference and holding the rights are one thing:
//!
//! 1. `spawn` creates the token and pushes it onto a run queue.
//! 2. A worker pops it and holds it while the process runs; the carrier's frame
//!    borrows the process through it without counting.
//! 3. When the process parks (waits for a message or an event), the token is
//!    consumed and its reference left in place (`Arc::into_raw`): the parked
//!    process owns it, and the parking worker has nothing left to reach it with.
//! 4. Whoever acquires the rights from the state word (`rights::wake`) adopts that
//!    reference (an `Arc::from_raw`) into a new token instead of cloning, and
//!    schedules it.
//! 5. When the process exits, the worker drops the token like any `Arc`; at
//!    shutdown the drain seizes the rights of parked processes and drops theirs.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use fibra_mailbox::Mailbox;

use crate::call::{CallError, ReplyTo};
use crate::carrier::{with_current, Carrier, Frame, Outcome};
use crate::error::{Exit, SendError};
use crate::rights::{wake_at, Waker};
use crate::scheduler::Shared;
use crate::signal::{RelationsLock, Signal, Signals};
use crate::state::StateWord;
use crate::time::{Interval, TimerRef};

/// A process as the scheduler sees it.
pub(crate) type Task = Arc<dyn Run>;

/// The type-erased face of a process.
pub(crate) trait Run: Send + Sync + 'static {
    /// The fields every process has.
    fn header(&self) -> &Header;
    /// Whether messages arrived that the process has not seen (a `SeqCst` load).
    fn has_new(&self) -> bool;
    /// Runs the process on a carrier until its activation ends. Only the holder of
    /// the run rights calls this.
    fn activate(&self, frame: &Frame<'_>) -> Outcome;
    /// Ends the process from outside any carrier (runtime shutdown, no stack). The
    /// caller holds the run rights or has stopped every worker.
    fn terminate(&self, exit: Exit);
    /// For recovering the concrete type.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The fields every process has. `repr(C)` with the state word first, so that it
/// follows the mailbox in [`Core`] (see there).
#[repr(C)]
pub(crate) struct Header {
    /// The state word of the reschedule protocol.
    pub(crate) state: StateWord,
    /// The process id, unique within its runtime.
    pub(crate) id: u64,
    /// The runtime it belongs to.
    pub(crate) shared: Arc<Shared>,
    /// The carrier of a suspended activation. Touched only by the holder of the run
    /// rights.
    carrier: UnsafeCell<Option<Box<Carrier>>>,
    /// The process's key in the process table. Written once by `spawn` before the
    /// process is first scheduled.
    slot: UnsafeCell<usize>,
    /// Signals from other processes (links, monitors, kill, stop): see signal.rs.
    pub(crate) signals: Signals,
    /// Links, watchers and the trap-exits flag.
    pub(crate) relations: RelationsLock,
}

impl Header {
    pub(crate) fn new(shared: Arc<Shared>, id: u64) -> Header {
        Header {
            state: StateWord::new_running(),
            id,
            shared,
            carrier: UnsafeCell::new(None),
            slot: UnsafeCell::new(usize::MAX),
            signals: Signals::new(),
            relations: RelationsLock::default(),
        }
    }

    /// Takes the carrier of a suspended activation.
    ///
    /// # Safety
    /// The caller holds the process's run rights.
    pub(crate) unsafe fn take_carrier(&self) -> Option<Box<Carrier>> {
        // Safety: the run rights make the caller the only one touching the field.
        unsafe { (*self.carrier.get()).take() }
    }

    /// Parks the carrier of a suspended activation with the process.
    ///
    /// # Safety
    /// The caller holds the process's run rights and has not yet published the
    /// suspension.
    pub(crate) unsafe fn put_carrier(&self, carrier: Box<Carrier>) {
        // Safety: as for take_carrier; the publication that follows is a SeqCst RMW,
        // which orders this write before whoever takes the rights next.
        unsafe { *self.carrier.get() = Some(carrier) }
    }

    /// The worker the carrier's activation in progress runs on, if there is one.
    ///
    /// # Safety
    /// The caller holds the process's run rights.
    pub(crate) unsafe fn carrier_home(&self) -> Option<usize> {
        // Safety: as for take_carrier.
        unsafe { (*self.carrier.get()).as_ref().and_then(|c| c.home()) }
    }

    /// The process table key.
    pub(crate) fn slot(&self) -> usize {
        // Safety: written once before the process became visible to other threads;
        // the scheduling that published it orders the write before every read.
        unsafe { *self.slot.get() }
    }

    /// Records the process table key.
    ///
    /// # Safety
    /// Called once, by `spawn`, before the process is scheduled.
    pub(crate) unsafe fn set_slot(&self, slot: usize) {
        // Safety: no other thread can see the process yet.
        unsafe { *self.slot.get() = slot }
    }
}

// Safety: the UnsafeCell fields are only touched under the rules stated on their
// accessors: the carrier by the holder of the run rights, the slot once before
// publication.
unsafe impl Sync for Header {}

/// The part of a process a [`Pid`] reaches: mailbox and header, in that order
/// (`repr(C)`), so that the mailbox's head and counts and the state word lie in 32
/// contiguous bytes: every send and every park touches all three, and together
/// they take one cache line in most allocations (`layout_tests` pins this).
#[repr(C)]
pub(crate) struct Core<M> {
    /// The process's mailbox.
    pub(crate) mailbox: Mailbox<M>,
    /// The fields every process has.
    pub(crate) header: Header,
}

impl<M: Send + 'static> Core<M> {
    pub(crate) fn new(shared: Arc<Shared>, id: u64) -> Core<M> {
        Core {
            header: Header::new(shared, id),
            mailbox: Mailbox::new(),
        }
    }

    /// The steps of ending a process that do not depend on its kind: no one can
    /// acquire it any more, queued messages are dropped, later sends fail, and it
    /// leaves the process table. Returns false if it had already ended.
    pub(crate) fn retire(&self, exit: &Exit) -> bool {
        if self.header.state.is_exited() {
            return false;
        }
        self.header.state.exit();
        // The queued messages and signals are dropped here, and their destructors are
        // user code: a panic there is reported and ends nothing else (the mailbox
        // still drops every other message before the panic comes out of `close`).
        let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // Safety: only the holder of the run rights ends a process, and it is the
            // one consumer of its mailbox and signal queue.
            unsafe {
                self.mailbox.close();
                self.header.signals.close();
            }
        }));
        if let Err(payload) = dropped {
            // The signal queue must be closed even if the mailbox's drop panicked.
            let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // Safety: as above.
                unsafe { self.header.signals.close() };
            }));
            tracing::error!(
                pid = %ProcessId(self.header.id),
                "a queued message panicked in drop while its process ended: {}",
                crate::error::panic_message(payload.as_ref())
            );
            drop(again);
        }
        match exit {
            Exit::Panicked(message) => tracing::error!(
                pid = %ProcessId(self.header.id),
                "process panicked: {message}"
            ),
            Exit::NoStack(message) => tracing::error!(
                pid = %ProcessId(self.header.id),
                "process ended without a stack: {message}"
            ),
            _ => {
                tracing::debug!(pid = %ProcessId(self.header.id), reason = %exit, "process exited")
            }
        }
        self.header.shared.table.remove(self.header.slot());
        true
    }

    /// Tells links and watchers; call after `retire` returned true, with the
    /// process itself.
    pub(crate) fn announce(process: &dyn Run, exit: &Exit) {
        crate::signal::announce_exit(process, exit);
    }
}

/// The sending side of a process, for [`Pid`].
pub(crate) trait Deliver<M>: Send + Sync + 'static {
    /// Header and mailbox.
    fn core(&self) -> &Core<M>;
    /// The same process through its scheduler face.
    fn as_run(&self) -> &dyn Run;
    /// The same process as a scheduler task (a new counted reference).
    fn task(self: Arc<Self>) -> Task;
}

/// A process's id, unique within its runtime. Displays as `<0.N>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessId(pub(crate) u64);

impl ProcessId {
    /// The number inside the id.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<0.{}>", self.0)
    }
}

/// The address of a process whose messages are of type `M`.
///
/// A `Pid` is cheap to clone and can be sent anywhere. Sending never blocks the
/// sender's thread: the message goes into the process's mailbox, and if the
/// process was waiting for one, it is scheduled.
///
/// ```
/// use fibra_runtime::*;
///
/// let rt = Runtime::builder().workers(1).build().unwrap();
/// let doubled = rt.block_on(|cx| {
///     let child = cx.spawn_fn(|cx: &mut FnContext<u64>| cx.receive() * 2);
///     child.pid().send(21).unwrap();
///     child.join().unwrap()
/// });
/// assert_eq!(doubled, 42);
/// ```
pub struct Pid<M> {
    /// The process.
    inner: Arc<dyn Deliver<M>>,
}

impl<M: Send + 'static> Pid<M> {
    pub(crate) fn new(inner: Arc<dyn Deliver<M>>) -> Pid<M> {
        Pid { inner }
    }

    /// Sends a message. Fails, handing the message back, if the process has exited.
    ///
    /// Sending never suspends the sender, so it is safe with a lock held. Inside a
    /// process a send counts towards the process's reduction budget: a process
    /// that has spent it yields at its next suspension point (a receive, a call, a
    /// sleep, socket IO) or, for a handler process, before its next message.
    pub fn send(&self, msg: M) -> Result<(), SendError<M>> {
        let core = self.inner.core();
        core.mailbox.push(msg).map_err(SendError)?;
        wake_at(&core.header, || self.inner.as_run(), Waker::Message);
        with_current(|frame| {
            if let Some(frame) = frame {
                frame.spend(1);
            }
        });
        Ok(())
    }

    /// The process's id.
    pub fn id(&self) -> ProcessId {
        ProcessId(self.inner.core().header.id)
    }

    /// The process's header.
    pub(crate) fn header(&self) -> &Header {
        &self.inner.core().header
    }

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
        crate::time::send_after(&self.inner.core().header.shared.timers, self, msg, delay)
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
        crate::time::send_interval(&self.inner.core().header.shared.timers, self, make, period)
    }

    /// Whether the process is still alive. A process can exit right after this
    /// returns true; use it for diagnostics, not to decide whether to send.
    pub fn is_alive(&self) -> bool {
        !self.inner.core().header.state.is_exited()
    }

    /// The same address without its message type, for links, monitors, kill and
    /// stop.
    pub fn any(&self) -> AnyPid {
        AnyPid(Arc::clone(&self.inner).task())
    }

    /// How many messages wait in the process's mailbox.
    pub fn mailbox_len(&self) -> usize {
        self.inner.core().mailbox.len()
    }

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
        crate::call::call(self, make_request, timeout)
    }
}

impl<M: Send + 'static> Clone for Pid<M> {
    fn clone(&self) -> Self {
        Pid {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Send + 'static> Pid<M> {
    fn raw_id(&self) -> u64 {
        self.inner.core().header.id
    }
}

impl<M: Send + 'static> fmt::Debug for Pid<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pid({})", ProcessId(self.raw_id()))
    }
}

impl<M: Send + 'static> PartialEq for Pid<M> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.inner), Arc::as_ptr(&other.inner))
    }
}

impl<M: Send + 'static> Eq for Pid<M> {}

impl<M: Send + 'static> Hash for Pid<M> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw_id().hash(state);
    }
}

/// The address of a process of any message type: enough to link to it, monitor
/// it, kill it or ask it to stop, not to send it messages.
#[derive(Clone)]
pub struct AnyPid(pub(crate) Task);

impl AnyPid {
    /// The process's id.
    pub fn id(&self) -> ProcessId {
        ProcessId(self.0.header().id)
    }

    /// Whether the process is still alive (see [`Pid::is_alive`]).
    pub fn is_alive(&self) -> bool {
        !self.0.header().state.is_exited()
    }

    /// Ends the process with [`Exit::Killed`] as soon as it resumes or, if it is
    /// running, at its next blocking call or between two messages. A kill cannot be
    /// trapped.
    pub fn kill(&self) {
        crate::signal::deliver(&*self.0, Signal::Kill);
    }

    /// Asks the process to end: a handler process finishes its current message,
    /// runs its `stopped` hook and exits with [`Exit::Stopped`]; a free-running one
    /// exits with [`Exit::Stopped`] at its next blocking call.
    pub fn stop(&self) {
        crate::signal::deliver(&*self.0, Signal::Stop);
    }
}

impl PartialEq for AnyPid {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

impl Eq for AnyPid {}

impl Hash for AnyPid {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.header().id.hash(state);
    }
}

impl fmt::Debug for AnyPid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnyPid({})", self.id())
    }
}

impl From<&AnyPid> for AnyPid {
    fn from(pid: &AnyPid) -> AnyPid {
        pid.clone()
    }
}

impl<M: Send + 'static> From<&Pid<M>> for AnyPid {
    fn from(pid: &Pid<M>) -> AnyPid {
        pid.any()
    }
}

#[cfg(all(test, not(loom)))]
mod layout_tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The mailbox (head, then counts) and the state word are 32 contiguous bytes
    /// at the front of every process, and an idle process stays small.
    #[test]
    fn the_state_word_and_the_mailbox_share_the_front_of_a_process() {
        assert_eq!(offset_of!(Core<u64>, mailbox), 0);
        assert_eq!(size_of::<Mailbox<u64>>(), 24);
        assert_eq!(offset_of!(Core<u64>, header), 24);
        assert_eq!(offset_of!(Core<u64>, header.state), 24);
        assert_eq!(size_of::<StateWord>(), 8);
        assert!(
            size_of::<Core<u64>>() <= 128,
            "the per-process core grew to {} bytes",
            size_of::<Core<u64>>()
        );
    }
}
