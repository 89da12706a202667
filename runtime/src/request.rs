//! Asynchronous requests: a [`Pid::call`] split in two, so that a process can send
//! several requests, or do other work, before it takes the replies (OTP's
//! `gen_server:send_request/2`, `wait_response/2`, `check_response/2` and request
//! id collections).
//!
//! A [`Request`] is a call in progress: the same one-shot slot and exit hook as a
//! call (the protocol at the top of `call.rs`), with the waiting left for later. So
//! everything a call promises holds for it: the callee's exit fails the request
//! with its reason as soon as it ends, a reply that comes after the request was
//! given up (dropped, or waited on past its timeout) is dropped where it lands, and
//! a request costs no message in the caller's mailbox.

use std::fmt;
use std::time::Duration;

use crate::call::{send_request, Call, CallError, ReplyTo, Waiting};
use crate::carrier::with_suspendable;
use crate::process::Pid;
use crate::time::deadline_after;

/// A request sent with [`Pid::send_request`], whose reply is still to be taken.
///
/// Dropping it gives the request up: a reply that comes later is dropped.
#[must_use = "a request's reply is lost unless it is waited for"]
pub struct Request<R: 'static> {
    state: State<R>,
}

enum State<R: 'static> {
    /// Sent; the outcome may or may not be in.
    Sent(Call<R>),
    /// Settled before it was sent: the callee had ended.
    Failed(CallError),
}

impl<M: Send + 'static> Pid<M> {
    /// Sends a request as [`call`](Pid::call) does, but does not wait for the
    /// reply: [`Request::wait`] or [`Request::check`] takes it later, and
    /// [`Requests`] collects many. Never blocks. A request to a process that has
    /// ended fails, when it is waited on, with [`CallError::Exited`]`(`[`Exit::NoProc`]`)`.
    ///
    /// A process may send a request to itself, unlike a call: it can take its own
    /// request from its mailbox and answer it before it checks the reply.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// struct Squarer;
    /// impl Process for Squarer {
    ///     type Message = (u64, ReplyTo<u64>);
    ///     fn handle(&mut self, (n, reply): (u64, ReplyTo<u64>), _cx: &mut Context<Self>) {
    ///         reply.reply(n * n);
    ///     }
    /// }
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let servers: Vec<_> = (0..3).map(|_| rt.spawn(Squarer).unwrap()).collect();
    /// // Three requests out at once, then their replies.
    /// let requests: Vec<_> = servers
    ///     .iter()
    ///     .zip(1u64..)
    ///     .map(|(server, n)| server.send_request(move |reply| (n, reply)))
    ///     .collect();
    /// let t = Duration::from_secs(5);
    /// let replies: Vec<u64> = requests.into_iter().map(|r| r.wait(t).unwrap()).collect();
    /// assert_eq!(replies, [1, 4, 9]);
    /// ```
    ///
    /// [`Exit::NoProc`]: crate::Exit::NoProc
    pub fn send_request<R: Send + 'static>(
        &self,
        make_request: impl FnOnce(ReplyTo<R>) -> M,
    ) -> Request<R> {
        let state = match send_request(self, make_request) {
            Ok(call) => State::Sent(call),
            Err(e) => State::Failed(e),
        };
        Request { state }
    }
}

impl<R: Send + 'static> Request<R> {
    /// Waits, at most `timeout`, for the outcome (OTP's `wait_response`): the
    /// reply, or why there is none, as for [`Pid::call`]. A process suspends, a
    /// plain thread blocks. On [`CallError::Timeout`] the request is given up, and
    /// a reply that comes later is dropped; to wait again later, use
    /// [`check`](Self::check) or a [`Requests`] collection, which keep it.
    pub fn wait(self, timeout: Duration) -> Result<R, CallError> {
        match self.state {
            State::Sent(mut call) => call.wait(timeout),
            State::Failed(e) => Err(e),
        }
    }

    /// The outcome if it is in (OTP's `check_response`), without waiting;
    /// otherwise the request back, still pending.
    ///
    /// ```
    /// use std::time::Duration;
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// rt.block_on(|cx| {
    ///     // Answers the request it gets first once a `None` tells it to.
    ///     let server = cx.spawn_fn(|cx: &mut FnContext<Option<ReplyTo<&'static str>>>| {
    ///         let reply = cx.receive().unwrap();
    ///         assert!(cx.receive().is_none());
    ///         reply.reply("done");
    ///     });
    ///     let request = server.pid().send_request(Some);
    ///     let request = request.check().unwrap_err(); // not answered yet
    ///     server.pid().send(None).unwrap();
    ///     server.join().unwrap();
    ///     assert_eq!(request.check().ok(), Some(Ok("done")));
    /// });
    /// ```
    pub fn check(mut self) -> Result<Result<R, CallError>, Request<R>> {
        match self.take(None) {
            Some(outcome) => Ok(outcome),
            None => Err(self),
        }
    }

    /// Takes the outcome if it is in, and otherwise records `waiting` as the
    /// waiter, if given; after `Some`, the request is spent.
    fn take(&mut self, waiting: Option<&Waiting<'_>>) -> Option<Result<R, CallError>> {
        match (&mut self.state, waiting) {
            (State::Sent(call), Some(waiting)) => call.take_or_watch(waiting),
            (State::Sent(call), None) => call.try_take(),
            (State::Failed(e), _) => Some(Err(e.clone())),
        }
    }
}

