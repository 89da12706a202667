//! Handler and free-running processes as a user writes them.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::within;
use fibra::prelude::*;
use fibra::{BuildError, Builder};

fn runtime(workers: usize) -> Runtime {
    Builder::default()
        .workers(workers)
        .build()
        .expect("runtime")
}

#[test]
fn handler_runs_started_then_messages_in_order_then_stopped() {
    struct Recorder {
        log: Vec<String>,
        report: Pid<Vec<String>>,
    }
    impl Process for Recorder {
        type Message = Option<u32>;
        fn started(&mut self, _cx: &mut Context<Self>) {
            self.log.push("started".into());
        }
        fn handle(&mut self, msg: Option<u32>, cx: &mut Context<Self>) {
            match msg {
                Some(n) => self.log.push(n.to_string()),
                None => cx.stop(),
            }
        }
        fn stopped(&mut self, _cx: &mut Context<Self>) {
            self.log.push("stopped".into());
            let _ = self.report.send(std::mem::take(&mut self.log));
        }
    }
    let log = within(20, || {
        let rt = runtime(2);
        rt.block_on(|cx: &mut FnContext<()>| {
            let collector = cx.spawn_fn(|cx: &mut FnContext<Vec<String>>| cx.receive());
            let recorder = cx.spawn(Recorder {
                log: Vec::new(),
                report: collector.pid(),
            });
            for n in 0..5 {
                recorder.send(Some(n)).unwrap();
            }
            recorder.send(None).unwrap();
            collector.join().unwrap()
        })
    });
    assert_eq!(log, ["started", "0", "1", "2", "3", "4", "stopped"]);
}

#[test]
fn send_to_an_exited_process_hands_the_message_back() {
    within(20, || {
        let rt = runtime(2);
        let child = rt
            .spawn_fn(|cx: &mut FnContext<String>| cx.receive())
            .unwrap();
        let pid = child.pid();
        pid.send("first".to_string()).unwrap();
        assert_eq!(child.join().unwrap(), "first");
        assert!(!pid.is_alive());
        let err = pid.send("too late".to_string()).unwrap_err();
        assert_eq!(err.into_inner(), "too late");
    });
}

#[test]
fn receive_matching_leaves_other_messages_queued_in_order() {
    let (picked, rest) = within(20, || {
        let rt = runtime(1);
        let child = rt
            .spawn_fn(|cx: &mut FnContext<u32>| {
                // Wait until the parent's messages are all in, then pick.
                let picked = cx.receive_matching(|&m| m == 100);
                let rest: Vec<u32> = (0..5).map(|_| cx.receive()).collect();
                (picked, rest)
            })
            .unwrap();
        for m in [1, 2, 3, 4, 5, 100] {
            child.pid().send(m).unwrap();
        }
        child.join().unwrap()
    });
    assert_eq!(picked, 100);
    assert_eq!(rest, [1, 2, 3, 4, 5]);
}

#[test]
fn receive_matching_waits_for_a_match_that_arrives_later() {
    let order = within(20, || {
        let rt = runtime(2);
        rt.block_on(|cx| {
            let child = cx.spawn_fn(|cx: &mut FnContext<&'static str>| {
                let first = cx.receive_matching(|m| m.starts_with("reply"));
                let second = cx.receive();
                let third = cx.receive();
                vec![first, second, third]
            });
            let pid = child.pid();
            pid.send("noise 1").unwrap();
            cx.yield_now();
            pid.send("noise 2").unwrap();
            cx.yield_now();
            pid.send("reply").unwrap();
            child.join().unwrap()
        })
    });
    assert_eq!(order, ["reply", "noise 1", "noise 2"]);
}

