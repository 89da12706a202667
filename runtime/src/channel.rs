//! Typed channels that processes and plain threads block on: only the waiting
//! process suspends, never its worker.
//!
//! A channel is a queue with two kinds of ends: [`Sender`]s push messages in,
//! [`Receiver`]s take them out, oldest first. Both ends are `Send`, so they can
//! travel inside messages (and inside other channels), and both work from a
//! process (which suspends, like in `receive`) and from a plain thread (which
//! blocks). The flavours differ in how many ends of each kind there may be,
//! which the types enforce (an end that may not be shared is not `Clone`):
//!
//! | constructor | senders | receivers | queue |
//! |---|---|---|---|
//! | [`spsc::bounded`] | one | one | fixed capacity |
//! | [`mpsc::bounded`], [`mpsc::unbounded`] | many | one | fixed, or growing |
//! | [`mpmc::bounded`], [`mpmc::unbounded`] | many | many | fixed, or growing |
//! | [`oneshot::channel`] | one, used once | one | one message |
//!
//! The operations and their errors are std's and crossbeam's:
//!
//! * [`Sender::send`] waits while a bounded queue is full; [`Sender::try_send`]
//!   returns [`TrySendError::Full`] instead, [`Sender::send_timeout`] waits up to
//!   a limit. A send that cannot go through hands the message back in its error.
//! * [`Receiver::recv`] waits while the queue is empty; [`Receiver::try_recv`]
//!   and [`Receiver::recv_timeout`] as above.
//! * When the last [`Sender`] is dropped, receivers still get every message
//!   queued before, then `Disconnected`. When the last [`Receiver`] is dropped,
//!   or one calls [`Receiver::close`], sends fail with `Disconnected`
//!   (after a close, receivers still drain what is queued). Messages left in a
//!   channel whose receivers are all gone are dropped at once.
//! * [`Select`] waits on several receivers, a free-running process's mailbox
//!   and a timeout at once.
//!
//! [`broadcast`] is a publisher/subscriber ring: every subscriber gets every
//! event, read in place, in batches.
//!
//! Waiting goes through the runtime's own park and unpark ([`crate::park`]):
//! a process blocked on a channel holds an event wait on its state word like
//! any other, and a kill or exit signal ends it as it ends a `receive`.
//!
//! ```
//! use fibra_runtime::channel::mpsc;
//! use fibra_runtime::{FnContext, Runtime};
//!
//! let rt = Runtime::builder().workers(2).build().unwrap();
//! let total = rt.block_on(|cx| {
//!     let (tx, rx) = mpsc::bounded::<u64>(2);
//!     for id in 0..3 {
//!         let tx = tx.clone();
//!         // A third push waits until the receiver has taken one.
//!         cx.spawn_fn(move |_: &mut FnContext<()>| {
//!             (0..100).for_each(|n| tx.send(id * 1000 + n).unwrap())
//!         });
//!     }
//!     drop(tx);
//!     // `recv` fails once every sender is gone and the queue is empty.
//!     rx.iter().count()
//! });
//! assert_eq!(total, 300);
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::carrier::with_suspendable;
use crate::chan::{Chan, Park, RecvFailure, SendFailure, Unpark};
use crate::park::{consume_budget, current_unparker, park_for, ParkOutcome, Unparker};
use crate::state::Wait;

pub mod broadcast;
mod error;
mod select;

pub use error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
pub use select::Select;

/// What the channels share.
type Shared<T> = Arc<Chan<T, Unparker>>;

impl Unpark for Unparker {
    fn unpark(&self) {
        Unparker::unpark(self);
    }
}

/// The caller's way to wait: the current process, or the current thread.
pub(crate) struct Current {
    /// Outside any process: spin briefly before parking the thread.
    thread: bool,
    /// What a process waits for: an event (an unpark), or also a message.
    wait: Wait,
}

impl Current {
    pub(crate) fn new() -> Self {
        Current {
            thread: with_suspendable(|frame| frame.is_none()),
            wait: Wait::Event,
        }
    }

    /// A process's park that a message ends too.
    pub(crate) fn or_message() -> Self {
        Current {
            wait: Wait::Any,
            ..Current::new()
        }
    }
}

impl Park for Current {
    type Unparker = Unparker;

    fn unparker(&self) -> Unparker {
        current_unparker()
    }

    fn park(&self, deadline: Option<Instant>) -> bool {
        park_for(self.wait, deadline) == ParkOutcome::Unparked
    }

    fn spins(&self) -> bool {
        self.thread
    }
}

/// The deadline `timeout` from now; `None` (no deadline) if it overflows.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Marks an end that may be cloned: there may be many of its kind.
#[derive(Debug)]
pub enum Many {}

/// Marks an end that may not be cloned: there is one of its kind.
#[derive(Debug)]
pub enum One {}

/// Channels with one sender and one receiver.
pub mod spsc {
    use super::*;

