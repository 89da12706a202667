//! The workloads on tokio, written as a tokio user would: a multi-thread runtime with
//! its default worker count, one task per process, unbounded `mpsc` channels as
//! mailboxes. Each workload's driver runs as a spawned task, not in `block_on`'s future
//! (which polls on the calling thread, outside the worker pool), just as on fibra the
//! driver is a process.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Builder;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::blocked::{BLOCK, PAIRS as BLOCKED_PAIRS, ROUND_TRIPS as BLOCKED_ROUND_TRIPS};
use super::calls::{
    answer, ASYNC_CALLS, CALLS, CHURN_CYCLES, CHURN_WARM_UP, READY_AWAITS, REMOTE_AWAITS,
};
use super::io::{
    connect_idle_clients, idle_cpu, tcp_echo_request, TcpEchoOutcome, TCP_ECHO_CLIENTS,
    TCP_ECHO_PATIENCE, TCP_ECHO_REQUESTS, TCP_ECHO_SIZE,
};
use super::timing::{timer_delay, TimerOutcome, TimerReport};
use super::{
    fan_in_message, memory, ring_successor, skynet_child, FanInCheck, RingOutcome, SkynetOutcome,
    SpawnIdleOutcome, BOUNDED_FAN_IN_CAPACITY, FAN_IN_MESSAGES, FAN_IN_SENDERS,
    PING_PONG_ROUND_TRIPS, RING_HOPS, RING_PROCESSES, SKYNET_DEPTH, SKYNET_FAN_OUT,
    SPAWN_IDLE_PROCESSES, SPAWN_JOIN_OUTSTANDING, SPAWN_JOIN_PROCESSES, WARM_UP,
};

/// Runs `driver` as a task on a fresh default multi-thread runtime and returns its
/// output once it finishes; the runtime (and every task still on it) is dropped after.
fn run<F>(driver: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    run_on(Builder::new_multi_thread(), driver)
}

/// [`run`] with tokio's time driver enabled, which `tokio::time` needs. A tokio user
/// gets it from `#[tokio::main]`; the workloads without timers run without it, as
/// before.
fn run_with_time<F>(driver: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut builder = Builder::new_multi_thread();
    builder.enable_time();
    run_on(builder, driver)
}

/// [`run`] with tokio's IO and time drivers enabled, which `tokio::net` and
/// `tokio::time::timeout` need; `#[tokio::main]` enables both.
fn run_with_io<F>(driver: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut builder = Builder::new_multi_thread();
    builder.enable_io().enable_time();
    run_on(builder, driver)
}

fn run_on<F>(mut builder: Builder, driver: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = builder.build().expect("building a tokio runtime");
    let driver = runtime.spawn(driver);
    let output = runtime.block_on(driver).expect("the driver task failed");
    runtime.shutdown_background();
    output
}

const CLOSED: &str = "a channel closed while the workload was running";

pub fn ping_pong() -> Duration {
    run(async {
        let (to_echo, mut echo_inbox) = unbounded_channel::<u64>();
        let (to_pinger, mut inbox) = unbounded_channel::<u64>();
        tokio::spawn(async move {
            while let Some(n) = echo_inbox.recv().await {
                to_pinger.send(n).expect(CLOSED);
            }
        });
        let mut volley = async |round_trips: u64| {
            for n in 0..round_trips {
                to_echo.send(n).expect(CLOSED);
                assert_eq!(inbox.recv().await.expect(CLOSED), n, "wrong ball back");
            }
        };
        volley(WARM_UP).await;
        let start = Instant::now();
        volley(PING_PONG_ROUND_TRIPS).await;
        start.elapsed()
    })
}

