//! A chat server on TCP: every line a client sends reaches every other client.
//!
//! Try it:
//!
//! ```text
//! cargo run --release --example chat              # 127.0.0.1:7878, idle timeout 5 minutes
//! cargo run --release --example chat -- 9000 60   # port 9000, idle timeout 60 s
//! nc 127.0.0.1 7878                               # in two or more other terminals
//! ```
//!
//! A line typed into one `nc` shows up in the others, after the sender's address.
//! Lines that start with `*` come from the server: who joined, who left, and why a
//! connection is being closed. Ctrl-C (or SIGTERM) shuts the server down in
//! order: every client is told, the supervision tree stops, and the program
//! exits with success.
//!
//! # How it is built
//!
//! ```text
//! server            supervisor (rest-for-one)
//! ├── connections   dynamic supervisor: one temporary child per client
//! │   └── connection  handler, one per client, owning the client's socket in
//! │       │           active mode: the client's bytes arrive as messages; it cuts
//! │       │           them into lines and hands each to the room
//! │       └── writer  handler, linked to its connection, a member of the room:
//! │                   writes to the client whatever the room sends it
//! └── acceptor      free-running: accepts connections, asks `connections` to start
//!                   a connection for each
//!
//! room              a process group named after the server's address
//! ```
//!
//! * The connection reads nothing itself: its socket is active
//!   ([`TcpStream::into_active`](fibra::net::TcpStream::into_active)), so what the
//!   client sends, and its leaving, arrive as messages, one chunk at a time
//!   (`Active::Once`, re-armed after each), and an idle client costs no stack:
//!   a handler process between messages holds none. Silence is the handler's
//!   idle timeout. The writer loops over `write_all`, which may block: only the
//!   process waits, never a worker thread. Writes have a process of their own so
//!   that a client slow to read holds up only its writer, and each client's
//!   writes happen in its own writer, so a client that is slow to read
//!   holds up nobody but itself. A writer's mailbox is bounded ([`MAX_BACKLOG`]
//!   lines, [`Process::mailbox_capacity`]): a line the room hands to a full one
//!   is refused, and that client is dropped, so one that stops reading costs a
//!   bounded amount of memory however busy the room.
//! * The room is a process group ([`Handle::join_group`]) whose members are the
//!   writers. The runtime takes a writer out of the group when it ends, however it
//!   ends, so the room never holds a dead client and needs no process of its own.
//! * Every connection is supervised. It is a temporary child of the
//!   `connections` dynamic supervisor ([`DynamicSupervisor`]), started by the
//!   acceptor with the client's socket as its argument ([`ChildSpec::handler_once`]:
//!   a socket cannot be made twice, so a connection is never restarted). Its writer
//!   is linked to it: when either of them crashes, the link takes the other one
//!   down, their socket closes, and nothing else notices. When the server stops,
//!   `connections` stops every connection at once, and the links take the writers
//!   along: no connection outlives its server.
//! * The acceptor is restarted: if `accept` fails for good it exits with the error,
//!   and the supervisor starts a fresh acceptor on the same listening socket after a
//!   growing delay; if that keeps happening, the supervisor gives up and `main`
//!   reports it. The strategy is rest-for-one because the acceptor depends on
//!   `connections`, found by its name: should `connections` end, a fresh acceptor
//!   starts after it, and the clients it held are gone with it.
//! * At most [`MAX_CLIENTS`] clients are served at once; the acceptor closes the
//!   connections of any more, which `connections` refuses.
//! * A line longer than [`MAX_LINE`] bytes, and silence for the idle timeout, end a
//!   connection with a notice to the client.
//!
//! [`serve`] is the whole server, so that `tests/chat.rs` can start one and talk to
//! it; `main` only reads the arguments and waits.

