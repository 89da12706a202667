//! Active sockets: a TCP connection whose incoming data, end and errors arrive
//! as messages in a process's mailbox, as with Erlang's `{active, ..}` sockets.
//!
//! A handler process that owns an [`ActiveStream`] holds no stack while it
//! waits: nothing waits. When the socket becomes readable, the network poller
//! reads what is there (non-blocking) and sends it to the owner as
//! [`SocketEvent::Data`], then the end as [`SocketEvent::Closed`] or a failure
//! as [`SocketEvent::Error`]. An idle connection therefore costs its socket and
//! a few hundred bytes, against a stack for a process blocked in `read`.
//!
//! Flow control is Erlang's: [`Active::Once`] delivers one message and stops
//! reading until [`ActiveStream::set_active`] asks for more, [`Active::Many`]
//! delivers that many, and [`Active::Always`] reads whenever data comes (a fast
//! peer can then fill the mailbox; a bounded one refuses the data, which the
//! socket keeps, reading no more until the owner asks again with `set_active`).
//! Writes stay plain calls ([`ActiveStream::stream`]): they suspend the writing
//! process while the socket's buffer is full. A socket closed on this side
//! ([`ActiveStream::close`], or `close` on any handle of the stream) tells its
//! owner with [`SocketEvent::Error`] (`NotConnected`) the next time it reads.
//!
//! ```
//! use std::io::{Read, Write};
//! use fibra_net::{Active, ActiveStream, SocketEvent, TcpListener};
//! use fibra_runtime::*;
//!
//! /// Echoes what its active socket sends it, one chunk at a time.
//! struct Echo { socket: Option<ActiveStream> }
//! enum Msg { Socket(ActiveStream), Net(SocketEvent) }
//! impl From<SocketEvent> for Msg {
//!     fn from(event: SocketEvent) -> Msg { Msg::Net(event) }
//! }
//! impl Process for Echo {
//!     type Message = Msg;
//!     fn handle(&mut self, msg: Msg, _cx: &mut Context<Self>) {
//!         match msg {
//!             Msg::Socket(socket) => self.socket = Some(socket),
//!             Msg::Net(SocketEvent::Data(bytes)) => {
//!                 let socket = self.socket.as_ref().expect("the socket came first");
//!                 socket.stream().write_all(&bytes).unwrap();
//!                 socket.set_active(Active::Once);
//!             }
//!             // The end, or an error: dropping the handle closes the socket.
//!             Msg::Net(_) => self.socket = None,
//!         }
//!     }
//! }
//!
//! let rt = Runtime::builder().workers(2).build().unwrap();
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
//! let (stream, _) = listener.accept().unwrap();
//! let echo = rt.spawn(Echo { socket: None }).unwrap();
//! // The handle goes first, then the socket starts delivering (in order: both
//! // are sends to the one mailbox, the first from this thread).
//! let socket = stream.into_active(echo.clone(), Active::Off).unwrap();
//! echo.send(Msg::Socket(socket.clone())).unwrap();
//! socket.set_active(Active::Once);
//! client.write_all(b"ping").unwrap();
//! let mut back = [0; 4];
//! client.read_exact(&mut back).unwrap();
//! assert_eq!(&back, b"ping");
//! //! ```

use std::fmt;
use std::io;
use std::sync::{Arc, Weak};

use fibra_runtime::park::Unparker;
use fibra_runtime::{Pid, SendError};
use parking_lot::Mutex;

use crate::tcp::TcpStream;

/// What an active socket sends its owner.
#[derive(Debug)]
#[non_exhaustive]
pub enum SocketEvent {
    /// Bytes the peer sent, as one read returned them.
    Data(Vec<u8>),
    /// The peer closed its end: no more data comes.
    Closed,
    /// Reading failed; no more data comes.
    Error(io::Error),
}

/// How much an active socket delivers before it waits to be asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// One message, then nothing until [`ActiveStream::set_active`].
    Once,
    /// This many messages.
    Many(u32),
    /// Every read, with no limit.
    Always,
    /// None: the socket does not read.
    Off,
}

