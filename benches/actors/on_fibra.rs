//! The workloads on fibra, on a default runtime (one worker per core).
//!
//! Processes that wait for messages between bursts of work (the echo, ring members,
//! skynet nodes, idle processes, timer sleepers, the call server) are handler processes, so they hold no
//! stack while idle. Processes that run a loop from start to end (a pinger, a fan-in
//! sender or receiver, each workload's driver) are free-running.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use fibra::net::{TcpListener, TcpStream};
use fibra::prelude::*;

use super::blocked::{BLOCK, PAIRS as BLOCKED_PAIRS, ROUND_TRIPS as BLOCKED_ROUND_TRIPS};
use super::calls::{
    answer, RestartOutcome, ASYNC_CALLS, CALLS, CALL_TIMEOUT, CHURN_CYCLES, CHURN_WARM_UP,
    READY_AWAITS, REMOTE_AWAITS, RESTART_CHILD, RESTART_CRASHES, RESTART_INTENSITY,
    RESTART_PATIENCE, RESTART_PERIOD, RESTART_WARM_UP,
};
use super::io::{
    connect_idle_clients, idle_cpu, tcp_echo_request, TcpEchoOutcome, BLOCKING_CALLS,
    BLOCKING_PROCESSES, TCP_ECHO_CLIENTS, TCP_ECHO_PATIENCE, TCP_ECHO_REQUESTS, TCP_ECHO_SIZE,
};
use super::timing::{
    timer_delay, TimeoutChurnOutcome, TimerOutcome, TimerReport, TIMEOUT_CHURN_CALLS,
    TIMEOUT_CHURN_TIMEOUT,
};
use super::{
    fan_in_message, memory, ring_successor, skynet_child, FanInCheck, MillionIdleOutcome,
    RingOutcome, SkynetOutcome, SpawnIdleOutcome, BOUNDED_FAN_IN_CAPACITY, FAN_IN_MESSAGES,
    FAN_IN_SENDERS, FREE_BLOCKED_PROCESSES, MILLION_IDLE_PROCESSES, PING_PONG_ROUND_TRIPS,
    RING_HOPS, RING_PROCESSES, SKYNET_DEPTH, SKYNET_FAN_OUT, SPAWN_IDLE_PROCESSES,
    SPAWN_JOIN_OUTSTANDING, SPAWN_JOIN_PROCESSES, WARM_UP,
};

/// Runs `driver` as a free-running process with mailbox type `M` on a fresh default
/// runtime, waits for it and returns its result; the runtime is shut down after.
fn run<M, T, F>(driver: F) -> T
where
    M: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&mut FnContext<M>) -> T + Send + 'static,
{
    let runtime = Runtime::builder()
        .build()
        .expect("building a fibra runtime");
    let output = runtime.block_on(move |cx: &mut FnContext<()>| {
        cx.spawn_fn(driver)
            .join()
            .expect("the driver process failed")
    });
    runtime.shutdown();
    output
}

const GONE: &str = "a process exited while the workload was running";

/// Sends every message back to `peer`, until it gets [`Echo::STOP`].
struct Echo {
    /// Where the balls go back to.
    peer: Pid<u64>,
}

impl Echo {
    /// The message that ends the echo.
    const STOP: u64 = u64::MAX;
}

impl Process for Echo {
    type Message = u64;

    fn handle(&mut self, ball: u64, cx: &mut Context<Self>) {
        if ball == Echo::STOP {
            cx.stop();
        } else {
            self.peer.send(ball).expect(GONE);
        }
    }
}

pub fn ping_pong() -> Duration {
    run(|cx: &mut FnContext<u64>| {
        let echo = cx.spawn(Echo { peer: cx.pid() });
        let volley = |cx: &mut FnContext<u64>, round_trips: u64| {
            for ball in 0..round_trips {
                echo.send(ball).expect(GONE);
                assert_eq!(cx.receive(), ball, "wrong ball back");
            }
        };
        volley(cx, WARM_UP);
        let start = Instant::now();
        volley(cx, PING_PONG_ROUND_TRIPS);
        let elapsed = start.elapsed();
        echo.send(Echo::STOP).expect(GONE);
        elapsed
    })
}