use std::io::{self, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra::net::{Active, ActiveStream, SocketEvent, TcpListener, TcpStream};
use fibra::prelude::*;
use fibra::{MonitorRef, Scope};

/// The port `main` listens on when given none.
const DEFAULT_PORT: u16 = 7878;
/// How long `main` lets a client stay silent when not told otherwise.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The longest line a client may send, in bytes, not counting its line ending.
pub const MAX_LINE: usize = 4096;
/// Bytes taken from a socket per `read`.
/// How long a writer waits for its client to take one line before it gives the
/// client up. A client that reads nothing for this long is gone or stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines a writer's mailbox holds (its bound: [`Process::mailbox_capacity`]);
/// a client whose writer has this many waiting counts as too slow and is
/// dropped. This bounds what a client that never reads can cost: a line is one
/// shared string for the whole room, so each waiting line costs the client a
/// mailbox node (32 bytes) and the string at most `MAX_LINE` bytes, shared; a
/// client that stops reading holds at most 1,024 × 32 bytes of its own plus the
/// lines it holds up, 4 MiB at the very worst. Picked out of thin air: a few
/// seconds of a busy room.
pub const MAX_BACKLOG: usize = 1024;
/// How long a line waits for room in a writer's full mailbox before its client
/// counts as too slow. A client that reads keeps its writer's mailbox from
/// staying full for this long; one that has stopped reading does not.
const SLOW_CLIENT_GRACE: Duration = Duration::from_millis(500);
/// How long a connection that has said goodbye keeps taking, and throwing away, what
/// the client still sends. Closing a socket with unread input makes the kernel
/// reset the connection, and a reset can cost the client the goodbye; reading on
/// until the client closes (or this long) lets the goodbye arrive.
const LINGER: Duration = Duration::from_secs(2);
/// The most a lingering connection throws away before it closes anyway.
const LINGER_BYTES: usize = 64 * 1024;
/// The most clients served at once; more are refused. Each costs two processes
/// and a socket, so the bound is the descriptor limit's more than memory's.
pub const MAX_CLIENTS: usize = 10_000;
/// How long the acceptor waits for `connections` to start a client's connection.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection told to stop may take before it is killed. A handler
/// stops between messages, so at once unless it is in the middle of a write.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a shutdown waits for the writers to send their goodbyes, and then for
/// the supervision tree to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// What every client is told when the server shuts down.
pub const GOING_AWAY: &str = "* the server is shutting down, goodbye";
/// At most this many restarts of the acceptor...
const ACCEPTOR_RESTARTS: u32 = 5;
/// ...within this period, or the supervisor gives up.
const ACCEPTOR_PERIOD: Duration = Duration::from_secs(30);

/// What a writer takes.
#[derive(Clone)]
pub enum Out {
    /// A line for the client, with its line ending.
    Line(Arc<str>),
    /// Write this last line, if any, end the client's stream and stop.
    Close(Option<String>),
}

/// A running chat server.
pub struct Server {
    /// Where it listens.
    addr: SocketAddr,
    /// The name of its room's process group.
    room: Arc<str>,
    /// Its top supervisor.
    supervisor: SupervisorPid,
    /// The supervisor of its connections.
    connections: DynamicSupervisorPid<Client>,
    /// The runtime it runs in.
    handle: Handle,
}

#[allow(dead_code)] // each of `main` and tests/chat.rs uses some of these
impl Server {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its top supervisor: stopping it stops the server and closes every
    /// connection.
    pub fn supervisor(&self) -> &SupervisorPid {
        &self.supervisor
    }

    /// The supervisor of its connections, whose children are the connections'
    /// handler processes.
    pub fn connection_supervisor(&self) -> &DynamicSupervisorPid<Client> {
        &self.connections
    }

    /// Shuts the server down in order: tells every client it is going away (its
    /// writer sends [`GOING_AWAY`] and closes its half), waits for the writers,
    /// then stops the supervision tree and waits for that; returns how the
    /// supervisor ended. Runs in a process (`cx`), which waits; `timeout` bounds
    /// each of the two waits.
    pub fn shut_down<M: Send + 'static>(
        &self,
        cx: &mut FnContext<M>,
        timeout: Duration,
    ) -> Result<Exit, StopError> {
        let writers = self.handle.group_members::<Out>(&self.room);
        let mut waiting: Vec<MonitorRef> = writers.iter().map(|w| cx.monitor(w)).collect();
        let goodbye = format!("{GOING_AWAY}\n");
        let deadline = Instant::now() + timeout;
        for writer in &writers {
            // One that has ended already has no client left to tell; one whose
            // mailbox stays full is not read, and the tree's stop ends it.
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = writer.send_timeout(Out::Close(Some(goodbye.clone())), left);
        }
        while !waiting.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match cx.receive_notice_timeout(left) {
                Some(Notice::Down(down)) => waiting.retain(|m| *m != down.monitor),
                Some(_) => {}
                None => break,
            }
        }
        for monitor in &waiting {
            cx.demonitor(monitor);
        }
        self.supervisor.any().stop_and_wait(timeout)
    }

    /// The writers of the connections in the room, in the order they joined. A
    /// connection's handler and writer are linked, so killing the writer ends the
    /// connection.
    pub fn connections(&self) -> Vec<AnyPid> {
        self.handle
            .group_members::<Out>(&self.room)
            .iter()
            .map(Pid::any)
            .collect()
    }
}