    /// A channel with room for `capacity` messages, one sender and one receiver.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0.
    ///
    /// ```
    /// use fibra_runtime::channel::{spsc, TrySendError};
    ///
    /// let (tx, rx) = spsc::bounded(2);
    /// tx.send(1).unwrap();
    /// tx.send(2).unwrap();
    /// // The third push would wait until the consumer pops.
    /// assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
    /// assert_eq!(rx.recv(), Ok(1));
    /// tx.send(3).unwrap();
    /// ```
    pub fn bounded<T>(capacity: usize) -> (Sender<T, One>, Receiver<T, One>) {
        pair(Some(checked(capacity)))
    }
}

/// Channels with many senders and one receiver.
pub mod mpsc {
    use super::*;

    /// A channel with room for `capacity` messages, many senders, one receiver.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0.
    pub fn bounded<T>(capacity: usize) -> (Sender<T, Many>, Receiver<T, One>) {
        pair(Some(checked(capacity)))
    }

    /// A channel whose queue grows as needed (sends never wait), many senders,
    /// one receiver.
    pub fn unbounded<T>() -> (Sender<T, Many>, Receiver<T, One>) {
        pair(None)
    }
}

/// Channels with many senders and many receivers; each message goes to one
/// receiver.
pub mod mpmc {
    use super::*;

    /// A channel with room for `capacity` messages, many senders and receivers.
    ///
    /// # Panics
    ///
    /// If `capacity` is 0.
    pub fn bounded<T>(capacity: usize) -> (Sender<T, Many>, Receiver<T, Many>) {
        pair(Some(checked(capacity)))
    }

    /// A channel whose queue grows as needed, many senders and receivers.
    pub fn unbounded<T>() -> (Sender<T, Many>, Receiver<T, Many>) {
        pair(None)
    }
}

/// A channel for one message: a reply, a result handed back once.
pub mod oneshot {
    use super::*;

    /// A channel for one message.
    ///
    /// ```
    /// use fibra_runtime::channel::oneshot;
    ///
    /// let (tx, rx) = oneshot::channel();
    /// std::thread::spawn(move || tx.send("done").unwrap());
    /// assert_eq!(rx.recv(), Ok("done"));
    /// ```
    pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
        let (tx, rx) = pair(Some(1));
        (Sender(tx), Receiver(rx))
    }

    /// Sends the one message.
    pub struct Sender<T>(super::Sender<T, One>);

    impl<T> Sender<T> {
        /// Sends the message; hands it back if the receiver is gone.
        pub fn send(self, value: T) -> Result<(), SendError<T>> {
            match self.0.chan.try_send(value) {
                Ok(()) => Ok(()),
                // The only send into a queue of one never finds it full.
                Err(SendFailure::Full(value) | SendFailure::Disconnected(value)) => {
                    Err(SendError(value))
                }
            }
        }

        /// Whether the receiver is gone.
        pub fn is_closed(&self) -> bool {
            self.0.is_closed()
        }
    }

    /// Receives the one message.
    pub struct Receiver<T>(super::Receiver<T, One>);

    impl<T> Receiver<T> {
        /// Waits for the message; fails if the sender went without sending.
        pub fn recv(self) -> Result<T, RecvError> {
            self.0.recv()
        }

        /// Takes the message if it has come.
        pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
            self.0.try_recv()
        }

        /// Waits for the message up to `timeout`.
        pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
            self.0.recv_timeout(timeout)
        }
    }

    impl<T> fmt::Debug for Sender<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_tuple("oneshot::Sender")
                .field(&self.0.chan)
                .finish()
        }
    }

    impl<T> fmt::Debug for Receiver<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_tuple("oneshot::Receiver")
                .field(&self.0.chan)
                .finish()
        }
    }
}

/// A bounded channel's capacity, checked.
fn checked(capacity: usize) -> usize {
    assert!(
        capacity > 0,
        "a bounded channel needs a capacity of at least 1"
    );
    capacity
}

/// A new channel's two ends.
fn pair<T, S, R>(capacity: Option<usize>) -> (Sender<T, S>, Receiver<T, R>) {
    let chan = Arc::new(Chan::new(capacity));
    (
        Sender {
            chan: chan.clone(),
            kind: PhantomData,
        },
        Receiver {
            chan,
            kind: PhantomData,
        },
    )
}

/// The sending end of a channel. `K` is [`Many`] where it may be cloned.
pub struct Sender<T, K = Many> {
    /// The channel.
    pub(crate) chan: Shared<T>,
    /// Whether it may be cloned.
    kind: PhantomData<fn() -> K>,
}

/// The receiving end of a channel. `K` is [`Many`] where it may be cloned.
pub struct Receiver<T, K = One> {
    /// The channel.
    pub(crate) chan: Shared<T>,
    /// Whether it may be cloned.
    kind: PhantomData<fn() -> K>,
}