/// A ring member. The first member is spawned by the driver; each member spawns the
/// next in `started`, and the last one closes the ring back to the first.
struct RingMember {
    /// Position in the ring.
    index: usize,
    /// The first member, or `None` in the first member itself.
    first: Option<Pid<u64>>,
    /// The member the token goes to next; set in `started`.
    next: Option<Pid<u64>>,
    /// The driver, told the member's index when the token runs out of hops here.
    done: Pid<usize>,
}

impl Process for RingMember {
    type Message = u64;

    fn started(&mut self, cx: &mut Context<Self>) {
        let first = self.first.clone().unwrap_or_else(|| cx.pid());
        let successor = ring_successor(self.index);
        self.next = Some(if successor == 0 {
            first
        } else {
            cx.spawn(RingMember {
                index: successor,
                first: Some(first),
                next: None,
                done: self.done.clone(),
            })
        });
    }

    fn handle(&mut self, hops: u64, _cx: &mut Context<Self>) {
        if hops == 0 {
            self.done.send(self.index).expect(GONE);
        } else {
            let next = self.next.as_ref().expect("message before `started`");
            next.send(hops - 1).expect(GONE);
        }
    }
}

pub fn ring() -> RingOutcome {
    run(|cx: &mut FnContext<usize>| {
        let first = cx.spawn(RingMember {
            index: 0,
            first: None,
            next: None,
            done: cx.pid(),
        });

        // Besides warming up, the first laps wait for the ring to be built.
        first.send(WARM_UP).expect(GONE);
        let last = cx.receive();
        assert_eq!(
            last as u64,
            WARM_UP % RING_PROCESSES as u64,
            "warm-up lap lost"
        );

        let start = Instant::now();
        first.send(RING_HOPS).expect(GONE);
        let last = cx.receive();
        RingOutcome {
            elapsed: start.elapsed(),
            last,
        }
    })
}

/// A skynet node. A leaf sends its number to its parent in `started` and stops; an
/// inner node spawns its children in `started`, adds up their replies and sends the
/// sum up after the last one.
struct SkynetNode {
    /// Depth in the tree; the leaves are at `SKYNET_DEPTH`.
    level: u32,
    /// The node's number, unique within its level.
    number: u64,
    /// Where the number or sum goes.
    parent: Pid<u64>,
    /// Sum of the replies so far.
    sum: u64,
    /// Replies still to come.
    pending: u64,
}

impl SkynetNode {
    fn new(level: u32, number: u64, parent: Pid<u64>) -> SkynetNode {
        SkynetNode {
            level,
            number,
            parent,
            sum: 0,
            pending: SKYNET_FAN_OUT,
        }
    }
}

impl Process for SkynetNode {
    type Message = u64;

    fn started(&mut self, cx: &mut Context<Self>) {
        if self.level == SKYNET_DEPTH {
            self.parent.send(self.number).expect(GONE);
            cx.stop();
            return;
        }
        for i in 0..SKYNET_FAN_OUT {
            let child = SkynetNode::new(self.level + 1, skynet_child(self.number, i), cx.pid());
            cx.spawn(child);
        }
    }

    fn handle(&mut self, reply: u64, cx: &mut Context<Self>) {
        self.sum += reply;
        self.pending -= 1;
        if self.pending == 0 {
            self.parent.send(self.sum).expect(GONE);
            cx.stop();
        }
    }
}

pub fn skynet() -> SkynetOutcome {
    run(|cx: &mut FnContext<u64>| {
        let start = Instant::now();
        cx.spawn(SkynetNode::new(0, 0, cx.pid()));
        let sum = cx.receive();
        SkynetOutcome {
            elapsed: start.elapsed(),
            sum,
        }
    })
}

pub fn fan_in() -> Duration {
    fan_in_into(None)
}

/// `fan_in` into a mailbox bounded to [`BOUNDED_FAN_IN_CAPACITY`] messages,
/// the senders waiting for room with `send_wait`.
pub fn bounded_fan_in() -> Duration {
    fan_in_into(Some(BOUNDED_FAN_IN_CAPACITY))
}

