//! `idle_connections`: as many idle connections as the descriptor limit allows
//! (up to 10,000; each takes two descriptors, both ends being in this process),
//! each served by its own process (task), whose client never sends. fibra: a
//! handler process per connection, owning an active socket (`into_active`), so
//! an idle one holds no stack; tokio: a task per connection awaiting a read
//! into a 1 KiB buffer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibra::net::{Active, ActiveStream, SocketEvent, TcpListener};
use fibra::{Context, FnContext, Process, Runtime};

use super::io::connect_idle_clients;
use super::memory;

/// The most connections measured.
const MOST: usize = 10_000;

/// What one run measured.
pub struct IdleConnections {
    /// How many connections were open at once.
    pub connections: usize,
    /// From the first connect to the last accept.
    pub elapsed: Duration,
    /// RSS growth over that time.
    pub grew: u64,
}

/// The output line's metrics.
pub fn report(outcome: IdleConnections) -> String {
    format!(
        "connections={} bytes_per_conn={} accepts_per_sec={:.0}",
        outcome.connections,
        outcome.grew / outcome.connections as u64,
        outcome.connections as f64 / outcome.elapsed.as_secs_f64()
    )
}

/// As many connections as fit in the descriptor limit, raised to its hard
/// maximum first.
fn connections() -> usize {
    // Safety: getrlimit and setrlimit read and write the struct given.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            let room = (limit.rlim_cur as usize).saturating_sub(200) / 2;
            return room.min(MOST);
        }
    }
    1_000
}

/// A connection's handler: holds its active socket, echoes what comes.
struct Connection {
    /// The socket, once it has been handed over.
    socket: Option<ActiveStream>,
}

/// What a connection's handler gets.
enum ConnectionMsg {
    Socket(ActiveStream),
    Net(SocketEvent),
}

impl From<SocketEvent> for ConnectionMsg {
    fn from(event: SocketEvent) -> Self {
        ConnectionMsg::Net(event)
    }
}

impl Process for Connection {
    type Message = ConnectionMsg;
    fn handle(&mut self, msg: ConnectionMsg, _cx: &mut Context<Self>) {
        match msg {
            ConnectionMsg::Socket(socket) => {
                socket.set_active(Active::Once);
                self.socket = Some(socket);
            }
            ConnectionMsg::Net(SocketEvent::Data(bytes)) => {
                if let Some(socket) = &self.socket {
                    let _ = std::io::Write::write_all(&mut socket.stream(), &bytes);
                    socket.set_active(Active::Once);
                }
            }
            ConnectionMsg::Net(_) => self.socket = None,
        }
    }
}

pub fn fibra() -> IdleConnections {
    let n = connections();
    let runtime = Runtime::builder().build().expect("runtime");
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the server");
    let addr = listener.local_addr().expect("the server's address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let before = memory::resident_bytes();
    let started = Instant::now();
    let acceptor = runtime
        .spawn_fn(move |cx: &mut FnContext<()>| {
            for _ in 0..n {
                let (stream, _) = listener.accept().expect("accepting a client");
                let handler = cx.spawn(Connection { socket: None });
                let socket = stream
                    .into_active(handler.clone(), Active::Off)
                    .expect("active");
                handler
                    .send(ConnectionMsg::Socket(socket))
                    .expect("the handler lives");
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
        .expect("spawning the acceptor");
    let clients = connect_idle_clients(addr, n, &accepted);
    let elapsed = started.elapsed();
    acceptor.join().expect("the acceptor failed");
    std::thread::sleep(Duration::from_millis(200));
    let grew = memory::resident_bytes().saturating_sub(before);
    drop(clients);
    runtime.shutdown();
    IdleConnections {
        connections: n,
        elapsed,
        grew,
    }
}

pub fn tokio() -> IdleConnections {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = connections();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("binding the server");
    let addr = listener.local_addr().expect("the server's address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let before = memory::resident_bytes();
    let started = Instant::now();
    runtime.spawn(async move {
        for _ in 0..n {
            let (mut stream, _) = listener.accept().await.expect("accepting a client");
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(read) = stream.read(&mut buf).await {
                    if read == 0 || stream.write_all(&buf[..read]).await.is_err() {
                        break;
                    }
                }
            });
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let clients = connect_idle_clients(addr, n, &accepted);
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let grew = memory::resident_bytes().saturating_sub(before);
    drop(clients);
    drop(runtime);
    IdleConnections {
        connections: n,
        elapsed,
        grew,
    }
}