#[test]
fn join_reports_a_panic_with_its_message_and_others_go_on() {
    within(20, || {
        let rt = runtime(2);
        let crashing = rt
            .spawn_fn(|_cx: &mut FnContext<()>| -> u32 { panic!("boom {}", 7) })
            .unwrap();
        match crashing.join() {
            Err(Exit::Panicked(message)) => assert_eq!(message, "boom 7"),
            other => panic!("expected a panic exit, got {other:?}"),
        }
        // The runtime and its other processes are unaffected.
        let value = rt.block_on(|cx| cx.spawn_fn(|_: &mut FnContext<()>| 5).join().unwrap());
        assert_eq!(value, 5);
    });
}

#[test]
fn a_panicking_handler_ends_only_itself() {
    struct Fragile;
    impl Process for Fragile {
        type Message = (u32, Pid<u32>);
        fn handle(&mut self, (n, reply): (u32, Pid<u32>), _cx: &mut Context<Self>) {
            if n == 0 {
                panic!("cannot handle zero");
            }
            reply.send(n * 10).unwrap();
        }
    }
    within(20, || {
        let rt = runtime(2);
        let (before, after, neighbour_alive) = rt.block_on(|cx| {
            let fragile = cx.spawn(Fragile);
            let neighbour = cx.spawn(Fragile);
            let me = cx.spawn_fn(move |cx: &mut FnContext<u32>| {
                fragile.send((1, cx.pid())).unwrap();
                let before = cx.receive();
                fragile.send((0, cx.pid())).unwrap();
                // Messages sent after the panic are never handled: wait until the
                // process is gone, then a send must fail.
                while fragile.is_alive() {
                    cx.yield_now();
                }
                let after = fragile.send((2, cx.pid())).is_err();
                neighbour.send((3, cx.pid())).unwrap();
                assert_eq!(cx.receive(), 30);
                (before, after, neighbour.is_alive())
            });
            me.join().unwrap()
        });
        assert_eq!(before, 10);
        assert!(after, "a send to a crashed process must fail");
        assert!(neighbour_alive);
    });
}

#[test]
fn a_handler_can_block_on_a_child_without_blocking_its_worker() {
    // One worker: if `join` blocked the thread, the child could never run.
    struct Parent;
    impl Process for Parent {
        type Message = Pid<u64>;
        fn handle(&mut self, reply: Pid<u64>, cx: &mut Context<Self>) {
            let child = cx.spawn_fn(|cx: &mut FnContext<u64>| {
                cx.yield_now();
                cx.receive() + 1
            });
            child.pid().send(41).unwrap();
            let value = child.join().unwrap();
            reply.send(value).unwrap();
        }
    }
    let value = within(20, || {
        let rt = runtime(1);
        rt.block_on(|cx: &mut FnContext<()>| {
            let parent = cx.spawn(Parent);
            let waiter = cx.spawn_fn(|cx: &mut FnContext<u64>| cx.receive());
            parent.send(waiter.pid()).unwrap();
            waiter.join().unwrap()
        })
    });
    assert_eq!(value, 42);
}

#[test]
fn a_chatty_process_cannot_starve_its_worker() {
    // One worker, a process that always has a message waiting for it: only the
    // reduction budget lets the process that tells it to stop run at all.
    within(30, || {
        let rt = runtime(1);
        let chatty = rt
            .spawn_fn(|cx: &mut FnContext<bool>| {
                let me = cx.pid();
                me.send(false).unwrap();
                let mut rounds = 0u64;
                while !cx.receive() {
                    rounds += 1;
                    me.send(false).unwrap();
                }
                rounds
            })
            .unwrap();
        let stopper_target = chatty.pid();
        rt.spawn_fn(move |_: &mut FnContext<()>| stopper_target.send(true).unwrap())
            .unwrap();
        assert!(chatty.join().unwrap() > 0);
    });
}

