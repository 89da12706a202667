//! The publisher/subscriber ring under `channel::broadcast`: one publisher
//! writes events into a fixed ring of slots, each subscriber reads every event
//! in order at its own cursor, and the slowest subscriber gates the publisher.
//!
//! # Positions
//!
//! Events are numbered from 0; event `n` lives in slot `n % capacity`.
//! `published` counts the events committed so far; each subscriber's cursor is
//! the number of the next event it will read. Three rules keep every access to
//! a slot exclusive or shared-read-only:
//!
//! 1. The publisher writes event `n` only when `n - min(cursors) < capacity`:
//!    no subscriber may still read the event that slot held (`n - capacity`).
//! 2. A subscriber reads event `n` only when `n < published` (it was committed,
//!    with a release store the subscriber's acquire load pairs with) and
//!    `n >= its cursor`, and it moves its cursor past `n` only when done with
//!    it. Several subscribers may read one slot at once: they only read.
//! 3. A subscriber that joins starts at `published` as it reads it, which is at
//!    least the smallest cursor the publisher may have gated on: the publisher
//!    cannot overwrite anything it will read.
//!
//! # Waiting
//!
//! Both sides wait with the channels' loop (chan.rs): a subscriber that has
//! read everything registers on `readers`, looks at `published` again and
//! parks; a commit stores `published`, fences and wakes every registered
//! reader. A publisher without room registers on `writer`, looks at the
//! cursors again and parks; a subscriber that moves its cursor stores it,
//! fences and wakes the publisher if it is registered.
//!
//! # Ends
//!
//! The publisher going wakes every reader; they read what is left, then see
//! the end. A subscriber going takes its cursor off the list and wakes the
//! publisher (its gate may have opened). With no subscriber at all, nothing
//! gates the publisher and its events are overwritten unread.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use crate::chan::{wait, Park, Unpark, WaitList};
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, UnsafeCell};

/// One subscriber's cursor: the number of the next event it reads.
#[derive(Debug)]
pub struct Cursor {
    /// The next event's number.
    next: CachePadded<AtomicU64>,
}

/// The ring and its positions.
pub struct Ring<T, U> {
    /// The slots; event `n` in `slots[n % capacity]`.
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    /// Events committed so far.
    published: CachePadded<AtomicU64>,
    /// The subscribers' cursors.
    cursors: Mutex<Vec<Arc<Cursor>>>,
    /// Whether the publisher is gone.
    closed: AtomicBool,
    /// Subscribers waiting for events.
    readers: WaitList<U>,
    /// The publisher, when it waits for room.
    writer: WaitList<U>,
}

// Safety: the slots hold `T`s that the publisher moves in from its thread and
// subscribers on other threads read by reference (rule 2), so `T` must be
// `Send` and `Sync`; every other field is thread-safe.
unsafe impl<T: Send + Sync, U: Send> Send for Ring<T, U> {}
// Safety: as above; the rules of the module docs keep slot accesses apart.
unsafe impl<T: Send + Sync, U: Send + Sync> Sync for Ring<T, U> {}