/// Starts a chat server in the runtime of `handle`, listening on `addr`, that closes
/// connections silent for `idle_timeout`. It runs until its supervisor is stopped or
/// gives up, or the runtime shuts down.
pub fn serve(
    handle: &Handle,
    addr: impl ToSocketAddrs,
    idle_timeout: Duration,
) -> io::Result<Server> {
    if idle_timeout.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the idle timeout must be longer than zero",
        ));
    }
    // Bound once, here, so that a bad address is reported to the caller, and so that
    // every incarnation of the acceptor takes connections from the same socket.
    let listener = Arc::new(TcpListener::bind(addr)?);
    let addr = listener.local_addr()?;
    let room: Arc<str> = format!("chat room on {addr}").into();
    let connections_name = format!("chat connections on {addr}");
    let connection = {
        let room = Arc::clone(&room);
        move |(stream, peer): Client| {
            let room = Arc::clone(&room);
            ChildSpec::handler_once(
                "connection",
                Connection::new(stream, peer, room, idle_timeout),
            )
            .shutdown(fibra::Shutdown::Timeout(STOP_TIMEOUT))
        }
    };
    let connections = DynamicSupervisor::new(connection)
        .max_children(MAX_CLIENTS)
        .child_spec("connections")
        .name(connections_name.clone());
    let acceptor = {
        let room = Arc::clone(&room);
        move || {
            let listener = Arc::clone(&listener);
            let room = Arc::clone(&room);
            let connections_name = connections_name.clone();
            move |cx: &mut FnContext<()>| accept(cx, &listener, &connections_name, &room)
        }
    };
    let supervisor = Supervisor::new(Strategy::RestForOne)
        .intensity(ACCEPTOR_RESTARTS, ACCEPTOR_PERIOD)
        .backoff(Backoff::Exponential {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        })
        .child(connections)
        .child(ChildSpec::free("acceptor", acceptor));
    let supervisor = handle
        .spawn_supervisor(supervisor)
        .map_err(io::Error::other)?;
    let connections = supervisor
        .which_child("connections", START_TIMEOUT)
        .ok()
        .and_then(|info| info.dynamic_supervisor::<Client>())
        .ok_or_else(|| io::Error::other("the connection supervisor did not start"))?;
    Ok(Server {
        addr,
        room,
        supervisor,
        connections,
        handle: handle.clone(),
    })
}

/// What the connection supervisor starts a connection with: the client's socket
/// and address.
pub type Client = (TcpStream, SocketAddr);

/// The acceptor: has a connection started for each client, for as long as it
/// runs.
fn accept(cx: &mut FnContext<()>, listener: &TcpListener, connections: &str, room: &str) {
    // Started after `connections` by a rest-for-one supervisor: it is there, unless
    // it has just ended, and then this acceptor is about to be stopped too.
    let Some(connections) = DynamicSupervisorPid::<Client>::whereis(&cx.runtime(), connections)
    else {
        cx.exit(Exit::error(io::Error::other("no connection supervisor")));
    };
    // One turn per client, for the life of the server.
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            // The client gave up before it was accepted: its loss, not the server's.
            Err(e) if is_one_connection(&e) => continue,
            // Anything else (out of descriptors, say) may not pass by itself: exit,
            // and let the supervisor start afresh after its backoff.
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                cx.exit(Exit::error(e));
            }
        };
        match connections.start_child((stream, peer), START_TIMEOUT) {
            Ok(_) => {}
            // Too many clients, or the server is going down: the client's socket
            // closed with the spec that was not started.
            Err(e) => tracing::warn!("cannot serve {peer} in {room}: {e}"),
        }
    }
}