/// `fan_in`, the receiver's mailbox bounded to `capacity` if given (then the
/// senders use `send_wait`).
fn fan_in_into(capacity: Option<usize>) -> Duration {
    run(move |cx: &mut FnContext<u64>| {
        cx.set_mailbox_capacity(capacity);
        let start = Instant::now();
        let senders: Vec<_> = (0..FAN_IN_SENDERS)
            .map(|sender| {
                let receiver = cx.pid();
                cx.spawn_fn(move |_: &mut FnContext<()>| {
                    for seq in 0..FAN_IN_MESSAGES {
                        let message = fan_in_message(sender, seq);
                        match capacity {
                            Some(_) => receiver.send_wait(message),
                            None => receiver.send(message),
                        }
                        .expect(GONE);
                    }
                })
            })
            .collect();
        let mut check = FanInCheck::new();
        for _ in 0..FAN_IN_SENDERS * FAN_IN_MESSAGES {
            check.record(cx.receive());
        }
        let elapsed = start.elapsed();
        check.finish();
        for sender in senders {
            sender.join().expect("a fan-in sender failed");
        }
        elapsed
    })
}

/// Waits for one number, acknowledges it to `done` and stops (`spawn_idle`).
struct AckThenStop {
    /// Where the acknowledgement goes.
    done: Pid<u64>,
}

impl Process for AckThenStop {
    type Message = u64;

    fn handle(&mut self, n: u64, cx: &mut Context<Self>) {
        self.done.send(n).expect(GONE);
        cx.stop();
    }
}

/// Acknowledges each number to `done` and stays alive, idle, in between
/// (`million_idle`). As small as a useful process gets: one address.
struct AckAndLinger {
    /// Where the acknowledgements go.
    done: Pid<u64>,
}

impl Process for AckAndLinger {
    type Message = u64;

    fn handle(&mut self, n: u64, _cx: &mut Context<Self>) {
        self.done.send(n).expect(GONE);
    }
}

pub fn spawn_idle() -> SpawnIdleOutcome {
    run(|cx: &mut FnContext<u64>| {
        let mut pids = Vec::with_capacity(SPAWN_IDLE_PROCESSES);
        memory::fault_in(&mut pids);

        let rss_before = memory::resident_bytes();
        let start = Instant::now();
        for _ in 0..SPAWN_IDLE_PROCESSES {
            pids.push(cx.spawn(AckThenStop { done: cx.pid() }));
        }
        let spawn = start.elapsed();
        let rss_after = memory::resident_bytes();

        for (n, pid) in pids.iter().enumerate() {
            pid.send(n as u64).expect(GONE);
        }
        let mut acknowledged = 0;
        for _ in 0..SPAWN_IDLE_PROCESSES {
            acknowledged += cx.receive();
        }
        SpawnIdleOutcome {
            spawn,
            rss_before,
            rss_after,
            acknowledged,
        }
    })
}

/// Processes messaged per batch in `million_idle` before their acknowledgements are
/// collected, so the acknowledgements never pile up into megabytes of queue that the
/// allocator then keeps and the RSS reading charges to the idle processes. Picked out
/// of thin air: big enough to keep every worker busy.
const MILLION_IDLE_BATCH: usize = 1_024;

pub fn million_idle() -> MillionIdleOutcome {
    run(|cx: &mut FnContext<u64>| {
        let mut pids = Vec::with_capacity(MILLION_IDLE_PROCESSES);
        memory::fault_in(&mut pids);

        let rss_before = memory::resident_bytes();
        for _ in 0..MILLION_IDLE_PROCESSES {
            pids.push(cx.spawn(AckAndLinger { done: cx.pid() }));
        }
        let mut acknowledged = 0;
        for (batch, chunk) in pids.chunks(MILLION_IDLE_BATCH).enumerate() {
            for (i, pid) in chunk.iter().enumerate() {
                pid.send((batch * MILLION_IDLE_BATCH + i) as u64)
                    .expect(GONE);
            }
            for _ in chunk {
                acknowledged += cx.receive();
            }
        }
        let rss_after = memory::resident_bytes();
        let alive = cx.runtime().processes();
        assert!(
            alive >= MILLION_IDLE_PROCESSES,
            "only {alive} processes alive after the acknowledgements"
        );
        drop(pids);
        MillionIdleOutcome {
            rss_before,
            rss_after,
            acknowledged,
        }
    })
}

/// What a [`Sleeper`] sends itself.
struct Wake;

/// A `timers` process in the `send_after` form: in `started` it notes the time and asks
/// for a [`Wake`] after its delay; when the `Wake` comes it reports and stops. In
/// between it is an idle handler process: no stack, so 100,000 of them fit where
/// 100,000 stacks would not (each stack is two memory mappings, and Linux allows 65,530
/// mappings per process by default).
struct Sleeper {
    /// The process's number, which picks its delay.
    index: usize,
    /// When `started` ran.
    begun: Option<Instant>,
    /// The driver, told when the process woke.
    done: Pid<TimerReport>,
}

