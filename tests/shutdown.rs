//! Shutting a runtime down stops every process, runs every destructor and makes
//! later spawns and sends fail.

mod common;

use common::{within, DropCounter, Tracked};
use fibra::prelude::*;
use fibra::Builder;

struct Holder {
    _token: Tracked,
}

impl Process for Holder {
    type Message = Tracked;
    fn handle(&mut self, msg: Tracked, cx: &mut Context<Self>) {
        // Keep the message on the stack while blocked on a child that never ends:
        // the process is suspended mid-handler at shutdown.
        let _kept = msg;
        let never = cx.spawn_fn(|cx: &mut FnContext<()>| cx.receive());
        let _ = never.join();
    }
}

#[test]
fn shutdown_runs_every_destructor_and_later_calls_fail() {
    within(30, || {
        let drops = DropCounter::default();
        let rt = Builder::default().workers(2).build().unwrap();
        let handle = rt.handle();

        // An idle handler process holding a value.
        let idle = rt
            .spawn(Holder {
                _token: drops.token(),
            })
            .unwrap();
        // A handler suspended mid-handler with a message on its stack.
        let busy = rt
            .spawn(Holder {
                _token: drops.token(),
            })
            .unwrap();
        busy.send(drops.token()).unwrap();
        // A free-running process blocked in receive with a local.
        let local = drops.token();
        let blocked = rt
            .spawn_fn(move |cx: &mut FnContext<Tracked>| {
                let _local = local;
                loop {
                    let _ = cx.receive_matching(|_| false);
                }
            })
            .unwrap();
        // Messages that will sit in its mailbox, never matched.
        for _ in 0..3 {
            blocked.pid().send(drops.token()).unwrap();
        }
        // The busy handler may already have spawned its child.
        assert!(rt.processes() >= 3);

        // Wait for the busy handler to be suspended in its join: its child exists.
        while rt.processes() < 4 {
            std::thread::yield_now();
        }

        let created = 2 + 1 + 1 + 3;
        rt.shutdown();
        assert_eq!(
            drops.get(),
            created,
            "every value, local and message is dropped"
        );

        assert!(matches!(
            handle.spawn_fn(|_: &mut FnContext<()>| ()),
            Err(SpawnError::Shutdown)
        ));
        let err = handle
            .spawn(Holder {
                _token: drops.token(),
            })
            .unwrap_err();
        assert!(err.to_string().contains("shut down"), "{err}");
        assert!(idle.send(drops.token()).is_err());
        assert_eq!(blocked.join(), Err(Exit::Shutdown));
        assert!(handle.is_shutdown());
    });
}

#[test]
fn dropping_the_runtime_shuts_it_down_and_wakes_joiners() {
    within(30, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let stuck = rt.spawn_fn(|cx: &mut FnContext<()>| cx.receive()).unwrap();
        let pid = stuck.pid();
        drop(rt);
        assert_eq!(stuck.join(), Err(Exit::Shutdown));
        assert!(pid.send(()).is_err());
    });
}

#[test]
fn finished_processes_leave_nothing_behind() {
    within(30, || {
        let drops = DropCounter::default();
        let rt = Builder::default().workers(2).build().unwrap();
        let n = 2_000;
        let made = rt.block_on({
            let drops = drops.clone();
            move |cx| {
                let handles: Vec<_> = (0..n)
                    .map(|_| {
                        let token = drops.token();
                        cx.spawn_fn(move |cx: &mut FnContext<Tracked>| {
                            let _mine = token;
                            drop(cx.receive());
                        })
                    })
                    .collect();
                for h in &handles {
                    h.pid().send(drops.token()).unwrap();
                }
                for h in handles {
                    h.join().unwrap();
                }
                2 * n
            }
        });
        assert_eq!(drops.get(), made);
        assert_eq!(rt.processes(), 0);
    });
}

/// `Runtime::shutdown_timeout` always returns: a process in a CPU loop that never
/// reaches a suspension point holds its worker, and the shutdown leaves that
/// worker behind after the timeout instead of waiting for it for ever. The other
/// processes are ended as usual.
#[test]
fn shutdown_timeout_returns_despite_a_process_that_never_suspends() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    within(30, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let spinning = Arc::new(AtomicBool::new(false));
        let release = Arc::new(AtomicBool::new(false));
        let _spinner = rt
            .spawn_fn({
                let spinning = Arc::clone(&spinning);
                let release = Arc::clone(&release);
                move |_: &mut FnContext<()>| {
                    spinning.store(true, Ordering::SeqCst);
                    while !release.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                }
            })
            .unwrap();
        let waiting = rt.spawn_fn(|cx: &mut FnContext<()>| cx.receive()).unwrap();
        while !spinning.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let start = Instant::now();
        rt.shutdown_timeout(Duration::from_millis(200));
        let took = start.elapsed();
        // Let the left-behind worker go, so it does not spin through the other tests.
        release.store(true, Ordering::SeqCst);
        assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
        // Ended by the shutdown: by the drain, or, had it suspended on the stuck
        // worker, by that worker once it came back.
        assert_eq!(waiting.join(), Err(Exit::Shutdown));
    });
}