impl<T, K> Sender<T, K> {
    /// Sends `value`, waiting while the queue is full. Fails, handing the value
    /// back, if no receiver is left or the channel was closed (also while it
    /// waits).
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        consume_budget();
        match self.chan.try_send(value) {
            Ok(()) => Ok(()),
            Err(SendFailure::Disconnected(value)) => Err(SendError(value)),
            Err(SendFailure::Full(value)) => match self.chan.send(value, &Current::new(), None) {
                Ok(()) => Ok(()),
                // A full queue without a deadline: a process being ended by
                // the runtime's shutdown, which may not wait.
                Err(SendFailure::Disconnected(value) | SendFailure::Full(value)) => {
                    Err(SendError(value))
                }
            },
        }
    }

    /// Sends `value` if there is room now.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        consume_budget();
        self.chan.try_send(value).map_err(|failure| match failure {
            SendFailure::Full(value) => TrySendError::Full(value),
            SendFailure::Disconnected(value) => TrySendError::Disconnected(value),
        })
    }

    /// Sends `value`, waiting up to `timeout` for room.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        consume_budget();
        self.chan
            .send(value, &Current::new(), deadline_after(timeout))
            .map_err(|failure| match failure {
                SendFailure::Full(value) => SendTimeoutError::Timeout(value),
                SendFailure::Disconnected(value) => SendTimeoutError::Disconnected(value),
            })
    }

    /// Whether sends fail now: every receiver is gone, or one closed the channel.
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Messages queued right now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether the queue is empty right now.
    pub fn is_empty(&self) -> bool {
        self.chan.is_empty()
    }

    /// The bound of a bounded channel; `None` for an unbounded one.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }

    /// Whether `other` sends into the same channel.
    pub fn same_channel(&self, other: &Sender<T, K>) -> bool {
        Arc::ptr_eq(&self.chan, &other.chan)
    }
}

impl<T, K> Receiver<T, K> {
    /// Takes the oldest message, waiting while the queue is empty. Fails once
    /// the queue is empty and no message can come any more (every sender is
    /// gone, or the channel was closed), and in a process that the runtime's
    /// shutdown is ending, which may not wait.
    pub fn recv(&self) -> Result<T, RecvError> {
        consume_budget();
        match self.chan.try_recv() {
            Ok(value) => Ok(value),
            Err(RecvFailure::Disconnected) => Err(RecvError),
            Err(RecvFailure::Empty) => self.chan.recv(&Current::new(), None).map_err(|_| RecvError),
        }
    }

    /// Takes the oldest message if there is one now.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        consume_budget();
        self.chan.try_recv().map_err(|failure| match failure {
            RecvFailure::Empty => TryRecvError::Empty,
            RecvFailure::Disconnected => TryRecvError::Disconnected,
        })
    }

    /// Takes the oldest message, waiting up to `timeout` for one.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        consume_budget();
        self.chan
            .recv(&Current::new(), deadline_after(timeout))
            .map_err(|failure| match failure {
                RecvFailure::Empty => RecvTimeoutError::Timeout,
                RecvFailure::Disconnected => RecvTimeoutError::Disconnected,
            })
    }

    /// Closes the channel for sending: later sends (and senders waiting for
    /// room) fail with `Disconnected`, handing their message back, while
    /// receivers still take what is queued. A send that races with the close
    /// may still land, and is received like any other.
    pub fn close(&self) {
        self.chan.close();
    }

    /// Whether sends fail now.
    pub fn is_closed(&self) -> bool {
        self.chan.is_closed()
    }

    /// Messages queued right now.
    pub fn len(&self) -> usize {
        self.chan.len()
    }

    /// Whether the queue is empty right now.
    pub fn is_empty(&self) -> bool {
        self.chan.is_empty()
    }

    /// The bound of a bounded channel; `None` for an unbounded one.
    pub fn capacity(&self) -> Option<usize> {
        self.chan.capacity()
    }

    /// The messages as they come, until the channel disconnects.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.recv().ok())
    }

    /// The messages queued now, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(move || self.try_recv().ok())
    }
}

impl<T> Clone for Sender<T, Many> {
    fn clone(&self) -> Self {
        self.chan.add_sender();
        Sender {
            chan: self.chan.clone(),
            kind: PhantomData,
        }
    }
}

impl<T> Clone for Receiver<T, Many> {
    fn clone(&self) -> Self {
        self.chan.add_receiver();
        Receiver {
            chan: self.chan.clone(),
            kind: PhantomData,
        }
    }
}

impl<T, K> Drop for Sender<T, K> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}

impl<T, K> Drop for Receiver<T, K> {
    fn drop(&mut self) {
        self.chan.drop_receiver();
    }
}

impl<T, K> fmt::Debug for Sender<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Sender").field(&self.chan).finish()
    }
}

impl<T, K> fmt::Debug for Receiver<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Receiver").field(&self.chan).finish()
    }
}
