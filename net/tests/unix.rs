//! Unix-domain stream sockets through processes: echo on one worker (only the
//! processes wait), a close that wakes a blocked reader, a closed listener,
//! read timeouts, and a pair.
#![cfg(not(loom))]

mod common;

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::watchdog;
use fibra_net::{UnixListener, UnixStream};
use fibra_runtime::{FnContext, Runtime};

/// A fresh socket path for one test, removed when dropped.
struct SocketPath(PathBuf);

impl SocketPath {
    fn new(name: &str) -> SocketPath {
        let path = std::env::temp_dir().join(format!("fibra-{name}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A server and a client process on a single worker echo 200 messages: each
/// waits in turn while the other runs.
#[test]
fn echo_between_processes_on_one_worker() {
    watchdog(20, || {
        let path = SocketPath::new("echo");
        let rt = Runtime::builder().workers(1).build().unwrap();
        let listener = UnixListener::bind(&path.0).unwrap();
        assert_eq!(
            listener.local_addr().unwrap().as_pathname(),
            Some(path.0.as_path())
        );
        let server = rt
            .spawn_fn(move |_: &mut FnContext<()>| -> io::Result<usize> {
                let (mut stream, _) = listener.accept()?;
                let mut buf = [0; 1024];
                let mut total = 0;
                loop {
                    let n = stream.read(&mut buf)?;
                    if n == 0 {
                        return Ok(total);
                    }
                    stream.write_all(&buf[..n])?;
                    total += n;
                }
            })
            .unwrap();
        let target = path.0.clone();
        let client = rt
            .spawn_fn(move |_: &mut FnContext<()>| -> io::Result<usize> {
                let mut stream = UnixStream::connect(&target)?;
                let mut sent = 0;
                for round in 0..200usize {
                    let msg = vec![round as u8; 1 + round % 97];
                    stream.write_all(&msg)?;
                    let mut back = vec![0; msg.len()];
                    stream.read_exact(&mut back)?;
                    assert_eq!(back, msg);
                    sent += msg.len();
                }
                stream.shutdown(std::net::Shutdown::Write)?;
                Ok(sent)
            })
            .unwrap();
        let sent = client.join().unwrap().unwrap();
        assert_eq!(server.join().unwrap().unwrap(), sent);
    });
}

/// `close` from another process wakes one blocked in `read`, which fails with
/// `NotConnected`; a read timeout bounds a read.
#[test]
fn close_wakes_a_blocked_reader_and_timeouts_bound_reads() {
    watchdog(20, || {
        let rt = Runtime::builder().workers(2).build().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        let started = Instant::now();
        let err = (&a).read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(30));
        a.set_read_timeout(None).unwrap();
        let reader = {
            let a = a.try_clone().unwrap();
            rt.spawn_fn(move |_: &mut FnContext<()>| (&a).read(&mut [0; 8]).map_err(|e| e.kind()))
                .unwrap()
        };
        std::thread::sleep(Duration::from_millis(30));
        a.close();
        assert_eq!(reader.join().unwrap(), Err(io::ErrorKind::NotConnected));
    });
}

/// A closed listener fails a waiting `accept` and refuses new connections.
#[test]
fn a_closed_listener_stops_accepting() {
    watchdog(20, || {
        let path = SocketPath::new("close");
        let rt = Runtime::builder().workers(2).build().unwrap();
        let listener = UnixListener::bind(&path.0).unwrap();
        let acceptor = {
            let listener = listener.try_clone().unwrap();
            rt.spawn_fn(move |_: &mut FnContext<()>| {
                listener.accept().map(|_| ()).map_err(|e| e.kind())
            })
            .unwrap()
        };
        std::thread::sleep(Duration::from_millis(30));
        listener.close();
        assert_eq!(acceptor.join().unwrap(), Err(io::ErrorKind::NotConnected));
        assert!(UnixStream::connect(&path.0).is_err());
        // Binding to a path that exists fails, as with std.
        assert!(UnixListener::bind(&path.0).is_err());
    });
}

/// A Unix stream in active mode delivers to its owner as a TCP one does.
#[test]
fn an_active_unix_stream_delivers_messages() {
    watchdog(20, || {
        use fibra_net::{Active, SocketEvent};
        let rt = Runtime::builder().workers(1).build().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let owner = rt
            .spawn_fn(move |cx: &mut FnContext<SocketEvent>| {
                let _ = ready.recv();
                let mut got = Vec::new();
                loop {
                    match cx.receive() {
                        SocketEvent::Data(bytes) => got.extend(bytes),
                        SocketEvent::Closed => return Ok(got),
                        _ => return Err("an error"),
                    }
                }
            })
            .unwrap();
        let socket = a.into_active(owner.pid(), Active::Always).unwrap();
        ready_tx.send(()).unwrap();
        b.write_all(b"hello over unix").unwrap();
        drop(b);
        assert_eq!(owner.join().unwrap(), Ok(b"hello over unix".to_vec()));
        drop(socket);
    });
}