/// Holds a value until it is dropped; idle between messages it never gets.
struct Keeper {
    _token: Tracked,
}

impl Process for Keeper {
    type Message = Tracked;
    fn handle(&mut self, _msg: Tracked, _cx: &mut Context<Self>) {}
}

/// Dropping the last `Runtime` inside one of its own processes shuts it down
/// without a panic or a hang (a worker cannot wait for itself: another thread
/// does the waiting), and every destructor still runs: idle process values,
/// messages queued in a mailbox, the locals of suspended free-running processes,
/// and the process that dropped the runtime.
#[test]
fn dropping_the_last_runtime_inside_its_own_process_runs_every_destructor() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    within(60, || {
        let drops = DropCounter::default();
        let rt = Builder::default().workers(2).build().unwrap();
        let handle = rt.handle();
        let mut created = 0;
        for _ in 0..3 {
            rt.spawn(Keeper {
                _token: drops.token(),
            })
            .unwrap();
            created += 1;
        }
        let mut blocked = Vec::new();
        for _ in 0..3 {
            let local = drops.token();
            let process = rt
                .spawn_fn(move |cx: &mut FnContext<Tracked>| {
                    let _local = local;
                    loop {
                        let _ = cx.receive_matching(|_| false);
                    }
                })
                .unwrap();
            // Never matched: they stay queued.
            for _ in 0..2 {
                process.pid().send(drops.token()).unwrap();
            }
            created += 3;
            blocked.push(process);
        }
        let runtime = Arc::new(Mutex::new(Some(rt)));
        let local = drops.token();
        created += 1;
        let dropper = runtime
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .spawn_fn({
                let runtime = Arc::clone(&runtime);
                move |cx: &mut FnContext<()>| {
                    let _local = local;
                    let rt = runtime.lock().unwrap().take().expect("the runtime");
                    drop(rt);
                    // The shutdown goes on elsewhere; this process ends with it.
                    cx.receive()
                }
            })
            .unwrap();
        let start = Instant::now();
        while drops.get() < created {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{} of {created} destructors ran",
                drops.get()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(drops.get(), created, "each destructor runs once");
        assert!(runtime.lock().unwrap().is_none());
        assert_eq!(dropper.join(), Err(Exit::Shutdown));
        for process in blocked {
            assert_eq!(process.join(), Err(Exit::Shutdown));
        }
        assert!(handle.is_shutdown());
        assert!(matches!(
            handle.spawn_fn(|_: &mut FnContext<()>| ()),
            Err(SpawnError::Shutdown)
        ));
    });
}

/// What the destructor of a shut-down process's local got from its waits.
#[derive(Debug, Default, PartialEq)]
struct Waited {
    joined: Option<Result<(), Exit>>,
    called: Option<Result<u32, CallError>>,
}

/// Joins and calls other processes when dropped.
struct WaitOnDrop {
    join: Option<JoinHandle<(), ()>>,
    call: Pid<ReplyTo<u32>>,
    waited: std::sync::Arc<std::sync::Mutex<Waited>>,
}

impl Drop for WaitOnDrop {
    fn drop(&mut self) {
        let joined = self.join.take().map(JoinHandle::join);
        let called = self.call.call(|r| r, std::time::Duration::from_secs(60));
        let mut waited = self.waited.lock().unwrap();
        waited.joined = joined;
        waited.called = Some(called);
    }
}

/// Answers every call, after a while.
struct SlowServer;

impl Process for SlowServer {
    type Message = ReplyTo<u32>;
    fn handle(&mut self, reply: ReplyTo<u32>, cx: &mut Context<Self>) {
        cx.sleep(std::time::Duration::from_millis(1));
        reply.reply(1);
    }
}