/// The largest read an active socket makes at once.
const READ_CHUNK: usize = 64 * 1024;

/// A TCP connection in active mode (see the module docs). Cloning gives
/// another handle; the connection closes when the last handle is dropped or
/// on [`close`](ActiveStream::close).
pub struct ActiveStream<S: Source = TcpStream> {
    /// What the handles and the poller's callback share.
    inner: Arc<Inner<S>>,
}

impl<S: Source> Clone for ActiveStream<S> {
    fn clone(&self) -> Self {
        ActiveStream {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// A stream that can be active: [`TcpStream`] and
/// [`UnixStream`](crate::UnixStream). Sealed: its methods are the crate's own.
pub trait Source: Send + Sync + 'static + private::Sealed {}

mod private {
    /// Keeps [`Source`](super::Source) to this crate's streams.
    pub trait Sealed {
        /// One non-blocking read: the bytes (empty at the end), or `None`.
        fn read_now(&self, buf: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>>;
        /// Arms `callback` for the next readiness to read; false: retry now.
        fn arm_read(&self, callback: fibra_runtime::park::Unparker) -> bool;
        /// Closes the stream for every handle.
        fn close_stream(&self);
    }
}

impl Source for TcpStream {}

impl private::Sealed for TcpStream {
    fn read_now(&self, buf: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        TcpStream::read_now(self, buf)
    }
    fn arm_read(&self, callback: Unparker) -> bool {
        TcpStream::arm_read(self, callback)
    }
    fn close_stream(&self) {
        self.close();
    }
}

#[cfg(unix)]
impl Source for crate::UnixStream {}

#[cfg(unix)]
impl private::Sealed for crate::UnixStream {
    fn read_now(&self, buf: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
        crate::UnixStream::read_now(self, buf)
    }
    fn arm_read(&self, callback: Unparker) -> bool {
        crate::UnixStream::arm_read(self, callback)
    }
    fn close_stream(&self) {
        self.close();
    }
}

/// An active socket's state.
struct Inner<S> {
    /// The connection.
    stream: S,
    /// Sends an event (or, given none, a message held back earlier) to the
    /// owner.
    deliver: Box<dyn Fn(Option<SocketEvent>) -> Delivery + Send + Sync>,
    /// The reader's state.
    reading: Mutex<Reading>,
}

/// What became of an event handed to the owner.
enum Delivery {
    /// It is in the owner's mailbox (or, given none, nothing was held back).
    Sent,
    /// The owner's bounded mailbox is full: the message is held back, to be
    /// sent first when the owner asks again.
    Held,
    /// The owner has ended.
    Gone,
}

/// The reader's state: one reader at a time (the poller's callback, or a
/// `set_active`), so events go out in the order the data came.
struct Reading {
    /// Messages it may still deliver; `None`: no limit.
    quota: Option<u32>,
    /// A message is held back (the owner's mailbox was full).
    held: bool,
    /// No more reads: the end, an error, or the owner went.
    done: bool,
}

impl TcpStream {
    /// Puts the connection in active mode: see [`ActiveStream`] and the module
    /// docs.
    pub fn into_active<M>(self, owner: Pid<M>, active: Active) -> io::Result<ActiveStream>
    where
        M: From<SocketEvent> + Send + 'static,
    {
        activate(self, owner, active)
    }
}

#[cfg(unix)]
impl crate::UnixStream {
    /// Puts the connection in active mode, as [`TcpStream::into_active`].
    pub fn into_active<M>(
        self,
        owner: Pid<M>,
        active: Active,
    ) -> io::Result<ActiveStream<crate::UnixStream>>
    where
        M: From<SocketEvent> + Send + 'static,
    {
        activate(self, owner, active)
    }
}

/// The two streams' `into_active`.
fn activate<S: Source, M>(stream: S, owner: Pid<M>, active: Active) -> io::Result<ActiveStream<S>>
where
    M: From<SocketEvent> + Send + 'static,
{
    let held: Mutex<Option<M>> = Mutex::new(None);
    let deliver = move |event: Option<SocketEvent>| {
        let mut held = held.lock();
        if let Some(msg) = held.take() {
            match owner.send(msg) {
                Ok(()) => {}
                Err(SendError::Full(msg)) => {
                    *held = Some(msg);
                    return Delivery::Held;
                }
                Err(_) => return Delivery::Gone,
            }
        }
        let Some(event) = event else {
            return Delivery::Sent;
        };
        match owner.send(M::from(event)) {
            Ok(()) => Delivery::Sent,
            Err(SendError::Full(msg)) => {
                *held = Some(msg);
                Delivery::Held
            }
            Err(_) => Delivery::Gone,
        }
    };
    let stream = ActiveStream {
        inner: Arc::new(Inner {
            stream,
            deliver: Box::new(deliver),
            reading: Mutex::new(Reading {
                quota: Some(0),
                held: false,
                done: false,
            }),
        }),
    };
    stream.set_active(active);
    Ok(stream)
}

impl<S: Source> ActiveStream<S> {
    /// Asks for more: sets how much the socket may deliver from now on and
    /// reads what is already there.
    pub fn set_active(&self, active: Active) {
        {
            let mut reading = self.inner.reading.lock();
            reading.quota = match active {
                Active::Once => Some(1),
                Active::Many(n) => Some(n),
                Active::Always => None,
                Active::Off => Some(0),
            };
        }
        fire(&self.inner);
    }

    /// The connection, for writing (and its options); reading it directly
    /// races with the active reader.
    pub fn stream(&self) -> &S {
        &self.inner.stream
    }

    /// Closes the connection (see [`TcpStream::close`]).
    pub fn close(&self) {
        self.inner.stream.close_stream();
    }
}

/// Reads and delivers while the quota allows, then arms the poller to call
/// again at the next readiness. One reader at a time (the lock).
fn fire<S: Source>(inner: &Arc<Inner<S>>) {
    let mut reading = inner.reading.lock();
    if reading.held {
        match (inner.deliver)(None) {
            Delivery::Sent => reading.held = false,
            Delivery::Held => return,
            Delivery::Gone => return finish(inner, reading),
        }
    }
    loop {
        if reading.done || reading.quota == Some(0) {
            return;
        }
        let event = match inner.stream.read_now(&mut vec![0; READ_CHUNK]) {
            Ok(Some(bytes)) if bytes.is_empty() => SocketEvent::Closed,
            Ok(Some(bytes)) => SocketEvent::Data(bytes),
            Ok(None) => {
                // Nothing there: the poller calls again at the next readiness,
                // unless readiness came meanwhile (then read again now).
                let weak: Weak<Inner<S>> = Arc::downgrade(inner);
                let callback = Unparker::from_fn(move || {
                    if let Some(inner) = weak.upgrade() {
                        fire(&inner);
                    }
                });
                if inner.stream.arm_read(callback) {
                    return;
                }
                continue;
            }
            // Closed on this side (by any handle, a writer that gave up say):
            // the owner hears of it as an error, `NotConnected`.
            Err(e) => SocketEvent::Error(e),
        };
        let last = !matches!(event, SocketEvent::Data(_));
        match (inner.deliver)(Some(event)) {
            Delivery::Sent => {}
            Delivery::Held => reading.held = true,
            Delivery::Gone => return finish(inner, reading),
        }
        if let Some(quota) = reading.quota.as_mut() {
            *quota -= 1;
        }
        reading.done = last;
        if reading.held {
            // Read no more until the owner asks again and the held message
            // goes out.
            return;
        }
    }
}

/// The owner has ended: the socket closes, after the reader's lock is
/// released (closing runs the reader's armed callback, if any, which takes it).
fn finish<S: Source>(inner: &Inner<S>, mut reading: parking_lot::MutexGuard<'_, Reading>) {
    reading.done = true;
    drop(reading);
    inner.stream.close_stream();
}

impl<S: Source + fmt::Debug> fmt::Debug for ActiveStream<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ActiveStream")
            .field(&self.inner.stream)
            .finish()
    }
}
