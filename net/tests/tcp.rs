//! TCP through processes: echo, many connections at once, timeouts, peers that go
//! away, closing under a waiting process, several acceptors, plain threads.
#![cfg(not(loom))]

mod common;

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::{connected_pair, raise_fd_limit, runtime, watchdog};
use fibra_net::{TcpListener, TcpStream};
use fibra_runtime::{Context, FnContext, Process, Runtime};

/// Echoes one connection until the peer closes it; returns the bytes echoed.
fn echo(mut stream: TcpStream) -> io::Result<usize> {
    let mut buf = [0; 4096];
    let mut total = 0;
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        stream.write_all(&buf[..n])?;
        total += n;
    }
}

#[test]
fn echo_round_trips_inside_processes() {
    watchdog(20, || {
        let rt = runtime();
        let echoed = rt.block_on(|cx| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                let (stream, peer) = listener.accept().unwrap();
                assert!(peer.ip().is_loopback());
                echo(stream).unwrap()
            });
            let mut client = TcpStream::connect(addr).unwrap();
            client.set_nodelay(true).unwrap();
            assert!(client.nodelay().unwrap());
            assert_eq!(client.peer_addr().unwrap(), addr);
            let mut sent = 0;
            for round in 0..200usize {
                let msg = vec![round as u8; 1 + round % 97];
                client.write_all(&msg).unwrap();
                client.flush().unwrap();
                let mut back = vec![0; msg.len()];
                client.read_exact(&mut back).unwrap();
                assert_eq!(back, msg);
                sent += msg.len();
            }
            client.shutdown(Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
            (server.join().unwrap(), sent)
        });
        assert_eq!(echoed.0, echoed.1);
    });
}

#[test]
fn one_process_writes_while_another_reads_the_same_stream() {
    // 4 MiB is more than the two sockets' buffers hold, so the writer has to
    // wait for the reader more than once, and the reader for the writer.
    const TOTAL: usize = 4 << 20;
    watchdog(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                echo(listener.accept().unwrap().0).unwrap()
            });
            let client = TcpStream::connect(addr).unwrap();
            let writing = client.try_clone().unwrap();
            let writer = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                let chunk: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
                let mut sent = 0;
                while sent < TOTAL {
                    (&writing).write_all(&chunk).unwrap();
                    sent += chunk.len();
                }
                writing.shutdown(Shutdown::Write).unwrap();
                sent
            });
            let mut got = 0;
            let mut buf = vec![0; 65_536];
            loop {
                let n = (&client).read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                for (i, byte) in buf[..n].iter().enumerate() {
                    assert_eq!(*byte, ((got + i) % 65_536 % 251) as u8);
                }
                got += n;
            }
            assert_eq!(writer.join().unwrap(), TOTAL);
            assert_eq!(server.join().unwrap(), TOTAL);
            assert_eq!(got, TOTAL);
        });
    });
}

/// A handler process that answers one request on the connection it is given.
struct Connection;

impl Process for Connection {
    type Message = TcpStream;

    fn handle(&mut self, mut stream: TcpStream, cx: &mut Context<Self>) {
        let mut request = [0; 8];
        if stream.read_exact(&mut request).is_ok() {
            let n = u64::from_le_bytes(request);
            let _ = stream.write_all(&(n * 3 + 1).to_le_bytes());
        }
        cx.stop();
    }
}

#[test]
fn a_thousand_concurrent_connections() {
    const CLIENTS: u64 = 1_000;
    raise_fd_limit(4 * CLIENTS + 256);
    watchdog(60, || {
        let rt = runtime();
        let answered = rt.block_on(|cx| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            // The acceptor hands every connection to a fresh handler process
            // (even ones) or free-running process (odd ones).
            let acceptor = cx.spawn_fn(move |cx: &mut FnContext<'_, ()>| {
                for i in 0..CLIENTS {
                    let (stream, _) = listener.accept().unwrap();
                    if i % 2 == 0 {
                        cx.spawn(Connection).send(stream).unwrap();
                    } else {
                        let _ = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                            let mut request = [0; 8];
                            let mut stream = stream;
                            stream.read_exact(&mut request).unwrap();
                            let n = u64::from_le_bytes(request);
                            stream.write_all(&(n * 3 + 1).to_le_bytes()).unwrap();
                        });
                    }
                }
            });
            let clients: Vec<_> = (0..CLIENTS)
                .map(|n| {
                    cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                        let mut stream = TcpStream::connect(addr).unwrap();
                        stream.write_all(&n.to_le_bytes()).unwrap();
                        let mut reply = [0; 8];
                        stream.read_exact(&mut reply).unwrap();
                        assert_eq!(u64::from_le_bytes(reply), n * 3 + 1);
                        // The handler closed its end after answering.
                        assert_eq!(stream.read(&mut reply).unwrap(), 0);
                    })
                })
                .collect();
            let answered = clients.into_iter().filter_map(|c| c.join().ok()).count();
            acceptor.join().unwrap();
            answered
        });
        assert_eq!(answered as u64, CLIENTS);
    });
}