impl Process for Sleeper {
    type Message = Wake;

    fn started(&mut self, cx: &mut Context<Self>) {
        self.begun = Some(Instant::now());
        cx.pid()
            .send_after(Wake, timer_delay(self.index))
            .expect("the runtime shut down under the workload");
    }

    fn handle(&mut self, _: Wake, cx: &mut Context<Self>) {
        let begun = self.begun.expect("a `Wake` before `started`");
        self.done
            .send(TimerReport::woke_now(self.index, begun))
            .expect(GONE);
        cx.stop();
    }
}

/// Receives one report per timer process.
fn collect_reports(
    cx: &mut FnContext<TimerReport>,
    processes: usize,
    start: Instant,
) -> TimerOutcome {
    let reports = (0..processes).map(|_| cx.receive()).collect();
    TimerOutcome {
        processes,
        start,
        reports,
    }
}

/// `timers` with each process a [`Sleeper`] (`send_after` to itself).
pub fn timers(processes: usize) -> TimerOutcome {
    run(move |cx: &mut FnContext<TimerReport>| {
        let start = Instant::now();
        for index in 0..processes {
            cx.spawn(Sleeper {
                index,
                begun: None,
                done: cx.pid(),
            });
        }
        collect_reports(cx, processes, start)
    })
}

/// `timers` with each process free-running and calling `sleep`; each holds its stack
/// while it sleeps.
pub fn timers_sleeping(processes: usize) -> TimerOutcome {
    run(move |cx: &mut FnContext<TimerReport>| {
        let start = Instant::now();
        for index in 0..processes {
            let done = cx.pid();
            cx.spawn_fn(move |cx: &mut FnContext<()>| {
                let begun = Instant::now();
                cx.sleep(timer_delay(index));
                done.send(TimerReport::woke_now(index, begun)).expect(GONE);
            });
        }
        collect_reports(cx, processes, start)
    })
}

/// The ball that ends the `timeout_churn` echo.
const STOP_CHURN: u64 = u64::MAX;

pub fn timeout_churn() -> TimeoutChurnOutcome {
    run(|cx: &mut FnContext<u64>| {
        let pinger = cx.pid();
        let echo = cx.spawn_fn(move |cx: &mut FnContext<u64>| {
            let mut echoed = 0;
            loop {
                let ball = cx
                    .receive_timeout(TIMEOUT_CHURN_TIMEOUT)
                    .expect("the echo timed out waiting for a ball");
                if ball == STOP_CHURN {
                    return echoed;
                }
                pinger.send(ball).expect(GONE);
                echoed += 1;
            }
        });
        let to_echo = echo.pid();
        let volley = |cx: &mut FnContext<u64>, round_trips: u64| {
            for ball in 0..round_trips {
                to_echo.send(ball).expect(GONE);
                let back = cx
                    .receive_timeout(TIMEOUT_CHURN_TIMEOUT)
                    .expect("the pinger timed out waiting for its ball");
                assert_eq!(back, ball, "wrong ball back");
            }
        };
        volley(cx, WARM_UP);
        // Each round trip is two calls, one in each process.
        let start = Instant::now();
        volley(cx, TIMEOUT_CHURN_CALLS / 2);
        let elapsed = start.elapsed();
        to_echo.send(STOP_CHURN).expect(GONE);
        TimeoutChurnOutcome {
            elapsed,
            echoed: echo.join().expect("the echo process failed"),
        }
    })
}

/// What a [`Server`] is asked to do.
enum Request {
    /// Reply [`answer`]`(n)`.
    Get(u64, ReplyTo<u64>),
    /// Panic (`restart`).
    Crash,
}

/// The payload of a [`Server`]'s deliberate panic, which the `restart` panic hook
/// recognises and keeps off stderr.
const DELIBERATE_CRASH: &str = "a deliberate crash of the bench server";

/// Answers calls (`call`, `restart`); in `restart` it is a supervised child and panics
/// when asked to.
struct Server;

impl Process for Server {
    type Message = Request;

