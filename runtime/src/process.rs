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
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fibra_mailbox::Mailbox;

use crate::bounded::Bounded;
use crate::call::StopError;
use crate::carrier::{with_current, Carrier, Frame, Outcome};
use crate::error::{Exit, SendError};
use crate::park::Unparker;
use crate::rights::{wake_at, Waker};
use crate::scheduler::Shared;
use crate::signal::{Relations, RelationsLock, Signal, Signals};
use crate::state::StateWord;

/// A process as the scheduler sees it.
pub(crate) type Task = Arc<dyn Run>;

/// The type-erased face of a process.
///
/// # Safety
/// An implementor is `#[repr(C)]` and its first field is a [`Core`]: the header
/// of every process then sits at the same offset ([`HEADER_OFFSET`]) from the
/// start of the value, and [`header`](#method.header) finds it without a virtual
/// call (the scheduler asks for it several times per message).
pub(crate) unsafe trait Run: Send + Sync + 'static {
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
    /// What introspection reports of the process's own type (see info.rs). Any
    /// thread may call it.
    fn describe(&self) -> Described;
}

/// What a process's type tells about it, for introspection.
pub(crate) struct Described {
    pub(crate) kind: crate::info::ProcessKind,
    /// The name of its message type.
    pub(crate) message_type: &'static str,
    /// Messages in its mailbox.
    pub(crate) mailbox_len: usize,
    /// The bytes of its own allocation and of its queued messages.
    pub(crate) memory: usize,
}

impl Described {
    /// The description of `process`, a process with messages of type `M`.
    pub(crate) fn of<M>(
        process: &(impl Sized + 'static),
        kind: crate::info::ProcessKind,
        mailbox_len: usize,
    ) -> Described {
        Described {
            kind,
            message_type: std::any::type_name::<M>(),
            mailbox_len,
            memory: std::mem::size_of_val(process) + mailbox_len * std::mem::size_of::<M>(),
        }
    }
}

/// `Header::pinned` of a process that is not pinned.
const NOT_PINNED: u32 = u32::MAX;

/// Where a process's [`Header`] sits in it: every [`Run`] starts with a [`Core`],
/// whose layout does not depend on its message type (a mailbox holds pointers and
/// counts only; `layout_tests` pins this).
const HEADER_OFFSET: usize = std::mem::offset_of!(Core<()>, header);

impl dyn Run {
    /// The fields every process has.
    #[inline(always)]
    pub(crate) fn header(&self) -> &Header {
        let start = (self as *const dyn Run).cast::<u8>();
        // Safety: `Run`'s contract puts a `Core` at the start of every process, and
        // every `Core` has its header at HEADER_OFFSET; the header lives as long as
        // the process it is borrowed from.
        unsafe { &*start.add(HEADER_OFFSET).cast::<Header>() }
    }
}

/// The fields every process has. `repr(C)` with the state word first, so that it
/// follows the mailbox in [`Core`] (see there).
#[repr(C)]
pub(crate) struct Header {
    /// The state word of the reschedule protocol.
    pub(crate) state: StateWord,
    /// The mailbox's bound (bounded.rs), or null for none. Set by the process
    /// itself (or before it is first scheduled), read by every send; the
    /// `Bounded` lives until the header drops.
    bounded: AtomicPtr<Bounded<Unparker>>,
    /// The process id, unique within its runtime.
    pub(crate) id: u64,
    /// The runtime it belongs to.
    pub(crate) shared: Arc<Shared>,
    /// The carrier of a suspended activation. Touched only by the holder of the run
    /// rights.
    carrier: UnsafeCell<Option<Box<Carrier>>>,
    /// The process's key in the process table. Written once by `spawn` before the
    /// process is first scheduled.
    slot: UnsafeCell<u32>,
    /// The worker the process is pinned to ([`Scope::spawn_pinned`]), or
    /// `NOT_PINNED`. Written once by `spawn` before the process is first
    /// scheduled.
    ///
    /// [`Scope::spawn_pinned`]: crate::Scope::spawn_pinned
    pinned: UnsafeCell<u32>,
    /// Signals from other processes (links, monitors, kill, stop): see signal.rs.
    pub(crate) signals: Signals,
    /// Links, watchers and the trap-exits flag.
    pub(crate) relations: RelationsLock,
    /// Reductions spent in all its activations so far, banked when each
    /// suspends or ends. Written by the holder of the run rights only; read by
    /// introspection.
    pub(crate) reductions: AtomicU64,
}

impl Header {
    pub(crate) fn new(shared: Arc<Shared>, id: u64) -> Header {
        let started = shared.clock_secs.load(std::sync::atomic::Ordering::Relaxed);
        Header {
            state: StateWord::new_running(),
            bounded: AtomicPtr::new(std::ptr::null_mut()),
            id,
            shared,
            carrier: UnsafeCell::new(None),
            slot: UnsafeCell::new(u32::MAX),
            pinned: UnsafeCell::new(NOT_PINNED),
            signals: Signals::new(),
            relations: RelationsLock::new(Relations::new(started)),
            reductions: AtomicU64::new(0),
        }
    }

