//! A publisher/subscriber ring: one [`Publisher`], any number of
//! [`Subscriber`]s, each of which gets every event published after it joined,
//! in order. The ring has a fixed number of slots; the publisher claims
//! several at once ([`Publisher::next_n`]), fills them and commits, and each
//! subscriber takes several at once ([`Subscriber::recv_n`]), reads them in
//! place (no copy, no clone) and commits its own cursor. The slowest subscriber
//! gates the publisher: an event is never overwritten before every subscriber
//! has read it, so none is lost; a publisher that finds the ring full waits
//! (only the process, or the thread, waits) for the slowest to move on.
//! Subscribers can join late ([`Publisher::subscribe`], or clone one), and
//! start with the next event published.
//!
//! ```
//! use fibra_runtime::channel::broadcast;
//!
//! let (mut publisher, mut subscriber) = broadcast::ring::<u64>(8);
//! let reader = std::thread::spawn(move || {
//!     let mut sum = 0;
//!     // Up to 4 events at a time, read in place; `Err` once the publisher is
//!     // gone and everything is read.
//!     while let Ok(events) = subscriber.recv_n(4) {
//!         sum += events.iter().sum::<u64>();
//!     }
//!     sum
//! });
//! for chunk in (1..=100u64).collect::<Vec<_>>().chunks(5) {
//!     let mut batch = publisher.next_n(chunk.len());
//!     for &n in chunk {
//!         batch.push(n);
//!     }
//!     batch.commit();
//! }
//! drop(publisher);
//! assert_eq!(reader.join().unwrap(), 5050);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{deadline_after, Current, RecvError, RecvTimeoutError, TryRecvError};
use crate::park::{consume_budget, Unparker};
use crate::ring::{Cursor, Ring};

/// A ring of `capacity` slots, its publisher and a first subscriber.
///
/// # Panics
///
/// If `capacity` is 0.
pub fn ring<T: Send + Sync>(capacity: usize) -> (Publisher<T>, Subscriber<T>) {
    let ring = Arc::new(Ring::new(capacity));
    let cursor = ring.subscribe();
    (
        Publisher {
            ring: Arc::clone(&ring),
            next: 0,
        },
        Subscriber { ring, cursor },
    )
}

/// The one writer of a ring.
pub struct Publisher<T: Send + Sync> {
    /// The ring.
    ring: Arc<Ring<T, Unparker>>,
    /// The number of the next event it writes.
    next: u64,
}

/// Slots claimed by [`Publisher::next_n`], filled with [`push`](Batch::push);
/// what was pushed is committed (seen by subscribers) by
/// [`commit`](Batch::commit), or when the batch drops.
pub struct Batch<'a, T: Send + Sync> {
    /// The publisher.
    publisher: &'a mut Publisher<T>,
    /// How many slots were claimed.
    claimed: u64,
    /// How many were filled.
    written: u64,
}

impl<T: Send + Sync> Publisher<T> {
    /// Claims `n` slots, waiting while the slowest subscriber still has to read
    /// the events they hold.
    ///
    /// # Panics
    ///
    /// If `n` is larger than the ring.
    pub fn next_n(&mut self, n: usize) -> Batch<'_, T> {
        self.claim(n, None).unwrap_or_else(|publisher| Batch {
            // Only a process being ended by the runtime's shutdown, which
            // may not wait, gets here: an empty batch.
            publisher,
            claimed: 0,
            written: 0,
        })
    }

    /// Claims `n` slots if they are free now.
    pub fn try_next_n(&mut self, n: usize) -> Option<Batch<'_, T>> {
        self.claim(n, Some(Instant::now())).ok()
    }

    /// Claims `n` slots, waiting up to `timeout` for them.
    pub fn next_n_timeout(&mut self, n: usize, timeout: Duration) -> Option<Batch<'_, T>> {
        self.claim(n, deadline_after(timeout)).ok()
    }

    /// Publishes one event, waiting for a free slot.
    pub fn send(&mut self, value: T) {
        let mut batch = self.next_n(1);
        if batch.claimed == 1 {
            batch.push(value);
        }
    }

    /// A new subscriber, which gets the events published from now on.
    pub fn subscribe(&self) -> Subscriber<T> {
        Subscriber {
            ring: Arc::clone(&self.ring),
            cursor: self.ring.subscribe(),
        }
    }

    /// How many subscribers there are. With none, events are overwritten
    /// unread.
    pub fn subscribers(&self) -> usize {
        self.ring.subscribers()
    }

    /// How many slots the ring has.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    fn claim(&mut self, n: usize, deadline: Option<Instant>) -> Result<Batch<'_, T>, &mut Self> {
        assert!(
            n <= self.ring.capacity(),
            "a claim of {n} slots on a ring of {}",
            self.ring.capacity()
        );
        consume_budget();
        if self.ring.claim(n as u64, &Current::new(), deadline) {
            Ok(Batch {
                publisher: self,
                claimed: n as u64,
                written: 0,
            })
        } else {
            Err(self)
        }
    }
}

impl<T: Send + Sync> Batch<'_, T> {
    /// Fills the next claimed slot.
    ///
    /// # Panics
    ///
    /// If every claimed slot is filled.
    pub fn push(&mut self, value: T) {
        assert!(
            self.written < self.claimed,
            "the batch's slots are all filled"
        );
        let seq = self.publisher.next + self.written;
        // Safety: `Publisher` is the ring's one publisher (it is not `Clone`,
        // and this borrows it mutably); `seq` is within the claim, not yet
        // committed.
        unsafe { self.publisher.ring.write(seq, value) };
        self.written += 1;
    }

    /// How many slots are filled.
    pub fn len(&self) -> usize {
        self.written as usize
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    /// How many slots were claimed.
    pub fn capacity(&self) -> usize {
        self.claimed as usize
    }

    /// Commits the filled slots: subscribers see them now.
    pub fn commit(self) {}
}

