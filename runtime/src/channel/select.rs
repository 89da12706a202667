//! [`Select`]: one wait on several receivers and a timeout.

use std::cell::Cell;
use std::time::{Duration, Instant};

use super::{deadline_after, Current, Receiver, RecvError};
use crate::chan::{wait_with, RecvFailure, Registration, Unpark};
use crate::free::FnContext;
use crate::park::{consume_budget, Unparker};

/// Waits on several receivers, and optionally a timeout, at once; the first
/// receiver with a message (or disconnected) fires its branch, which maps what
/// it got to the select's result.
///
/// When several are ready, the one looked at first wins, and the first look
/// moves round from one select to the next on a thread, so that a busy channel
/// cannot starve the others.
///
/// ```
/// use std::time::Duration;
/// use fibra_runtime::channel::{mpsc, Select};
///
/// enum Event { Number(u64), Word(&'static str), Closed }
///
/// let (numbers_tx, numbers) = mpsc::unbounded();
/// let (words_tx, words) = mpsc::unbounded::<&'static str>();
/// numbers_tx.send(7).unwrap();
/// drop(words_tx);
///
/// let mut seen = Vec::new();
/// for _ in 0..2 {
///     let event = Select::new()
///         .recv(&numbers, |r| r.map_or(Event::Closed, Event::Number))
///         .recv(&words, |r| r.map_or(Event::Closed, Event::Word))
///         .wait_timeout(Duration::from_secs(1));
///     match event {
///         Some(Event::Number(n)) => seen.push(n.to_string()),
///         Some(Event::Word(w)) => seen.push(w.to_string()),
///         Some(Event::Closed) => seen.push("closed".into()),
///         None => seen.push("timeout".into()),
///     }
/// }
/// seen.sort();
/// assert_eq!(seen, ["7", "closed"]);
/// ```
pub struct Select<'a, R> {
    /// The branches, in the order they were added.
    branches: Vec<Box<dyn Branch<'a, R> + 'a>>,
    /// Whether one of them is the calling process's mailbox: then its park
    /// ends on a message too.
    mailbox: bool,
}

/// One receiver of a [`Select`] and what it maps its outcome with.
trait Branch<'a, R> {
    /// Takes a message (or the disconnection) if there is one now.
    fn try_fire(&mut self) -> Option<R>;
    /// Fires with a failure: the caller may not wait (see [`Select::wait`]).
    fn fail(&mut self) -> R;
    /// Puts the waiter on the channel's wait list until the guard drops.
    fn register(&self, unparker: Unparker) -> Box<dyn Registered + 'a>;
}

/// A registration kept alive for its `Drop`.
trait Registered {}

impl<U: Unpark, F: Fn() -> bool> Registered for Registration<'_, U, F> {}

/// A receiver and its mapping.
struct RecvBranch<'a, T, K, F> {
    /// The receiver.
    receiver: &'a Receiver<T, K>,
    /// Maps what it got.
    map: F,
}

impl<'a, R, T, K, F: FnMut(Result<T, RecvError>) -> R> Branch<'a, R> for RecvBranch<'a, T, K, F> {
    fn try_fire(&mut self) -> Option<R> {
        match self.receiver.chan.try_recv() {
            Ok(value) => Some((self.map)(Ok(value))),
            Err(RecvFailure::Disconnected) => Some((self.map)(Err(RecvError))),
            Err(RecvFailure::Empty) => None,
        }
    }

    fn fail(&mut self) -> R {
        (self.map)(Err(RecvError))
    }

    fn register(&self, unparker: Unparker) -> Box<dyn Registered + 'a> {
        let receiver: &'a Receiver<T, K> = self.receiver;
        Box::new(receiver.chan.register_receiver(unparker))
    }
}

/// The calling process's mailbox and its mapping.
struct MailboxBranch<'a, 'c, M, F> {
    /// The process's context.
    cx: &'a mut FnContext<'c, M>,
    /// Maps the message.
    map: F,
}

/// A branch that needs no wait-list entry: the process's state word wakes it.
struct Unlisted;

impl Registered for Unlisted {}

impl<'a, R, M: Send + 'static, F: FnMut(M) -> R> Branch<'a, R> for MailboxBranch<'a, '_, M, F> {
    fn try_fire(&mut self) -> Option<R> {
        self.cx.try_receive().map(&mut self.map)
    }

    fn fail(&mut self) -> R {
        // `wait` fails the first branch only when it may not wait; a mailbox
        // branch has nothing to fail with, so it waits for a message as
        // `receive` does (which, in a shutdown drain, ends the process).
        let msg = self.cx.receive();
        (self.map)(msg)
    }

    fn register(&self, _unparker: Unparker) -> Box<dyn Registered + 'a> {
        Box::new(Unlisted)
    }
}