/// During shutdown, a destructor of a suspended process's local that joins
/// another process or calls one returns at once, with `Exit::Shutdown` and
/// `CallError::Exited(Exit::Shutdown)`: the other process is ended by the same
/// shutdown, possibly after this one, so waiting would deadlock the drain, or
/// wait out the call's 60 s timeout.
#[test]
fn waits_in_destructors_during_shutdown_fail_at_once() {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    within(60, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let waited = Arc::new(Mutex::new(Waited::default()));
        let (ready, is_ready) = std::sync::mpsc::channel();
        // Spawned before the processes it waits for, so that those are still alive
        // when a shutdown that goes in spawn order ends it.
        let waiter = rt
            .spawn_fn({
                let waited = Arc::clone(&waited);
                move |cx: &mut FnContext<WaitOnDrop>| {
                    let mut guard = cx.receive();
                    guard.waited = waited;
                    ready.send(()).unwrap();
                    let _guard = guard;
                    loop {
                        let _ = cx.receive();
                    }
                }
            })
            .unwrap();
        let server = rt.spawn(SlowServer).unwrap();
        let never = rt.spawn_fn(|cx: &mut FnContext<()>| cx.receive()).unwrap();
        waiter
            .pid()
            .send(WaitOnDrop {
                join: Some(never),
                call: server,
                waited: Arc::default(),
            })
            .unwrap_or_else(|_| panic!("the waiter is alive"));
        is_ready.recv().unwrap();
        let start = Instant::now();
        rt.shutdown();
        let took = start.elapsed();
        assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
        let waited = waited.lock().unwrap();
        assert_eq!(waited.joined, Some(Err(Exit::Shutdown)));
        // The server is ended by the same shutdown, before or after this
        // destructor runs: "ended by the shutdown", or "had ended before the call".
        assert!(
            matches!(
                waited.called,
                Some(Err(CallError::Exited(Exit::Shutdown | Exit::NoProc)))
            ),
            "{:?}",
            waited.called
        );
    });
}

/// A server that never answers: it keeps the request in its value or sleeps on
/// it mid-handler.
struct Hoarder {
    kept: Vec<ReplyTo<u32>>,
    busy: std::sync::mpsc::Sender<()>,
}

impl Process for Hoarder {
    type Message = (bool, ReplyTo<u32>);
    fn handle(&mut self, (sleep, reply): (bool, ReplyTo<u32>), cx: &mut Context<Self>) {
        if sleep {
            let _ = self.busy.send(());
            cx.sleep(std::time::Duration::from_secs(3_600));
            drop(reply);
        } else {
            self.kept.push(reply);
            let _ = self.busy.send(());
        }
    }
}

/// Calls a `Hoarder` from a plain thread, waits until it has the request, shuts
/// the runtime down, and returns what the call got and how long it took.
fn call_through_shutdown(sleep_on_it: bool) -> (Result<u32, CallError>, std::time::Duration) {
    use std::time::{Duration, Instant};

    let rt = Builder::default().workers(2).build().unwrap();
    let (busy, is_busy) = std::sync::mpsc::channel();
    let server = rt
        .spawn(Hoarder {
            kept: Vec::new(),
            busy,
        })
        .unwrap();
    let caller = std::thread::spawn(move || {
        let start = Instant::now();
        let got = server.call(|r| (sleep_on_it, r), Duration::from_secs(60));
        (got, start.elapsed())
    });
    is_busy.recv().unwrap();
    rt.shutdown();
    caller.join().unwrap()
}

/// A plain thread blocked in `call` on a process that the shutdown ends gets
/// `CallError::Exited(Exit::Shutdown)` as soon as it ends, not the timeout: here
/// a server idle with the request kept in its value.
#[test]
fn a_thread_calling_an_idle_process_that_the_shutdown_ends_gets_shutdown() {
    within(60, || {
        let (got, took) = call_through_shutdown(false);
        assert_eq!(got, Err(CallError::Exited(Exit::Shutdown)));
        assert!(
            took < std::time::Duration::from_secs(10),
            "the call took {took:?}"
        );
    });
}

/// The same for a server suspended mid-handler with the request on its stack:
/// its stack is unwound by the shutdown, and the request's `ReplyTo` is dropped
/// in that unwind, before the process is marked as ended; the call must still
/// report the exit, not "no reply".
#[test]
fn a_thread_calling_a_process_suspended_mid_handler_gets_shutdown() {
    within(60, || {
        let (got, took) = call_through_shutdown(true);
        assert_eq!(got, Err(CallError::Exited(Exit::Shutdown)));
        assert!(
            took < std::time::Duration::from_secs(10),
            "the call took {took:?}"
        );
    });
}
