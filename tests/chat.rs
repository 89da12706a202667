//! The chat example's server (`examples/chat.rs`), driven by test clients on plain
//! threads with `std::net` sockets: lines reach everyone but their sender, an
//! oversized line or silence closes only that client, a connection or acceptor
//! that dies takes nothing else down, and every connection is a child of the
//! server's connection supervisor, closed when the server stops.
//!
//! Every read is bounded by [`PATIENCE`], and a watchdog aborts a test that runs
//! longer than [`WATCHDOG`], so a broken server fails the run instead of hanging it.

#[path = "../examples/chat.rs"]
mod chat;

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use fibra::prelude::*;

/// The longest a client waits for one line. Lines arrive within milliseconds; one
/// that takes this long is lost.
const PATIENCE: Duration = Duration::from_secs(10);
/// The longest a whole test may take.
const WATCHDOG: Duration = Duration::from_secs(60);
/// The idle timeout of the servers whose tests do not wait for it: far longer than
/// any of them runs.
const LONG_IDLE: Duration = Duration::from_secs(300);
/// The most lines a client reads while looking for one it expects; a test's clients
/// see a handful.
const MAX_LINES: usize = 100;

/// Aborts the test binary if the test that made it runs past [`WATCHDOG`]; dropping
/// it (at the end of the test, or as a failing test unwinds) calls it off.
struct Watchdog {
    /// Dropped to tell the watchdog thread the test is over.
    _done: mpsc::Sender<()>,
}

impl Watchdog {
    fn start(test: &'static str) -> Watchdog {
        let (done, over) = mpsc::channel::<()>();
        thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = over.recv_timeout(WATCHDOG) {
                eprintln!("{test} still runs after {WATCHDOG:?}: the chat server hangs");
                std::process::abort();
            }
        });
        Watchdog { _done: done }
    }
}

/// A runtime with a chat server in it.
fn start_server(idle: Duration) -> (Runtime, chat::Server) {
    let runtime = Runtime::builder().workers(2).build().unwrap();
    let server = chat::serve(&runtime.handle(), "127.0.0.1:0", idle).unwrap();
    (runtime, server)
}

/// A chat client on a plain thread.
struct Client {
    /// The connection, read line by line.
    reader: BufReader<TcpStream>,
    /// The same connection, for writing.
    writer: TcpStream,
    /// The client's address, which the server puts before its lines.
    name: String,
}

impl Client {
    /// Connects and waits for the server's welcome, after which the client is in the
    /// room: every line said from then on reaches it.
    fn join(server: &chat::Server) -> Client {
        let stream = TcpStream::connect(server.local_addr()).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let name = stream.local_addr().unwrap().to_string();
        let mut client = Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            name,
        };
        let welcome = format!("* welcome, {}; ", client.name);
        let first = client.line().expect("closed before the welcome");
        assert!(first.starts_with(&welcome), "{first:?} is no welcome");
        client
    }

    fn say(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.write_all(b"\n").unwrap();
    }

    /// What the others see when this client says `line`.
    fn said(&self, line: &str) -> String {
        format!("{}: {line}", self.name)
    }

    /// The next line from the server without its newline, or `None` once the server
    /// has closed the connection. Panics if none comes within [`PATIENCE`].
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert!(line.ends_with('\n'), "{line:?} broke off");
                line.pop();
                Some(line)
            }
            // A connection the server dropped with input unread may end in a reset.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
            Err(e) => panic!("{}: no line within {PATIENCE:?}: {e}", self.name),
        }
    }

    /// The next line that is not a server notice (`* ...`).
    fn chat_line(&mut self) -> String {
        for _ in 0..MAX_LINES {
            match self.line() {
                Some(line) if line.starts_with("* ") => continue,
                Some(line) => return line,
                None => panic!("{}: closed while waiting for a chat line", self.name),
            }
        }
        panic!("{}: no chat line among {MAX_LINES} lines", self.name);
    }

    /// Reads lines until `wanted`, skipping others.
    fn expect(&mut self, wanted: &str) {
        for _ in 0..MAX_LINES {
            match self.line() {
                Some(line) if line == wanted => return,
                Some(_) => continue,
                None => panic!("{}: closed while waiting for {wanted:?}", self.name),
            }
        }
        panic!("{}: no {wanted:?} among {MAX_LINES} lines", self.name);
    }

    /// Reads lines until one that starts with `notice`, then expects the server to
    /// close the connection.
    fn expect_closed_with(&mut self, notice: &str) {
        let mut seen = false;
        for _ in 0..MAX_LINES {
            match self.line() {
                Some(line) if !seen && line.starts_with(notice) => seen = true,
                Some(line) if seen => panic!("{}: {line:?} after the goodbye", self.name),
                Some(_) => continue,
                None if seen => return,
                None => panic!("{}: closed without {notice:?}", self.name),
            }
        }
        panic!("{}: still open after {MAX_LINES} lines", self.name);
    }

    /// Expects the server to close the connection, skipping any lines before.
    fn expect_closed(&mut self) {
        for _ in 0..MAX_LINES {
            if self.line().is_none() {
                return;
            }
        }
        panic!("{}: still open after {MAX_LINES} lines", self.name);
    }
}

