//! What the runtime promises about the code it runs, tested with real threads:
//! a process woken as it parks may be freed at once; a stack in use never changes
//! threads; `send` never suspends; exits cannot be swallowed; nothing suspends
//! while unwinding; a busy process cannot starve a sleeping one.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use common::{within, xorshift, DropCounter, Tracked};
use fibra::prelude::*;
use fibra::Builder;

/// Polls `done` until it holds, for at most `secs` seconds; a bounded wait for
/// something a test cannot be told about (a count of destructors).
fn eventually(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------
// 1. Parking never touches a process after publishing its suspension.
// ---------------------------------------------------------------------------

/// Messages each short-lived process of the parking stress test takes; the last
/// one ends it.
const MESSAGES_PER_VICTIM: u32 = 4;

/// A handler process that ends after its last message.
struct Victim {
    _token: Tracked,
    left: u32,
    handled: Arc<AtomicUsize>,
}

impl Process for Victim {
    type Message = u32;
    fn handle(&mut self, _: u32, cx: &mut Context<Self>) {
        self.handled.fetch_add(1, Ordering::Relaxed);
        self.left -= 1;
        if self.left == 0 {
            cx.stop();
        }
    }
}

/// What a driver of the parking stress test needs: where to spawn, and what to
/// count.
#[derive(Clone)]
struct Victims {
    handle: fibra::Handle,
    drops: DropCounter,
    handled: Arc<AtomicUsize>,
    spawned: Arc<AtomicUsize>,
}

impl Victims {
    /// Spawns one short-lived process of kind `round % 3`, sends it its messages
    /// (pausing between them as `pause` says) and drops the last handle to it
    /// right after the last send, so that the send that wakes it may be what
    /// frees it.
    fn one(&self, round: u64, pause: &mut dyn FnMut(Pause)) {
        // Keep the processes alive at any one time bounded (each free-running one
        // holds a stack).
        while self
            .spawned
            .load(Ordering::SeqCst)
            .saturating_sub(self.drops.get())
            > 2_000
        {
            pause(Pause::Throttle);
        }
        self.spawned.fetch_add(1, Ordering::Relaxed);
        let token = self.drops.token();
        let handled = Arc::clone(&self.handled);
        let pid: Pid<u32> = match round % 3 {
            0 => self
                .handle
                .spawn(Victim {
                    _token: token,
                    left: MESSAGES_PER_VICTIM,
                    handled,
                })
                .expect("spawn"),
            kind => {
                let timed = kind == 2;
                self.handle
                    .spawn_fn(move |cx: &mut FnContext<u32>| {
                        let _token = token;
                        for _ in 0..MESSAGES_PER_VICTIM {
                            if timed {
                                cx.receive_timeout(Duration::from_secs(60))
                                    .expect("a message within a minute");
                            } else {
                                cx.receive();
                            }
                            handled.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .expect("spawn")
                    .pid()
            }
        };
        for n in 0..MESSAGES_PER_VICTIM {
            pid.send(n)
                .expect("the victim lives until its last message");
            if n + 1 < MESSAGES_PER_VICTIM {
                pause(Pause::Between);
            }
        }
        drop(pid);
    }
}

/// Why a driver pauses.
enum Pause {
    /// Between two sends to the same process.
    Between,
    /// Too many processes are alive: let them end.
    Throttle,
}

/// Invariant 6 (no touch after publication): every short-lived process here is
/// woken, by a send from a process or from a plain thread, right as its worker
/// publishes its suspension, and the send drops the last handle to it, so the
/// process may run to its end on another worker and be freed while the parking
/// worker is still in its park. The old design re-checked the mailbox after
/// publishing and so read freed memory; here every process must run to its end
/// and drop its value, and nothing may crash.
#[test]
fn a_process_woken_as_it_parks_may_be_freed_at_once() {
    // 4 drivers x 150,000 processes x 4 messages: 2,400,000 sends that race a
    // park, 600,000 of them the last one; about 8 s of a debug build here.
    const ROUNDS: u64 = 150_000;
    within(120, || {
        // More workers than cores, so a worker is now and then preempted right
        // inside its park.
        let rt = Builder::default()
            .workers(4)
            .stack_size(32 * 1024)
            .build()
            .unwrap();
        let victims = Victims {
            handle: rt.handle(),
            drops: DropCounter::default(),
            handled: Arc::default(),
            spawned: Arc::default(),
        };
        let mut drivers = Vec::new();
        for seed in 1..=2u64 {
            let victims = victims.clone();
            drivers.push(thread::spawn(move || {
                let mut rng = xorshift(seed * 0x9E37_79B9);
                for round in 0..ROUNDS {
                    let spin = rng() % 64;
                    victims.one(round + seed, &mut |pause| match pause {
                        Pause::Between => (0..spin).for_each(|_| std::hint::spin_loop()),
                        Pause::Throttle => thread::yield_now(),
                    });
                }
            }));
        }
        let in_processes: Vec<_> = (3..=4u64)
            .map(|seed| {
                let victims = victims.clone();
                rt.spawn_fn(move |cx: &mut FnContext<()>| {
                    let mut rng = xorshift(seed * 0x9E37_79B9);
                    for round in 0..ROUNDS {
                        let yields = rng() % 4 == 0;
                        victims.one(round + seed, &mut |pause| match pause {
                            Pause::Between if !yields => {}
                            _ => cx.yield_now(),
                        });
                    }
                })
                .unwrap()
            })
            .collect();
        for driver in drivers {
            driver.join().expect("a driver thread panicked");
        }
        for driver in in_processes {
            driver.join().expect("a driver process failed");
        }
        let total = 4 * ROUNDS as usize;
        eventually(60, "every process ends and drops its value", || {
            victims.drops.get() == total
        });
        assert_eq!(
            victims.handled.load(Ordering::Relaxed),
            total * MESSAGES_PER_VICTIM as usize
        );
        eventually(10, "every process leaves the table", || rt.processes() == 0);
    });
}

// ---------------------------------------------------------------------------
// 2. A stack in use never changes threads.
// ---------------------------------------------------------------------------

thread_local! {
    /// Each thread's own id, kept in a thread-local that processes borrow across
    /// their suspensions.
    static HOME: RefCell<ThreadId> = RefCell::new(thread::current().id());
}

/// Where a check found a process resumed on another thread than it suspended on.
#[derive(Clone, Default)]
struct Moves {
    checks: Arc<AtomicUsize>,
    moved: Arc<Mutex<Vec<String>>>,
}

impl Moves {
    /// Runs `suspend` holding a borrow of a thread-local and the thread-local's
    /// address, and records a move if the process comes back on another thread:
    /// the thread id changed, the thread-local's address changed, or the borrowed
    /// value belongs to another thread.
    fn across<R>(&self, what: &str, suspend: impl FnOnce() -> R) -> R {
        let before = thread::current().id();
        let (result, address_before, borrowed_home) = HOME.with(|home| {
            let borrowed = home.borrow();
            let address = home as *const RefCell<ThreadId> as usize;
            let result = suspend();
            (result, address, *borrowed)
        });
        let after = thread::current().id();
        let address_after = HOME.with(|home| home as *const RefCell<ThreadId> as usize);
        self.checks.fetch_add(1, Ordering::Relaxed);
        if before != after || address_before != address_after || borrowed_home != after {
            self.moved.lock().unwrap().push(format!(
                "{what}: suspended on {before:?}, resumed on {after:?}"
            ));
        }
        result
    }

    fn assert_none(&self, at_least: usize) {
        let moved = self.moved.lock().unwrap();
        assert!(
            moved.is_empty(),
            "{} of {} suspensions resumed on another thread, e.g. {:?}",
            moved.len(),
            self.checks.load(Ordering::Relaxed),
            &moved[..moved.len().min(5)]
        );
        assert!(self.checks.load(Ordering::Relaxed) >= at_least);
    }
}

/// Replies to whoever sends it its address: a wake-up from a worker.
struct Waker;

impl Process for Waker {
    type Message = Pid<()>;
    fn handle(&mut self, to: Pid<()>, _cx: &mut Context<Self>) {
        let _ = to.send(());
    }
}

/// Answers calls, after a suspension of its own mid-handler (a sleep, a yield or
/// a call to `leaf`), checked like the callers' suspensions.
struct Server {
    moves: Moves,
    leaf: Option<Pid<ServerMsg>>,
    n: u64,
}

enum ServerMsg {
    Call(ReplyTo<u64>),
}

impl Process for Server {
    type Message = ServerMsg;
    fn handle(&mut self, msg: ServerMsg, cx: &mut Context<Self>) {
        let ServerMsg::Call(reply) = msg;
        self.n += 1;
        match (self.n % 3, &self.leaf) {
            (0, _) => self
                .moves
                .across("handler sleep", || cx.sleep(Duration::from_micros(300))),
            (1, Some(leaf)) => {
                let answer = self.moves.across("handler call", || {
                    leaf.call(ServerMsg::Call, Duration::from_secs(20))
                });
                answer.expect("the leaf answers");
            }
            _ => self.moves.across("handler yield", || cx.yield_now()),
        }
        reply.reply(self.n);
    }
}

/// A stack in use never changes threads (design, section 2): 200 free-running
/// processes on 4 workers hold a `thread_local!` borrow and its address across
/// every kind of suspension (`receive`, `sleep`, `yield_now`, `Pid::call`,
/// `JoinHandle::join`), woken by other processes, by plain threads and by the
/// timeout thread, while idle workers try to steal; each must come back on the
/// thread it left. The handler processes they call suspend mid-`handle` (a sleep,
/// a yield, a nested call) under the same check.
#[test]
fn a_suspended_process_resumes_on_the_thread_it_suspended_on() {
    const PROCESSES: usize = 200;
    const ROUNDS: u64 = 150;
    within(120, || {
        let rt = Builder::default().workers(4).build().unwrap();
        let moves = Moves::default();
        let leaf = rt
            .spawn(Server {
                moves: moves.clone(),
                leaf: None,
                n: 0,
            })
            .unwrap();
        let servers: Vec<_> = (0..4)
            .map(|_| {
                rt.spawn(Server {
                    moves: moves.clone(),
                    leaf: Some(leaf.clone()),
                    n: 0,
                })
                .unwrap()
            })
            .collect();
        let wakers: Vec<_> = (0..4).map(|_| rt.spawn(Waker).unwrap()).collect();
        // Plain threads that wake processes too.
        let (to_thread, from_processes) = mpsc::channel::<Pid<()>>();
        let from_processes = Arc::new(Mutex::new(from_processes));
        let waker_threads: Vec<_> = (0..2)
            .map(|_| {
                let from_processes = Arc::clone(&from_processes);
                thread::spawn(move || loop {
                    let next = from_processes.lock().unwrap().recv();
                    match next {
                        Ok(pid) => {
                            let _ = pid.send(());
                        }
                        Err(_) => return,
                    }
                })
            })
            .collect();

        let processes: Vec<_> = (0..PROCESSES)
            .map(|i| {
                let moves = moves.clone();
                let servers = servers.clone();
                let wakers = wakers.clone();
                let to_thread = to_thread.clone();
                rt.spawn_fn(move |cx: &mut FnContext<()>| {
                    let mut rng = xorshift(i as u64 + 1);
                    for round in 0..ROUNDS {
                        match (i as u64 + round) % 6 {
                            0 => moves.across("receive (woken by a worker)", || {
                                wakers[rng() as usize % wakers.len()]
                                    .send(cx.pid())
                                    .unwrap();
                                cx.receive()
                            }),
                            1 => moves.across("receive (woken by a thread)", || {
                                to_thread.send(cx.pid()).unwrap();
                                cx.receive()
                            }),
                            2 => moves.across("sleep", || {
                                cx.sleep(Duration::from_micros(200 + rng() % 800))
                            }),
                            3 => moves.across("yield_now", || cx.yield_now()),
                            4 => {
                                let server = &servers[rng() as usize % servers.len()];
                                let answer = moves.across("call", || {
                                    server.call(ServerMsg::Call, Duration::from_secs(20))
                                });
                                answer.expect("the server answers");
                            }
                            _ => {
                                let child = cx.spawn_fn(|cx: &mut FnContext<()>| {
                                    cx.yield_now();
                                    fibra::sleep(Duration::from_micros(100));
                                    7
                                });
                                let joined = moves.across("join", || child.join());
                                assert_eq!(joined, Ok(7));
                            }
                        }
                    }
                })
                .unwrap()
            })
            .collect();
        drop(to_thread);
        for process in processes {
            process.join().expect("a process failed");
        }
        for thread in waker_threads {
            thread.join().unwrap();
        }
        moves.assert_none(PROCESSES * ROUNDS as usize);
    });
}

/// The spans each thread has entered and not yet exited, as a `tracing`
/// subscriber sees them; spans of this test only.
#[derive(Default)]
struct SpanStacks {
    next_id: AtomicU64,
    stacks: Mutex<HashMap<ThreadId, Vec<u64>>>,
    /// Exits of a span that the exiting thread had not entered.
    foreign_exits: AtomicUsize,
}

impl SpanStacks {
    fn entered_here(&self, id: u64) -> bool {
        let stacks = self.stacks.lock().unwrap();
        stacks
            .get(&thread::current().id())
            .is_some_and(|stack| stack.contains(&id))
    }

    fn left_entered(&self) -> usize {
        self.stacks.lock().unwrap().values().map(Vec::len).sum()
    }
}

/// Spans are this test's when their target is this test crate.
fn ours(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.target().starts_with(module_path!())
}

impl tracing::Subscriber for &'static SpanStacks {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if ours(metadata) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        ours(metadata)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {}

    fn enter(&self, span: &tracing::span::Id) {
        let mut stacks = self.stacks.lock().unwrap();
        stacks
            .entry(thread::current().id())
            .or_default()
            .push(span.into_u64());
    }

    fn exit(&self, span: &tracing::span::Id) {
        let mut stacks = self.stacks.lock().unwrap();
        let stack = stacks.entry(thread::current().id()).or_default();
        match stack.iter().rposition(|&id| id == span.into_u64()) {
            Some(at) => {
                stack.remove(at);
            }
            None => {
                self.foreign_exits.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A `tracing` span guard held across `receive` stays on its thread (design,
/// section 2): 200 processes on 4 workers each enter a span and keep the guard
/// while they receive 20 times, woken from other workers and plain threads.
/// After every resume the process's span must still be entered on the thread it
/// runs on, every exit must happen on the thread that entered, and in the end no
/// thread may be left with an entered span. (A span guard held across a
/// suspension does interleave with the other processes of the same worker, as it
/// would across an `.await` in tokio; what the runtime promises is that the
/// guard's thread is the one it entered on.)
#[test]
fn a_span_entered_across_receive_stays_on_its_thread() {
    const PROCESSES: usize = 200;
    const ROUNDS: usize = 20;
    static STACKS: std::sync::OnceLock<&'static SpanStacks> = std::sync::OnceLock::new();
    let stacks: &'static SpanStacks = STACKS.get_or_init(|| Box::leak(Box::default()));
    tracing::subscriber::set_global_default(stacks).expect("the only subscriber");
    within(120, move || {
        let rt = Builder::default().workers(4).build().unwrap();
        let lost = Arc::new(AtomicUsize::new(0));
        let wakers: Vec<_> = (0..4).map(|_| rt.spawn(Waker).unwrap()).collect();
        let (to_thread, from_processes) = mpsc::channel::<Pid<()>>();
        let waker_thread = thread::spawn(move || {
            while let Ok(pid) = from_processes.recv() {
                let _ = pid.send(());
            }
        });
        let processes: Vec<_> = (0..PROCESSES)
            .map(|i| {
                let wakers = wakers.clone();
                let to_thread = to_thread.clone();
                let lost = Arc::clone(&lost);
                rt.spawn_fn(move |cx: &mut FnContext<()>| {
                    let span = tracing::info_span!("process", index = i);
                    let id = span.id().expect("the span is enabled").into_u64();
                    let _entered = span.enter();
                    for round in 0..ROUNDS {
                        if (i + round) % 2 == 0 {
                            wakers[(i + round) % wakers.len()].send(cx.pid()).unwrap();
                        } else {
                            to_thread.send(cx.pid()).unwrap();
                        }
                        cx.receive();
                        if !stacks.entered_here(id) {
                            lost.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .unwrap()
            })
            .collect();
        drop(to_thread);
        for process in processes {
            process.join().expect("a process failed");
        }
        waker_thread.join().unwrap();
        assert_eq!(
            lost.load(Ordering::Relaxed),
            0,
            "resumes where the process's span was not entered on its thread"
        );
        assert_eq!(
            stacks.foreign_exits.load(Ordering::Relaxed),
            0,
            "span guards dropped on another thread than they entered on"
        );
        assert_eq!(
            stacks.left_entered(),
            0,
            "spans left entered on some thread"
        );
    });
}

// ---------------------------------------------------------------------------
// 3. `send` never suspends.
// ---------------------------------------------------------------------------

/// `send` is never a suspension point (design, section 4), not even when the
/// sender's reduction budget runs out: on a one-worker runtime, A sends 10,000
/// messages to B while holding a `std::sync::Mutex` that B takes for every
/// message. Had a send yielded with the guard held (the old design yielded at
/// the 2,000th), B's lock would block the only worker for ever.
#[test]
fn send_never_suspends_a_process_holding_a_lock() {
    const MESSAGES: u64 = 10_000;
    within(30, || {
        let rt = Builder::default().workers(1).build().unwrap();
        let shared = Arc::new(Mutex::new(0u64));
        let total = rt.block_on({
            let shared = Arc::clone(&shared);
            move |cx| {
                let b = {
                    let shared = Arc::clone(&shared);
                    cx.spawn_fn(move |cx: &mut FnContext<u64>| {
                        let mut sum = 0;
                        for _ in 0..MESSAGES {
                            let n = cx.receive();
                            *shared.lock().unwrap() += 1;
                            sum += n;
                        }
                        sum
                    })
                };
                let a = cx.spawn_fn(move |_cx: &mut FnContext<()>| {
                    let guard = shared.lock().unwrap();
                    for n in 0..MESSAGES {
                        b.pid().send(n).unwrap();
                    }
                    drop(guard);
                    b.join().unwrap()
                });
                a.join().unwrap()
            }
        });
        assert_eq!(total, MESSAGES * (MESSAGES - 1) / 2);
        assert_eq!(*shared.lock().unwrap(), MESSAGES);
    });
}

// ---------------------------------------------------------------------------
// 4. Exits cannot be swallowed.
// ---------------------------------------------------------------------------

/// How many unwinds a swallowing process catches before it gives up and returns
/// normally. A loop that swallowed for ever would spin: its exit is raised again,
/// at once, at every `receive`.
const SWALLOWS: usize = 1_000;

/// What a process under test tells the test process.
enum Event {
    /// It reached the part that swallows unwinds.
    Ready(AnyPid),
}

/// A free-running process that receives in a loop and swallows every unwind out
/// of `receive`; returns how many it caught.
fn swallower(cx: &mut FnContext<()>, ready: Pid<Event>) -> usize {
    ready.send(Event::Ready(cx.pid().any())).unwrap();
    let mut caught = 0;
    while caught < SWALLOWS {
        if panic::catch_unwind(AssertUnwindSafe(|| cx.receive())).is_err() {
            caught += 1;
        }
    }
    caught
}

/// Waits at most `secs` seconds for a `Down`; its reason.
fn down_within(cx: &mut FnContext<Event>, secs: u64) -> Option<Exit> {
    match cx.receive_notice_timeout(Duration::from_secs(secs)) {
        Some(Notice::Down(down)) => Some(down.reason),
        Some(other) => panic!("expected a Down, got {other:?}"),
        None => None,
    }
}

/// Sticky exits (invariant 7): a free-running process that catches the unwind
/// out of `receive` and loops on is still ended by a kill or a stop, with
/// `Exit::Killed` or `Exit::Stopped`, both for its joiner and for a monitor, and
/// promptly. Before, the caught unwind ended the kill, and the process lived on.
#[test]
fn a_free_running_process_cannot_swallow_a_kill_or_a_stop() {
    common::quiet_panics_on_purpose();
    within(60, || {
        let rt = Builder::default().workers(2).build().unwrap();
        for (signal, expected) in [("kill", Exit::Killed), ("stop", Exit::Stopped)] {
            let (joined, down, took) = rt
                .spawn_fn(move |cx: &mut FnContext<Event>| {
                    let me = cx.pid();
                    let victim = cx.spawn_fn(move |cx: &mut FnContext<()>| swallower(cx, me));
                    let Event::Ready(pid) = cx.receive();
                    cx.monitor(&pid);
                    let start = Instant::now();
                    match signal {
                        "kill" => pid.kill(),
                        _ => pid.stop(),
                    }
                    let down = down_within(cx, 10);
                    let took = start.elapsed();
                    // A process that lived on would never be joined.
                    let joined = down.as_ref().map(|_| victim.join());
                    (joined, down, took)
                })
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(down, Some(expected.clone()), "{signal}: the monitor's Down");
            assert_eq!(joined, Some(Err(expected)), "{signal}: the join");
            assert!(took < Duration::from_secs(5), "{signal}: took {took:?}");
        }
    });
}

/// A handler that sleeps, in `handle`, under a `catch_unwind` that swallows
/// whatever unwinds out of the sleep.
struct Stubborn {
    ready: Pid<Event>,
}

impl Process for Stubborn {
    type Message = ();
    fn handle(&mut self, _: (), cx: &mut Context<Self>) {
        self.ready.send(Event::Ready(cx.pid().any())).unwrap();
        for _ in 0..SWALLOWS {
            let _ = panic::catch_unwind(AssertUnwindSafe(|| {
                cx.sleep(Duration::from_millis(10));
            }));
        }
    }
}

/// Sticky exits (invariant 7), for a handler process: a kill that unwinds out of
/// a `cx.sleep` inside `handle`, where the handler catches it and sleeps on,
/// still ends the process with `Exit::Killed`, promptly, and the rest of its
/// naps return at once. Before, the handler slept on, handled its next message
/// and lived.
#[test]
fn a_handler_cannot_swallow_a_kill() {
    common::quiet_panics_on_purpose();
    within(60, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let (down, took, alive) = rt
            .spawn_fn({
                move |cx: &mut FnContext<Event>| {
                    let stubborn = cx.spawn(Stubborn { ready: cx.pid() });
                    stubborn.send(()).unwrap();
                    let Event::Ready(pid) = cx.receive();
                    cx.monitor(&pid);
                    let start = Instant::now();
                    pid.kill();
                    let down = down_within(cx, 10);
                    (down, start.elapsed(), stubborn.is_alive())
                }
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(down, Some(Exit::Killed));
        assert!(!alive);
        assert!(took < Duration::from_secs(5), "took {took:?}");
    });
}

/// Sticky exits and supervision: a supervisor that stops a child which swallows
/// the stop's unwind (a free-running child, `Shutdown::Infinity`: the supervisor
/// waits as long as it takes) still ends, with `Exit::Stopped`, instead of
/// waiting for ever on a child that lives on.
#[test]
fn a_supervisor_stopping_a_child_that_swallows_the_stop_is_not_hung() {
    common::quiet_panics_on_purpose();
    within(60, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let (supervisor_down, child_down) = rt
            .spawn_fn(|cx: &mut FnContext<Event>| {
                let me = cx.pid();
                let supervisor = Supervisor::new(Strategy::OneForOne)
                    .child(
                        ChildSpec::free("swallower", move || {
                            let me = me.clone();
                            move |cx: &mut FnContext<()>| swallower(cx, me)
                        })
                        .shutdown(Shutdown::Infinity),
                    )
                    .spawn(&cx.runtime())
                    .unwrap();
                let Event::Ready(child) = cx.receive();
                let on_child = cx.monitor(&child);
                let on_supervisor = cx.monitor(supervisor.any());
                supervisor.stop();
                let mut downs = HashMap::new();
                while downs.len() < 2 {
                    match cx.receive_notice_timeout(Duration::from_secs(10)) {
                        Some(Notice::Down(down)) => {
                            downs.insert(down.monitor.clone(), down.reason);
                        }
                        Some(other) => panic!("unexpected {other:?}"),
                        None => break,
                    }
                }
                (downs.remove(&on_supervisor), downs.remove(&on_child))
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(child_down, Some(Exit::Stopped), "the child ends");
        assert_eq!(supervisor_down, Some(Exit::Stopped), "the supervisor ends");
    });
}

// ---------------------------------------------------------------------------
// 5. Nothing suspends while unwinding.
// ---------------------------------------------------------------------------

/// Sleeps for its duration when dropped, through the free function.
struct SleepOnDrop(Duration);

impl Drop for SleepOnDrop {
    fn drop(&mut self) {
        fibra::sleep(self.0);
    }
}

/// Nothing suspends while unwinding (invariant 7): a process panics and a
/// destructor of one of its locals sleeps 20 ms in the unwind. std's panic count
/// is per thread, so had the sleep suspended the process, its neighbour on the
/// same (only) worker would have run inside the unwind and seen
/// `std::thread::panicking()` true, and a neighbour that panicked then would
/// abort the program. The neighbour checks it between yields all along: it must
/// never see true, and the panicking process ends with `Exit::Panicked`.
#[test]
fn a_neighbour_never_runs_inside_a_processs_unwind() {
    common::quiet_panics_on_purpose();
    within(60, || {
        let rt = Builder::default().workers(1).build().unwrap();
        let (panicked, checks, seen_panicking, slept) = rt.block_on(|cx| {
            let stop = Arc::new(AtomicBool::new(false));
            let neighbour = {
                let stop = Arc::clone(&stop);
                cx.spawn_fn(move |cx: &mut FnContext<()>| {
                    let (mut checks, mut seen) = (0u64, 0u64);
                    while !stop.load(Ordering::SeqCst) {
                        checks += 1;
                        if thread::panicking() {
                            seen += 1;
                        }
                        cx.yield_now();
                    }
                    (checks, seen)
                })
            };
            let panicker = cx.spawn_fn(|cx: &mut FnContext<()>| -> Instant {
                cx.yield_now();
                let _sleeper = SleepOnDrop(Duration::from_millis(20));
                panic!("a panic on purpose, with a sleeping destructor");
            });
            let start = Instant::now();
            let panicked = panicker.join();
            let slept = start.elapsed();
            stop.store(true, Ordering::SeqCst);
            let (checks, seen) = neighbour.join().unwrap();
            (panicked, checks, seen, slept)
        });
        assert!(
            matches!(&panicked, Err(Exit::Panicked(m)) if m.contains("on purpose")),
            "{panicked:?}"
        );
        assert_eq!(
            seen_panicking, 0,
            "the neighbour ran inside another process's unwind"
        );
        assert!(checks > 0);
        assert!(slept >= Duration::from_millis(20), "the destructor slept");
    });
}

/// Joins a process it spawns when dropped, and records what the join returned.
struct JoinOnDrop {
    handle: fibra::Handle,
    joined: Arc<Mutex<Option<Result<u32, Exit>>>>,
}

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        let child = self
            .handle
            .spawn_fn(|cx: &mut FnContext<()>| {
                cx.sleep(Duration::from_millis(20));
                7
            })
            .expect("spawn in a destructor");
        *self.joined.lock().unwrap() = Some(child.join());
    }
}

/// A destructor that joins another process during a panic's unwind works: the
/// unwinding process may not suspend, so the join blocks its worker thread until
/// the child, run by the other worker, returns; then the panic goes on and the
/// process ends with `Exit::Panicked`.
#[test]
fn a_destructor_may_join_a_process_during_an_unwind() {
    common::quiet_panics_on_purpose();
    within(60, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let joined = Arc::new(Mutex::new(None));
        let guard = JoinOnDrop {
            handle: rt.handle(),
            joined: Arc::clone(&joined),
        };
        let panicker = rt
            .spawn_fn(move |_cx: &mut FnContext<()>| {
                let _guard = guard;
                panic!("a panic on purpose, with a joining destructor");
            })
            .unwrap();
        let exit = panicker.join();
        assert!(matches!(&exit, Err(Exit::Panicked(_))), "{exit:?}");
        assert_eq!(*joined.lock().unwrap(), Some(Ok(7)));
        // The runtime goes on.
        assert_eq!(
            rt.spawn_fn(|_: &mut FnContext<()>| 1).unwrap().join(),
            Ok(1)
        );
    });
}

/// What a receive got, and how long it took.
type Received = Arc<Mutex<Option<(Option<u32>, Duration)>>>;

/// Receives with a timeout when dropped, through the process's context.
struct ReceiveOnDrop<'a, 'b> {
    cx: &'a mut FnContext<'b, u32>,
    got: Received,
}

impl Drop for ReceiveOnDrop<'_, '_> {
    fn drop(&mut self) {
        let start = Instant::now();
        let got = self.cx.receive_timeout(Duration::from_secs(10));
        *self.got.lock().unwrap() = Some((got, start.elapsed()));
    }
}

/// A destructor that calls `receive_timeout` during a panic's unwind returns at
/// once with nothing (the process may not suspend), instead of waiting out its
/// 10 s or suspending inside the unwind.
#[test]
fn a_receive_timeout_during_an_unwind_returns_at_once() {
    common::quiet_panics_on_purpose();
    within(60, || {
        let rt = Builder::default().workers(1).build().unwrap();
        let got = Arc::new(Mutex::new(None));
        let panicker = rt
            .spawn_fn({
                let got = Arc::clone(&got);
                move |cx: &mut FnContext<u32>| {
                    let _receiver = ReceiveOnDrop { cx, got };
                    panic!("a panic on purpose, with a receiving destructor");
                }
            })
            .unwrap();
        let exit = panicker.join();
        assert!(matches!(&exit, Err(Exit::Panicked(_))), "{exit:?}");
        let (received, took) = got.lock().unwrap().take().expect("the destructor ran");
        assert_eq!(received, None);
        assert!(took < Duration::from_secs(1), "took {took:?}");
    });
}

// ---------------------------------------------------------------------------
// 9. Fairness.
// ---------------------------------------------------------------------------

/// Spins for `d` without suspending.
fn busy(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Fairness (design, section 4): on one worker, a process that yields in a loop
/// with about 1 ms of CPU work between yields must not starve a process that
/// sleeps 1 ms at a time: a timer's wake-up waits behind a slice or two, not
/// behind a whole queue of yields (the old design let it wait about 60 ms). The
/// median lateness of 20 sleeps must stay under 15 ms.
#[test]
fn a_yielding_loop_does_not_starve_a_sleeping_process() {
    within(60, || {
        let rt = Builder::default().workers(1).build().unwrap();
        let mut late = rt.block_on(|cx| {
            let stop = Arc::new(AtomicBool::new(false));
            let spinner = {
                let stop = Arc::clone(&stop);
                cx.spawn_fn(move |cx: &mut FnContext<()>| {
                    while !stop.load(Ordering::SeqCst) {
                        busy(Duration::from_millis(1));
                        cx.yield_now();
                    }
                })
            };
            let sleeper = cx.spawn_fn(|cx: &mut FnContext<()>| {
                (0..20)
                    .map(|_| {
                        let start = Instant::now();
                        cx.sleep(Duration::from_millis(1));
                        start.elapsed().saturating_sub(Duration::from_millis(1))
                    })
                    .collect::<Vec<_>>()
            });
            let late = sleeper.join().unwrap();
            stop.store(true, Ordering::SeqCst);
            spinner.join().unwrap();
            late
        });
        late.sort();
        let median = late[late.len() / 2];
        assert!(
            median < Duration::from_millis(15),
            "median lateness {median:?}, all: {late:?}"
        );
    });
}