/// Whether an `accept` error concerns only the connection being accepted.
fn is_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// A connection's handler process: owns the client's socket in active mode,
/// so the client's bytes arrive as messages and an idle connection holds no
/// stack; it sets up the writer and the room membership, hands the client's
/// lines to the room, and says goodbye.
struct Connection {
    /// The client's socket until `started` makes it active.
    stream: Option<TcpStream>,
    /// The client's socket in active mode.
    socket: Option<ActiveStream>,
    /// The client's address.
    peer: SocketAddr,
    /// The room's group name.
    room: Arc<str>,
    /// How long the client may stay silent.
    idle: Duration,
    /// The connection's writer, once started.
    writer: Option<Pid<Out>>,
    /// The client's bytes not yet cut into lines.
    lines: Lines,
    /// After a goodbye: how much the client's further input thrown away (see
    /// [`LINGER`]).
    lingering: Option<usize>,
    /// Whether the room was told the client left.
    left: bool,
}

impl Connection {
    fn new(stream: TcpStream, peer: SocketAddr, room: Arc<str>, idle: Duration) -> Self {
        Connection {
            stream: Some(stream),
            socket: None,
            peer,
            room,
            idle,
            writer: None,
            lines: Lines::default(),
            lingering: None,
            left: false,
        }
    }

    /// Ends the conversation: the room is told, the client gets its goodbye
    /// (if any), and the connection lingers to let it arrive, or stops.
    fn end(&mut self, end: End, cx: &mut Context<Self>) {
        let peer = self.peer;
        self.leave(cx);
        let goodbye = match end {
            End::Closed => {
                tracing::info!("{peer}: left");
                None
            }
            End::TooLong => {
                tracing::info!("{peer}: sent a line over {MAX_LINE} bytes");
                Some(format!(
                    "* line too long (over {MAX_LINE} bytes), closing\n"
                ))
            }
            End::Silent => {
                tracing::info!("{peer}: timed out");
                Some(format!("* no word from you for {:?}, closing\n", self.idle))
            }
            End::Failed(e) => {
                tracing::info!("{peer}: lost: {e}");
                if let Some(socket) = &self.socket {
                    socket.close();
                }
                None
            }
        };
        let lingers = goodbye.is_some();
        if let Some(writer) = &self.writer {
            // The writer may have ended already; then there is nobody left to
            // tell. A full mailbox makes this wait for room: the goodbye comes
            // after what the client was still owed.
            let _ = writer.send_timeout(Out::Close(goodbye), WRITE_TIMEOUT);
        }
        match (&self.socket, lingers) {
            (Some(socket), true) => {
                self.lingering = Some(0);
                cx.set_idle_timeout(Some(LINGER));
                socket.set_active(Active::Once);
            }
            _ => cx.stop(),
        }
    }

    /// Leaves the room and tells it, once.
    fn leave(&mut self, cx: &mut Context<Self>) {
        if std::mem::replace(&mut self.left, true) {
            return;
        }
        if let Some(writer) = &self.writer {
            cx.runtime().leave_group(&self.room, writer);
            tell_room(cx, &self.room, writer, format!("* {} left\n", self.peer));
        }
    }
}

impl Process for Connection {
    type Message = SocketEvent;

    fn started(&mut self, cx: &mut Context<Self>) {
        let peer = self.peer;
        let stream = self.stream.take().expect("started once");
        let writer_stream = match stream
            .set_write_timeout(Some(WRITE_TIMEOUT))
            .and_then(|()| stream.try_clone())
        {
            Ok(writer_stream) => writer_stream,
            Err(e) => {
                tracing::info!("{peer}: lost at once: {e}");
                self.left = true;
                return cx.stop();
            }
        };
        let writer = cx.spawn_link(Writer {
            stream: writer_stream,
        });
        let handle = cx.runtime();
        if !handle.join_group(&*self.room, &writer) {
            // The writer has ended already, which before its first message only
            // a kill does; the link takes this process along.
            self.left = true;
            return cx.stop();
        }
        let others = match handle
            .group_members::<Out>(&self.room)
            .len()
            .saturating_sub(1)
        {
            0 => "nobody else here".to_string(),
            1 => "1 other here".to_string(),
            n => format!("{n} others here"),
        };
        let _ = writer.send(Out::Line(format!("* welcome, {peer}; {others}\n").into()));
        tell_room(cx, &self.room, &writer, format!("* {peer} joined\n"));
        tracing::info!("{peer}: joined");
        self.writer = Some(writer);
        match stream.into_active(cx.pid(), Active::Once) {
            Ok(socket) => self.socket = Some(socket),
            Err(e) => return self.end(End::Failed(e), cx),
        }
        cx.set_idle_timeout(Some(self.idle));
    }