#[test]
fn a_line_reaches_everyone_but_its_sender() {
    let _watchdog = Watchdog::start("a_line_reaches_everyone_but_its_sender");
    let (_runtime, server) = start_server(LONG_IDLE);
    let mut ann = Client::join(&server);
    let mut bob = Client::join(&server);
    let mut cid = Client::join(&server);
    ann.expect(&format!("* {} joined", bob.name));
    ann.expect(&format!("* {} joined", cid.name));
    bob.expect(&format!("* {} joined", cid.name));

    ann.say("hello, all");
    assert_eq!(bob.chat_line(), ann.said("hello, all"));
    assert_eq!(cid.chat_line(), ann.said("hello, all"));

    // Had Ann been sent her own line, it would come before Bob's answer, which the
    // server handles only after her line has gone out to everyone.
    bob.say("hi, ann");
    assert_eq!(ann.chat_line(), bob.said("hi, ann"));
    assert_eq!(cid.chat_line(), bob.said("hi, ann"));

    // The longest line allowed goes through whole, "\r\n" endings are taken too,
    // and empty lines are not passed on.
    let longest = "y".repeat(chat::MAX_LINE);
    cid.say("");
    cid.say(&format!("{longest}\r"));
    assert_eq!(ann.chat_line(), cid.said(&longest));
    assert_eq!(bob.chat_line(), cid.said(&longest));
    assert_eq!(server.connections().len(), 3);
}

#[test]
fn an_oversized_line_closes_only_its_connection() {
    let _watchdog = Watchdog::start("an_oversized_line_closes_only_its_connection");
    let (_runtime, server) = start_server(LONG_IDLE);
    let mut ann = Client::join(&server);
    let mut bob = Client::join(&server);
    let mut cid = Client::join(&server);

    cid.say(&"x".repeat(chat::MAX_LINE + 1000));
    cid.expect_closed_with("* line too long");
    ann.expect(&format!("* {} left", cid.name));
    bob.expect(&format!("* {} left", cid.name));

    ann.say("is cid gone?");
    assert_eq!(bob.chat_line(), ann.said("is cid gone?"));
    bob.say("so it seems");
    assert_eq!(ann.chat_line(), bob.said("so it seems"));
    assert_eq!(server.connections().len(), 2);
}

#[test]
fn a_line_that_never_ends_closes_its_connection() {
    let _watchdog = Watchdog::start("a_line_that_never_ends_closes_its_connection");
    let (_runtime, server) = start_server(LONG_IDLE);
    let mut ann = Client::join(&server);
    let mut bob = Client::join(&server);

    // No newline at all: the server must not wait for one past the limit.
    bob.writer
        .write_all("z".repeat(chat::MAX_LINE + 2).as_bytes())
        .unwrap();
    bob.expect_closed_with("* line too long");
    ann.expect(&format!("* {} left", bob.name));
}