pub fn ring() -> RingOutcome {
    run(async {
        let (to_driver, mut inbox) = unbounded_channel::<usize>();
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..RING_PROCESSES)
            .map(|_| unbounded_channel::<u64>())
            .unzip();
        for (index, mut mailbox) in receivers.into_iter().enumerate() {
            let next = senders[ring_successor(index)].clone();
            let done = to_driver.clone();
            tokio::spawn(async move {
                while let Some(hops) = mailbox.recv().await {
                    if hops == 0 {
                        done.send(index).expect(CLOSED);
                    } else {
                        next.send(hops - 1).expect(CLOSED);
                    }
                }
            });
        }
        let first = &senders[0];

        first.send(WARM_UP).expect(CLOSED);
        let last = inbox.recv().await.expect(CLOSED);
        assert_eq!(
            last as u64,
            WARM_UP % RING_PROCESSES as u64,
            "warm-up lap lost"
        );

        let start = Instant::now();
        first.send(RING_HOPS).expect(CLOSED);
        let last = inbox.recv().await.expect(CLOSED);
        RingOutcome {
            elapsed: start.elapsed(),
            last,
        }
    })
}

/// A skynet node: a leaf sends its number up; an inner node spawns its children and
/// sends up the sum of their replies.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` cannot spawn itself: the compiler cannot prove the recursive \
              future `Send` unless the signature says so"
)]
fn skynet_node(
    level: u32,
    number: u64,
    parent: UnboundedSender<u64>,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        if level == SKYNET_DEPTH {
            parent.send(number).expect(CLOSED);
            return;
        }
        let (to_me, mut inbox) = unbounded_channel();
        for i in 0..SKYNET_FAN_OUT {
            tokio::spawn(skynet_node(
                level + 1,
                skynet_child(number, i),
                to_me.clone(),
            ));
        }
        let mut sum = 0;
        for _ in 0..SKYNET_FAN_OUT {
            sum += inbox.recv().await.expect(CLOSED);
        }
        parent.send(sum).expect(CLOSED);
    }
}

pub fn skynet() -> SkynetOutcome {
    run(async {
        let (to_driver, mut inbox) = unbounded_channel();
        let start = Instant::now();
        tokio::spawn(skynet_node(0, 0, to_driver));
        let sum = inbox.recv().await.expect(CLOSED);
        SkynetOutcome {
            elapsed: start.elapsed(),
            sum,
        }
    })
}

pub fn fan_in() -> Duration {
    run(async {
        let (to_receiver, mut inbox) = unbounded_channel();
        let start = Instant::now();
        let senders: Vec<_> = (0..FAN_IN_SENDERS)
            .map(|sender| {
                let to_receiver = to_receiver.clone();
                tokio::spawn(async move {
                    for seq in 0..FAN_IN_MESSAGES {
                        to_receiver.send(fan_in_message(sender, seq)).expect(CLOSED);
                    }
                })
            })
            .collect();
        let mut check = FanInCheck::new();
        for _ in 0..FAN_IN_SENDERS * FAN_IN_MESSAGES {
            check.record(inbox.recv().await.expect(CLOSED));
        }
        let elapsed = start.elapsed();
        check.finish();
        for sender in senders {
            sender.await.expect("a fan-in sender failed");
        }
        elapsed
    })
}

/// `fan_in` through tokio's bounded `mpsc` of [`BOUNDED_FAN_IN_CAPACITY`],
/// the senders awaiting room.
pub fn bounded_fan_in() -> Duration {
    run(async {
        let (to_receiver, mut inbox) = tokio::sync::mpsc::channel(BOUNDED_FAN_IN_CAPACITY);
        let start = Instant::now();
        let senders: Vec<_> = (0..FAN_IN_SENDERS)
            .map(|sender| {
                let to_receiver = to_receiver.clone();
                tokio::spawn(async move {
                    for seq in 0..FAN_IN_MESSAGES {
                        to_receiver
                            .send(fan_in_message(sender, seq))
                            .await
                            .expect(CLOSED);
                    }
                })
            })
            .collect();
        let mut check = FanInCheck::new();
        for _ in 0..FAN_IN_SENDERS * FAN_IN_MESSAGES {
            check.record(inbox.recv().await.expect(CLOSED));
        }
        let elapsed = start.elapsed();
        check.finish();
        for sender in senders {
            sender.await.expect("a fan-in sender failed");
        }
        elapsed
    })
}