    fn handle(&mut self, request: Request, _cx: &mut Context<Self>) {
        match request {
            // A false return means the caller gave up; it reports that itself.
            Request::Get(n, reply_to) => {
                reply_to.reply(answer(n));
            }
            Request::Crash => std::panic::panic_any(DELIBERATE_CRASH),
        }
    }
}

/// Calls `server` with the requests `0..count` and checks every reply.
fn call_each(server: &Pid<Request>, count: u64) {
    for n in 0..count {
        let reply = server
            .call(|reply_to| Request::Get(n, reply_to), CALL_TIMEOUT)
            .unwrap_or_else(|e| panic!("call {n} failed: {e}"));
        assert_eq!(reply, answer(n), "wrong reply to call {n}");
    }
}

pub fn call() -> Duration {
    run(|cx: &mut FnContext<()>| {
        let server = cx.spawn(Server);
        call_each(&server, WARM_UP);
        let start = Instant::now();
        call_each(&server, CALLS);
        start.elapsed()
    })
}

/// `async_call`: a task on a default tokio runtime awaits `call_async` to a
/// [`Server`] on a default fibra runtime, one call after another.
pub fn async_call() -> Duration {
    let fibra = Runtime::builder()
        .build()
        .expect("building a fibra runtime");
    let server = fibra.spawn(Server).expect("spawning the server");
    let tokio = tokio::runtime::Runtime::new().expect("building a tokio runtime");
    let driver = tokio.spawn(async move {
        let call_each = async |count: u64| {
            for n in 0..count {
                let reply = server
                    .call_async(move |reply_to| Request::Get(n, reply_to), CALL_TIMEOUT)
                    .await
                    .unwrap_or_else(|e| panic!("call {n} failed: {e}"));
                assert_eq!(reply, answer(n), "wrong reply to call {n}");
            }
        };
        call_each(WARM_UP).await;
        let start = Instant::now();
        call_each(ASYNC_CALLS).await;
        start.elapsed()
    });
    let elapsed = tokio.block_on(driver).expect("the driver task failed");
    tokio.shutdown_background();
    fibra.shutdown();
    elapsed
}

/// Keeps the [`Server`]'s deliberate panics off stderr, where the default hook would
/// print a message for each of the thousands of crashes (and its printing would be
/// timed along with them); any other panic still goes to the hook installed before.
fn silence_deliberate_crashes() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&DELIBERATE_CRASH) {
            previous(info);
        }
    }));
}

/// Waits until an incarnation of the `restart` child other than `old` is registered
/// and answers request `n`, checks its answer and returns it. Looks again at once
/// after each miss, letting the other processes on this worker run in between.
fn replacement(
    cx: &mut FnContext<()>,
    handle: &Handle,
    old: Option<&Pid<Request>>,
    n: u64,
) -> Pid<Request> {
    let give_up = Instant::now() + RESTART_PATIENCE;
    loop {
        if let Some(pid) = handle.whereis::<Request>(RESTART_CHILD) {
            if old.is_none_or(|old| old.id() != pid.id()) {
                match pid.call(|reply_to| Request::Get(n, reply_to), CALL_TIMEOUT) {
                    Ok(reply) => {
                        assert_eq!(reply, answer(n), "wrong reply from a new incarnation");
                        return pid;
                    }
                    // Gone again before it answered: not a working replacement.
                    Err(CallError::Exited(_)) => {}
                    Err(e) => panic!("a new incarnation did not answer: {e}"),
                }
            }
        }
        assert!(
            Instant::now() < give_up,
            "no new incarnation answered within {RESTART_PATIENCE:?}"
        );
        cx.yield_now();
    }
}

/// Crashes the current incarnation and waits for its replacement to answer; returns
/// the replacement and the time from just before the crash was sent to its answer.
fn crash_and_replace(
    cx: &mut FnContext<()>,
    handle: &Handle,
    current: &Pid<Request>,
    n: u64,
) -> (Pid<Request>, Duration) {
    let start = Instant::now();
    current.send(Request::Crash).expect(GONE);
    let next = replacement(cx, handle, Some(current), n);
    (next, start.elapsed())
}

