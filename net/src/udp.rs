//! UDP: a socket shaped like `std::net::UdpSocket`.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use mio::Interest;

use crate::poller::Direction;
use crate::socket::{each_addr, first_addr, Socket};

/// A UDP socket.
///
/// Receiving suspends the calling process until a datagram comes (outside any
/// process it blocks the thread); sending waits only while the socket's send
/// buffer is full.
///
/// ```
/// use fibra_net::UdpSocket;
///
/// let a = UdpSocket::bind("127.0.0.1:0").unwrap();
/// let b = UdpSocket::bind("127.0.0.1:0").unwrap();
/// a.send_to(b"ping", b.local_addr().unwrap()).unwrap();
/// let mut buf = [0; 16];
/// let (n, from) = b.recv_from(&mut buf).unwrap();
/// assert_eq!((&buf[..n], from), (&b"ping"[..], a.local_addr().unwrap()));
/// ```
pub struct UdpSocket {
    /// The shared socket.
    socket: Arc<Socket<mio::net::UdpSocket>>,
}

impl UdpSocket {
    /// Binds to `addr` (the first of its addresses that works).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        each_addr(addr, |addr| {
            UdpSocket::from_mio(mio::net::UdpSocket::bind(addr)?)
        })
    }

    /// Takes a socket made with `std::net`, switching it to non-blocking mode.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        UdpSocket::from_mio(mio::net::UdpSocket::from_std(socket))
    }

    fn from_mio(io: mio::net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            socket: Arc::new(Socket::new(io, Interest::READABLE | Interest::WRITABLE)?),
        })
    }

    /// Sends `buf` as one datagram to the first address `addr` resolves to.
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let addr = first_addr(addr)?;
        self.socket
            .wait(Direction::Write, |io| io.send_to(buf, addr))
    }

    /// Receives one datagram into `buf` (the excess of a longer one is lost) and
    /// returns its length and sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.wait(Direction::Read, |io| io.recv_from(buf))
    }

    /// Like [`recv_from`](UdpSocket::recv_from), leaving the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.wait(Direction::Read, |io| io.peek_from(buf))
    }

    /// Sets the default destination for [`send`](UdpSocket::send) and the only
    /// source [`recv`](UdpSocket::recv) accepts (the first of `addr`'s addresses
    /// that works).
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let io = self.socket.open()?;
        each_addr(addr, |addr| io.connect(addr))
    }

    /// Sends `buf` as one datagram to the connected address.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.socket.wait(Direction::Write, |io| io.send(buf))
    }

    /// Receives one datagram from the connected address.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.wait(Direction::Read, |io| io.recv(buf))
    }

    /// Like [`recv`](UdpSocket::recv), leaving the datagram queued.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.wait(Direction::Read, |io| io.peek(buf))
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.open()?.local_addr()
    }

    /// The connected address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.open()?.peer_addr()
    }

    /// Sets `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.socket.open()?.set_broadcast(on)
    }

    /// The `SO_BROADCAST` option.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.socket.open()?.broadcast()
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

    /// Bounds each receive (and peek) by `timeout`; `None` waits forever. A zero
    /// duration is refused, like std.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_timeout(Direction::Read, timeout)
    }

    /// Bounds each send by `timeout`; `None` waits forever. A zero duration is
    /// refused, like std.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_timeout(Direction::Write, timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.socket.timeout(Direction::Read))
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.socket.timeout(Direction::Write))
    }

    /// Another handle to the same socket, sharing its descriptor, registration and
    /// timeouts. Never fails; the `Result` is std's shape.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            socket: Arc::clone(&self.socket),
        })
    }

    /// Closes the socket for every handle: operations suspended on it in other
    /// processes, and any later call, fail with [`io::ErrorKind::NotConnected`].
    /// The port is released when the last handle is dropped. Dropping the only
    /// handle closes it too.
    pub fn close(&self) {
        self.socket.close();
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("UdpSocket");
        if let Ok(addr) = self.socket.io().local_addr() {
            out.field("addr", &addr);
        }
        out.finish()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.io().as_raw_fd()
    }
}