thread_local! {
    /// Where the next select on this thread looks first.
    static SELECT_START: Cell<usize> = const { Cell::new(0) };
}

impl<R> Default for Select<'_, R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, R> Select<'a, R> {
    /// A select with no branches yet.
    pub fn new() -> Self {
        Select {
            branches: Vec::new(),
            mailbox: false,
        }
    }

    /// Adds a receiver: when it has a message, or is disconnected, `map` turns
    /// that into the select's result. A disconnected receiver fires every
    /// time; leave it out of later selects.
    pub fn recv<T, K>(
        mut self,
        receiver: &'a Receiver<T, K>,
        map: impl FnMut(Result<T, RecvError>) -> R + 'a,
    ) -> Self {
        self.branches.push(Box::new(RecvBranch { receiver, map }));
        self
    }

    /// Adds the calling free-running process's mailbox: when a message is
    /// there, the select takes it (the oldest, as [`FnContext::receive`] does)
    /// and `map` turns it into the result. A process waits on its mailbox and
    /// its channels at once this way, and with
    /// [`wait_timeout`](Self::wait_timeout) on a timeout too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::channel::{mpsc, Select};
    /// use fibra_runtime::{FnContext, Runtime};
    ///
    /// enum Event { Message(String), Number(u64), Quiet }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let (tx, numbers) = mpsc::unbounded::<u64>();
    /// let worker = rt.spawn_fn(move |cx: &mut FnContext<String>| {
    ///     let mut seen = Vec::new();
    ///     loop {
    ///         let event = Select::new()
    ///             .receive(cx, Event::Message)
    ///             .recv(&numbers, |n| n.map_or(Event::Quiet, Event::Number))
    ///             .wait_timeout(Duration::from_millis(50))
    ///             .unwrap_or(Event::Quiet);
    ///         match event {
    ///             Event::Message(m) => seen.push(m),
    ///             Event::Number(n) => seen.push(n.to_string()),
    ///             Event::Quiet => return seen,
    ///         }
    ///     }
    /// }).unwrap();
    /// worker.pid().send("hello".to_string()).unwrap();
    /// tx.send(7).unwrap();
    /// let mut seen = worker.join().unwrap();
    /// seen.sort();
    /// assert_eq!(seen, ["7", "hello"]);
    /// ```
    pub fn receive<M: Send + 'static>(
        mut self,
        cx: &'a mut FnContext<'_, M>,
        map: impl FnMut(M) -> R + 'a,
    ) -> Self {
        self.mailbox = true;
        self.branches.push(Box::new(MailboxBranch { cx, map }));
        self
    }

    /// Fires a branch that is ready now, if any.
    pub fn try_select(mut self) -> Option<R> {
        consume_budget();
        self.try_fire()
    }

    /// Waits until a branch fires. In a process that the runtime's shutdown is
    /// ending, which may not wait, the first branch fires with
    /// `Err(RecvError)`, as [`Receiver::recv`] fails there.
    ///
    /// # Panics
    ///
    /// With no branches: it would wait for ever.
    pub fn wait(mut self) -> R {
        assert!(
            !self.branches.is_empty(),
            "Select::wait with no branch would wait for ever"
        );
        match self.wait_until(None) {
            Some(fired) => fired,
            None => self.branches[0].fail(),
        }
    }

    /// Waits until a branch fires or `timeout` passes (`None`).
    pub fn wait_timeout(mut self, timeout: Duration) -> Option<R> {
        self.wait_until(deadline_after(timeout))
    }

    /// Tries each branch once, starting where this thread's last select did not.
    fn try_fire(&mut self) -> Option<R> {
        let n = self.branches.len();
        if n == 0 {
            return None;
        }
        let start = SELECT_START.with(|s| {
            let start = s.get();
            s.set(start.wrapping_add(1));
            start
        });
        (0..n).find_map(|i| self.branches[(start + i) % n].try_fire())
    }

    /// The waiting loop of `chan.rs`, over every branch at once: register on
    /// every channel, look again, park; the registrations drop (and pass on a
    /// wake-up they did not use) before the next look.
    fn wait_until(&mut self, deadline: Option<Instant>) -> Option<R> {
        consume_budget();
        let park = match self.mailbox {
            true => Current::or_message(),
            false => Current::new(),
        };
        wait_with(
            self,
            &park,
            deadline,
            |select| select.try_fire(),
            |select, unparker: Unparker| {
                select
                    .branches
                    .iter()
                    .map(|branch| branch.register(unparker.clone()))
                    .collect::<Vec<_>>()
            },
        )
    }
}
