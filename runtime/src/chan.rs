//! The protocol under every channel (`channel.rs`): a queue, the counts of its
//! two ends, and two wait lists, one for receivers that found it empty and one
//! for senders that found it full.
//!
//! # Waiting without losing a wake-up
//!
//! A side that cannot go on (a receiver on an empty queue, a sender on a full
//! one) waits like this:
//!
//! 1. try the operation; done if it went through;
//! 2. register an unparker on its wait list (under the list's lock), which
//!    raises the list's `waiting` count, then a `SeqCst` fence;
//! 3. try again; if it went through, unregister and finish;
//! 4. park; then unregister (if a notifier has not removed the entry already)
//!    and go back to 1.
//!
//! The other side changes the queue (a push, a pop), then fences (`SeqCst`)
//! and loads `waiting`; only if it is non-zero does it take the lock, remove
//! the oldest entry and unpark it. The two fences order "raise the count, then
//! look at the queue" against "change the queue, then look at the count", so at
//! least one side sees the other:
//!
//! ```text
//!   receiver                               sender
//!   --------                               ------
//!   pop: empty
//!   register (waiting = 1), fence          push
//!   pop again                              fence, load waiting
//!     empty: park  <-------------------------- 1: remove entry, unpark
//!     found: unregister, return              0: the receiver's second pop
//!                                               comes after the push: it finds it
//! ```
//!
//! A park that comes after the unpark returns at once (the unparker leaves a
//! permit). A park may also return with nobody having unparked it; the loop
//! simply tries again.
//!
//! # Passing a wake-up on
//!
//! A notifier wakes one waiter per change, but the waiter it picks may not use
//! it: it may have been served by its own second try (step 3), or time out, or
//! be a `select` that took another channel's message. A waiter that leaves with
//! its entry already removed (so it was notified) and finds the condition still
//! true (the queue still has a message, or still has room) notifies the next
//! waiter in its place. Without that, a message could sit in the queue while a
//! second receiver sleeps.
//!
//! # Disconnection
//!
//! When the last sender goes, or the receiving side closes, a flag is set and
//! every waiter on the other side is woken under the list's lock; a waiter
//! registers under the same lock and checks the flag after it, so it either is
//! on the list when the waking side drains it or sees the flag. A receiver
//! finding the queue empty and the senders gone looks at the queue once more,
//! since the last sender may have pushed just before it went.

use std::collections::VecDeque;
use std::time::Instant;

use crate::sync::{fence, AtomicBool, AtomicUsize, Mutex, Ordering};

/// Something that wakes one parked waiter (a process or a thread), leaving a
/// permit if the waiter is not parked yet.
pub trait Unpark: Clone {
    /// Wakes the waiter.
    fn unpark(&self);
}

/// How a side waits: the waiter's own unparker, and its park.
pub trait Park {
    /// The unparker that wakes this waiter.
    type Unparker: Unpark;
    /// An unparker for the caller.
    fn unparker(&self) -> Self::Unparker;
    /// Parks until unparked (or spuriously); returns false once `deadline`
    /// has passed.
    fn park(&self, deadline: Option<Instant>) -> bool;
    /// Whether a short spin before registering pays (a plain thread, whose park
    /// is a system call) or not (a process, whose park is a stack switch).
    fn spins(&self) -> bool;
}

/// The waiters of one side of a channel, oldest first.
#[derive(Debug)]
pub struct WaitList<U> {
    /// How many entries the list holds: notifiers read it without the lock.
    waiting: AtomicUsize,
    /// The entries and the next key.
    entries: Mutex<Entries<U>>,
}

/// The locked part of a [`WaitList`].
#[derive(Debug)]
struct Entries<U> {
    /// Key of the next registration.
    next_key: u64,
    /// Registered waiters with their keys, oldest first.
    queue: VecDeque<(u64, U)>,
}

/// A registration on a [`WaitList`], to be given back with
/// [`WaitList::unregister`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitKey(u64);

impl<U: Unpark> Default for WaitList<U> {
    fn default() -> Self {
        Self::new()
    }
}

impl<U: Unpark> WaitList<U> {
    /// An empty list.
    pub fn new() -> Self {
        WaitList {
            waiting: AtomicUsize::new(0),
            entries: Mutex::new(Entries {
                next_key: 0,
                queue: VecDeque::new(),
            }),
        }
    }

    /// Adds a waiter (step 2 of the module's protocol). The caller tries its
    /// operation again afterwards, before it parks.
    pub fn register(&self, unparker: U) -> WaitKey {
        let key = {
            let mut entries = self.entries.lock();
            let key = entries.next_key;
            entries.next_key += 1;
            entries.queue.push_back((key, unparker));
            self.waiting.fetch_add(1, Ordering::SeqCst);
            key
        };
        // Orders the count's rise before the caller's second look at the queue
        // (the module's diagram).
        fence(Ordering::SeqCst);
        WaitKey(key)
    }

