//! TCP: a listener and a stream, shaped like `std::net`'s.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Interest;

use crate::poller::Direction;
use crate::socket::{each_addr, stream_common, Socket};

/// A TCP socket listening for connections.
///
/// [`accept`](TcpListener::accept) suspends the calling process until a
/// connection comes (outside any process it blocks the thread). Several processes
/// may wait in `accept` on one listener at once, through handles from
/// [`try_clone`](TcpListener::try_clone); each connection goes to exactly one of
/// them.
///
/// ```
/// use fibra_net::TcpListener;
///
/// let listener = TcpListener::bind("127.0.0.1:0").unwrap();
/// assert!(listener.local_addr().unwrap().ip().is_loopback());
/// ```
pub struct TcpListener {
    /// The shared socket.
    socket: Arc<Socket<mio::net::TcpListener>>,
}

impl TcpListener {
    /// Binds to `addr` and listens (the first of its addresses that works). The
    /// socket is made with `SO_REUSEADDR`, as mio does.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        each_addr(addr, |addr| {
            let io = mio::net::TcpListener::bind(addr)?;
            Ok(TcpListener {
                socket: Arc::new(Socket::new(io, Interest::READABLE)?),
            })
        })
    }

    /// Takes a listener made with `std::net`, switching it to non-blocking mode.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        let io = mio::net::TcpListener::from_std(listener);
        Ok(TcpListener {
            socket: Arc::new(Socket::new(io, Interest::READABLE)?),
        })
    }

    /// Waits for a connection and returns it with the peer's address.
    ///
    /// Errors of the `accept` call are returned as they are, and the listener
    /// stays usable: when the process runs out of descriptors (`EMFILE`, `ENFILE`)
    /// the connection stays queued in the kernel, and a later `accept` takes it
    /// once descriptors are free.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (io, addr) = self.socket.wait(Direction::Read, |io| io.accept())?;
        Ok((TcpStream::from_mio(io)?, addr))
    }

    /// An endless iterator over accepted connections, like std's.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.open()?.local_addr()
    }

    /// Another handle to the same listener (the same descriptor and registration).
    /// Never fails; the `Result` is std's shape.
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            socket: Arc::clone(&self.socket),
        })
    }

    /// Closes the listener for every handle: it stops listening at once (new
    /// connections are refused, and those queued in the kernel and not yet
    /// accepted are reset), and processes waiting in `accept` on it and any later
    /// call fail with [`io::ErrorKind::NotConnected`]. The port is released when
    /// the last handle is dropped. Dropping the only handle closes it too.
    pub fn close(&self) {
        self.socket.close();
        // Shutting a listening socket down for reading takes it out of the
        // listening state; without it the kernel would go on completing
        // handshakes into the queue until the last handle is dropped.
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.socket.io());
        // Safety: `fd` is the listener's own descriptor, open for as long as
        // `self` (which holds the socket) lives; shutdown does not close it.
        let _ = unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }

    /// Sets the `IP_TTL` option.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.socket.open()?.set_ttl(ttl)
    }

    /// The `IP_TTL` option.
    pub fn ttl(&self) -> io::Result<u32> {
        self.socket.open()?.ttl()
    }

    /// Takes the pending `SO_ERROR`, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.socket.open()?.take_error()
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("TcpListener");
        if let Ok(addr) = self.socket.io().local_addr() {
            out.field("addr", &addr);
        }
        out.finish()
    }
}

/// The iterator of [`TcpListener::incoming`]: each item is one `accept`.
#[derive(Debug)]
pub struct Incoming<'a> {
    /// The listener.
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;

    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(stream, _)| stream))
    }
}

/// A TCP connection.
///
/// Reads and writes suspend only the calling process while the socket is not
/// ready. `Read` and `Write` are implemented for `&TcpStream` too, so one process
/// can read while another writes (through an `Arc<TcpStream>` or a handle from
/// [`try_clone`](TcpStream::try_clone)).
///
/// A timeout set with [`set_read_timeout`](TcpStream::set_read_timeout) or
/// [`set_write_timeout`](TcpStream::set_write_timeout) bounds each call, which
/// then fails with [`io::ErrorKind::TimedOut`].
pub struct TcpStream {
    /// The shared socket.
    socket: Arc<Socket<mio::net::TcpStream>>,
}

impl TcpStream {
    /// Connects to `addr` (the first of its addresses that accepts), suspending
    /// the calling process until the connection is made or refused. The write
    /// timeout, once set on the stream, does not apply here; see
    /// [`connect_timeout`](TcpStream::connect_timeout).
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(addr, |addr| TcpStream::connect_until(addr, None))
    }

    /// Connects to `addr`, failing with [`io::ErrorKind::TimedOut`] after
    /// `timeout`. Like std, a zero timeout is refused.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_until(*addr, Instant::now().checked_add(timeout))
    }

    fn connect_until(addr: SocketAddr, deadline: Option<Instant>) -> io::Result<TcpStream> {
        let stream = TcpStream::from_mio(mio::net::TcpStream::connect(addr)?)?;
        let socket = &stream.socket;
        // The connect finishes in the background; writable (or an error) says it
        // is over, and then SO_ERROR and the peer address tell how.
        socket.wait_until(Direction::Write, deadline, || {
            let io = socket.io();
            if let Some(err) = io.take_error()? {
                return Err(err);
            }
            match io.peer_addr() {
                Ok(_) => Ok(()),
                Err(err) if err.kind() == io::ErrorKind::NotConnected => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Err(err) => Err(err),
            }
        })?;
        Ok(stream)
    }

    /// Takes a connected stream made with `std::net`, switching it to
    /// non-blocking mode.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        TcpStream::from_mio(mio::net::TcpStream::from_std(stream))
    }

    /// Registers a non-blocking mio stream.
    pub(crate) fn from_mio(io: mio::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream {
            socket: Arc::new(Socket::new(io, Interest::READABLE | Interest::WRITABLE)?),
        })
    }

    /// Reads without taking the data out of the socket's queue.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.wait(Direction::Read, |io| io.peek(buf))
    }

    /// Shuts down the reading half, the writing half, or both. A process waiting
    /// to read on this stream then reads end of stream.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.socket.open()?.shutdown(how)
    }

    /// The address of the remote end.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.open()?.peer_addr()
    }

    /// The address of the local end.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.open()?.local_addr()
    }

    /// Sets `TCP_NODELAY` (true: send small writes at once, without Nagle's delay).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.socket.open()?.set_nodelay(nodelay)
    }

    /// The `TCP_NODELAY` option.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.socket.open()?.nodelay()
    }

    /// Sets the `IP_TTL` option.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.socket.open()?.set_ttl(ttl)
    }

    /// The `IP_TTL` option.
    pub fn ttl(&self) -> io::Result<u32> {
        self.socket.open()?.ttl()
    }

    /// Takes the pending `SO_ERROR`, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.socket.open()?.take_error()
    }
}

stream_common!(TcpStream);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("TcpStream");
        if let Ok(addr) = self.socket.io().local_addr() {
            out.field("addr", &addr);
        }
        if let Ok(peer) = self.socket.io().peer_addr() {
            out.field("peer", &peer);
        }
        out.finish()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.io().as_raw_fd()
    }
}