#[test]
fn a_silent_client_is_timed_out() {
    let _watchdog = Watchdog::start("a_silent_client_is_timed_out");
    let idle = Duration::from_millis(500);
    let (_runtime, server) = start_server(idle);
    let mut quiet = Client::join(&server);
    let mut talker = Client::join(&server);

    // The talker speaks five times per idle timeout, for three timeouts; the quiet
    // one hears it all and says nothing.
    let started = Instant::now();
    for n in 0..15 {
        talker.say(&format!("line {n}"));
        thread::sleep(idle / 5);
    }
    quiet.expect_closed_with("* no word from you");
    assert!(started.elapsed() >= idle, "timed out too early");
    talker.expect(&format!("* {} left", quiet.name));

    // The talker was never silent for long, so it is still in the room.
    let mut late = Client::join(&server);
    talker.say("still here");
    assert_eq!(late.chat_line(), talker.said("still here"));

    // ...until it too says nothing for a while.
    talker.expect_closed_with("* no word from you");
}

#[test]
fn a_dead_connection_or_acceptor_takes_nothing_else_down() {
    let _watchdog = Watchdog::start("a_dead_connection_or_acceptor_takes_nothing_else_down");
    let (_runtime, server) = start_server(LONG_IDLE);
    let mut ann = Client::join(&server);
    let mut bob = Client::join(&server);
    let before = server.connections();
    let mut cid = Client::join(&server);

    // Kill Cid's connection (its writer; the link takes its reader along): its
    // socket closes, and the others chat on.
    let cids = server
        .connections()
        .into_iter()
        .find(|pid| !before.contains(pid))
        .expect("no connection for cid");
    cids.kill();
    cid.expect_closed();
    ann.say("anyone there?");
    assert_eq!(bob.chat_line(), ann.said("anyone there?"));

    // Kill the acceptor: the supervisor starts another on the same socket, and new
    // clients get in, while the ones in the room never notice.
    let acceptor = server
        .supervisor()
        .which_child("acceptor", PATIENCE)
        .unwrap();
    acceptor.pid().cloned().expect("no acceptor").kill();
    let until = Instant::now() + PATIENCE;
    loop {
        let acceptor = server
            .supervisor()
            .which_child("acceptor", PATIENCE)
            .unwrap();
        if acceptor.restarts() == 1 && acceptor.pid().is_some() {
            break;
        }
        assert!(Instant::now() < until, "the acceptor was not restarted");
        thread::sleep(Duration::from_millis(10));
    }
    let mut dan = Client::join(&server);
    bob.say("welcome, dan");
    assert_eq!(dan.chat_line(), bob.said("welcome, dan"));
    assert_eq!(ann.chat_line(), bob.said("welcome, dan"));
    assert!(server.supervisor().is_alive());
}

