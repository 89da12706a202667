//! fibra's networking: TCP, UDP and Unix-domain stream sockets for code that runs in
//! fibra processes, and active TCP sockets that deliver what they receive as
//! messages ([`ActiveStream`]).
//!
//! A fibra process has a stack of its own, so it can call functions that look
//! blocking. The sockets here have the shape of `std::net`'s — `accept`, `read`,
//! `write_all`, `recv_from` — and when a call would block, only the calling
//! process waits: its worker thread goes on running other processes meanwhile.
//!
//! How it works, in plain words:
//!
//! * Every socket is non-blocking underneath and registered with one poller
//!   thread, `fibra-net-poller`, started with the first socket. It runs mio,
//!   which asks the OS which sockets became ready.
//! * A call first simply tries. If the OS says "would block", the process notes
//!   on the socket that it waits (to read or to write) and suspends.
//! * When the OS reports the socket ready, the poller wakes the processes that
//!   wait on it, and each tries again. A wake-up that finds nothing to do only
//!   costs a retry, so duplicate reports are harmless.
//! * Read and write timeouts ([`TcpStream::set_read_timeout`] and friends) bound
//!   each wait; a call that runs out of time fails with
//!   [`std::io::ErrorKind::TimedOut`].
//! * Outside any process (on a plain thread) the very same calls block the thread
//!   instead, so a test or a `main` can talk to processes over sockets directly.
//! * Handles made with `try_clone` share one socket, so one process can read
//!   while another writes. `close` on any handle ends the socket for all: whoever
//!   waits on it gets [`std::io::ErrorKind::NotConnected`] at once instead of
//!   hanging. Dropping the last handle closes and deregisters it.
//!
//! Errors are std's: a refused connection is `ConnectionRefused`, a reset is
//! `ConnectionReset`, and a peer that closed its end reads as `Ok(0)`.
//!
//! # Example: an echo server in a process
//!
//! ```
//! use std::io::{Read, Write};
//!
//! use fibra_net::{TcpListener, TcpStream};
//! use fibra_runtime::{FnContext, Runtime};
//!
//! let rt = Runtime::builder().workers(2).build().unwrap();
//! let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//! let addr = listener.local_addr().unwrap();
//!
//! // The server: a process that echoes one connection until the client closes it.
//! let server = rt
//!     .spawn_fn(move |_cx: &mut FnContext<'_, ()>| -> std::io::Result<usize> {
//!         let (mut stream, _peer) = listener.accept()?;
//!         let mut buf = [0; 1024];
//!         let mut echoed = 0;
//!         loop {
//!             let n = stream.read(&mut buf)?;
//!             if n == 0 {
//!                 return Ok(echoed);
//!             }
//!             stream.write_all(&buf[..n])?;
//!             echoed += n;
//!         }
//!     })
//!     .unwrap();
//!
//! // The client: this plain thread, where the same calls block the thread.
//! let mut client = TcpStream::connect(addr).unwrap();
//! client.write_all(b"hello, process").unwrap();
//! let mut reply = [0; 14];
//! client.read_exact(&mut reply).unwrap();
//! assert_eq!(&reply, b"hello, process");
//! drop(client);
//! assert_eq!(server.join().unwrap().unwrap(), 14);
//! ```
//!
//! Resolving a host name (an address given as `"example.org:80"`) happens on the
//! calling thread and blocks it; give addresses as [`std::net::SocketAddr`] or
//! `"ip:port"` text inside processes.
#![warn(missing_docs, unsafe_op_in_unsafe_fn)]
// The runtime's park primitive does not exist under the model checker.
#![cfg(not(loom))]

mod active;
mod poller;
mod socket;
mod tcp;
mod udp;
#[cfg(unix)]
mod unix;

pub use active::{Active, ActiveStream, SocketEvent};
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
#[cfg(unix)]
pub use unix::{UnixListener, UnixStream};