    fn handle(&mut self, event: SocketEvent, cx: &mut Context<Self>) {
        if let Some(thrown_away) = self.lingering.as_mut() {
            // After the goodbye: throw input away until the client closes, or
            // for at most LINGER_BYTES (LINGER is the idle timeout now).
            match event {
                SocketEvent::Data(bytes) => {
                    *thrown_away += bytes.len();
                    match (*thrown_away < LINGER_BYTES, &self.socket) {
                        (true, Some(socket)) => socket.set_active(Active::Once),
                        _ => cx.stop(),
                    }
                }
                _ => cx.stop(),
            }
            return;
        }
        match event {
            SocketEvent::Data(bytes) => {
                self.lines.feed(&bytes);
                loop {
                    match self.lines.next_line() {
                        Some(Ok(line)) if line.is_empty() => {}
                        Some(Ok(line)) => {
                            if let Some(writer) = &self.writer {
                                tell_room(
                                    cx,
                                    &self.room,
                                    writer,
                                    format!("{}: {line}\n", self.peer),
                                );
                            }
                        }
                        Some(Err(TooLong)) => return self.end(End::TooLong, cx),
                        None => break,
                    }
                }
                if let Some(socket) = &self.socket {
                    socket.set_active(Active::Once);
                }
            }
            SocketEvent::Closed => self.end(End::Closed, cx),
            SocketEvent::Error(e) => self.end(End::Failed(e), cx),
            _ => self.end(End::Failed(io::Error::other("unknown socket event")), cx),
        }
    }

    fn timeout(&mut self, cx: &mut Context<Self>) {
        match self.lingering {
            Some(_) => cx.stop(),
            None => self.end(End::Silent, cx),
        }
    }

    fn stopped(&mut self, cx: &mut Context<Self>) {
        // Stopped by its supervisor (the server stops): the room is told.
        self.leave(cx);
    }
}

/// Hands `line` to every member of `room` except `sender`. A member whose
/// mailbox is full gets [`SLOW_CLIENT_GRACE`] to make room (so the speaker
/// slows to the pace of the slowest client that reads); one that stays full is
/// too slow to read: it gets an exit signal that ends it at once, even in the
/// middle of a write, and its connection with it (they are linked), as a clean end
/// ([`Exit::done`]), not a crash.
fn tell_room(cx: &Scope, room: &str, sender: &Pid<Out>, line: String) {
    let line: Arc<str> = line.into();
    for member in cx.runtime().group_members::<Out>(room) {
        if member == *sender {
            continue;
        }
        // A member that has just ended has left the room anyway.
        let sent = member.send_timeout(Out::Line(Arc::clone(&line)), SLOW_CLIENT_GRACE);
        if let Err(SendError::Full(_)) = sent {
            tracing::info!("{}: too slow to read, dropped", member.id());
            cx.send_exit(&member, Exit::done(io::Error::other("too slow to read")));
        }
    }
}

/// Why a conversation ended.
enum End {
    /// The client closed its end.
    Closed,
    /// A line longer than [`MAX_LINE`].
    TooLong,
    /// Nothing for the idle timeout.
    Silent,
    /// The connection failed.
    Failed(io::Error),
}

/// A line longer than [`MAX_LINE`] came (or is coming: no newline within it).
struct TooLong;

/// Cuts what a client sends into lines.
#[derive(Default)]
struct Lines {
    /// Bytes received and not yet returned as a line.
    buf: Vec<u8>,
    /// How much of `buf`, from its start, is known to hold no newline.
    scanned: usize,
}

