//! The name registry, as a user sees it: register, whereis, send_named, unregister,
//! and names freed when their processes end.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{await_end, echo, two_worker_runtime as runtime, within, xorshift};
use fibra::prelude::*;
use fibra::{Builder, ProcessId};

#[test]
fn a_registered_process_is_found_and_reached_by_name() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        let got = rt.block_on(move |cx| {
            let server = cx.spawn_fn(echo::<String>);
            handle.register("server", &server.pid()).unwrap();
            assert_eq!(handle.whereis::<String>("server"), Some(server.pid()));
            assert_eq!(handle.whereis_any("server"), Some(server.pid().any()));
            assert_eq!(handle.registered(), vec!["server".to_string()]);
            handle.send_named("server", "ping".to_string()).unwrap();
            server.join().unwrap()
        });
        assert_eq!(got, "ping");
    });
}

#[test]
fn a_taken_name_cannot_be_registered_and_a_process_has_one_name() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let first = cx.spawn_fn(echo::<u32>);
            let second = cx.spawn_fn(echo::<u32>);
            handle.register("db", &first.pid()).unwrap();

            let taken = handle.register("db", &second.pid()).unwrap_err();
            assert_eq!(
                taken,
                RegisterError::Taken {
                    name: "db".into(),
                    holder: first.id(),
                }
            );
            assert_eq!(taken.name(), "db");
            let text = taken.to_string();
            assert!(text.contains("\"db\"") && text.contains(&first.id().to_string()));

            // One name per process, as in Erlang; the same name again is no different.
            for name in ["db2", "db"] {
                let named = handle.register(name, &first.pid()).unwrap_err();
                assert_eq!(
                    named,
                    RegisterError::AlreadyNamed {
                        name: name.into(),
                        process: first.id(),
                        existing: "db".into(),
                    }
                );
                assert!(named.to_string().contains("already registered as \"db\""));
            }
            assert_eq!(handle.whereis::<u32>("db"), Some(first.pid()));
            assert_eq!(handle.whereis_any("db2"), None);

            first.pid().send(1).unwrap();
            second.pid().send(2).unwrap();
            assert_eq!((first.join(), second.join()), (Ok(1), Ok(2)));
        });
    });
}

#[test]
fn a_name_is_freed_when_its_process_ends_and_can_be_reused() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let old = cx.spawn_fn(echo::<u32>);
            handle.register("worker", &old.pid()).unwrap();
            old.pid().send(7).unwrap();
            assert_eq!(old.join(), Ok(7));

            // Gone as soon as the process is, even before the exit hook has run.
            assert_eq!(handle.whereis::<u32>("worker"), None);
            assert!(handle.registered().is_empty());
            let bounced = handle.send_named("worker", 8u32).unwrap_err();
            assert_eq!(bounced.into_inner(), 8);

            let new = cx.spawn_fn(echo::<u32>);
            handle.register("worker", &new.pid()).unwrap();
            handle.send_named("worker", 9u32).unwrap();
            assert_eq!(new.join(), Ok(9));
        });
    });
}

#[test]
fn a_killed_process_frees_its_name_for_its_replacement() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let first = cx.spawn_fn(echo::<u32>);
            handle.register("child", &first.pid()).unwrap();
            first.pid().any().kill();
            await_end(cx, &first.pid());
            assert_eq!(handle.whereis_any("child"), None);
            assert!(handle.registered().is_empty());

            let second = cx.spawn_fn(echo::<u32>);
            handle.register("child", &second.pid()).unwrap();
            assert_eq!(handle.whereis::<u32>("child"), Some(second.pid()));
            second.pid().any().kill();
            assert_eq!(second.join(), Err(Exit::Killed));
        });
    });
}

/// A free-running process that takes messages until it is killed.
fn forever(cx: &mut FnContext<u32>) {
    loop {
        let _ = cx.receive();
    }
}

