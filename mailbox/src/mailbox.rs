//! The mailbox: a Treiber stack for producers, a private reversed list for the consumer.
//!
//! # Memory ordering and the reschedule protocol
//!
//! The runtime decides whether a send must wake the receiver with a store-then-load on
//! two different words: the mailbox `head` and the process's state word.
//!
//! 1. The sender pushes: its compare-and-swap on `head` is the store.
//! 2. The sender then loads the state word. If the receiver is suspended, the sender
//!    tries to take the right to reschedule it.
//! 3. A receiver that found its mailbox empty stores "suspended" into the state word.
//! 4. The receiver then calls [`Mailbox::has_new`], a load of `head`. If a message
//!    arrived, the receiver does not sleep: it takes the message (or, having given its
//!    rights away by publishing "suspended", competes for them again).
//!
//! At least one of the two loads must see the other thread's store, or a message sits in
//! the mailbox of a process nobody will ever wake. With acquire/release alone both loads
//! may read the old values, because each store can still sit in its core's store buffer
//! while the same core performs its load:
//!
//! ```text
//!   sender                              receiver
//!   ------                              --------
//!   CAS head: null -> msg  (buffered)   store state = SUSPENDED  (buffered)
//!   load state -> RUNNING               load head -> null
//!   "it is running, it will             "nothing there,
//!    see my message"                     go to sleep"
//!                    => the message waits forever
//! ```
//!
//! So the push's compare-and-swap and the load in `has_new` are `SeqCst`, and the runtime
//! makes its state-word store and load `SeqCst` too. All four operations then sit in one
//! total order; whichever load comes later in that order sees the other side's store.
//!
//! The consumer's swaps of `head` (taking the stack, closing) are `SeqCst` as well. The
//! C++20 memory model would accept acquire there, but keeping every write to `head` in
//! the total order keeps the argument above simple, costs nothing extra on x86 (any
//! read-modify-write is a full barrier there), and is what loom needs to check the
//! protocol: loom orders `SeqCst` accesses only among themselves.
//!
//! The counts are not part of the protocol. They are updated with `Relaxed` operations,
//! the consumer's without a read-modify-write, and the length is only ever an
//! estimate while producers are pushing.

use core::fmt;
use core::marker::PhantomData;
use core::mem;
use core::ptr;

use crate::sync::{AtomicPtr, AtomicU32, Ordering, UnsafeCell};

#[cfg(all(test, not(loom)))]
mod tests;

/// One queued message.
struct Node<T> {
    /// The next node: the next older message while on the shared stack, the next newer
    /// one on the consumer's private list; null at the end of either.
    next: UnsafeCell<*mut Node<T>>,
    /// The message itself.
    msg: T,
}

/// The value of `head` once the mailbox is closed.
///
/// Address 1 is not aligned for a `Node` (which holds a pointer), so no node can live
/// there. It is compared against and never dereferenced.
const fn closed<T>() -> *mut Node<T> {
    ptr::without_provenance_mut(1)
}

/// A lock-free multi-producer, single-consumer queue with an atomic message count.
///
/// Producers call [`push`](Mailbox::push) from any thread. The consumer methods
/// ([`pop`](Mailbox::pop), [`pop_matching`](Mailbox::pop_matching),
/// [`close`](Mailbox::close)) are `unsafe`: they share one safety contract, stated on
/// each of them.
///
/// An empty mailbox is 24 bytes and owns no heap memory; each queued message lives in one
/// heap node. See the [crate documentation](crate) for how it works.
pub struct Mailbox<T> {
    /// Top of the shared stack of messages that producers pushed and the consumer has not
    /// taken yet, newest first; null when there are none; [`closed`] once closed.
    head: AtomicPtr<Node<T>>,
    /// The consumer's private list, oldest first; null when empty. Only the consumer
    /// reads or writes it.
    queue: UnsafeCell<*mut Node<T>>,
    /// How many messages were ever pushed, modulo 2^32. A push adds one after its
    /// node is on the stack (a read-modify-write: producers race).
    pushed: AtomicU32,
    /// How many messages the consumer ever took, modulo 2^32. Only the consumer
    /// writes it, so taking a message costs a plain load and store, not a
    /// read-modify-write. `pushed - popped` is the length; since a push counts after
    /// its node is on the stack, the consumer may count a message first, and the
    /// difference is "negative" for a moment: [`Mailbox::len`] reads that as 0.
    popped: AtomicU32,
    /// Tells the drop checker that a mailbox owns, and drops, values of `T`.
    _owns: PhantomData<T>,
}

