//! Unix-domain stream sockets: a listener and a stream, shaped like
//! `std::os::unix::net`'s and like this crate's TCP types.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mio::Interest;

use crate::poller::Direction;
use crate::socket::{stream_common, Socket};

/// A Unix-domain socket listening for connections at a path.
///
/// [`accept`](UnixListener::accept) suspends the calling process until a
/// connection comes (outside any process it blocks the thread); several
/// processes may wait on one listener through handles from
/// [`try_clone`](UnixListener::try_clone). Binding fails if the path exists:
/// remove a stale socket file first, as with std.
///
/// ```
/// use fibra_net::{UnixListener, UnixStream};
/// use std::io::{Read, Write};
///
/// let path = std::env::temp_dir().join(format!("fibra-doc-{}.sock", std::process::id()));
/// let _ = std::fs::remove_file(&path);
/// let listener = UnixListener::bind(&path).unwrap();
/// let mut client = UnixStream::connect(&path).unwrap();
/// let (mut server, _) = listener.accept().unwrap();
/// client.write_all(b"ping").unwrap();
/// let mut got = [0; 4];
/// server.read_exact(&mut got).unwrap();
/// assert_eq!(&got, b"ping");
/// std::fs::remove_file(&path).unwrap();
/// ```
pub struct UnixListener {
    /// The shared socket.
    socket: Arc<Socket<mio::net::UnixListener>>,
}

impl UnixListener {
    /// Binds to `path` and listens.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let io = mio::net::UnixListener::bind(path)?;
        Ok(UnixListener {
            socket: Arc::new(Socket::new(io, Interest::READABLE)?),
        })
    }

    /// Takes a listener made with std, switching it to non-blocking mode.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        listener.set_nonblocking(true)?;
        let io = mio::net::UnixListener::from_std(listener);
        Ok(UnixListener {
            socket: Arc::new(Socket::new(io, Interest::READABLE)?),
        })
    }

    /// Waits for a connection and returns it with the peer's address (usually
    /// unnamed).
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (io, addr) = self.socket.wait(Direction::Read, |io| io.accept())?;
        Ok((UnixStream::from_mio(io)?, addr))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.open()?.local_addr()
    }

    /// Another handle to the same listener. Never fails; the `Result` is std's
    /// shape.
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener {
            socket: Arc::clone(&self.socket),
        })
    }

    /// Closes the listener for every handle: it stops listening at once (new
    /// connections are refused), and processes waiting in `accept` on it and
    /// any later call fail with [`io::ErrorKind::NotConnected`]. The socket
    /// file stays until removed.
    pub fn close(&self) {
        self.socket.close();
        let fd = std::os::fd::AsRawFd::as_raw_fd(self.socket.io());
        // Safety: `fd` is the listener's own descriptor, open for as long as
        // `self` (which holds the socket) lives; shutdown does not close it.
        let _ = unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }

    /// Takes the pending `SO_ERROR`, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.socket.open()?.take_error()
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("UnixListener");
        if let Ok(addr) = self.socket.io().local_addr() {
            out.field("addr", &addr);
        }
        out.finish()
    }
}

/// A Unix-domain stream connection; reads and writes suspend only the calling
/// process, as a [`TcpStream`](crate::TcpStream)'s do, with the same timeouts,
/// shared handles and closing rules.
pub struct UnixStream {
    /// The shared socket.
    socket: Arc<Socket<mio::net::UnixStream>>,
}

impl UnixStream {
    /// Connects to the listener at `path`. A Unix-domain connect completes at
    /// once, unless the listener's queue of pending connections is full: then
    /// the kernel can only make it wait inside the call, so that connect runs
    /// on the blocking pool ([`fibra_runtime::blocking`]) and only the calling
    /// process waits.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        match mio::net::UnixStream::connect(path.as_ref()) {
            Ok(io) => UnixStream::from_mio(io),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let path = path.as_ref().to_path_buf();
                let stream =
                    fibra_runtime::blocking(move || std::os::unix::net::UnixStream::connect(path))?;
                UnixStream::from_std(stream)
            }
            Err(e) => Err(e),
        }
    }

    /// A connected pair of streams, like std's `UnixStream::pair`.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((UnixStream::from_mio(a)?, UnixStream::from_mio(b)?))
    }

    /// Takes a connected stream made with std, switching it to non-blocking
    /// mode.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        stream.set_nonblocking(true)?;
        UnixStream::from_mio(mio::net::UnixStream::from_std(stream))
    }

    /// Registers a non-blocking mio stream.
    fn from_mio(io: mio::net::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream {
            socket: Arc::new(Socket::new(io, Interest::READABLE | Interest::WRITABLE)?),
        })
    }

    /// Shuts down the reading half, the writing half, or both.
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

    /// Takes the pending `SO_ERROR`, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.socket.open()?.take_error()
    }
}

stream_common!(UnixStream);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("UnixStream");
        if let Ok(addr) = self.socket.io().local_addr() {
            out.field("addr", &addr);
        }
        if let Ok(peer) = self.socket.io().peer_addr() {
            out.field("peer", &peer);
        }
        out.finish()
    }
}

impl std::os::fd::AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.io().as_raw_fd()
    }
}