#[test]
fn a_supervisor_trapping_exits_re_registers_the_moment_it_hears_of_the_end() {
    within(60, || {
        let rt = runtime();
        let handle = rt.handle();
        let reached = rt.block_on(move |cx| {
            let supervisor = cx.spawn_fn(move |cx: &mut FnContext<()>| {
                cx.trap_exits(true);
                let mut reached = 0;
                let mut child = cx.spawn_fn_link(forever);
                handle.register("svc", &child.pid()).unwrap();
                for round in 0..200u32 {
                    child.pid().any().kill();
                    // The link's notice can come before the exit hook has freed the
                    // name; registering the replacement must work all the same.
                    match cx.receive_notice() {
                        Notice::Exit { from, reason } => {
                            assert_eq!((from, reason), (child.id(), Exit::Killed));
                        }
                        other => panic!("{other:?}"),
                    }
                    child = cx.spawn_fn_link(forever);
                    handle.register("svc", &child.pid()).unwrap();
                    if handle.send_named("svc", round).is_ok() {
                        reached += 1;
                    }
                }
                child.pid().any().kill();
                reached
            });
            supervisor.join().unwrap()
        });
        assert_eq!(reached, 200);
    });
}

#[test]
fn a_name_held_by_another_message_type_is_not_found_by_type() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let numbers = cx.spawn_fn(echo::<u64>);
            handle.register("numbers", &numbers.pid()).unwrap();
            assert_eq!(handle.whereis::<String>("numbers"), None);
            assert_eq!(handle.whereis::<u32>("numbers"), None);
            assert_eq!(handle.whereis_any("numbers"), Some(numbers.pid().any()));
            let bounced = handle
                .send_named("numbers", "text".to_string())
                .unwrap_err();
            assert_eq!(bounced.into_inner(), "text");
            assert_eq!(handle.whereis::<u64>("nobody"), None);
            assert!(handle.send_named("nobody", 1u64).is_err());
            handle.send_named("numbers", 5u64).unwrap();
            assert_eq!(numbers.join(), Ok(5));
        });
    });
}

#[test]
fn unregister_frees_the_name_and_leaves_the_process_running() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let server = cx.spawn_fn(echo::<u32>);
            handle.register("a", &server.pid()).unwrap();
            assert!(handle.unregister("a"));
            assert!(!handle.unregister("a"));
            assert!(!handle.unregister("never registered"));
            assert_eq!(handle.whereis::<u32>("a"), None);
            assert!(handle.registered().is_empty());
            assert!(server.pid().is_alive());

            // Nameless again, it may take another name; the old one is free for others.
            handle.register("b", &server.pid()).unwrap();
            let other = cx.spawn_fn(echo::<u32>);
            handle.register("a", &other.pid()).unwrap();
            assert_eq!(handle.registered(), vec!["a".to_string(), "b".to_string()]);

            // The first registration's exit hook was removed with the name: the
            // server's end frees "b" and leaves "a" alone.
            server.pid().send(1).unwrap();
            assert_eq!(server.join(), Ok(1));
            assert_eq!(handle.registered(), vec!["a".to_string()]);
            other.pid().send(2).unwrap();
            assert_eq!(other.join(), Ok(2));
            assert!(handle.registered().is_empty());
        });
    });
}

#[test]
fn registering_an_exited_process_fails() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let done = cx.spawn_fn(|_: &mut FnContext<u32>| ());
            let pid = done.pid();
            done.join().unwrap();
            let err = handle.register("late", &pid).unwrap_err();
            assert_eq!(
                err,
                RegisterError::Exited {
                    name: "late".into(),
                    process: pid.id(),
                }
            );
            assert!(err.to_string().contains("has exited"));
            assert_eq!(handle.whereis_any("late"), None);
            assert!(handle.registered().is_empty());

            // Also once its exit hooks have certainly run.
            await_end(cx, &pid);
            assert!(matches!(
                handle.register("late", &pid),
                Err(RegisterError::Exited { .. })
            ));
            assert!(handle.registered().is_empty());
        });
    });
}

#[test]
fn handler_processes_can_be_registered_too() {
    struct Adder {
        total: u64,
        report: Pid<u64>,
    }
    impl Process for Adder {
        type Message = Option<u64>;
        fn handle(&mut self, msg: Option<u64>, cx: &mut Context<Self>) {
            match msg {
                Some(k) => self.total += k,
                None => {
                    let _ = self.report.send(self.total);
                    cx.stop();
                }
            }
        }
    }

    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        let total = rt.block_on(move |cx| {
            let report = cx.spawn_fn(echo::<u64>);
            let adder = cx.spawn(Adder {
                total: 0,
                report: report.pid(),
            });
            handle.register("adder", &adder).unwrap();
            for k in 1..=10u64 {
                handle.send_named("adder", Some(k)).unwrap();
            }
            handle.send_named("adder", None::<u64>).unwrap();
            report.join().unwrap()
        });
        assert_eq!(total, 55);
    });
}

