//! Bounded mailboxes: a capacity on how many messages a process's mailbox holds,
//! and senders that wait for room.
//!
//! A process gets a bound from [`Process::mailbox_capacity`] when it is spawned,
//! or sets one on itself ([`Scope::set_mailbox_capacity`]). Its header then
//! points at a [`Bounded`], which counts the places taken (messages queued, or
//! being pushed by a send that has reserved one) and keeps the senders waiting
//! for room. A process with no bound has a null pointer there, and a send costs
//! it one load more.
//!
//! 1. A send reserves a place with a compare-and-swap that never lets the count
//!    pass the capacity; if there is none it fails with [`SendError::Full`]
//!    (`send`) or waits (`send_wait`, `send_timeout`, a `call`).
//! 2. It pushes; if the mailbox is closed (the process ended) it gives the place
//!    back and fails with [`SendError::Exited`].
//! 3. The process, taking a message out, gives its place back: in batches of
//!    a sixteenth of the capacity, so that it does not write the count that
//!    every sender writes at every message (the cache line would travel
//!    between the cores at each one), and at once when its mailbox runs empty
//!    or it suspends (step 4). A mailbox therefore never holds more than its
//!    capacity, but may refuse a message with up to a sixteenth of its places
//!    free. Once it has drained to three quarters of its capacity it wakes the
//!    oldest waiting sender (who, finding room still, wakes the next: see
//!    chan.rs's "passing a wake-up on"); waiting for a quarter of the places to
//!    be free lets a woken sender send a batch instead of parking again after
//!    each message.
//! 4. Whenever the process suspends, for anything (a receive that matches
//!    nothing queued, a call, a sleep), or a handler process has handled what
//!    it had, it gives back the places it held and, if its mailbox has room,
//!    wakes a waiting sender: a process that stops draining its mailbox above three
//!    quarters, because it waits for one particular message or for a reply,
//!    never keeps a sender from a free place.
//! 5. When the process ends, every waiting sender is woken, finds the mailbox
//!    closed and gets its message back.
//!
//! Waiting senders use the channels' wait list and waiting loop (chan.rs, under
//! loom there): register, try again, park; a place given back is a change that
//! wakes one waiter, who passes the wake-up on if it does not use it.
//!
//! Signals (exits, downs, stops, kills) travel in their own queue, never in the
//! mailbox, so a full mailbox never holds them up.
//!
//! [`Process::mailbox_capacity`]: crate::Process::mailbox_capacity
//! [`Scope::set_mailbox_capacity`]: crate::Scope::set_mailbox_capacity
//! [`SendError::Full`]: crate::SendError::Full
//! [`SendError::Exited`]: crate::SendError::Exited

use crossbeam_utils::CachePadded;

use crate::chan::{Unpark, WaitList};
use crate::sync::{AtomicUsize, Ordering};

/// The bound of one process's mailbox; `U` wakes a waiting sender (the
/// runtime's unparker; a loom thread's in `tests/loom_bounded.rs`).
pub struct Bounded<U> {
    /// How many places there are.
    capacity: AtomicUsize,
    /// Places taken: messages queued, being pushed by a send that reserved
    /// one, or taken out by the process and not given back yet. Every send
    /// writes it: on a line of its own.
    taken: CachePadded<AtomicUsize>,
    /// Places the process took messages out of and has not given back yet.
    /// Only the process (its one consumer) reads and writes it.
    held: AtomicUsize,
    /// Senders waiting for a place.
    pub room: WaitList<U>,
}

impl<U: Unpark> Bounded<U> {
    /// A bound of `capacity` places, `taken` of them taken already.
    pub fn new(capacity: usize, taken: usize) -> Self {
        Bounded {
            capacity: AtomicUsize::new(capacity),
            taken: CachePadded::new(AtomicUsize::new(taken)),
            held: AtomicUsize::new(0),
            room: WaitList::new(),
        }
    }

    /// The capacity.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Changes the capacity; a larger one wakes every waiting sender.
    pub fn set_capacity(&self, capacity: usize) {
        if self.capacity.swap(capacity, Ordering::SeqCst) < capacity {
            self.room.notify_all();
        }
    }

    /// Takes a place, if there is one (step 1 of the module's protocol).
    pub fn reserve(&self) -> bool {
        let capacity = self.capacity();
        let mut taken = self.taken.load(Ordering::Relaxed);
        loop {
            if taken >= capacity {
                return false;
            }
            match self.taken.compare_exchange_weak(
                taken,
                taken + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => taken = actual,
            }
        }
    }

    /// The process took a message out: holds its place, and gives the places
    /// it holds back once they are a batch (step 3). Only the process calls it.
    pub fn release(&self) {
        let held = self.held.load(Ordering::Relaxed) + 1;
        if held >= (self.capacity() / 16).max(1) {
            self.held.store(0, Ordering::Relaxed);
            self.give_back(held);
        } else {
            self.held.store(held, Ordering::Relaxed);
        }
    }

    /// Gives `places` back, and wakes a waiting sender once the mailbox has
    /// drained far enough. Saturates at zero: messages queued before the bound
    /// was set never took a place.
    fn give_back(&self, places: usize) {
        let before = self
            .taken
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(places))
            })
            .unwrap_or(0);
        let now = before.saturating_sub(places);
        let capacity = self.capacity();
        if now <= capacity - capacity / 4 {
            self.room.notify_one();
        }
    }

    /// Gives back every place the process holds and wakes a waiting sender if
    /// there is room (step 4): the process is about to suspend, or has emptied
    /// its mailbox. Only the process calls it.
    pub fn flush(&self) {
        let held = self.held.load(Ordering::Relaxed);
        if held > 0 {
            self.held.store(0, Ordering::Relaxed);
            self.give_back(held);
        }
        if self.has_room() {
            self.room.notify_one();
        }
    }

    /// Whether a send would find a place now.
    pub fn has_room(&self) -> bool {
        self.taken.load(Ordering::SeqCst) < self.capacity()
    }
}