#[test]
fn yield_now_lets_a_cpu_loop_share_one_worker() {
    within(30, || {
        let rt = runtime(1);
        let flag = Arc::new(AtomicUsize::new(0));
        let seen = flag.clone();
        let spinner = rt
            .spawn_fn(move |cx: &mut FnContext<()>| {
                let mut spins = 0u64;
                while seen.load(Ordering::SeqCst) == 0 {
                    spins += 1;
                    cx.yield_now();
                }
                spins
            })
            .unwrap();
        let setter = rt
            .spawn_fn(move |_: &mut FnContext<()>| flag.store(1, Ordering::SeqCst))
            .unwrap();
        setter.join().unwrap();
        assert!(spinner.join().unwrap() >= 1);
    });
}

#[test]
#[should_panic(expected = "the main process panicked: main failed")]
fn block_on_propagates_a_panic_of_the_main_process() {
    let rt = runtime(1);
    rt.block_on(|_| -> u32 { panic!("main failed") });
}

#[test]
fn builder_rejects_zero_workers_and_zero_stack() {
    assert!(matches!(
        Runtime::builder().workers(0).build(),
        Err(BuildError::ZeroWorkers)
    ));
    assert!(matches!(
        Runtime::builder().stack_size(0).build(),
        Err(BuildError::ZeroStackSize)
    ));
    let err = Runtime::builder().workers(0).build().unwrap_err();
    assert!(err.to_string().contains("at least one worker"), "{err}");
    let err = Runtime::builder()
        .handoff_after(std::time::Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::ZeroHandoff));
    assert!(err.to_string().contains("hand-off interval"), "{err}");
}

/// A handler that reports when (and on which thread) each message reached it.
struct Stamp(std::sync::mpsc::Sender<(std::time::Instant, std::thread::ThreadId)>);

impl Process for Stamp {
    type Message = ();
    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {
        let _ = self
            .0
            .send((std::time::Instant::now(), std::thread::current().id()));
    }
}

/// A handler that wakes `woken`, then computes for `busy` without suspending.
struct BusyWaker {
    woken: Pid<()>,
    busy: std::time::Duration,
    sent_at: std::sync::mpsc::Sender<std::time::Instant>,
}

impl Process for BusyWaker {
    type Message = ();
    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {
        let start = std::time::Instant::now();
        self.woken.send(()).unwrap();
        self.sent_at.send(start).unwrap();
        while start.elapsed() < self.busy {
            std::hint::spin_loop();
        }
    }
}

#[test]
fn a_process_woken_by_a_busy_waker_runs_on_an_idle_worker() {
    use std::time::Duration;
    within(60, || {
        let rt = Builder::default()
            .workers(2)
            .handoff_after(Duration::from_millis(2))
            .build()
            .unwrap();
        let (stamps, stamped) = std::sync::mpsc::channel();
        let woken = rt.spawn(Stamp(stamps)).unwrap();
        let (sent_at, sent) = std::sync::mpsc::channel();
        let busy = Duration::from_secs(1);
        let waker = rt
            .spawn(BusyWaker {
                woken: woken.clone(),
                busy,
                sent_at,
            })
            .unwrap();
        for round in 0..3 {
            // The woken process is idle (stackless) before each round.
            woken.send(()).unwrap();
            stamped.recv().unwrap();
            waker.send(()).unwrap();
            let sent = sent.recv().unwrap();
            let (ran, _) = stamped.recv().unwrap();
            let waited = ran.duration_since(sent);
            // Without the hand-off it waits out the whole second of computing.
            assert!(
                waited < busy / 3,
                "round {round}: the woken process waited {waited:?} behind its busy waker"
            );
        }
    });
}

#[test]
fn a_suspended_activation_woken_by_a_busy_waker_stays_on_its_worker() {
    use std::time::Duration;
    within(60, || {
        let rt = Builder::default()
            .workers(2)
            .handoff_after(Duration::from_millis(1))
            .build()
            .unwrap();
        // The receiver is free-running: once it has started, its stack pins it to
        // its worker, so the hand-off must leave it where it is.
        let home = rt.block_on(|cx| {
            let receiver = cx.spawn_fn(|cx: &mut FnContext<()>| {
                let before = std::thread::current().id();
                cx.receive();
                (before, std::thread::current().id())
            });
            cx.yield_now();
            receiver.pid().send(()).unwrap();
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_millis(50) {
                std::hint::spin_loop();
            }
            receiver.join().unwrap()
        });
        assert_eq!(home.0, home.1, "a suspended activation changed threads");
    });
}