#[test]
fn read_and_write_timeouts_fail_with_timed_out() {
    watchdog(20, || {
        let rt = runtime();
        rt.block_on(|_cx| {
            let (client, server) = connected_pair();

            assert_eq!(
                client
                    .set_read_timeout(Some(Duration::ZERO))
                    .unwrap_err()
                    .kind(),
                io::ErrorKind::InvalidInput
            );
            let timeout = Duration::from_millis(100);
            client.set_read_timeout(Some(timeout)).unwrap();
            assert_eq!(client.read_timeout().unwrap(), Some(timeout));
            let start = Instant::now();
            let err = (&client).read(&mut [0; 16]).unwrap_err();
            let waited = start.elapsed();
            assert_eq!(err.kind(), io::ErrorKind::TimedOut);
            assert!(waited >= timeout, "gave up after {waited:?}");
            assert!(waited < Duration::from_secs(5), "gave up after {waited:?}");

            // The stream still works after a timeout.
            (&server).write_all(b"late").unwrap();
            let mut buf = [0; 4];
            (&client).read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"late");

            // The server never reads, so the client's writes fill both buffers.
            client
                .set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let chunk = vec![7u8; 65_536];
            let mut outcome = None;
            for _ in 0..4_096 {
                if let Err(err) = (&client).write(&chunk) {
                    outcome = Some(err.kind());
                    break;
                }
            }
            assert_eq!(outcome, Some(io::ErrorKind::TimedOut));
            drop(server);
        });
    });
}

#[test]
fn a_peer_that_closes_reads_as_end_of_stream_then_errors() {
    watchdog(20, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                let (mut stream, _) = listener.accept().unwrap();
                stream.write_all(b"bye").unwrap();
                // Dropped here: the client sees the data, then end of stream.
            });
            let mut client = TcpStream::connect(addr).unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"bye");
            assert_eq!(client.read(&mut [0; 8]).unwrap(), 0);
            server.join().unwrap();
            // Writing to a closed peer: accepted locally at first, then the
            // reset comes back as one of std's kinds.
            let mut failure = None;
            for _ in 0..1_000 {
                match client.write_all(b"anyone?") {
                    Ok(()) => fibra_runtime::sleep(Duration::from_millis(1)),
                    Err(err) => {
                        failure = Some(err.kind());
                        break;
                    }
                }
            }
            assert!(
                matches!(
                    failure,
                    Some(io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset)
                ),
                "{failure:?}"
            );
        });
    });
}

#[test]
fn a_reset_while_suspended_in_read_is_connection_reset() {
    watchdog(20, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                let (stream, _) = listener.accept().unwrap();
                // Wait until the client's byte has arrived, and close without
                // reading it: the kernel answers with a reset.
                let mut byte = [0; 1];
                assert_eq!(stream.peek(&mut byte).unwrap(), 1);
                drop(stream);
            });
            let mut client = TcpStream::connect(addr).unwrap();
            client.write_all(b"x").unwrap();
            let err = client.read(&mut [0; 8]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
            server.join().unwrap();
        });
    });
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    watchdog(20, || {
        let port_holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = port_holder.local_addr().unwrap();
        drop(port_holder);
        let rt = runtime();
        let kind = rt.block_on(move |_cx| TcpStream::connect(addr).unwrap_err().kind());
        assert_eq!(kind, io::ErrorKind::ConnectionRefused);
    });
}

#[test]
fn closing_a_stream_wakes_the_process_suspended_on_it() {
    watchdog(20, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let (client, mut server) = connected_pair();
            let reading = client.try_clone().unwrap();
            let reader = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                let started = Instant::now();
                let result = (&reading).read(&mut [0; 8]);
                (result.map_err(|e| e.kind()), started.elapsed())
            });
            // Give the reader time to suspend (if it has not, its read fails the
            // same way when it starts).
            cx.sleep(Duration::from_millis(50));
            client.close();
            let (result, waited) = reader.join().unwrap();
            assert_eq!(result, Err(io::ErrorKind::NotConnected));
            assert!(waited < Duration::from_secs(5), "woken after {waited:?}");
            // Every handle sees the close, and the peer reads end of stream.
            assert_eq!(
                (&client).write(b"x").unwrap_err().kind(),
                io::ErrorKind::NotConnected
            );
            assert_eq!(server.read(&mut [0; 8]).unwrap(), 0);
        });
    });
}

#[test]
fn shutting_down_the_read_half_ends_a_suspended_read() {
    watchdog(20, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let (client, _server) = connected_pair();
            let reading = client.try_clone().unwrap();
            let reader = cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                (&reading).read(&mut [0; 8]).map_err(|e| e.kind())
            });
            cx.sleep(Duration::from_millis(50));
            client.shutdown(Shutdown::Read).unwrap();
            assert_eq!(reader.join().unwrap(), Ok(0));
        });
    });
}

