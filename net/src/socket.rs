//! What every socket type shares: the mio source, its registration with the
//! poller, the read and write timeouts, and the closing rules.
//!
//! A socket lives in an `Arc`, so handles made by `try_clone` share one
//! descriptor, one registration and one pair of timeouts. `close` on any handle
//! closes the registration for all of them; the descriptor itself is closed when
//! the last handle is dropped, so no process can ever call into a descriptor
//! number that the OS has handed to someone else meanwhile.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::Interest;

use crate::poller::{closed_error, Direction, Registration};

/// "No timeout" in a timeout cell.
const NO_TIMEOUT: u64 = 0;

/// A registered mio source with its timeouts.
pub(crate) struct Socket<S: Source> {
    /// The non-blocking OS socket.
    io: S,
    /// Its registration with the poller.
    registration: Registration,
    /// The read timeout in nanoseconds, or [`NO_TIMEOUT`].
    read_timeout: AtomicU64,
    /// The write timeout in nanoseconds, or [`NO_TIMEOUT`].
    write_timeout: AtomicU64,
}

impl<S: Source> Socket<S> {
    /// Registers `io` for `interest`.
    pub(crate) fn new(mut io: S, interest: Interest) -> io::Result<Socket<S>> {
        let registration = Registration::new(&mut io, interest)?;
        Ok(Socket {
            io,
            registration,
            read_timeout: AtomicU64::new(NO_TIMEOUT),
            write_timeout: AtomicU64::new(NO_TIMEOUT),
        })
    }

    /// The mio source, for calls that never wait (addresses, options).
    pub(crate) fn io(&self) -> &S {
        &self.io
    }

    /// The source, for calls that never wait, unless the socket is closed.
    pub(crate) fn open(&self) -> io::Result<&S> {
        if self.registration.is_closed() {
            return Err(closed_error());
        }
        Ok(&self.io)
    }

    /// Runs `op` until it stops returning `WouldBlock`, waiting in `direction`,
    /// bounded by the direction's timeout.
    pub(crate) fn wait<T>(
        &self,
        direction: Direction,
        mut op: impl FnMut(&S) -> io::Result<T>,
    ) -> io::Result<T> {
        let deadline = self
            .timeout(direction)
            .and_then(|timeout| Instant::now().checked_add(timeout));
        self.wait_until(direction, deadline, || op(&self.io))
    }

    /// Like [`wait`](Self::wait), with an explicit deadline.
    pub(crate) fn wait_until<T>(
        &self,
        direction: Direction,
        deadline: Option<Instant>,
        op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        self.registration.io(direction, deadline, op)
    }

    /// Arms a callback for the next readiness to read; false if the caller
    /// should try again at once (see `Registration::arm_read`).
    pub(crate) fn arm_read(&self, unparker: fibra_runtime::park::Unparker) -> bool {
        self.registration.arm_read(unparker)
    }

    /// Closes the socket for every handle (see the module docs).
    pub(crate) fn close(&self) {
        self.registration.close();
    }

    fn cell(&self, direction: Direction) -> &AtomicU64 {
        match direction {
            Direction::Read => &self.read_timeout,
            Direction::Write => &self.write_timeout,
        }
    }