/// Eight threads race registrations, unregistrations and exits of 10,000 processes
/// under five names; afterwards no name is held, and each can be taken again.
#[test]
fn concurrent_churn_leaves_no_stale_names() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 1250;
    const NAMES: [&str; 5] = ["a", "b", "c", "d", "e"];

    within(120, || {
        let rt = Builder::default().workers(4).build().expect("runtime");
        let registered = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let handle = rt.handle();
                let registered = Arc::clone(&registered);
                std::thread::spawn(move || {
                    let mut next = xorshift(
                        0x9E37_79B9_7F4A_7C15u64 ^ ((t as u64 + 1) * 0x1234_5678_9ABC_DEF1),
                    );
                    for _ in 0..PER_THREAD {
                        let roll = next();
                        let name = NAMES[(roll % NAMES.len() as u64) as usize];
                        // One in four ends by itself at once, racing its registration.
                        let child = if roll % 4 == 0 {
                            handle.spawn_fn(|_: &mut FnContext<u32>| 0).unwrap()
                        } else {
                            handle.spawn_fn(echo::<u32>).unwrap()
                        };
                        match handle.register(name, &child.pid()) {
                            Ok(()) => {
                                registered.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(RegisterError::Taken { .. } | RegisterError::Exited { .. }) => {}
                            Err(other) => panic!("unexpected {other}"),
                        }
                        match (roll >> 8) % 3 {
                            0 => {
                                handle.unregister(name);
                            }
                            1 => {
                                let _ = handle.send_named(name, 1u32);
                            }
                            _ => {
                                let _ = handle.whereis::<u32>(name);
                            }
                        }
                        // Whatever happened above, the child ends now.
                        let _ = child.pid().send(2);
                        child.join().unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(registered.load(Ordering::Relaxed) > 0);

        let handle = rt.handle();
        let leftovers = rt.block_on(move |cx| {
            let mut leftovers: Vec<(String, ProcessId)> = Vec::new();
            for name in NAMES {
                if let Some(pid) = handle.whereis_any(name) {
                    leftovers.push((name.to_string(), pid.id()));
                }
            }
            assert!(handle.registered().is_empty());
            // Every name can be taken again.
            let fresh: Vec<_> = NAMES.iter().map(|_| cx.spawn_fn(echo::<u32>)).collect();
            for (name, child) in NAMES.iter().zip(&fresh) {
                handle.register(*name, &child.pid()).unwrap();
            }
            assert_eq!(handle.registered().len(), NAMES.len());
            for child in fresh {
                child.pid().send(0).unwrap();
                child.join().unwrap();
            }
            leftovers
        });
        assert!(leftovers.is_empty(), "stale names: {leftovers:?}");
    });
}

/// Answers `(n, reply)` with `n * 2`.
struct Doubler;

impl Process for Doubler {
    type Message = (u64, ReplyTo<u64>);
    fn handle(&mut self, (n, reply): (u64, ReplyTo<u64>), _cx: &mut Context<Self>) {
        reply.reply(n * 2);
    }
}

#[test]
fn call_and_stop_by_name_fail_clearly_when_the_name_is_free() {
    use std::time::Duration;
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        let t = Duration::from_secs(10);
        type Req = (u64, ReplyTo<u64>);
        assert_eq!(
            handle.call_named::<Req, u64>("doubler", |r| (1, r), t),
            Err(CallError::Exited(Exit::NoProc))
        );
        assert!(!handle.stop_named("doubler"));

        let doubler = rt.spawn(Doubler).unwrap();
        handle.register("doubler", &doubler).unwrap();
        assert_eq!(
            handle.call_named::<Req, u64>("doubler", |r| (21, r), t),
            Ok(42)
        );
        let reason = rt.block_on(move |cx| {
            let watch = cx.monitor(&doubler);
            assert!(cx.runtime().stop_named("doubler"));
            loop {
                if let Notice::Down(down) = cx.receive_notice() {
                    if down.monitor == watch {
                        break down.reason;
                    }
                }
            }
        });
        assert_eq!(reason, Exit::Stopped);
        // Freed with the process: by name it is gone.
        assert!(!handle.stop_named("doubler"));
    });
}

/// Reports, from its `started` hook, whether its name already leads to it.
struct FindsItself {
    name: &'static str,
    found: std::sync::mpsc::Sender<bool>,
}

impl Process for FindsItself {
    type Message = ();
    fn started(&mut self, cx: &mut Context<Self>) {
        let me = cx.pid();
        let by_name = cx.runtime().whereis::<()>(self.name);
        let _ = self.found.send(by_name == Some(me));
    }
    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
}

#[test]
fn spawn_named_registers_a_process_before_it_first_runs() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        for round in 0..200 {
            let (found, answer) = std::sync::mpsc::channel();
            let name = "early";
            let pid = handle
                .spawn_named(name, FindsItself { name, found })
                .unwrap();
            assert!(answer.recv().unwrap(), "round {round}: it ran unnamed");
            assert_eq!(handle.whereis::<()>(name), Some(pid.clone()));
            // Free the name for the next round.
            pid.any().kill();
            while handle.whereis_any(name).is_some() {
                std::thread::yield_now();
            }
        }

        // A taken name: the second process never runs.
        let (found, answer) = std::sync::mpsc::channel();
        let first = handle
            .spawn_named(
                "taken",
                FindsItself {
                    name: "taken",
                    found,
                },
            )
            .unwrap();
        assert!(answer.recv().unwrap());
        let (found, answer) = std::sync::mpsc::channel();
        let err = handle
            .spawn_named(
                "taken",
                FindsItself {
                    name: "taken",
                    found,
                },
            )
            .unwrap_err();
        assert!(
            matches!(err, SpawnError::Name(RegisterError::Taken { .. })),
            "{err:?}"
        );
        assert!(answer.recv().is_err(), "the refused process ran");
        assert_eq!(handle.whereis::<()>("taken"), Some(first));
    });
}