pub fn restart() -> RestartOutcome {
    silence_deliberate_crashes();
    run(|cx: &mut FnContext<()>| {
        let handle = cx.runtime();
        let supervisor = Supervisor::new(Strategy::OneForOne)
            .intensity(RESTART_INTENSITY, RESTART_PERIOD)
            .child(ChildSpec::handler("server", || Server).name(RESTART_CHILD));
        let supervisor = cx
            .spawn_supervisor(supervisor)
            .expect("spawning the supervisor");

        let mut current = replacement(cx, &handle, None, 0);
        for n in 0..RESTART_WARM_UP as u64 {
            current = crash_and_replace(cx, &handle, &current, n).0;
        }
        let mut samples = Vec::with_capacity(RESTART_CRASHES);
        for n in 0..RESTART_CRASHES as u64 {
            let (next, sample) = crash_and_replace(cx, &handle, &current, n);
            samples.push(sample);
            current = next;
        }

        let children = supervisor
            .children(CALL_TIMEOUT)
            .expect("the supervisor gave up");
        let [child] = children.as_slice() else {
            panic!("the supervisor has {} children, not 1", children.len());
        };
        let restarts = child.restarts();
        supervisor.stop();
        RestartOutcome { samples, restarts }
    })
}

/// A `dynamic_churn` child: answers every call with [`answer`] of the number it was
/// started with.
struct Job {
    n: u64,
}

impl Process for Job {
    type Message = ReplyTo<u64>;

    fn handle(&mut self, reply_to: ReplyTo<u64>, _cx: &mut Context<Self>) {
        reply_to.reply(answer(self.n));
    }
}

/// `dynamic_churn`: a dynamic supervisor of `Job`s; each cycle starts one with the
/// cycle's number, calls it, and terminates it, which returns once it has ended.
pub fn dynamic_churn() -> Duration {
    run(|cx: &mut FnContext<()>| {
        let jobs = DynamicSupervisor::new(|n: u64| ChildSpec::handler("job", move || Job { n }))
            .spawn(&cx.runtime())
            .expect("spawning the supervisor");
        let cycles = |from: u64, count: u64| {
            for n in from..from + count {
                let job: Pid<ReplyTo<u64>> = jobs
                    .start_child_typed(n, CALL_TIMEOUT)
                    .expect("starting a job");
                let reply = job.call(|reply_to| reply_to, CALL_TIMEOUT).expect(GONE);
                assert_eq!(reply, answer(n), "wrong reply from job {n}");
                jobs.terminate_child(&job.any(), CALL_TIMEOUT)
                    .expect("terminating a job");
            }
        };
        cycles(0, CHURN_WARM_UP);
        let start = Instant::now();
        cycles(CHURN_WARM_UP, CHURN_CYCLES);
        let elapsed = start.elapsed();
        let counts = jobs.count_children(CALL_TIMEOUT).expect(GONE);
        assert_eq!(counts.specs, 0, "terminated jobs are still kept");
        jobs.stop();
        elapsed
    })
}

