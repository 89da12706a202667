//! Active sockets: data, the end and the owner's end arrive as messages to a
//! handler process; `Once` and `Many(n)` bound what is delivered before the
//! owner asks again; a bounded owner's full mailbox holds the data back
//! without losing it.
#![cfg(not(loom))]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::{runtime, watchdog};
use fibra_net::{Active, ActiveStream, SocketEvent, TcpListener};
use fibra_runtime::{Context, Pid, Process};

/// What the test owner receives.
enum Msg {
    Socket(ActiveStream, Active),
    Net(SocketEvent),
}

impl From<SocketEvent> for Msg {
    fn from(event: SocketEvent) -> Msg {
        Msg::Net(event)
    }
}

/// Re-arms with `rearm` after each chunk (unless `Off`), counts the bytes and
/// reports each event's kind to the test.
struct Owner {
    socket: Option<ActiveStream>,
    rearm: Active,
    capacity: Option<usize>,
    bytes: Arc<AtomicUsize>,
    events: mpsc::Sender<&'static str>,
}

impl Process for Owner {
    type Message = Msg;
    fn mailbox_capacity(&self) -> Option<usize> {
        self.capacity
    }
    fn handle(&mut self, msg: Msg, _cx: &mut Context<Self>) {
        match msg {
            Msg::Socket(socket, active) => {
                socket.set_active(active);
                self.socket = Some(socket);
            }
            Msg::Net(SocketEvent::Data(bytes)) => {
                self.bytes.fetch_add(bytes.len(), Ordering::SeqCst);
                let _ = self.events.send("data");
                if self.rearm != Active::Off {
                    if let Some(socket) = &self.socket {
                        socket.set_active(self.rearm);
                    }
                }
            }
            Msg::Net(SocketEvent::Closed) => {
                let _ = self.events.send("closed");
                self.socket = None;
            }
            Msg::Net(_) => {
                let _ = self.events.send("error");
                self.socket = None;
            }
        }
    }
}

/// A connected pair: a std client and, on the server side, an active socket
/// whose owner is a fresh `Owner`.
struct Setup {
    client: StdStream,
    owner: Pid<Msg>,
    socket: ActiveStream,
    bytes: Arc<AtomicUsize>,
    events: mpsc::Receiver<&'static str>,
}

fn setup(
    rt: &fibra_runtime::Runtime,
    first: Active,
    rearm: Active,
    capacity: Option<usize>,
) -> Setup {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = StdStream::connect(listener.local_addr().unwrap()).unwrap();
    let (stream, _) = listener.accept().unwrap();
    let bytes = Arc::new(AtomicUsize::new(0));
    let (tx, events) = mpsc::channel();
    let owner = rt
        .spawn(Owner {
            socket: None,
            rearm,
            capacity,
            bytes: bytes.clone(),
            events: tx,
        })
        .unwrap();
    let socket = stream.into_active(owner.clone(), Active::Off).unwrap();
    owner.send(Msg::Socket(socket.clone(), first)).unwrap();
    Setup {
        client,
        owner,
        socket,
        bytes,
        events,
    }
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// With `Once`, re-armed after each chunk, everything the peer sends arrives
/// in order, then the end.
#[test]
fn data_then_the_end_arrive_as_messages() {
    watchdog(30, || {
        let rt = runtime();
        let mut s = setup(&rt, Active::Once, Active::Once, None);
        let mut sent = 0;
        for round in 0..100usize {
            let chunk = vec![round as u8; 1 + round * 37 % 3000];
            s.client.write_all(&chunk).unwrap();
            sent += chunk.len();
        }
        s.client.shutdown(std::net::Shutdown::Write).unwrap();
        until("every byte", || s.bytes.load(Ordering::SeqCst) == sent);
        let last = loop {
            match s.events.recv_timeout(Duration::from_secs(10)).unwrap() {
                "data" => continue,
                other => break other,
            }
        };
        assert_eq!(last, "closed");
        // The owner dropped its handle; the test drops its own: the peer sees
        // the end.
        drop(s.socket);
        let mut rest = Vec::new();
        s.client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    });
}

/// `Many(3)` without re-arming: three chunks arrive, then no more however much
/// the peer sends; asking again delivers the rest.
#[test]
fn many_bounds_what_arrives_before_the_owner_asks_again() {
    watchdog(30, || {
        let rt = runtime();
        let mut s = setup(&rt, Active::Many(3), Active::Off, None);
        for _ in 0..3 {
            s.client.write_all(b"x").unwrap();
            assert_eq!(s.events.recv_timeout(Duration::from_secs(10)), Ok("data"));
        }
        s.client.write_all(&[7; 10_000]).unwrap();
        thread::sleep(Duration::from_millis(50));
        assert!(s.events.try_recv().is_err(), "delivered past the quota");
        assert_eq!(s.bytes.load(Ordering::SeqCst), 3);
        s.socket.set_active(Active::Always);
        until("the rest", || s.bytes.load(Ordering::SeqCst) == 10_003);
    });
}

/// A bounded owner with `Always`: a flood never overfills its mailbox, and
/// nothing is lost: the held-back data arrives once the owner asks again.
#[test]
fn a_full_mailbox_holds_the_data_back_without_losing_it() {
    watchdog(60, || {
        let rt = runtime();
        let mut s = setup(&rt, Active::Always, Active::Always, Some(2));
        let total = 2_000_000;
        let writer = thread::spawn(move || {
            let chunk = vec![1u8; 10_000];
            for _ in 0..total / chunk.len() {
                s.client.write_all(&chunk).unwrap();
            }
            s.client
        });
        let mut most = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.bytes.load(Ordering::SeqCst) < total {
            most = most.max(s.owner.mailbox_len());
            assert!(
                Instant::now() < deadline,
                "stalled at {}",
                s.bytes.load(Ordering::SeqCst)
            );
            thread::yield_now();
        }
        assert!(most <= 2, "the mailbox of 2 held {most}");
        drop(writer.join().unwrap());
    });
}

/// When the owner ends, the socket closes: the peer reads the end.
#[test]
fn the_owners_end_closes_the_socket() {
    watchdog(30, || {
        let rt = runtime();
        let mut s = setup(&rt, Active::Once, Active::Once, None);
        s.client.write_all(b"hello").unwrap();
        assert_eq!(s.events.recv_timeout(Duration::from_secs(10)), Ok("data"));
        s.owner.any().kill();
        until("the owner's end", || !s.owner.is_alive());
        drop(s.socket);
        s.client.write_all(b"more").unwrap();
        let mut rest = Vec::new();
        s.client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = s.client.read_to_end(&mut rest);
        assert!(rest.is_empty());
    });
}

/// Closing the socket on this side (any handle) tells the owner.
#[test]
fn a_close_on_this_side_reaches_the_owner() {
    watchdog(30, || {
        let rt = runtime();
        let s = setup(&rt, Active::Once, Active::Once, None);
        // Whether the owner has armed the socket yet or arms it after: it hears.
        s.socket.stream().try_clone().unwrap().close();
        assert_eq!(s.events.recv_timeout(Duration::from_secs(10)), Ok("error"));
    });
}