    /// The mailbox's bound, if it has one.
    #[inline]
    pub(crate) fn bounded(&self) -> Option<&Bounded<Unparker>> {
        let bounded = self.bounded.load(Ordering::Acquire);
        // Safety: a non-null pointer comes from `Box::into_raw` in
        // `set_mailbox_capacity` and is freed only when the header drops.
        unsafe { bounded.as_ref() }
    }

    /// Bounds the mailbox to `capacity` messages (`None`: no bound). Messages
    /// already queued stay; sends fail (or wait) while the mailbox holds as many
    /// as the capacity. Called by the process itself, or before it is first
    /// scheduled, so that two calls never race.
    pub(crate) fn set_mailbox_capacity(&self, capacity: Option<usize>, queued: usize) {
        let capacity = capacity.unwrap_or(usize::MAX);
        match self.bounded() {
            Some(bounded) => bounded.set_capacity(capacity),
            None if capacity == usize::MAX => {}
            None => {
                let bounded = Box::into_raw(Box::new(Bounded::new(capacity, queued)));
                self.bounded.store(bounded, Ordering::Release);
            }
        }
    }

    /// After the process took a message out: gives its place back, if the
    /// mailbox is bounded.
    #[inline]
    pub(crate) fn took_message(&self) {
        if let Some(bounded) = self.bounded() {
            bounded.release();
        }
    }

    /// Takes the carrier of a suspended activation.
    ///
    /// # Safety
    /// The caller holds the process's run rights.
    #[inline]
    pub(crate) unsafe fn take_carrier(&self) -> Option<Box<Carrier>> {
        // Safety: the run rights make the caller the only one touching the field.
        unsafe { (*self.carrier.get()).take() }
    }

    /// Parks the carrier of a suspended activation with the process.
    ///
    /// # Safety
    /// The caller holds the process's run rights and has not yet published the
    /// suspension.
    #[inline]
    pub(crate) unsafe fn put_carrier(&self, carrier: Box<Carrier>) {
        // Safety: as for take_carrier; the publication that follows is a SeqCst RMW,
        // which orders this write before whoever takes the rights next.
        unsafe { *self.carrier.get() = Some(carrier) }
    }

    /// The worker the carrier's activation in progress runs on, if there is one.
    ///
    /// # Safety
    /// The caller holds the process's run rights.
    #[inline]
    pub(crate) unsafe fn carrier_home(&self) -> Option<usize> {
        // Safety: as for take_carrier.
        unsafe { (*self.carrier.get()).as_ref().and_then(|c| c.home()) }
    }

    /// The process table key.
    pub(crate) fn slot(&self) -> usize {
        // Safety: written once before the process became visible to other threads;
        // the scheduling that published it orders the write before every read.
        unsafe { *self.slot.get() as usize }
    }

    /// Records the process table key.
    ///
    /// # Safety
    /// Called once, by `spawn`, before the process is scheduled.
    pub(crate) unsafe fn set_slot(&self, slot: usize) {
        // Four billion live processes would need terabytes: a table key fits.
        let slot = u32::try_from(slot).expect("fewer than 2^32 live processes");
        // Safety: no other thread can see the process yet.
        unsafe { *self.slot.get() = slot }
    }

    /// The worker the process is pinned to, if it is.
    pub(crate) fn pinned(&self) -> Option<usize> {
        // Safety: as for `slot`.
        let pinned = unsafe { *self.pinned.get() };
        (pinned != NOT_PINNED).then_some(pinned as usize)
    }