impl<T, U: Unpark> Ring<T, U> {
    /// A ring of `capacity` slots (at least 1) with no subscriber yet.
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "a broadcast ring needs at least one slot");
        Ring {
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            published: CachePadded::new(AtomicU64::new(0)),
            cursors: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            readers: WaitList::new(),
            writer: WaitList::new(),
        }
    }

    /// How many slots the ring has.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Events committed so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// How many subscribers there are.
    pub fn subscribers(&self) -> usize {
        self.cursors.lock().len()
    }

    /// A new subscriber's cursor, at the next event to be published (rule 3).
    pub fn subscribe(&self) -> Arc<Cursor> {
        let mut cursors = self.cursors.lock();
        let cursor = Arc::new(Cursor {
            next: CachePadded::new(AtomicU64::new(self.published.load(Ordering::SeqCst))),
        });
        cursors.push(Arc::clone(&cursor));
        cursor
    }

    /// A new subscriber's cursor at `at`, another subscriber's position: for
    /// cloning a subscriber, whose cursor (at `at`) gates the publisher
    /// meanwhile, so the events from `at` on are still there.
    pub fn subscribe_at(&self, at: u64) -> Arc<Cursor> {
        let mut cursors = self.cursors.lock();
        let cursor = Arc::new(Cursor {
            next: CachePadded::new(AtomicU64::new(at)),
        });
        cursors.push(Arc::clone(&cursor));
        cursor
    }

    /// Takes a subscriber's cursor off the list; the publisher may have room now.
    pub fn unsubscribe(&self, cursor: &Arc<Cursor>) {
        self.cursors.lock().retain(|c| !Arc::ptr_eq(c, cursor));
        self.writer.notify_one();
    }

    /// How many events the publisher may write from `published` on without
    /// overwriting one a subscriber has not read (rule 1).
    fn room(&self, published: u64) -> u64 {
        let slowest = self
            .cursors
            .lock()
            .iter()
            .map(|c| c.next.load(Ordering::SeqCst))
            .min()
            .unwrap_or(published);
        self.capacity() as u64 - (published - slowest)
    }

    /// Waits until `n` events (at most the capacity) may be written from
    /// `published` on; false if `deadline` passed first. Only the publisher
    /// calls it.
    pub fn claim<P: Park<Unparker = U>>(
        &self,
        n: u64,
        park: &P,
        deadline: Option<Instant>,
    ) -> bool {
        assert!(n <= self.capacity() as u64, "a claim larger than the ring");
        let published = self.published.load(Ordering::Relaxed);
        let mut attempt = || (self.room(published) >= n).then_some(());
        wait(&self.writer, park, deadline, &mut attempt, || false).is_some()
    }

    /// Writes event `seq`.
    ///
    /// # Safety
    /// Only the publisher calls it, for an event it claimed (rule 1) and has
    /// not committed.
    pub unsafe fn write(&self, seq: u64, value: T) {
        let capacity = self.capacity() as u64;
        let slot = &self.slots[(seq % capacity) as usize];
        slot.with_mut(|slot| {
            // Safety: the claim keeps every subscriber off this slot (rule 1);
            // the event it held, if any (`seq - capacity`), was written.
            unsafe {
                if seq >= capacity {
                    (*slot).assume_init_drop();
                }
                (*slot).write(value);
            }
        });
    }

    /// Commits every event before `upto` and wakes waiting subscribers.
    pub fn commit(&self, upto: u64) {
        self.published.store(upto, Ordering::SeqCst);
        self.readers.notify_waiting();
    }

    /// Runs `f` on event `seq`: [`get`](Self::get) for the loom models, whose
    /// checker tracks the read for as long as `f` runs.
    ///
    /// # Safety
    /// The caller is a subscriber whose cursor is at most `seq`, and `seq` is
    /// below what [`published`](Self::published) returned (rule 2).
    #[cfg(loom)]
    pub unsafe fn read<R>(&self, seq: u64, f: impl FnOnce(&T) -> R) -> R {
        let slot = &self.slots[(seq % self.capacity() as u64) as usize];
        // Safety: rule 2: committed (initialized, and the acquire load of
        // `published` ordered the write before this), and not overwritten
        // while the caller's cursor is at most `seq`.
        slot.with(|slot| f(unsafe { (*slot).assume_init_ref() }))
    }

    /// A pointer to event `seq`, for reading by reference.
    ///
    /// # Safety
    /// As for [`read`](Self::read), for as long as the pointer is used.
    pub unsafe fn get(&self, seq: u64) -> *const T {
        let slot = &self.slots[(seq % self.capacity() as u64) as usize];
        slot.with(|slot| {
            // Safety: as in `read`.
            unsafe { (*slot).as_ptr() }
        })
    }

    /// Moves `cursor` to `to` (the subscriber is done with the events before
    /// it) and wakes the publisher if it waits.
    pub fn advance(&self, cursor: &Cursor, to: u64) {
        cursor.next.store(to, Ordering::SeqCst);
        self.writer.notify_one();
    }

    /// The cursor's position.
    pub fn position(&self, cursor: &Cursor) -> u64 {
        cursor.next.load(Ordering::Relaxed)
    }

    /// Waits until an event after `from` is committed or the publisher is
    /// gone; returns what `published` then says, or `None` if `deadline`
    /// passed first.
    pub fn wait_for_events<P: Park<Unparker = U>>(
        &self,
        from: u64,
        park: &P,
        deadline: Option<Instant>,
    ) -> Option<u64> {
        let mut attempt = || {
            let published = self.published.load(Ordering::SeqCst);
            (published > from || self.closed.load(Ordering::SeqCst)).then(|| {
                // The publisher's last commit may have come just before it went.
                self.published.load(Ordering::SeqCst)
            })
        };
        wait(&self.readers, park, deadline, &mut attempt, || false)
    }

    /// Whether the publisher is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The publisher is gone: wakes every subscriber.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.readers.notify_all();
    }
}

impl<T, U> Drop for Ring<T, U> {
    fn drop(&mut self) {
        let capacity = self.slots.len() as u64;
        let published = self.published.load(Ordering::Relaxed);
        for seq in published.saturating_sub(capacity)..published {
            self.slots[(seq % capacity) as usize].with_mut(|slot| {
                // Safety: events `published - capacity..published` are the ones
                // the slots hold, written and not yet dropped; nothing else can
                // reach the ring now.
                unsafe { (*slot).assume_init_drop() }
            });
        }
    }
}