impl<T: Send + Sync> Drop for Batch<'_, T> {
    fn drop(&mut self) {
        if self.written > 0 {
            self.publisher.next += self.written;
            self.publisher.ring.commit(self.publisher.next);
        }
    }
}

impl<T: Send + Sync> Drop for Publisher<T> {
    fn drop(&mut self) {
        self.ring.close();
    }
}

/// One reader of a ring: gets every event published after it joined, in
/// order. Cloning gives another subscriber at the same position.
pub struct Subscriber<T: Send + Sync> {
    /// The ring.
    ring: Arc<Ring<T, Unparker>>,
    /// Its cursor, which gates the publisher.
    cursor: Arc<Cursor>,
}

/// Events taken by [`Subscriber::recv_n`], read in place; the subscriber's
/// cursor moves past them when this drops (or on [`commit`](Events::commit)),
/// letting the publisher reuse their slots.
pub struct Events<'a, T: Send + Sync> {
    /// The subscriber.
    subscriber: &'a mut Subscriber<T>,
    /// The first event's number.
    from: u64,
    /// One past the last.
    to: u64,
}

impl<T: Send + Sync> Subscriber<T> {
    /// Takes up to `n` events (at least one), waiting for one. Fails once the
    /// publisher is gone and every event is read (and in a process that the
    /// runtime's shutdown is ending, which may not wait).
    pub fn recv_n(&mut self, n: usize) -> Result<Events<'_, T>, RecvError> {
        self.take(n, None).map_err(|_| RecvError)
    }

    /// Takes up to `n` events that are there now.
    pub fn try_recv_n(&mut self, n: usize) -> Result<Events<'_, T>, TryRecvError> {
        match self.take(n, Some(Instant::now())) {
            Ok(events) => Ok(events),
            Err(true) => Err(TryRecvError::Disconnected),
            Err(false) => Err(TryRecvError::Empty),
        }
    }

    /// Takes up to `n` events, waiting up to `timeout` for one.
    pub fn recv_n_timeout(
        &mut self,
        n: usize,
        timeout: Duration,
    ) -> Result<Events<'_, T>, RecvTimeoutError> {
        match self.take(n, deadline_after(timeout)) {
            Ok(events) => Ok(events),
            Err(true) => Err(RecvTimeoutError::Disconnected),
            Err(false) => Err(RecvTimeoutError::Timeout),
        }
    }

    /// Takes the next event, cloned.
    pub fn recv(&mut self) -> Result<T, RecvError>
    where
        T: Clone,
    {
        let events = self.recv_n(1)?;
        Ok(events.get(0).expect("at least one event").clone())
    }

    /// Events published and not yet taken by this subscriber.
    pub fn len(&self) -> usize {
        (self.ring.published() - self.ring.position(&self.cursor)) as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `Err(true)` once the publisher is gone and everything is read,
    /// `Err(false)` at the deadline.
    fn take(&mut self, n: usize, deadline: Option<Instant>) -> Result<Events<'_, T>, bool> {
        consume_budget();
        let from = self.ring.position(&self.cursor);
        let mut published = self.ring.published();
        if published == from {
            let passed = deadline.is_some_and(|d| Instant::now() >= d);
            published = match passed {
                true => self.ring.published(),
                false => self
                    .ring
                    .wait_for_events(from, &Current::new(), deadline)
                    .unwrap_or(from),
            };
            if published == from {
                return Err(self.ring.is_closed());
            }
        }
        let to = published.min(from + n.max(1) as u64);
        Ok(Events {
            subscriber: self,
            from,
            to,
        })
    }
}

impl<T: Send + Sync> Events<'_, T> {
    /// How many events there are.
    pub fn len(&self) -> usize {
        (self.to - self.from) as usize
    }

    /// Whether there are none (never, as `recv_n` returns them).
    pub fn is_empty(&self) -> bool {
        self.to == self.from
    }

    /// The `i`-th event.
    pub fn get(&self, i: usize) -> Option<&T> {
        let seq = self.from + i as u64;
        (seq < self.to).then(|| {
            // Safety: `seq` is committed (below what `published` said) and at
            // or past the cursor, which does not move while `self` borrows the
            // subscriber: the slot holds the event for the borrow's length.
            unsafe { &*self.subscriber.ring.get(seq) }
        })
    }

    /// The events, in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        (0..self.len()).map(|i| self.get(i).expect("within the events"))
    }

    /// Moves the cursor past these events.
    pub fn commit(self) {}
}

impl<T: Send + Sync> Drop for Events<'_, T> {
    fn drop(&mut self) {
        self.subscriber
            .ring
            .advance(&self.subscriber.cursor, self.to);
    }
}

impl<T: Send + Sync> Clone for Subscriber<T> {
    fn clone(&self) -> Self {
        Subscriber {
            ring: Arc::clone(&self.ring),
            cursor: self.ring.subscribe_at(self.ring.position(&self.cursor)),
        }
    }
}

impl<T: Send + Sync> Drop for Subscriber<T> {
    fn drop(&mut self) {
        self.ring.unsubscribe(&self.cursor);
    }
}

impl<T: Send + Sync> fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("published", &self.next)
            .field("capacity", &self.ring.capacity())
            .finish()
    }
}

impl<T: Send + Sync> fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("position", &self.ring.position(&self.cursor))
            .field("published", &self.ring.published())
            .finish()
    }
}