#[test]
fn connections_are_supervised_and_close_when_the_server_stops() {
    let _watchdog = Watchdog::start("connections_are_supervised_and_close_when_the_server_stops");
    let (runtime, server) = start_server(LONG_IDLE);
    let mut ann = Client::join(&server);
    let mut bob = Client::join(&server);
    let connections = server.connection_supervisor();
    let counts = connections.count_children(PATIENCE).unwrap();
    assert_eq!((counts.active, counts.workers), (2, 2));
    for child in connections.children(PATIENCE).unwrap() {
        assert_eq!(child.restart(), Restart::Temporary);
    }

    // A connection that ends leaves its supervisor and is not restarted.
    let cid = Client::join(&server);
    drop(cid);
    let until = Instant::now() + PATIENCE;
    while connections.count_children(PATIENCE).unwrap().active != 2 {
        assert!(Instant::now() < until, "cid's connection did not end");
        thread::sleep(Duration::from_millis(10));
    }

    // Stopping the server closes every connection, writers included, before the
    // supervisor ends.
    let supervisor = server.supervisor().clone();
    let connections_pid = connections.any();
    runtime.block_on(move |cx| {
        let top = cx.monitor(&supervisor);
        let below = cx.monitor(&connections_pid);
        supervisor.stop();
        let mut ended = Vec::new();
        while ended.len() < 2 {
            if let Notice::Down(down) = cx.receive_notice() {
                assert_eq!(down.reason, Exit::Stopped);
                ended.push(down.monitor);
            }
        }
        assert_eq!(ended, [below, top], "the connections end before the server");
    });
    ann.expect_closed();
    bob.expect_closed();
    let until = Instant::now() + PATIENCE;
    while !server.connections().is_empty() {
        assert!(Instant::now() < until, "writers outlived the server");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_shutdown_tells_every_client_and_stops_the_tree() {
    let _watchdog = Watchdog::start("a_shutdown_tells_every_client_and_stops_the_tree");
    let (runtime, server) = start_server(LONG_IDLE);
    let mut ann = Client::join(&server);
    let mut bob = Client::join(&server);
    let supervisor = server.supervisor().clone();
    let ended = runtime.block_on(move |cx| server.shut_down(cx, PATIENCE));
    assert_eq!(ended, Ok(Exit::Stopped));
    ann.expect_closed_with(chat::GOING_AWAY);
    bob.expect_closed_with(chat::GOING_AWAY);
    assert!(!supervisor.is_alive());
}

/// The resident memory of this test process, in bytes.
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// One chatter sends 4 KB lines flat out to four clients that read as fast as
/// they can and one that never reads. The readers get every line (none is
/// dropped as too slow); the one that does not read is dropped once its
/// writer's mailbox is full, and the server's memory stays bounded meanwhile
/// (without the bound it would hold every line for the stuck client: 80 MB).
#[test]
fn a_client_that_stops_reading_is_dropped_and_readers_keep_up_with_a_flood() {
    const LINES: usize = 20_000;
    let _watchdog =
        Watchdog::start("a_client_that_stops_reading_is_dropped_and_readers_keep_up_with_a_flood");
    let (_runtime, server) = start_server(LONG_IDLE);
    let stuck = Client::join(&server);
    let readers: Vec<Client> = (0..4).map(|_| Client::join(&server)).collect();
    let mut chatter = Client::join(&server);
    let name = chatter.name.clone();
    let before = resident_bytes();
    let readers: Vec<_> = readers
        .into_iter()
        .map(|mut reader| {
            let prefix = format!("{name}: ");
            thread::spawn(move || {
                let mut got = 0;
                while got < LINES {
                    match reader.line() {
                        Some(line) if line.starts_with(&prefix) => got += 1,
                        Some(_) => {}
                        None => panic!("{}: dropped after {got} lines", reader.name),
                    }
                }
            })
        })
        .collect();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, flooding) = (peak.clone(), flooding.clone());
        thread::spawn(move || {
            while flooding.load(std::sync::atomic::Ordering::SeqCst) {
                peak.fetch_max(resident_bytes(), std::sync::atomic::Ordering::SeqCst);
                thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let line = "f".repeat(4000);
    for _ in 0..LINES {
        chatter.say(&line);
    }
    for reader in readers {
        reader.join().expect("a reader that reads was dropped");
    }
    flooding.store(false, std::sync::atomic::Ordering::SeqCst);
    sampler.join().unwrap();
    let grew = peak
        .load(std::sync::atomic::Ordering::SeqCst)
        .saturating_sub(before);
    assert!(
        grew < 40 << 20,
        "the server's memory grew by {} MiB under a client that does not read",
        grew >> 20
    );
    // The stuck client was dropped: after what the kernel had buffered for
    // it (the last line may break off: its writer was ended mid-write), its
    // connection ends, well short of the whole flood.
    let mut rest = Vec::new();
    let mut stuck = stuck.reader;
    stuck.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    std::io::Read::read_to_end(&mut stuck, &mut rest).expect("the connection ends");
    assert!(
        rest.len() < LINES * 4000,
        "the stuck client got the whole flood ({} bytes): never dropped",
        rest.len()
    );
}