#[test]
fn pids_are_clone_send_sync_and_compare_by_process() {
    fn assert_traits<T: Clone + Send + Sync + Eq + std::hash::Hash + std::fmt::Debug>() {}
    assert_traits::<Pid<String>>();
    within(20, || {
        let rt = runtime(1);
        let a = rt.spawn_fn(|cx: &mut FnContext<u8>| cx.receive()).unwrap();
        let b = rt.spawn_fn(|cx: &mut FnContext<u8>| cx.receive()).unwrap();
        assert_eq!(a.pid(), a.pid().clone());
        assert_ne!(a.pid(), b.pid());
        assert_ne!(a.id(), b.id());
        assert!(format!("{:?}", a.pid()).starts_with("Pid(<0."));
        a.pid().send(1).unwrap();
        b.pid().send(2).unwrap();
        assert_eq!((a.join().unwrap(), b.join().unwrap()), (1, 2));
    });
}

#[test]
fn join_from_a_plain_thread_and_from_a_process() {
    within(20, || {
        let rt = runtime(2);
        let handle = rt.handle();
        let from_thread = std::thread::spawn(move || {
            let child = handle
                .spawn_fn(|cx: &mut FnContext<u32>| cx.receive() * 3)
                .unwrap();
            child.pid().send(5).unwrap();
            child.join().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(from_thread, 15);
        let nested = rt.block_on(|cx| {
            let outer = cx.spawn_fn(|cx: &mut FnContext<()>| {
                cx.spawn_fn(|_: &mut FnContext<()>| 2).join().unwrap() * 10
            });
            outer.join().unwrap()
        });
        assert_eq!(nested, 20);
    });
}

/// A free-running child spawned inside a process starts on its spawner's worker
/// as soon as the spawner waits, so a spawner and the child it joins or talks to
/// share a worker (a started child never leaves the worker it started on).
#[test]
fn a_spawned_free_running_child_starts_on_its_spawners_worker() {
    within(30, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let all_local = rt.block_on(|cx| {
            (0..200).all(|_| {
                let here = std::thread::current().id();
                let child = cx.spawn_fn(|_: &mut FnContext<()>| std::thread::current().id());
                child.join().unwrap() == here
            })
        });
        assert!(all_local, "a child started on another worker");
    });
}

/// Reports the thread it started on.
struct WhereStarted(std::sync::mpsc::Sender<std::thread::ThreadId>);

impl Process for WhereStarted {
    type Message = ();
    fn started(&mut self, cx: &mut Context<Self>) {
        let _ = self.0.send(std::thread::current().id());
        cx.stop();
    }
    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
}

/// A handler spawned inside a process starts on its spawner's worker as soon as
/// the spawner waits: spawned children run depth first, next to their spawner,
/// so a tree of processes that spawn and wait for their children keeps a fraction
/// of itself alive at once (see skynet's peak RSS in the benchmarks).
#[test]
fn a_spawned_handler_starts_on_its_spawners_worker() {
    within(30, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let all_local = rt.block_on(|cx| {
            (0..200).all(|_| {
                let here = std::thread::current().id();
                let (started, on) = std::sync::mpsc::channel();
                cx.spawn(WhereStarted(started));
                // Waits as a process: the child runs as soon as this one steps aside.
                while cx
                    .receive_timeout(std::time::Duration::from_millis(1))
                    .is_some()
                {}
                on.recv().unwrap() == here
            })
        });
        assert!(all_local, "a handler started on another worker");
    });
}