#[test]
fn a_monitor_by_name_follows_the_process_it_found() {
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let handle = cx.runtime();
            assert_eq!(cx.monitor_named("cache"), Err(Exit::NoProc));
            let first = cx.spawn_fn(echo::<()>);
            handle.register("cache", &first.pid()).unwrap();
            let watch = cx.monitor_named("cache").unwrap();
            // The name moves to another process; the monitor stays with the first.
            assert!(handle.unregister("cache"));
            let second = cx.spawn_fn(echo::<()>);
            handle.register("cache", &second.pid()).unwrap();
            second.pid().send(()).unwrap();
            second.join().unwrap();
            first.pid().any().kill();
            loop {
                if let Notice::Down(down) = cx.receive_notice() {
                    assert_eq!(down.monitor, watch);
                    assert_eq!(down.id, first.pid().id());
                    assert_eq!(down.reason, Exit::Killed);
                    break;
                }
            }
        });
    });
}

/// Takes `linger` to stop, after it is told to.
struct Slow {
    linger: std::time::Duration,
}

impl Process for Slow {
    type Message = ();
    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
    fn stopped(&mut self, cx: &mut Context<Self>) {
        cx.sleep(self.linger);
    }
}

#[test]
fn stop_and_wait_returns_once_the_process_has_ended() {
    use std::time::Duration;
    within(30, || {
        let rt = runtime();
        let t = Duration::from_secs(10);
        // From a plain thread.
        let slow = rt
            .spawn(Slow {
                linger: Duration::from_millis(20),
            })
            .unwrap()
            .any();
        assert_eq!(slow.stop_and_wait(t), Ok(Exit::Stopped));
        assert!(!slow.is_alive(), "returned before the end");
        assert_eq!(slow.stop_and_wait(t), Err(StopError::NoProc));

        // From a process, and by name.
        let handle = rt.handle();
        let named = handle
            .spawn_named(
                "slow",
                Slow {
                    linger: Duration::from_millis(20),
                },
            )
            .unwrap();
        rt.block_on(move |cx| {
            let watch = cx.monitor(&named);
            assert_eq!(
                cx.runtime().stop_named_and_wait("slow", t),
                Ok(Exit::Stopped)
            );
            // Its Down is on its way already, or here.
            assert!(!named.is_alive());
            loop {
                if let Notice::Down(down) = cx.receive_notice() {
                    assert_eq!(down.monitor, watch);
                    break;
                }
            }
            assert_eq!(
                cx.runtime().stop_named_and_wait("slow", t),
                Err(StopError::NoProc)
            );
            assert_eq!(cx.me().stop_and_wait(t), Err(StopError::StoppingSelf));
        });
    });
}