pub fn spawn_idle() -> SpawnIdleOutcome {
    run(async {
        let (to_driver, mut inbox) = unbounded_channel::<u64>();
        let mut mailboxes = Vec::with_capacity(SPAWN_IDLE_PROCESSES);
        memory::fault_in(&mut mailboxes);

        let rss_before = memory::resident_bytes();
        let start = Instant::now();
        for _ in 0..SPAWN_IDLE_PROCESSES {
            let (to_task, mut mailbox) = unbounded_channel::<u64>();
            let done = to_driver.clone();
            tokio::spawn(async move {
                let n = mailbox.recv().await.expect(CLOSED);
                done.send(n).expect(CLOSED);
            });
            mailboxes.push(to_task);
        }
        let spawn = start.elapsed();
        let rss_after = memory::resident_bytes();

        for (n, mailbox) in mailboxes.iter().enumerate() {
            mailbox.send(n as u64).expect(CLOSED);
        }
        let mut acknowledged = 0;
        for _ in 0..SPAWN_IDLE_PROCESSES {
            acknowledged += inbox.recv().await.expect(CLOSED);
        }
        SpawnIdleOutcome {
            spawn,
            rss_before,
            rss_after,
            acknowledged,
        }
    })
}

/// `timers`: each task awaits `tokio::time::sleep` for its delay once.
pub fn timers(processes: usize) -> TimerOutcome {
    run_with_time(async move {
        let (to_driver, mut inbox) = unbounded_channel::<TimerReport>();
        let start = Instant::now();
        for index in 0..processes {
            let done = to_driver.clone();
            tokio::spawn(async move {
                let begun = Instant::now();
                tokio::time::sleep(timer_delay(index)).await;
                done.send(TimerReport::woke_now(index, begun))
                    .expect(CLOSED);
            });
        }
        let mut reports = Vec::with_capacity(processes);
        for _ in 0..processes {
            reports.push(inbox.recv().await.expect(CLOSED));
        }
        TimerOutcome {
            processes,
            start,
            reports,
        }
    })
}

/// `call`: a server task answers each request through the `oneshot` that came with it;
/// the driver sends a request and awaits the answer, with no timeout.
pub fn call() -> Duration {
    call_n(CALLS)
}

/// `async_call`'s reference: [`call`] with `ASYNC_CALLS` calls.
pub fn async_call() -> Duration {
    call_n(ASYNC_CALLS)
}

/// A caller task and a server task, `count` request/reply round trips timed.
fn call_n(count: u64) -> Duration {
    run(async move {
        let (to_server, mut requests) = unbounded_channel::<(u64, oneshot::Sender<u64>)>();
        tokio::spawn(async move {
            while let Some((n, reply_to)) = requests.recv().await {
                // An error means the caller stopped waiting; it reports that itself.
                let _ = reply_to.send(answer(n));
            }
        });
        let call_each = async |count: u64| {
            for n in 0..count {
                let (reply_to, reply) = oneshot::channel();
                to_server.send((n, reply_to)).expect(CLOSED);
                let reply = reply.await.expect("the server dropped a request");
                assert_eq!(reply, answer(n), "wrong reply to call {n}");
            }
        };
        call_each(WARM_UP).await;
        let start = Instant::now();
        call_each(count).await;
        start.elapsed()
    })
}