impl Lines {
    /// Takes bytes the client sent.
    fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, without its ending; `None` until one is there.
    fn next_line(&mut self) -> Option<Result<String, TooLong>> {
        if let Some(at) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let end = self.scanned + at;
            let mut line: Vec<u8> = self.buf.drain(..=end).collect();
            self.scanned = 0;
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > MAX_LINE {
                return Some(Err(TooLong));
            }
            return Some(Ok(String::from_utf8_lossy(&line).into_owned()));
        }
        self.scanned = self.buf.len();
        // Room for the longest line and a "\r" before its newline.
        (self.buf.len() > MAX_LINE + 1).then_some(Err(TooLong))
    }
}

/// The writer of a connection: writes what the room sends to the client.
struct Writer {
    /// The connection, shared with its handler's active socket.
    stream: TcpStream,
}

impl Writer {
    /// Gives up on the client: closes the connection, which also ends its handler,
    /// and stops.
    fn give_up(&mut self, why: &str, cx: &mut Context<Self>) {
        if let Ok(peer) = self.stream.peer_addr() {
            tracing::info!("{peer}: {why}");
        }
        self.stream.close();
        cx.stop();
    }
}

impl Process for Writer {
    type Message = Out;

    fn mailbox_capacity(&self) -> Option<usize> {
        Some(MAX_BACKLOG)
    }

    fn handle(&mut self, msg: Out, cx: &mut Context<Self>) {
        match msg {
            Out::Line(line) => {
                if let Err(e) = self.stream.write_all(line.as_bytes()) {
                    self.give_up(&format!("write failed: {e}"), cx);
                }
            }
            Out::Close(goodbye) => {
                if let Some(goodbye) = goodbye {
                    let _ = self.stream.write_all(goodbye.as_bytes());
                }
                // The handler may still be taking input (to linger); end only our half.
                let _ = self.stream.shutdown(Shutdown::Write);
                cx.stop();
            }
        }
    }
}

/// How to run the example, for bad arguments.
const USAGE: &str = "usage: chat [PORT [IDLE_TIMEOUT_SECS]]";

#[allow(dead_code)] // tests/chat.rs includes this file and has its own `main`
fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let port = match args.next().map(|port| port.parse::<u16>()) {
        None => DEFAULT_PORT,
        Some(Ok(port)) => port,
        Some(Err(_)) => {
            eprintln!("{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let idle = match args.next().map(|secs| secs.parse::<u64>()) {
        None => DEFAULT_IDLE_TIMEOUT,
        Some(Ok(secs)) if secs > 0 => Duration::from_secs(secs),
        Some(_) => {
            eprintln!("{USAGE} (the idle timeout is a whole number of seconds, at least 1)");
            return ExitCode::FAILURE;
        }
    };

    tracing_subscriber::fmt()
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let runtime = match Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match serve(&runtime.handle(), (Ipv4Addr::LOCALHOST, port), idle) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr();
    println!(
        "chat server on {addr}, idle timeout {idle:?}; try `nc {} {}`; Ctrl-C stops it",
        addr.ip(),
        addr.port()
    );

    // Wait for Ctrl-C (or a service manager's SIGTERM), then shut down in order;
    // or for the supervisor, which ends by itself only if the acceptor keeps
    // failing.
    let main = match runtime.spawn_fn(move |cx: &mut FnContext<OsSignal>| {
        let watch = cx.monitor(server.supervisor());
        loop {
            match cx.receive_either() {
                Received::Message(signal) => {
                    tracing::info!(?signal, "shutting down");
                    return Ok(server.shut_down(cx, SHUTDOWN_TIMEOUT));
                }
                Received::Notice(Notice::Down(down)) if down.monitor == watch => {
                    return Err(down.reason);
                }
                Received::Notice(_) => {}
            }
        }
    }) {
        Ok(main) => main,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let signals = [OsSignal::Interrupt, OsSignal::Terminate];
    let _signals = match runtime
        .handle()
        .forward_os_signals(&signals, &main.pid(), |signal| signal)
    {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("cannot catch Ctrl-C: {e}");
            return ExitCode::FAILURE;
        }
    };
    match main.join() {
        Ok(Ok(Ok(_))) => {
            println!("the chat server shut down");
            ExitCode::SUCCESS
        }
        Ok(Ok(Err(e))) => {
            eprintln!("the chat server did not shut down in time: {e}");
            ExitCode::FAILURE
        }
        Ok(Err(reason)) | Err(reason) => {
            eprintln!("the chat server stopped: {reason}");
            ExitCode::FAILURE
        }
    }
}