impl<R: 'static> fmt::Debug for Request<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request").finish_non_exhaustive()
    }
}

/// A collection of outstanding [`Request`]s, each under a label of the caller's
/// choosing, that yields each outcome as it comes, in whatever order the replies
/// arrive (OTP's request id collections, `reqids_add/3` and
/// `wait_response/3`).
///
/// Waiting looks through the requests still out, so a collection of `n` costs
/// O(n) per outcome taken; it is meant for fan-outs of tens or hundreds. Dropping
/// it gives up every request still in it.
///
/// ```
/// use std::time::Duration;
/// use fibra_runtime::*;
///
/// let rt = Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(|cx| {
///     type Ask = Option<ReplyTo<u64>>;
///     // Answers once a `None` tells it to.
///     let late = cx.spawn_fn(|cx: &mut FnContext<Ask>| {
///         let reply = cx.receive().unwrap();
///         assert!(cx.receive().is_none());
///         reply.reply(2);
///     });
///     let early = cx.spawn_fn(|cx: &mut FnContext<Ask>| {
///         cx.receive().unwrap().reply(1);
///     });
///     let mut requests = Requests::new();
///     requests.add("late", late.pid().send_request(Some));
///     requests.add("early", early.pid().send_request(Some));
///     let t = Duration::from_secs(5);
///     assert_eq!(requests.wait_any(t), Some(("early", Ok(1))));
///     late.pid().send(None).unwrap();
///     assert_eq!(requests.wait_any(t), Some(("late", Ok(2))));
///     assert!(requests.is_empty());
///     assert_eq!(requests.wait_any(t), None);
/// });
/// ```
pub struct Requests<K, R: 'static> {
    /// The requests still out, in the order they were added.
    pending: Vec<(K, Request<R>)>,
}

impl<K, R: Send + 'static> Requests<K, R> {
    /// An empty collection.
    pub fn new() -> Requests<K, R> {
        Requests {
            pending: Vec::new(),
        }
    }

    /// Adds `request` under `label`, which comes back with its outcome.
    pub fn add(&mut self, label: K, request: Request<R>) {
        self.pending.push((label, request));
    }

    /// How many requests are still out.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no request is out.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Waits, at most `timeout`, for the next outcome of any request in the
    /// collection, and takes that request out: its label and its reply, or why
    /// there is none (a callee's exit fails its request at once). `None` if the
    /// collection is empty, or if no outcome came within `timeout`; then every
    /// request stays in, to be waited on again.
    pub fn wait_any(&mut self, timeout: Duration) -> Option<(K, Result<R, CallError>)> {
        if self.pending.is_empty() {
            return None;
        }
        let deadline = deadline_after(timeout);
        let settled = with_suspendable(|frame| {
            // During a shutdown drain nothing may wait: only what is in counts.
            if frame.is_none() && crate::shutdown::draining() {
                return self.settled(None);
            }
            crate::call::wait_event(frame, deadline, |waiting| self.settled(Some(waiting)))
        });
        let (k, outcome) = settled?;
        Some((self.pending.remove(k).0, outcome))
    }

    /// The next outcome already in, if any, without waiting; its request is
    /// taken out.
    pub fn check_any(&mut self) -> Option<(K, Result<R, CallError>)> {
        let (k, outcome) = self.settled(None)?;
        Some((self.pending.remove(k).0, outcome))
    }

    /// The first request whose outcome is in, and the outcome (the request is
    /// spent); with `waiting`, the others record it as their waiter.
    fn settled(&mut self, waiting: Option<&Waiting<'_>>) -> Option<(usize, Result<R, CallError>)> {
        self.pending
            .iter_mut()
            .enumerate()
            .find_map(|(k, (_, request))| request.take(waiting).map(|outcome| (k, outcome)))
    }
}

impl<K, R: Send + 'static> Default for Requests<K, R> {
    fn default() -> Requests<K, R> {
        Requests::new()
    }
}

impl<K: fmt::Debug, R: 'static> fmt::Debug for Requests<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requests")
            .field(
                "labels",
                &self.pending.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}