/// `blocking`: processes that each hand `BLOCKING_CALLS` trivial closures, one after
/// another, to the blocking pool; the time runs from spawning the first to the last
/// one's last result.
pub fn blocking() -> Duration {
    run(|cx: &mut FnContext<()>| {
        let start = Instant::now();
        let callers: Vec<_> = (0..BLOCKING_PROCESSES)
            .map(|caller| {
                cx.spawn_fn(move |_cx: &mut FnContext<()>| {
                    for n in 0..BLOCKING_CALLS {
                        let token = caller * BLOCKING_CALLS + n;
                        assert_eq!(fibra::blocking(move || token), token, "wrong result");
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.join().expect("a blocking caller failed");
        }
        start.elapsed()
    })
}

/// `tcp_echo`: an acceptor process spawns one echo process per connection; 100 client
/// processes each connect over loopback and make their round trips one after another.
pub fn tcp_echo() -> TcpEchoOutcome {
    run(|cx: &mut FnContext<()>| {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the echo server");
        let addr = listener.local_addr().expect("the echo server's address");
        let acceptor = cx.spawn_fn(move |cx: &mut FnContext<()>| {
            for _ in 0..TCP_ECHO_CLIENTS {
                let (stream, _) = listener.accept().expect("accepting a client");
                cx.spawn_fn(move |_cx: &mut FnContext<()>| echo(stream));
            }
        });

        let start = Instant::now();
        let clients: Vec<_> = (0..TCP_ECHO_CLIENTS)
            .map(|client| cx.spawn_fn(move |_cx: &mut FnContext<()>| echo_client(addr, client)))
            .collect();
        let mut echoed = 0;
        for client in clients {
            echoed += client.join().expect("a client process failed");
        }
        let elapsed = start.elapsed();
        acceptor.join().expect("the acceptor failed");
        TcpEchoOutcome { elapsed, echoed }
    })
}

/// Writes back whatever `stream` brings, until the client closes it.
fn echo(mut stream: TcpStream) {
    stream.set_nodelay(true).expect("setting TCP_NODELAY");
    let mut buf = [0u8; TCP_ECHO_SIZE];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => stream.write_all(&buf[..n]).expect("echoing to a client"),
            Err(e) => panic!("reading from a client: {e}"),
        }
    }
}

/// Client number `client`: connects, makes its round trips and checks each response;
/// returns how many came back right.
fn echo_client(addr: SocketAddr, client: u64) -> u64 {
    let mut stream = TcpStream::connect(addr).expect("connecting");
    stream.set_nodelay(true).expect("setting TCP_NODELAY");
    stream
        .set_read_timeout(Some(TCP_ECHO_PATIENCE))
        .expect("setting the read timeout");
    let mut response = [0u8; TCP_ECHO_SIZE];
    for seq in 0..TCP_ECHO_REQUESTS {
        let request = tcp_echo_request(client, seq);
        stream.write_all(&request).expect("sending a request");
        stream
            .read_exact(&mut response)
            .unwrap_or_else(|e| panic!("client {client}, response {seq}: {e}"));
        assert_eq!(response, request, "client {client} got a wrong response");
    }
    TCP_ECHO_REQUESTS
}

/// Spawns `SPAWN_JOIN_PROCESSES` free-running processes that each return their
/// number, joining the oldest whenever `SPAWN_JOIN_OUTSTANDING` are outstanding;
/// returns the time taken and the sum of the results.
pub fn spawn_join() -> (Duration, u64) {
    run(|cx: &mut FnContext<()>| {
        let mut outstanding = std::collections::VecDeque::with_capacity(SPAWN_JOIN_OUTSTANDING);
        let mut sum = 0;
        let start = Instant::now();
        for n in 0..SPAWN_JOIN_PROCESSES {
            if outstanding.len() == SPAWN_JOIN_OUTSTANDING {
                let oldest: fibra::JoinHandle<u64, ()> =
                    outstanding.pop_front().expect("a process is outstanding");
                sum += oldest.join().expect(GONE);
            }
            outstanding.push_back(cx.spawn_fn(move |_: &mut FnContext<()>| n));
        }
        for child in outstanding {
            sum += child.join().expect(GONE);
        }
        (start.elapsed(), sum)
    })
}

/// A default runtime with nothing to do, or with `connections` idle connections,
/// each served by a process blocked in `read` (the clients are plain sockets that
/// never send): the share of a core the OS process uses meanwhile.
pub fn idle_cpu_with(connections: usize) -> String {
    let runtime = Runtime::builder()
        .build()
        .expect("building a fibra runtime");
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding the server");
    let addr = listener.local_addr().expect("the server's address");
    let counter = accepted.clone();
    let acceptor = runtime
        .spawn_fn(move |cx: &mut FnContext<()>| {
            for _ in 0..connections {
                let (stream, _) = listener.accept().expect("accepting a client");
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                cx.spawn_fn(move |_cx: &mut FnContext<()>| echo(stream));
            }
        })
        .expect("spawning the acceptor");
    let clients = connect_idle_clients(addr, connections, &accepted);
    acceptor.join().expect("the acceptor failed");
    let report = idle_cpu();
    drop(clients);
    runtime.shutdown();
    report
}

/// Spawns `FREE_BLOCKED_PROCESSES` free-running processes that each report in and
/// then block in `receive`; measures the spawns and the memory they hold once all
/// of them wait, then lets each return the number it is sent.
pub fn free_blocked() -> SpawnIdleOutcome {
    run(|cx: &mut FnContext<()>| {
        let mut handles = Vec::with_capacity(FREE_BLOCKED_PROCESSES);
        memory::fault_in(&mut handles);
        let driver = cx.pid();
        let rss_before = memory::resident_bytes();
        let start = Instant::now();
        for _ in 0..FREE_BLOCKED_PROCESSES {
            let driver = driver.clone();
            handles.push(cx.spawn_fn(move |cx: &mut FnContext<u64>| {
                driver.send(()).expect(GONE);
                cx.receive()
            }));
        }
        let spawn = start.elapsed();
        for _ in 0..FREE_BLOCKED_PROCESSES {
            cx.receive();
        }
        let rss_after = memory::resident_bytes();
        for (n, handle) in handles.iter().enumerate() {
            handle.pid().send(n as u64).expect(GONE);
        }
        let acknowledged = handles.into_iter().map(|h| h.join().expect(GONE)).sum();
        SpawnIdleOutcome {
            spawn,
            rss_before,
            rss_after,
            acknowledged,
        }
    })
}

/// A `blocked_worker` pinger: times each round trip to its ponger, and hands its
/// samples to the driver after the last.
struct Pinger {
    ponger: Option<Pid<(Instant, Pid<Instant>)>>,
    samples: Vec<Duration>,
    report: Pid<Vec<Duration>>,
}

impl Process for Pinger {
    type Message = Instant;

    fn started(&mut self, cx: &mut Context<Self>) {
        let ponger = cx.spawn(Ponger);
        ponger.send((Instant::now(), cx.pid())).expect(GONE);
        self.ponger = Some(ponger);
    }

    fn handle(&mut self, sent: Instant, cx: &mut Context<Self>) {
        self.samples.push(sent.elapsed());
        if self.samples.len() == BLOCKED_ROUND_TRIPS {
            self.report
                .send(std::mem::take(&mut self.samples))
                .expect(GONE);
            cx.stop();
            return;
        }
        let ponger = self.ponger.as_ref().expect("started");
        ponger.send((Instant::now(), cx.pid())).expect(GONE);
    }
}

/// Sends every ball straight back.
struct Ponger;

impl Process for Ponger {
    type Message = (Instant, Pid<Instant>);

    fn handle(&mut self, (sent, back): (Instant, Pid<Instant>), cx: &mut Context<Self>) {
        if back.send(sent).is_err() {
            cx.stop();
        }
    }
}

/// `blocked_worker`: a free-running process blocks its worker's thread in a loop
/// while handler-process pairs ping-pong; returns every round trip.
pub fn blocked_worker() -> Vec<Duration> {
    run(|cx: &mut FnContext<Vec<Duration>>| {
        let blocker = cx.spawn_fn(|cx: &mut FnContext<()>| {
            while cx.try_receive().is_none() {
                std::thread::sleep(BLOCK);
                cx.yield_now();
            }
        });
        let me = cx.pid();
        for _ in 0..BLOCKED_PAIRS {
            cx.spawn(Pinger {
                ponger: None,
                samples: Vec::with_capacity(BLOCKED_ROUND_TRIPS),
                report: me.clone(),
            });
        }
        let mut samples = Vec::with_capacity(BLOCKED_PAIRS * BLOCKED_ROUND_TRIPS);
        for _ in 0..BLOCKED_PAIRS {
            samples.extend(cx.receive());
        }
        blocker.pid().send(()).expect(GONE);
        blocker.join().expect(GONE);
        samples
    })
}

/// `block_on_future`, `future=ready`: a process awaits ready futures.
pub fn block_on_ready() -> Duration {
    run(|_: &mut FnContext<()>| {
        let start = Instant::now();
        let mut sum = 0u64;
        for n in 0..READY_AWAITS {
            sum = sum.wrapping_add(fibra::block_on(std::future::ready(n)));
        }
        assert_eq!(
            sum,
            (0..READY_AWAITS).sum::<u64>(),
            "a ready future lost its value"
        );
        start.elapsed()
    })
}

/// `block_on_future`, `future=remote`: a process awaits oneshots that a plain
/// thread completes.
pub fn block_on_remote() -> Duration {
    let (to_helper, senders) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<u64>>();
    let helper = std::thread::spawn(move || {
        for (n, sender) in senders.into_iter().enumerate() {
            let _ = sender.send(n as u64);
        }
    });
    let elapsed = run(move |_: &mut FnContext<()>| {
        let start = Instant::now();
        for n in 0..REMOTE_AWAITS {
            let (tx, rx) = tokio::sync::oneshot::channel();
            to_helper.send(tx).expect("the helper thread ended");
            assert_eq!(fibra::block_on(rx), Ok(n), "wrong value from the helper");
        }
        start.elapsed()
    });
    helper.join().expect("the helper thread panicked");
    elapsed
}