/// `dynamic_churn`: each cycle spawns a task into a `JoinSet` with the cycle's
/// number, asks it for its answer through a `oneshot` it receives by another, aborts
/// it and awaits its end.
pub fn dynamic_churn() -> Duration {
    run(async {
        let mut jobs = JoinSet::new();
        let mut cycles = async |from: u64, count: u64| {
            for n in from..from + count {
                let (ask, asked) = oneshot::channel::<oneshot::Sender<u64>>();
                let job = jobs.spawn(async move {
                    if let Ok(reply_to) = asked.await {
                        let _ = reply_to.send(answer(n));
                    }
                    // Runs on, answering nothing more, until it is aborted.
                    std::future::pending::<()>().await;
                });
                let (reply_to, reply) = oneshot::channel();
                ask.send(reply_to).expect(CLOSED);
                let reply = reply.await.expect("a job dropped its request");
                assert_eq!(reply, answer(n), "wrong reply from job {n}");
                job.abort();
                let ended = jobs.join_next().await.expect("no job to await");
                assert!(
                    ended.is_err_and(|e| e.is_cancelled()),
                    "job {n} was not aborted"
                );
            }
        };
        cycles(0, CHURN_WARM_UP).await;
        let start = Instant::now();
        cycles(CHURN_WARM_UP, CHURN_CYCLES).await;
        let elapsed = start.elapsed();
        assert!(jobs.is_empty(), "aborted jobs are still kept");
        elapsed
    })
}

/// `tcp_echo`: an acceptor task spawns one echo task per connection; 100 client tasks
/// each connect over loopback and make their round trips one after another.
pub fn tcp_echo() -> TcpEchoOutcome {
    run_with_io(async {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("binding the echo server");
        let addr = listener.local_addr().expect("the echo server's address");
        tokio::spawn(async move {
            // Ends with the runtime; every client is accepted long before that.
            for _ in 0..TCP_ECHO_CLIENTS {
                let (stream, _) = listener.accept().await.expect("accepting a client");
                tokio::spawn(echo(stream));
            }
        });

        let start = Instant::now();
        let clients: Vec<_> = (0..TCP_ECHO_CLIENTS)
            .map(|client| tokio::spawn(echo_client(addr, client)))
            .collect();
        let mut echoed = 0;
        for client in clients {
            echoed += client.await.expect("a client task failed");
        }
        TcpEchoOutcome {
            elapsed: start.elapsed(),
            echoed,
        }
    })
}

/// Writes back whatever `stream` brings, until the client closes it.
async fn echo(mut stream: TcpStream) {
    stream.set_nodelay(true).expect("setting TCP_NODELAY");
    let mut buf = [0u8; TCP_ECHO_SIZE];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => stream
                .write_all(&buf[..n])
                .await
                .expect("echoing to a client"),
            Err(e) => panic!("reading from a client: {e}"),
        }
    }
}

/// Client number `client`: connects, makes its round trips and checks each response;
/// returns how many came back right.
async fn echo_client(addr: SocketAddr, client: u64) -> u64 {
    let mut stream = TcpStream::connect(addr).await.expect("connecting");
    stream.set_nodelay(true).expect("setting TCP_NODELAY");
    let mut response = [0u8; TCP_ECHO_SIZE];
    for seq in 0..TCP_ECHO_REQUESTS {
        let request = tcp_echo_request(client, seq);
        stream.write_all(&request).await.expect("sending a request");
        tokio::time::timeout(TCP_ECHO_PATIENCE, stream.read_exact(&mut response))
            .await
            .unwrap_or_else(|_| panic!("client {client} waited too long for response {seq}"))
            .expect("reading a response");
        assert_eq!(response, request, "client {client} got a wrong response");
    }
    TCP_ECHO_REQUESTS
}

/// `spawn_join` with tasks: `tokio::spawn` and awaiting the `JoinHandle`.
pub fn spawn_join() -> (Duration, u64) {
    run(async {
        let mut outstanding = std::collections::VecDeque::with_capacity(SPAWN_JOIN_OUTSTANDING);
        let mut sum = 0;
        let start = Instant::now();
        for n in 0..SPAWN_JOIN_PROCESSES {
            if outstanding.len() == SPAWN_JOIN_OUTSTANDING {
                let oldest: tokio::task::JoinHandle<u64> =
                    outstanding.pop_front().expect("a task is outstanding");
                sum += oldest.await.expect("a task failed");
            }
            outstanding.push_back(tokio::spawn(async move { n }));
        }
        for task in outstanding {
            sum += task.await.expect("a task failed");
        }
        (start.elapsed(), sum)
    })
}