// Safety: a `Mailbox<T>` owns its queued `T`s and hands them out by value; moving it to
// another thread moves those `T`s, which `T: Send` allows.
unsafe impl<T: Send> Send for Mailbox<T> {}

// Safety: through a shared reference, producers on any thread move `T`s in (`T: Send`),
// and the consumer, one thread at a time by the contract of the consumer methods, moves
// them out or lends them to a predicate on that same thread. No `&T` is ever shared
// between threads, so `T: Sync` is not needed.
unsafe impl<T: Send> Sync for Mailbox<T> {}

impl<T> Mailbox<T> {
    /// Creates an empty, open mailbox. It allocates nothing.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            queue: UnsafeCell::new(ptr::null_mut()),
            pushed: AtomicU32::new(0),
            popped: AtomicU32::new(0),
            _owns: PhantomData,
        }
    }

    /// Creates an empty, open mailbox. It allocates nothing.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            queue: UnsafeCell::new(ptr::null_mut()),
            pushed: AtomicU32::new(0),
            popped: AtomicU32::new(0),
            _owns: PhantomData,
        }
    }

    /// Adds `msg` to the mailbox. Any thread may call this.
    ///
    /// Returns `Err(msg)`, handing the message back, if the mailbox is closed.
    ///
    /// The push is a `SeqCst` compare-and-swap, the store half of the reschedule
    /// protocol described in the module documentation.
    pub fn push(&self, msg: T) -> Result<(), T> {
        let node = Box::into_raw(Box::new(Node {
            next: UnsafeCell::new(ptr::null_mut()),
            msg,
        }));
        // First guess that the mailbox is empty, the usual state of a process waiting
        // for work, and compare-and-swap at once. A wrong guess costs one failed
        // compare-and-swap, which reports the real top. Loading `head` first would fetch
        // its cache line twice (shared, then exclusive) when another core touched it
        // last, and would hide interleavings from loom, whose search does not reorder
        // another thread's load against a load followed by a compare-and-swap. A push to
        // a closed mailbox allocates and frees a node for nothing, but closing is rare.
        let mut head = ptr::null_mut();
        loop {
            match self
                .head
                .compare_exchange_weak(head, node, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(actual) if actual == closed() => {
                    // Safety: `node` comes from `Box::into_raw` above and every
                    // compare-and-swap failed, so it was never published: this thread
                    // still owns it.
                    let node = unsafe { Box::from_raw(node) };
                    return Err(node.msg);
                }
                Err(actual) => {
                    head = actual;
                    // Safety: `node` is unpublished (as above), so nothing else can
                    // access it.
                    unsafe { (*node).next.with_mut(|next| *next = head) };
                }
            }
        }
        self.pushed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many messages are queued.
    ///
    /// Exact when no push is in flight; while producers are pushing it is a snapshot that
    /// may be off by the pushes in progress.
    pub fn len(&self) -> usize {
        let popped = self.popped.load(Ordering::Relaxed);
        let pushed = self.pushed.load(Ordering::Relaxed);
        // A difference past i32::MAX is one that wrapped below zero for a moment (see
        // the `popped` field); a mailbox holding 2^31 messages would need far more
        // memory than there is.
        match pushed.wrapping_sub(popped) {
            len if len > i32::MAX as u32 => 0,
            len => len as usize,
        }
    }

    /// Whether no messages are queued, with the same caveat as [`len`](Mailbox::len).
    ///
    /// To decide whether a process may sleep, use [`has_new`](Mailbox::has_new) after
    /// publishing the suspended state, not this.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether producers pushed messages that the consumer has not yet taken into its
    /// private list. False once the mailbox is closed. Any thread may call this.
    ///
    /// This is a `SeqCst` load of the stack's top: the check before a park in the reschedule
    /// protocol described in the module documentation.
    pub fn has_new(&self) -> bool {
        let head = self.head.load(Ordering::SeqCst);
        !head.is_null() && head != closed()
    }

    /// Whether the mailbox has been closed. Any thread may call this.
    pub fn is_closed(&self) -> bool {
        self.head.load(Ordering::Acquire) == closed()
    }

    /// Removes and returns the oldest message, or `None` if the mailbox is empty.
    ///
    /// # Safety
    ///
    /// At most one thread at a time calls the consumer methods (`pop`, `pop_matching`,
    /// `close`) of a mailbox, and when the consumer role passes from one thread to
    /// another, everything the first did happens before what the second does (for
    /// example, the process was handed over through a lock or a work queue).
    pub unsafe fn pop(&self) -> Option<T> {
        // Safety: the caller upholds the consumer contract, which is pop_matching's.
        unsafe { self.pop_matching(|_| true) }
    }

    /// Removes and returns the first message, in arrival order, for which `pred` returns
    /// true. All other messages stay queued in their order. Returns `None` if no queued
    /// message matches.
    ///
    /// Messages that arrive during the scan are taken in and looked at as well. If `pred`
    /// panics, the panic propagates and the mailbox stays as it was: no message is lost
    /// or reordered.
    ///
    /// # Safety
    ///
    /// The consumer contract, as for [`pop`](Mailbox::pop).
    pub unsafe fn pop_matching(&self, mut pred: impl FnMut(&T) -> bool) -> Option<T> {
        // The scan walks the private list with `prev`, the last node known not to match
        // (null: the scan is at the front). The list is changed in two single steps only:
        // appending a batch of new arrivals at the end, and unlinking the match. A panic
        // in `pred` can come between steps but never inside one.
        let mut prev: *mut Node<T> = ptr::null_mut();
        loop {
            // Safety: `prev` is null or a node on the private list, and the consumer
            // contract gives this thread sole access to that list.
            let mut node = unsafe { self.link_after(prev) };
            if node.is_null() {
                // Safety: consumer contract.
                node = unsafe { self.take_new() };
                if node.is_null() {
                    return None;
                }
                // Safety: `prev` is the list's last node (or null for an empty list), and
                // `node` is a list we now own; the contract covers the private list.
                unsafe { self.set_link_after(prev, node) };
            }
            // Safety: `node` is on the private list, which only this thread accesses;
            // it stays allocated until it is unlinked below.
            let msg = unsafe { &(*node).msg };
            if pred(msg) {
                // Safety: as above.
                let next = unsafe { (*node).next.with(|next| *next) };
                // Safety: `prev` precedes `node` on the private list (as above).
                unsafe { self.set_link_after(prev, next) };
                // Only the consumer writes `popped`: no read-modify-write needed.
                let popped = self.popped.load(Ordering::Relaxed);
                self.popped.store(popped.wrapping_add(1), Ordering::Relaxed);
                // Safety: `node` came from `Box::into_raw` in `push` and is now on
                // neither list, so this is its only owner.
                let node = unsafe { Box::from_raw(node) };
                return Some(node.msg);
            }
            prev = node;
        }
    }

    /// Closes the mailbox and drops every queued message, running its destructor now.
    /// Later pushes fail and hand their message back. Closing again does nothing more.
    ///
    /// Returns how many messages this call dropped.
    ///
    /// If a message's destructor panics, the remaining messages are still dropped and the
    /// first panic then propagates (later ones are caught, so that two panicking
    /// destructors do not abort the program).
    ///
    /// # Safety
    ///
    /// The consumer contract, as for [`pop`](Mailbox::pop).
    pub unsafe fn close(&self) -> usize {
        // Producers never replace `closed()`, so after this swap no message can arrive.
        let stack = self.head.swap(closed(), Ordering::SeqCst);
        if !stack.is_null() && stack != closed() {
            // Safety: the swap detached `stack` from `head`, so this thread owns it, and
            // the swap's acquire half makes the producers' writes to it visible.
            let batch = unsafe { Self::reverse(stack) };
            // Find the end of the private list and append the batch there.
            let mut last: *mut Node<T> = ptr::null_mut();
            loop {
                // Safety: consumer contract; `last` is null or on the private list.
                let next = unsafe { self.link_after(last) };
                if next.is_null() {
                    break;
                }
                last = next;
            }
            // Safety: `last` ends the private list; `batch` is a list this thread owns.
            unsafe { self.set_link_after(last, batch) };
        }

        /// Drops what is left on the private list if a message's destructor panics.
        struct DropRest<'a, T>(&'a Mailbox<T>);
        impl<T> Drop for DropRest<'_, T> {
            fn drop(&mut self) {
                // Safety: this runs only while `close` unwinds, on the consumer thread
                // that `close`'s caller vouched for.
                while let Some(msg) = unsafe { self.0.pop() } {
                    // A second panic while the first unwinds would abort the program:
                    // only the first one propagates.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(msg)));
                }
            }
        }

        let guard = DropRest(self);
        let mut dropped = 0;
        // `head` is closed, so `pop` only drains the private list.
        // Safety: consumer contract.
        while let Some(msg) = unsafe { self.pop() } {
            drop(msg);
            dropped += 1;
        }
        mem::forget(guard);
        dropped
    }

    /// The node after `prev` on the private list, or its first node if `prev` is null.
    ///
    /// # Safety
    ///
    /// Consumer contract; `prev` is null or a node on the private list.
    unsafe fn link_after(&self, prev: *mut Node<T>) -> *mut Node<T> {
        if prev.is_null() {
            // Safety: the caller is the consumer, the only user of `queue`.
            unsafe { self.queue.with(|queue| *queue) }
        } else {
            // Safety: the caller guarantees `prev` is a live node on the private list.
            unsafe { (*prev).next.with(|next| *next) }
        }
    }

    /// Makes `node` follow `prev` on the private list (or become its first node if
    /// `prev` is null).
    ///
    /// # Safety
    ///
    /// As for `link_after`.
    unsafe fn set_link_after(&self, prev: *mut Node<T>, node: *mut Node<T>) {
        if prev.is_null() {
            // Safety: the caller is the consumer, the only user of `queue`.
            unsafe { self.queue.with_mut(|queue| *queue = node) }
        } else {
            // Safety: the caller guarantees `prev` is a live node on the private list.
            unsafe { (*prev).next.with_mut(|next| *next = node) }
        }
    }

    /// Takes the shared stack and returns it reversed (oldest first), or null if it is
    /// empty or the mailbox is closed.
    ///
    /// # Safety
    ///
    /// Consumer contract.
    unsafe fn take_new(&self) -> *mut Node<T> {
        let top = self.head.load(Ordering::Relaxed);
        if top.is_null() || top == closed() {
            return ptr::null_mut();
        }
        // Only the consumer stores null or `closed()` into `head`; producers only put a
        // node on top of what is there. So `head` still holds a non-empty stack and the
        // swap returns it.
        let stack = self.head.swap(ptr::null_mut(), Ordering::SeqCst);
        // Safety: the swap detached `stack`, so this thread owns it. Its acquire half
        // reads the latest push, and each push is a read-modify-write that continues the
        // release sequence of the pushes before it, so every node's contents are visible.
        unsafe { Self::reverse(stack) }
    }

    /// Reverses a detached list in place and returns its new first node.
    ///
    /// # Safety
    ///
    /// The caller owns every node of `list`, and their contents are visible to it.
    unsafe fn reverse(mut list: *mut Node<T>) -> *mut Node<T> {
        let mut reversed = ptr::null_mut();
        while !list.is_null() {
            // Safety: `list` is a node the caller owns.
            let next = unsafe { (*list).next.with(|next| *next) };
            // Safety: as above.
            unsafe { (*list).next.with_mut(|next| *next = reversed) };
            reversed = list;
            list = next;
        }
        reversed
    }
}

impl<T> Drop for Mailbox<T> {
    fn drop(&mut self) {
        // Safety: `&mut self` means no other thread can use the mailbox, so this thread is
        // its only consumer.
        unsafe { self.close() };
    }
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}