    /// Sets the timeout of one direction; like std, a zero duration is refused.
    pub(crate) fn set_timeout(
        &self,
        direction: Direction,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let nanos = match timeout {
            None => NO_TIMEOUT,
            Some(timeout) if timeout.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ))
            }
            // Saturates at about 584 years.
            Some(timeout) => u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX),
        };
        self.cell(direction).store(nanos, Ordering::Relaxed);
        Ok(())
    }

    /// The timeout of one direction.
    pub(crate) fn timeout(&self, direction: Direction) -> Option<Duration> {
        match self.cell(direction).load(Ordering::Relaxed) {
            NO_TIMEOUT => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}

impl<S: Source> Drop for Socket<S> {
    fn drop(&mut self) {
        self.registration.close();
        self.registration.deregister(&mut self.io);
        // The descriptor closes when `io` drops, right after.
    }
}

/// Calls `f` with each address `addr` resolves to until one works, like std:
/// the last error if none does. Resolving a host name blocks the calling thread.
pub(crate) fn each_addr<A: ToSocketAddrs, T>(
    addr: A,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for addr in addr.to_socket_addrs()? {
        match f(addr) {
            Ok(value) => return Ok(value),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// The first address `addr` resolves to.
pub(crate) fn first_addr<A: ToSocketAddrs>(addr: A) -> io::Result<SocketAddr> {
    each_addr(addr, Ok)
}

/// The methods and trait impls every stream type has in the same form: the
/// timeouts, another handle, `Read` and `Write` (for the stream and for a
/// shared reference to it, so one process can read while another writes), and
/// the raw descriptor. `$stream` is a struct with a field
/// `socket: Arc<Socket<..>>` whose source reads and writes.
macro_rules! stream_common {
    ($stream:ident) => {
        impl $stream {
            /// Bounds each read (and peek) by `timeout`; `None` waits forever. A
            /// zero duration is refused, like std.
            pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                self.socket.set_timeout(Direction::Read, timeout)
            }

            /// Bounds each write by `timeout`; `None` waits forever. A zero
            /// duration is refused, like std.
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

            /// Another handle to the same connection, sharing its descriptor,
            /// registration and timeouts. Never fails; the `Result` is std's
            /// shape.
            pub fn try_clone(&self) -> io::Result<$stream> {
                Ok($stream {
                    socket: Arc::clone(&self.socket),
                })
            }

            /// Closes the connection for every handle: operations suspended on
            /// it in other processes, and any later call, fail with
            /// [`io::ErrorKind::NotConnected`]. Both directions are shut down,
            /// so the peer reads end of stream; the descriptor is released when
            /// the last handle is dropped. Dropping the only handle closes it
            /// too.
            pub fn close(&self) {
                // Closed first, so a woken reader reports the close rather than
                // the end of stream the shutdown causes.
                self.socket.close();
                // Fails only if the connection is gone already, which is the aim.
                let _ = self.socket.io().shutdown(std::net::Shutdown::Both);
            }

            /// One non-blocking read into `buf` for an active socket: the bytes
            /// read (empty at the end of stream), or `None` if nothing is there
            /// now.
            pub(crate) fn read_now(&self, buf: &mut Vec<u8>) -> io::Result<Option<Vec<u8>>> {
                let mut io = self.socket.open()?;
                loop {
                    match io.read(buf) {
                        Ok(n) => {
                            buf.truncate(n);
                            return Ok(Some(std::mem::take(buf)));
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
            }

            /// Arms `callback` for the next readiness to read (an active socket).
            pub(crate) fn arm_read(&self, callback: fibra_runtime::park::Unparker) -> bool {
                self.socket.arm_read(callback)
            }
        }

        impl Read for &$stream {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.socket.wait(Direction::Read, |mut io| io.read(buf))
            }

            fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
                self.socket
                    .wait(Direction::Read, |mut io| io.read_vectored(bufs))
            }
        }

        impl Write for &$stream {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.socket.wait(Direction::Write, |mut io| io.write(buf))
            }

            fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
                self.socket
                    .wait(Direction::Write, |mut io| io.write_vectored(bufs))
            }

            /// Nothing is buffered here: a no-op, like std's.
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl Read for $stream {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                (&*self).read(buf)
            }

            fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }

        impl Write for $stream {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                (&*self).write(buf)
            }

            fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
                (&*self).write_vectored(bufs)
            }

            fn flush(&mut self) -> io::Result<()> {
                (&*self).flush()
            }
        }

        impl std::os::fd::AsRawFd for $stream {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.socket.io().as_raw_fd()
            }
        }
    };
}
pub(crate) use stream_common;