/// `idle_cpu` with tasks: a default multi-thread runtime with its IO and time
/// drivers, and `connections` idle connections, each served by a task awaiting
/// `read`.
pub fn idle_cpu_with(connections: usize) -> String {
    let runtime = Builder::new_multi_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("building a tokio runtime");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = runtime
        .block_on(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .expect("binding the server");
    let addr = listener.local_addr().expect("the server's address");
    let counter = accepted.clone();
    runtime.spawn(async move {
        for _ in 0..connections {
            let (stream, _) = listener.accept().await.expect("accepting a client");
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(echo(stream));
        }
    });
    let clients = connect_idle_clients(addr, connections, &accepted);
    let report = idle_cpu();
    drop(clients);
    runtime.shutdown_background();
    report
}

/// `blocked_worker`: a task blocks its worker's thread in a loop while task pairs
/// ping-pong over unbounded channels; returns every round trip.
pub fn blocked_worker() -> Vec<Duration> {
    run(async {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let blocker = {
            let stop = std::sync::Arc::clone(&stop);
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(BLOCK);
                    tokio::task::yield_now().await;
                }
            })
        };
        let pingers: Vec<_> = (0..BLOCKED_PAIRS)
            .map(|_| {
                tokio::spawn(async {
                    let (to_ponger, mut balls) = unbounded_channel::<Instant>();
                    let (to_pinger, mut back) = unbounded_channel::<Instant>();
                    tokio::spawn(async move {
                        while let Some(sent) = balls.recv().await {
                            if to_pinger.send(sent).is_err() {
                                break;
                            }
                        }
                    });
                    let mut samples = Vec::with_capacity(BLOCKED_ROUND_TRIPS);
                    for _ in 0..BLOCKED_ROUND_TRIPS {
                        to_ponger.send(Instant::now()).expect(CLOSED);
                        let sent = back.recv().await.expect(CLOSED);
                        samples.push(sent.elapsed());
                    }
                    samples
                })
            })
            .collect();
        let mut samples = Vec::with_capacity(BLOCKED_PAIRS * BLOCKED_ROUND_TRIPS);
        for pinger in pingers {
            samples.extend(pinger.await.expect("a pinger failed"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        blocker.await.expect("the blocker failed");
        samples
    })
}

/// `block_on_future`, `future=ready`: a task awaits ready futures.
pub fn await_ready() -> Duration {
    run(async {
        let start = Instant::now();
        let mut sum = 0u64;
        for n in 0..READY_AWAITS {
            sum = sum.wrapping_add(std::future::ready(n).await);
        }
        assert_eq!(
            sum,
            (0..READY_AWAITS).sum::<u64>(),
            "a ready future lost its value"
        );
        start.elapsed()
    })
}

/// `block_on_future`, `future=remote`: a task awaits oneshots that a plain thread
/// completes.
pub fn await_remote() -> Duration {
    let (to_helper, senders) = std::sync::mpsc::channel::<oneshot::Sender<u64>>();
    let helper = std::thread::spawn(move || {
        for (n, sender) in senders.into_iter().enumerate() {
            let _ = sender.send(n as u64);
        }
    });
    let elapsed = run(async move {
        let start = Instant::now();
        for n in 0..REMOTE_AWAITS {
            let (tx, rx) = oneshot::channel();
            to_helper.send(tx).expect("the helper thread ended");
            assert_eq!(rx.await, Ok(n), "wrong value from the helper");
        }
        start.elapsed()
    });
    helper.join().expect("the helper thread panicked");
    elapsed
}