#[test]
fn stop_and_wait_times_out_and_the_stop_stands() {
    use std::time::Duration;
    within(30, || {
        let rt = runtime();
        let slow = rt
            .spawn(Slow {
                linger: Duration::from_millis(300),
            })
            .unwrap()
            .any();
        assert_eq!(
            slow.stop_and_wait(Duration::from_millis(10)),
            Err(StopError::Timeout)
        );
        assert!(slow.is_alive());
        // It ends all the same, once its hook is done.
        let ended = slow.stop_and_wait(Duration::from_secs(10));
        assert_eq!(ended, Ok(Exit::Stopped));
    });
}

/// Records whether its `stopped` hook ran.
struct Hooked {
    stopped: std::sync::mpsc::Sender<()>,
}

impl Process for Hooked {
    type Message = ();
    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
    fn stopped(&mut self, _cx: &mut Context<Self>) {
        let _ = self.stopped.send(());
    }
}

#[test]
fn a_stop_with_a_reason_runs_the_stopped_hook_and_ends_with_the_reason() {
    use std::time::Duration;
    within(30, || {
        let rt = runtime();
        let t = Duration::from_secs(10);
        let handle = rt.handle();
        let why = Exit::done(std::io::Error::other("maintenance"));

        // A handler: its hook runs, its monitors see the reason.
        let (tx, hook_ran) = std::sync::mpsc::channel();
        let hooked = handle
            .spawn_named("hooked", Hooked { stopped: tx })
            .unwrap();
        let seen = rt.block_on({
            let why = why.clone();
            move |cx| {
                let watch = cx.monitor(&hooked);
                let ended = cx.runtime().stop_named_and_wait_with("hooked", why, t);
                loop {
                    if let Notice::Down(down) = cx.receive_notice() {
                        assert_eq!(down.monitor, watch);
                        break (ended, down.reason);
                    }
                }
            }
        });
        assert_eq!(seen, (Ok(why.clone()), why.clone()));
        hook_ran.try_recv().expect("the stopped hook ran");

        // A normal reason does not travel along links: a linked helper lives on.
        rt.block_on(|cx| {
            let target = cx.spawn_fn(|cx: &mut FnContext<()>| cx.receive());
            let linked_to = target.pid().any();
            let helper = cx.spawn_fn(move |cx: &mut FnContext<()>| {
                cx.link(linked_to);
                cx.receive()
            });
            let watch = cx.monitor(&helper.pid());
            let target_id = target.pid().id();
            common::eventually(|| {
                helper
                    .pid()
                    .any()
                    .info()
                    .is_some_and(|info| info.links.contains(&target_id))
            });
            target.pid().any().stop_with(Exit::Normal);
            assert_eq!(target.join(), Err(Exit::Normal));
            assert!(
                cx.receive_notice_timeout(Duration::from_millis(50))
                    .is_none(),
                "the helper ended with its link"
            );
            helper.pid().send(()).unwrap();
            helper.join().unwrap();
            let _ = watch;
        });

        // A supervisor stops its children first, then ends with the reason, and
        // the first reason sent wins.
        let sup = Supervisor::new(Strategy::OneForOne)
            .child(ChildSpec::free("worker", || {
                |cx: &mut FnContext<()>| cx.receive()
            }))
            .spawn(&handle)
            .unwrap();
        let worker = sup
            .which_child("worker", t)
            .unwrap()
            .pid()
            .cloned()
            .unwrap();
        let (first, second) = (why.clone(), Exit::done(std::io::Error::other("later")));
        sup.any().stop_with(first.clone());
        assert_eq!(sup.any().stop_and_wait_with(second, t), Ok(first));
        assert!(!worker.is_alive(), "the supervisor ended before its child");
    });
}