    /// Removes a registration. Returns false if a notifier removed it first:
    /// the waiter was (or is about to be) unparked.
    pub fn unregister(&self, key: WaitKey) -> bool {
        let mut entries = self.entries.lock();
        match entries.queue.iter().position(|(k, _)| *k == key.0) {
            Some(at) => {
                entries.queue.remove(at);
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Wakes the oldest waiter, if any. Call it after the change the waiters
    /// wait for.
    pub fn notify_one(&self) {
        // Orders the caller's change before the load (the module's diagram).
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let woken = {
            let mut entries = self.entries.lock();
            let woken = entries.queue.pop_front();
            if woken.is_some() {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
            }
            woken
        };
        if let Some((_, unparker)) = woken {
            unparker.unpark();
        }
    }

    /// Wakes every waiter, if any, after a change they wait for: the fast
    /// path of [`notify_one`](Self::notify_one) (a fence and a load), then all
    /// of them.
    pub fn notify_waiting(&self) {
        fence(Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) != 0 {
            self.notify_all();
        }
    }

    /// Wakes every waiter (a disconnection). Takes the lock whatever the count
    /// says, so that a waiter registering concurrently either is on the list
    /// now or sees the caller's change after its registration.
    pub fn notify_all(&self) {
        let woken: Vec<(u64, U)> = {
            let mut entries = self.entries.lock();
            self.waiting.store(0, Ordering::SeqCst);
            entries.queue.drain(..).collect()
        };
        for (_, unparker) in woken {
            unparker.unpark();
        }
    }
}

/// The queue of a channel: bounded or not.
#[cfg(not(loom))]
enum Queue<T> {
    /// A fixed ring of slots.
    Bounded(crossbeam_queue::ArrayQueue<T>),
    /// Linked segments, growing as needed.
    Unbounded(crossbeam_queue::SegQueue<T>),
}

#[cfg(not(loom))]
impl<T> Queue<T> {
    fn new(capacity: Option<usize>) -> Self {
        match capacity {
            Some(capacity) => Queue::Bounded(crossbeam_queue::ArrayQueue::new(capacity)),
            None => Queue::Unbounded(crossbeam_queue::SegQueue::new()),
        }
    }

    fn push(&self, value: T) -> Result<(), T> {
        match self {
            Queue::Bounded(queue) => queue.push(value),
            Queue::Unbounded(queue) => {
                queue.push(value);
                Ok(())
            }
        }
    }

    fn pop(&self) -> Option<T> {
        match self {
            Queue::Bounded(queue) => queue.pop(),
            Queue::Unbounded(queue) => queue.pop(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Queue::Bounded(queue) => queue.len(),
            Queue::Unbounded(queue) => queue.len(),
        }
    }

    fn is_full(&self) -> bool {
        match self {
            Queue::Bounded(queue) => queue.is_full(),
            Queue::Unbounded(_) => false,
        }
    }

    fn capacity(&self) -> Option<usize> {
        match self {
            Queue::Bounded(queue) => Some(queue.capacity()),
            Queue::Unbounded(_) => None,
        }
    }
}

/// Under loom, a stand-in for crossbeam's queues, which loom cannot see into:
/// each push and pop is one atomic step, and, as in crossbeam's, an empty or
/// full queue is seen through an atomic load (here of the count), not through
/// a lock that would order the two sides for free and hide a missing fence.
#[cfg(loom)]
struct Queue<T> {
    /// The messages.
    items: Mutex<VecDeque<T>>,
    /// How many there are: written under the lock (release), read without.
    count: AtomicUsize,
    /// The bound, if any.
    capacity: Option<usize>,
}

#[cfg(loom)]
impl<T> Queue<T> {
    fn new(capacity: Option<usize>) -> Self {
        Queue {
            items: Mutex::new(VecDeque::new()),
            count: AtomicUsize::new(0),
            capacity,
        }
    }

    fn push(&self, value: T) -> Result<(), T> {
        if self.is_full() {
            return Err(value);
        }
        let mut items = self.items.lock();
        if self.capacity.is_some_and(|c| items.len() >= c) {
            return Err(value);
        }
        items.push_back(value);
        self.count.store(items.len(), Ordering::Release);
        Ok(())
    }

    fn pop(&self) -> Option<T> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut items = self.items.lock();
        let value = items.pop_front();
        self.count.store(items.len(), Ordering::Release);
        value
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    fn is_full(&self) -> bool {
        self.capacity.is_some_and(|c| self.len() >= c)
    }

    fn capacity(&self) -> Option<usize> {
        self.capacity
    }
}

/// Why a send did not go through.
#[derive(Debug, PartialEq, Eq)]
pub enum SendFailure<T> {
    /// The queue was full (or, for a waiting send, stayed full past the
    /// deadline).
    Full(T),
    /// No receiver is left, or the channel was closed.
    Disconnected(T),
}

/// Why a receive did not get a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvFailure {
    /// The queue was empty (or, for a waiting receive, stayed empty past the
    /// deadline).
    Empty,
    /// The queue is empty and no message can come any more.
    Disconnected,
}

/// One channel: what its senders and receivers share.
pub struct Chan<T, U> {
    /// The messages.
    queue: Queue<T>,
    /// Live senders.
    senders: AtomicUsize,
    /// Live receivers.
    receivers: AtomicUsize,
    /// No send goes through any more: every receiver went, or one closed the
    /// channel.
    closed: AtomicBool,
    /// Receivers waiting for a message.
    recv_waiters: WaitList<U>,
    /// Senders waiting for room.
    send_waiters: WaitList<U>,
}

impl<T, U: Unpark> Chan<T, U> {
    /// A channel with one sender and one receiver; `capacity` bounds its queue
    /// (at least 1), `None` leaves it unbounded.
    pub fn new(capacity: Option<usize>) -> Self {
        Chan {
            queue: Queue::new(capacity),
            senders: AtomicUsize::new(1),
            receivers: AtomicUsize::new(1),
            closed: AtomicBool::new(false),
            recv_waiters: WaitList::new(),
            send_waiters: WaitList::new(),
        }
    }

    /// The bound, if any.
    pub fn capacity(&self) -> Option<usize> {
        self.queue.capacity()
    }

    /// Messages queued right now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether the queue is empty right now.
    pub fn is_empty(&self) -> bool {
        self.queue.len() == 0
    }

    /// Whether sends fail now (every receiver went, or the channel was closed).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Whether every sender went.
    fn senders_gone(&self) -> bool {
        self.senders.load(Ordering::SeqCst) == 0
    }

    /// Counts one more sender.
    pub fn add_sender(&self) {
        self.senders.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one more receiver.
    pub fn add_receiver(&self) {
        self.receivers.fetch_add(1, Ordering::Relaxed);
    }

    /// A sender went; the last one wakes every waiting receiver.
    pub fn drop_sender(&self) {
        if self.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.recv_waiters.notify_all();
        }
    }

    /// A receiver went; the last one closes the channel and drops what is
    /// queued (nobody can receive it any more).
    pub fn drop_receiver(&self) {
        if self.receivers.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.close();
            while self.queue.pop().is_some() {}
        }
    }

    /// Closes the channel: sends fail from now on, receivers still take what
    /// is queued, and every waiter on either side is woken.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.send_waiters.notify_all();
        self.recv_waiters.notify_all();
    }

    /// Sends if there is room.
    pub fn try_send(&self, value: T) -> Result<(), SendFailure<T>> {
        if self.is_closed() {
            return Err(SendFailure::Disconnected(value));
        }
        match self.queue.push(value) {
            Ok(()) => {
                if self.receivers.load(Ordering::SeqCst) == 0 {
                    // The push raced with the last receiver's drop, which may
                    // have emptied the queue already: drop what it missed, as
                    // it would have.
                    while self.queue.pop().is_some() {}
                    return Ok(());
                }
                self.recv_waiters.notify_one();
                Ok(())
            }
            Err(value) => Err(SendFailure::Full(value)),
        }
    }

    /// Receives if a message is queued.
    pub fn try_recv(&self) -> Result<T, RecvFailure> {
        if let Some(value) = self.queue.pop() {
            self.after_pop();
            return Ok(value);
        }
        if self.senders_gone() || self.is_closed() {
            // The last send may have landed just before its sender went.
            return match self.queue.pop() {
                Some(value) => {
                    self.after_pop();
                    Ok(value)
                }
                None => Err(RecvFailure::Disconnected),
            };
        }
        Err(RecvFailure::Empty)
    }

    /// A pop made room: a waiting sender may go on.
    fn after_pop(&self) {
        if self.queue.capacity().is_some() {
            self.send_waiters.notify_one();
        }
    }

    /// Sends, waiting for room until `deadline`.
    pub fn send<P: Park<Unparker = U>>(
        &self,
        value: T,
        park: &P,
        deadline: Option<Instant>,
    ) -> Result<(), SendFailure<T>> {
        let mut value = Some(value);
        let mut attempt = || match self.try_send(value.take().expect("value present")) {
            Ok(()) => Some(Ok(())),
            Err(SendFailure::Full(back)) => {
                value = Some(back);
                None
            }
            Err(failure) => Some(Err(failure)),
        };
        match wait(&self.send_waiters, park, deadline, &mut attempt, || {
            !self.queue.is_full() || self.is_closed()
        }) {
            Some(done) => done,
            None => Err(SendFailure::Full(value.take().expect("value present"))),
        }
    }

    /// Receives, waiting for a message until `deadline`.
    pub fn recv<P: Park<Unparker = U>>(
        &self,
        park: &P,
        deadline: Option<Instant>,
    ) -> Result<T, RecvFailure> {
        let mut attempt = || match self.try_recv() {
            Err(RecvFailure::Empty) => None,
            done => Some(done),
        };
        wait(&self.recv_waiters, park, deadline, &mut attempt, || {
            self.is_ready_to_recv()
        })
        .unwrap_or(Err(RecvFailure::Empty))
    }

    /// Whether a receive would not have to wait.
    fn is_ready_to_recv(&self) -> bool {
        !self.is_empty() || self.senders_gone() || self.is_closed()
    }

    /// For `select`: puts a receiver's unparker on the receivers' wait list
    /// until the returned guard drops (which passes a wake-up on if this one
    /// was notified but leaves a message queued).
    pub fn register_receiver(&self, unparker: U) -> Registration<'_, U, impl Fn() -> bool + '_> {
        Registration::new(&self.recv_waiters, unparker, move || {
            self.is_ready_to_recv()
        })
    }
}

/// The module's waiting loop on one wait list: `attempt` until it returns a
/// result, parking in between; `None` once `deadline` passed. `still_ready`
/// says whether the condition the waiters wait for holds (to pass a wake-up
/// on).
pub fn wait<U: Unpark, P: Park<Unparker = U>, R>(
    list: &WaitList<U>,
    park: &P,
    deadline: Option<Instant>,
    attempt: &mut impl FnMut() -> Option<R>,
    still_ready: impl Fn() -> bool,
) -> Option<R> {
    wait_with(
        &mut (),
        park,
        deadline,
        |()| attempt(),
        |(), unparker| Registration::new(list, unparker, &still_ready),
    )
}

/// The module's waiting loop, for any registrations (a `select` registers on
/// several lists at once): `attempt` on `state` until it returns a result; in
/// between, `register` (what it returns is dropped, unregistering, before the
/// next round), `attempt` once more, and park; `None` once `deadline` passed.
/// A thread (`park.spins()`) spins briefly before its first registration.
pub fn wait_with<S, U: Unpark, P: Park<Unparker = U>, R, G>(
    state: &mut S,
    park: &P,
    deadline: Option<Instant>,
    mut attempt: impl FnMut(&mut S) -> Option<R>,
    register: impl Fn(&S, U) -> G,
) -> Option<R> {
    if let Some(done) = attempt(state) {
        return Some(done);
    }
    if park.spins() {
        let backoff = crossbeam_utils::Backoff::new();
        while !backoff.is_completed() {
            backoff.snooze();
            if let Some(done) = attempt(state) {
                return Some(done);
            }
        }
    }
    loop {
        let registration = register(state, park.unparker());
        let done = attempt(state);
        let in_time = done.is_none() && park.park(deadline);
        let done = done.or_else(|| attempt(state));
        drop(registration);
        if done.is_some() || !in_time {
            return done;
        }
    }
}

/// A waiter's entry on a wait list, removed when it drops: also when a process
/// unwinds out of its park (a kill), so that no entry outlives its wait. A
/// waiter that was notified and leaves with the condition still true passes
/// the wake-up on (the module's "passing a wake-up on").
pub struct Registration<'a, U: Unpark, F: Fn() -> bool> {
    /// The list it is on.
    list: &'a WaitList<U>,
    /// Its key there.
    key: WaitKey,
    /// Whether the condition its waiters wait for holds.
    still_ready: F,
}

impl<'a, U: Unpark, F: Fn() -> bool> Registration<'a, U, F> {
    /// Registers `unparker` on `list`.
    fn new(list: &'a WaitList<U>, unparker: U, still_ready: F) -> Self {
        Registration {
            list,
            key: list.register(unparker),
            still_ready,
        }
    }
}

impl<U: Unpark, F: Fn() -> bool> Drop for Registration<'_, U, F> {
    fn drop(&mut self) {
        let notified = !self.list.unregister(self.key);
        if notified && (self.still_ready)() {
            self.list.notify_one();
        }
    }
}

impl<T, U> std::fmt::Debug for Chan<T, U> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chan")
            .field("len", &self.queue.len())
            .field("capacity", &self.queue.capacity())
            .field("senders", &self.senders.load(Ordering::Relaxed))
            .field("receivers", &self.receivers.load(Ordering::Relaxed))
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish()
    }
}