    /// Pins the process to its spawner's worker (see [`Shared::pin_target`]).
    ///
    /// # Safety
    /// Called once, by `spawn`, before the process is scheduled.
    pub(crate) unsafe fn pin_to_spawner(&self) {
        let worker = self.shared.pin_target(self.id);
        let worker = u32::try_from(worker).expect("fewer than 2^32 workers");
        // Safety: no other thread can see the process yet.
        unsafe { *self.pinned.get() = worker }
    }
}

impl Drop for Header {
    fn drop(&mut self) {
        let bounded = *self.bounded.get_mut();
        if !bounded.is_null() {
            // Safety: it came from `Box::into_raw` and nothing can reach it now.
            drop(unsafe { Box::from_raw(bounded) });
        }
    }
}

// Safety: the UnsafeCell fields are only touched under the rules stated on their
// accessors: the carrier by the holder of the run rights, the slot once before
// publication.
unsafe impl Sync for Header {}

/// The part of a process a [`Pid`] reaches: mailbox and header, in that order
/// (`repr(C)`), so that the mailbox's head and counts, the state word and the
/// mailbox's bound lie in 40 contiguous bytes: every send and every park touches
/// them, and together they take one cache line in most allocations
/// (`layout_tests` pins this).
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
        self.header.shared.exits.count(exit);
        // The queued messages and signals are dropped here, and their destructors are
        // user code: a panic there is reported and ends nothing else (the mailbox
        // still drops every other message before the panic comes out of `close`).
        let report = |payload: Box<dyn Any + Send>| {
            tracing::error!(
                pid = %ProcessId(self.header.id),
                "a queued message panicked in drop while its process ended: {}",
                crate::error::panic_message(payload.as_ref())
            )
        };
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| {
            // Safety: only the holder of the run rights ends a process, and it is the
            // one consumer of its mailbox.
            unsafe { self.mailbox.close() }
        })) {
            report(payload);
        }
        if let Some(bounded) = self.header.bounded() {
            // Senders waiting for room find the mailbox closed and take their
            // messages back.
            bounded.room.notify_all();
        }
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| {
            // Safety: as above, for its signal queue.
            unsafe { self.header.signals.close() }
        })) {
            report(payload);
        }
        match exit {
            Exit::Panicked(message) => {
                let location = crate::panic_report::take_location().unwrap_or_default();
                tracing::error!(
                    pid = %ProcessId(self.header.id),
                    location,
                    "process panicked: {message}"
                )
            }
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

    /// Sends a message. Fails, handing the message back, if the process has
    /// exited ([`SendError::Exited`]) or its mailbox is bounded and full
    /// ([`SendError::Full`]; see [`send_wait`](Self::send_wait)).
    ///
    /// Sending never suspends the sender, so it is safe with a lock held. Inside a
    /// process a send counts towards the process's reduction budget: a process
    /// that has spent it yields at its next suspension point (a receive, a call, a
    /// sleep, socket IO) or, for a handler process, before its next message.
    pub fn send(&self, msg: M) -> Result<(), SendError<M>> {
        let core = self.inner.core();
        let bounded = core.header.bounded();
        if bounded.is_some_and(|bounded| !bounded.reserve()) {
            // An ended process keeps the places its dropped messages held.
            return Err(match core.mailbox.is_closed() {
                true => SendError::Exited(msg),
                false => SendError::Full(msg),
            });
        }
        self.push_reserved(msg, bounded)
    }

    /// Steps 2 of bounded.rs's protocol (and the whole of an unbounded send):
    /// pushes a message whose place, if the mailbox is bounded, is reserved.
    fn push_reserved(
        &self,
        msg: M,
        bounded: Option<&Bounded<Unparker>>,
    ) -> Result<(), SendError<M>> {
        let core = self.inner.core();
        if let Err(msg) = core.mailbox.push(msg) {
            if let Some(bounded) = bounded {
                bounded.release();
            }
            return Err(SendError::Exited(msg));
        }
        wake_at(&core.header, || self.inner.as_run(), Waker::Message);
        with_current(|frame| {
            if let Some(frame) = frame {
                frame.spend(1);
            }
        });
        Ok(())
    }

    /// Sends a message, waiting while the process's mailbox is full: only the
    /// calling process suspends (or, outside any process, the thread blocks).
    /// Fails if the process exits meanwhile, handing the message back.
    ///
    /// A process that sends to its own full mailbox gets [`SendError::Full`]
    /// at once: it could only make room by receiving, which it cannot do while
    /// it waits.
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// struct Slow;
    /// impl Process for Slow {
    ///     type Message = u32;
    ///     fn mailbox_capacity(&self) -> Option<usize> { Some(1) }
    ///     fn handle(&mut self, _n: u32, _cx: &mut Context<Self>) {
    ///         std::thread::sleep(std::time::Duration::from_millis(1));
    ///     }
    /// }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let slow = rt.spawn(Slow).unwrap();
    /// // `send` may find the one place taken; `send_wait` waits for it.
    /// for n in 0..10 {
    ///     slow.send_wait(n).unwrap();
    /// }
    /// ```
    pub fn send_wait(&self, msg: M) -> Result<(), SendError<M>> {
        self.send_until(msg, None)
    }

    /// [`send_wait`](Self::send_wait), waiting at most `timeout`; then fails
    /// with [`SendError::Full`].
    pub fn send_timeout(&self, msg: M, timeout: Duration) -> Result<(), SendError<M>> {
        self.send_until(msg, crate::channel::deadline_after(timeout))
    }

    /// The waiting sends: chan.rs's waiting loop on the bound's wait list.
    pub(crate) fn send_until(
        &self,
        msg: M,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), SendError<M>> {
        let core = self.inner.core();
        let Some(bounded) = core.header.bounded() else {
            return self.push_reserved(msg, None);
        };
        if bounded.reserve() {
            return self.push_reserved(msg, Some(bounded));
        }
        if core.mailbox.is_closed() {
            return Err(SendError::Exited(msg));
        }
        if crate::call::is_current(&self.any().0) {
            return Err(SendError::Full(msg));
        }
        let mut msg = Some(msg);
        let mut attempt = || {
            if core.mailbox.is_closed() {
                return Some(Err(SendError::Exited(msg.take().expect("message present"))));
            }
            bounded
                .reserve()
                .then(|| self.push_reserved(msg.take().expect("message present"), Some(bounded)))
        };
        let park = crate::channel::Current::new();
        let sent = crate::chan::wait(&bounded.room, &park, deadline, &mut attempt, || {
            bounded.has_room() || core.mailbox.is_closed()
        });
        match sent {
            Some(sent) => sent,
            None => Err(SendError::Full(msg.take().expect("message present"))),
        }
    }

    /// The process's id.
    pub fn id(&self) -> ProcessId {
        ProcessId(self.inner.core().header.id)
    }

    /// The process's header.
    pub(crate) fn header(&self) -> &Header {
        &self.inner.core().header
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
}

impl<M: Send + 'static> Clone for Pid<M> {
    fn clone(&self) -> Self {
        Pid {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Send + 'static> Pid<M> {
    /// The runtime the process belongs to.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.core().header.shared
    }

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

    /// Stops the process as [`stop`](Self::stop) does and waits, at most
    /// `timeout`, until it has ended; returns the reason it ended with:
    /// [`Exit::Stopped`], or whatever ended it first. OTP's `gen_server:stop/3`,
    /// callable from a process (which suspends) or from any thread (which blocks).
    ///
    /// Fails with [`StopError::NoProc`] if it had ended already,
    /// [`StopError::StoppingSelf`] when a process names itself, and
    /// [`StopError::Timeout`] if it still runs at the timeout (the stop stands).
    /// [`stop_and_wait_with`](Self::stop_and_wait_with) stops it with another
    /// reason than `Stopped`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// struct Flusher;
    /// impl Process for Flusher {
    ///     type Message = ();
    ///     fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
    ///     fn stopped(&mut self, cx: &mut Context<Self>) {
    ///         cx.sleep(Duration::from_millis(10)); // flushes something
    ///     }
    /// }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let flusher = rt.spawn(Flusher).unwrap().any();
    /// let t = Duration::from_secs(5);
    /// assert_eq!(flusher.stop_and_wait(t), Ok(Exit::Stopped));
    /// assert!(!flusher.is_alive());
    /// assert_eq!(flusher.stop_and_wait(t), Err(StopError::NoProc));
    /// ```
    pub fn stop_and_wait(&self, timeout: Duration) -> Result<Exit, StopError> {
        crate::call::signal_and_wait(self, || self.stop(), timeout)
    }

    /// Stops the process as [`stop`](Self::stop) does (a handler's `stopped`
    /// hook runs; a supervisor stops its children first), but it ends with
    /// `reason` instead of [`Exit::Stopped`]: its links and monitors, and its
    /// supervisor, see `reason`. The first reason sent wins. [`Exit::Normal`] is
    /// not carried along links, so linked helpers live on; a failure reason is a
    /// crash to a supervisor.
    pub fn stop_with(&self, reason: Exit) {
        crate::signal::stop_with(&*self.0, reason);
    }

    /// [`stop_with`](Self::stop_with), then waits for the end, as
    /// [`stop_and_wait`](Self::stop_and_wait) does (OTP's `gen_server:stop/3`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let worker = rt.spawn_fn(|cx: &mut FnContext<()>| cx.receive()).unwrap();
    /// let why = Exit::done(std::io::Error::other("maintenance"));
    /// assert_eq!(worker.pid().any().stop_and_wait_with(why.clone(), Duration::from_secs(5)), Ok(why));
    /// ```
    pub fn stop_and_wait_with(&self, reason: Exit, timeout: Duration) -> Result<Exit, StopError> {
        crate::call::signal_and_wait(self, || self.stop_with(reason), timeout)
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

    /// `<dyn Run>::header` finds each kind's header where its `Core` keeps it, for
    /// message types of any size and alignment.
    #[test]
    fn the_header_by_offset_is_the_header_of_every_kind_of_process() {
        #[repr(align(64))]
        struct Wide(#[allow(dead_code)] [u8; 64]);
        struct Nothing;
        impl crate::Process for Nothing {
            type Message = Wide;
            fn handle(&mut self, _: Wide, _cx: &mut crate::Context<Self>) {}
        }
        let rt = crate::Runtime::builder().workers(1).build().unwrap();
        let handler = rt.spawn(Nothing).unwrap();
        let free = rt
            .spawn_fn(|cx: &mut crate::FnContext<u8>| cx.receive())
            .unwrap();
        fn by_offset<M: Send + 'static>(pid: &Pid<M>) -> *const Header {
            pid.inner.as_run().header()
        }
        assert!(std::ptr::eq(
            by_offset(&handler),
            &handler.inner.core().header
        ));
        let pid = free.pid();
        assert!(std::ptr::eq(by_offset(&pid), &pid.inner.core().header));
        pid.send(1).unwrap();
        assert_eq!(free.join().unwrap(), 1);
    }

    /// The mailbox (head, then counts), the state word and the mailbox's bound
    /// are 40 contiguous bytes at the front of every process, and an idle
    /// process stays small.
    #[test]
    fn the_state_word_and_the_mailbox_share_the_front_of_a_process() {
        assert_eq!(offset_of!(Core<u64>, mailbox), 0);
        assert_eq!(size_of::<Mailbox<u64>>(), 24);
        assert_eq!(offset_of!(Core<u64>, header), 24);
        // The header's offset, which `<dyn Run>::header` relies on, does not depend on
        // the message type.
        assert_eq!(offset_of!(Core<u64>, header), HEADER_OFFSET);
        assert_eq!(offset_of!(Core<[u8; 4096]>, header), HEADER_OFFSET);
        assert_eq!(offset_of!(Core<String>, header), HEADER_OFFSET);
        assert_eq!(offset_of!(Core<u8>, header), HEADER_OFFSET);
        assert_eq!(offset_of!(Core<u64>, header.state), 24);
        assert_eq!(size_of::<StateWord>(), 8);
        // The mailbox's bound follows the state word, on the same line.
        assert_eq!(offset_of!(Core<u64>, header.bounded), 32);
        // 136 since mailboxes can be bounded: an idle handler process still
        // takes 224 bytes (million_idle), as at 128, the allocator's size class
        // being what counts.
        assert!(
            size_of::<Core<u64>>() <= 136,
            "the per-process core grew to {} bytes",
            size_of::<Core<u64>>()
        );
    }
}