#[test]
fn several_acceptors_share_one_listener_and_each_connection_goes_to_one() {
    const ACCEPTORS: usize = 4;
    const CONNECTIONS: u8 = 40;
    watchdog(20, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let acceptors: Vec<_> = (0..ACCEPTORS)
                .map(|_| {
                    let listener = listener.try_clone().unwrap();
                    cx.spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                        let mut seen = Vec::new();
                        // Ends when the listener is closed.
                        while let Ok((mut stream, _)) = listener.accept() {
                            let mut id = [0; 1];
                            stream.read_exact(&mut id).unwrap();
                            stream.write_all(&id).unwrap();
                            seen.push(id[0]);
                        }
                        seen
                    })
                })
                .collect();
            for id in 0..CONNECTIONS {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.write_all(&[id]).unwrap();
                let mut back = [0; 1];
                stream.read_exact(&mut back).unwrap();
                assert_eq!(back[0], id);
            }
            listener.close();
            let mut all = Vec::new();
            for acceptor in acceptors {
                all.extend(acceptor.join().unwrap());
            }
            assert_eq!(all.len(), usize::from(CONNECTIONS));
            assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
            // A closed listener refuses further accepts with a clear kind.
            assert_eq!(
                listener.accept().unwrap_err().kind(),
                io::ErrorKind::NotConnected
            );
        });
    });
}

#[test]
fn sockets_work_on_plain_threads_by_blocking_the_thread() {
    watchdog(20, || {
        // No runtime at all.
        let listener = TcpListener::bind("[::1]:0")
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let mut total = 0;
            for stream in listener.incoming().take(2) {
                total += echo(stream.unwrap()).unwrap();
            }
            total
        });
        for _ in 0..2 {
            let mut client = TcpStream::connect(addr).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            client.write_all(b"from a thread").unwrap();
            let mut back = [0; 13];
            client.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"from a thread");
        }
        assert_eq!(server.join().unwrap(), 26);

        // A timeout on a plain thread.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        assert_eq!(
            (&client).read(&mut [0; 4]).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    });
}

#[test]
fn a_runtime_shut_down_under_suspended_sockets_releases_them() {
    watchdog(20, || {
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let _acceptor = rt
            .spawn_fn(move |_cx: &mut FnContext<'_, ()>| {
                ready_tx.send(()).unwrap();
                // Never returns: the shutdown unwinds this stack mid-accept.
                let _ = listener.accept();
            })
            .unwrap();
        ready_rx.recv().unwrap();
        thread::sleep(Duration::from_millis(20));
        drop(rt);
        // The listener went with the unwound stack: the port is free again.
        let again = TcpListener::bind(addr).unwrap();
        // The old registration is gone; the new listener on the port works.
        let _client = TcpStream::connect(addr).unwrap();
        let _accepted = again.accept().unwrap();
        drop(again);
    });
}

/// A process whose socket always has data never waits in `read`, so it reaches no
/// other suspension point; its successful reads count towards its budget, and on a
/// one-worker runtime another process gets to run long before the data runs out
/// (before, the reader held the worker until its socket ran dry).
#[test]
fn a_process_reading_a_socket_that_is_always_ready_still_yields() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    /// Bytes queued before the reader starts: well within loopback's buffers, and
    /// far more one-byte reads than one budget.
    const QUEUED: usize = 64 * 1024;
    watchdog(60, || {
        let rt = Runtime::builder().workers(1).build().expect("runtime");
        let (mut client, mut server) = connected_pair();
        client.write_all(&[7u8; QUEUED]).expect("fill the socket");
        let ran = Arc::new(AtomicBool::new(false));
        let reads = rt.block_on({
            let ran = ran.clone();
            move |cx| {
                // Queued behind the reader: it runs only if the reader yields.
                let other = ran.clone();
                cx.spawn_fn(move |_: &mut FnContext<()>| other.store(true, Ordering::SeqCst));
                let mut buf = [0u8; 1];
                let mut reads = 0;
                while !ran.load(Ordering::SeqCst) && reads < QUEUED {
                    reads += server.read(&mut buf).expect("read");
                }
                reads
            }
        });
        assert!(ran.load(Ordering::SeqCst));
        assert!(
            reads < QUEUED,
            "the other process ran only once the reader's socket ran dry"
        );
        drop(client);
    });
}

#[test]
fn a_closed_listener_stops_listening_at_once() {
    watchdog(20, || {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Queued in the kernel, never accepted.
        let queued = std::net::TcpStream::connect(addr).unwrap();
        let other_handle = listener.try_clone().unwrap();
        listener.close();
        // Another handle still holds the port, yet nothing is taken any more.
        let refused = std::net::TcpStream::connect(addr).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        // The queued one was reset: it reads no data, only its end.
        let mut queued = queued;
        queued
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0; 1];
        match queued.read(&mut byte) {
            Ok(0) => {}
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
            Ok(n) => panic!("read {n} bytes from a reset connection"),
        }
        drop(other_handle);
    });
}
