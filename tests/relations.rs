//! Exit reasons, links, monitors, kill and stop, as a user sees them.

mod common;

use std::time::Duration;

use common::within;
use fibra::prelude::*;
use fibra::{Builder, MonitorRef};

fn runtime() -> Runtime {
    Builder::default().workers(2).build().expect("runtime")
}

const LONG: Duration = Duration::from_secs(30);

/// A free-running process that waits for one message and then ends as told.
fn worker(cx: &mut FnContext<Exit>) {
    match cx.receive() {
        Exit::Normal => {}
        Exit::Panicked(message) => panic!("{message}"),
        reason => cx.exit(reason),
    }
}

#[derive(Debug)]
struct Oops;
impl std::fmt::Display for Oops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oops")
    }
}
impl std::error::Error for Oops {}

#[test]
fn monitors_see_every_kind_of_exit_reason_exactly_once() {
    within(30, || {
        let rt = runtime();
        let error = Exit::error(Oops);
        let reasons = vec![
            Exit::Normal,
            Exit::Panicked("bad".into()),
            error.clone(),
            Exit::Stopped,
        ];
        let seen = rt.block_on({
            let reasons = reasons.clone();
            move |cx| {
                let watcher = cx.spawn_fn(move |cx: &mut FnContext<()>| {
                    let mut seen = Vec::new();
                    for reason in reasons {
                        let child = cx.spawn_fn(worker);
                        let monitor = cx.monitor(&child.pid());
                        child.pid().send(reason).unwrap();
                        match cx.receive_notice() {
                            Notice::Down(down) => {
                                assert_eq!(down.monitor, monitor);
                                assert_eq!(down.id, child.id());
                                seen.push(down.reason);
                            }
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    // Exactly once: nothing more comes.
                    assert_eq!(cx.receive_notice_timeout(Duration::from_millis(30)), None);
                    seen
                });
                watcher.join().unwrap()
            }
        });
        assert_eq!(seen, reasons);
        assert_eq!(seen[2].to_string(), "error: oops");
    });
}

#[test]
fn monitoring_a_dead_process_gives_an_immediate_noproc() {
    within(30, || {
        let rt = runtime();
        let reason = rt.block_on(|cx| {
            let child = cx.spawn_fn(|_: &mut FnContext<()>| ());
            let pid = child.pid();
            child.join().unwrap();
            let watcher = cx.spawn_fn(move |cx: &mut FnContext<()>| {
                cx.monitor(&pid);
                cx.receive_notice_timeout(LONG)
            });
            watcher.join().unwrap()
        });
        match reason {
            Some(Notice::Down(down)) => assert_eq!(down.reason, Exit::NoProc),
            other => panic!("expected a Down, got {other:?}"),
        }
    });
}

#[test]
fn only_the_process_that_made_a_monitor_can_remove_it() {
    within(30, || {
        let rt = runtime();
        let reason = rt.block_on(|cx| {
            let target = cx.spawn_fn(|cx: &mut FnContext<()>| cx.receive());
            let monitor = cx.monitor(&target.pid());
            // Another process gets a copy of the ref and tries to remove the monitor.
            let meddler = cx.spawn_fn(|cx: &mut FnContext<MonitorRef>| {
                let monitor = cx.receive();
                cx.demonitor(&monitor);
            });
            meddler.pid().send(monitor.clone()).unwrap();
            meddler.join().unwrap();
            target.pid().send(()).unwrap();
            target.join().unwrap();
            match cx.receive_notice() {
                Notice::Down(down) if down.monitor == monitor => down.reason,
                other => panic!("expected the monitor's Down, got {other:?}"),
            }
        });
        assert_eq!(reason, Exit::Normal);
    });
}

#[test]
fn demonitor_guarantees_no_later_notice() {
    within(60, || {
        let rt = runtime();
        let leaked = rt.block_on(|cx| {
            let watcher = cx.spawn_fn(|cx: &mut FnContext<()>| {
                let mut leaked = 0;
                for round in 0..500u32 {
                    let child = cx.spawn_fn(worker);
                    let monitor = cx.monitor(&child.pid());
                    child.pid().send(Exit::Normal).unwrap();
                    // Race the child's end: sometimes before, sometimes after.
                    if round % 2 == 0 {
                        cx.yield_now();
                    }
                    cx.demonitor(&monitor);
                    child.join().unwrap();
                    if cx.receive_notice_timeout(Duration::ZERO).is_some() {
                        leaked += 1;
                    }
                }
                leaked
            });
            watcher.join().unwrap()
        });
        assert_eq!(leaked, 0, "a Down arrived after demonitor");
    });
}

#[test]
fn a_linked_failure_takes_the_other_process_down_with_the_same_reason() {
    within(30, || {
        let rt = runtime();
        let (partner_exit, watcher_saw) = rt.block_on(|cx| {
            let partner = cx.spawn_fn(|cx: &mut FnContext<()>| {
                let child = cx.spawn_fn_link(worker);
                child
                    .pid()
                    .send(Exit::Panicked("child crashed".into()))
                    .unwrap();
                // Blocked here when the link's exit signal comes.
                cx.receive();
            });
            let observer = cx.spawn_fn({
                let partner = partner.pid();
                move |cx: &mut FnContext<()>| {
                    cx.monitor(&partner);
                    cx.receive_notice()
                }
            });
            (partner.join(), observer.join().unwrap())
        });
        assert_eq!(partner_exit, Err(Exit::Panicked("child crashed".into())));
        match watcher_saw {
            Notice::Down(down) => assert_eq!(down.reason, Exit::Panicked("child crashed".into())),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_normal_exit_does_not_propagate_along_a_link() {
    within(30, || {
        let rt = runtime();
        let survived = rt.block_on(|cx| {
            let parent = cx.spawn_fn(|cx: &mut FnContext<u32>| {
                let child = cx.spawn_fn_link(worker);
                child.pid().send(Exit::Normal).unwrap();
                child.join().unwrap();
                cx.receive_timeout(Duration::from_millis(30)).is_none()
            });
            parent.join()
        });
        assert_eq!(survived, Ok(true));
    });
}

#[test]
fn trapping_exits_turns_link_signals_into_notices() {
    within(30, || {
        let rt = runtime();
        let notices = rt.block_on(|cx| {
            let trapper = cx.spawn_fn(|cx: &mut FnContext<()>| {
                assert!(!cx.trap_exits(true));
                let crashing = cx.spawn_fn_link(worker);
                let quitting = cx.spawn_fn_link(worker);
                crashing.pid().send(Exit::error(Oops)).unwrap();
                let first = cx.receive_notice();
                quitting.pid().send(Exit::Normal).unwrap();
                let second = cx.receive_notice();
                vec![(first, crashing.id()), (second, quitting.id())]
            });
            trapper.join().unwrap()
        });
        for (notice, id) in notices {
            match notice {
                Notice::Exit { from, reason } => {
                    assert_eq!(from, id);
                    assert!(
                        matches!(reason, Exit::Error(_) | Exit::Normal),
                        "{reason:?}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    });
}

#[test]
fn kill_cannot_be_trapped_and_ends_a_process_in_any_wait() {
    within(30, || {
        let rt = runtime();
        let sleeper = rt
            .spawn_fn(|cx: &mut FnContext<()>| {
                cx.trap_exits(true);
                cx.sleep(Duration::from_secs(3600));
            })
            .unwrap();
        let receiver = rt.spawn_fn(|cx: &mut FnContext<()>| cx.receive()).unwrap();
        let joiner = rt
            .spawn_fn(|cx: &mut FnContext<()>| {
                let never = cx.spawn_fn(|cx: &mut FnContext<()>| cx.receive());
                let _ = never.join();
            })
            .unwrap();
        for pid in [
            sleeper.pid().any(),
            receiver.pid().any(),
            joiner.pid().any(),
        ] {
            pid.kill();
        }
        assert_eq!(sleeper.join(), Err(Exit::Killed));
        assert_eq!(receiver.join(), Err(Exit::Killed));
        assert_eq!(joiner.join(), Err(Exit::Killed));
    });
}

#[test]
fn stop_runs_the_handlers_stopped_hook() {
    struct Service {
        log: Pid<&'static str>,
    }
    impl Process for Service {
        type Message = ();
        fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
        fn stopped(&mut self, _cx: &mut Context<Self>) {
            let _ = self.log.send("stopped hook ran");
        }
    }
    within(30, || {
        let rt = runtime();
        let (note, down) = rt.block_on(|cx| {
            let log = cx.spawn_fn(|cx: &mut FnContext<&'static str>| cx.receive());
            let service = cx.spawn(Service { log: log.pid() });
            let watcher = cx.spawn_fn(move |cx: &mut FnContext<()>| {
                cx.monitor(&service);
                service.any().stop();
                cx.receive_notice()
            });
            (log.join().unwrap(), watcher.join().unwrap())
        });
        assert_eq!(note, "stopped hook ran");
        match down {
            Notice::Down(down) => assert_eq!(down.reason, Exit::Stopped),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn handler_processes_get_notices_through_their_hook() {
    struct Watcher {
        report: Pid<(MonitorRef, Exit)>,
    }
    impl Process for Watcher {
        type Message = AnyPid;
        fn handle(&mut self, target: AnyPid, cx: &mut Context<Self>) {
            cx.monitor(&target);
        }
        fn notice(&mut self, notice: Notice, _cx: &mut Context<Self>) {
            if let Notice::Down(down) = notice {
                let _ = self.report.send((down.monitor, down.reason));
            }
        }
    }
    within(30, || {
        let rt = runtime();
        let reason = rt.block_on(|cx| {
            let report = cx.spawn_fn(|cx: &mut FnContext<(MonitorRef, Exit)>| cx.receive());
            let watcher = cx.spawn(Watcher {
                report: report.pid(),
            });
            let target = cx.spawn_fn(worker);
            watcher.send(target.pid().any()).unwrap();
            // Let the monitor be set up before the target ends.
            cx.sleep(Duration::from_millis(20));
            target.pid().send(Exit::Killed).unwrap();
            report.join().unwrap().1
        });
        assert_eq!(reason, Exit::Killed);
    });
}

#[test]
fn spawn_link_is_atomic_with_spawning() {
    // A child that fails at once still takes its linked parent down: the link
    // existed before the child ran.
    within(30, || {
        let rt = runtime();
        for _ in 0..200 {
            let parent = rt
                .spawn_fn(|cx: &mut FnContext<()>| {
                    cx.spawn_fn_link(|_: &mut FnContext<()>| -> () { panic!("at once") });
                    cx.receive();
                })
                .unwrap();
            assert_eq!(parent.join(), Err(Exit::Panicked("at once".into())));
        }
    });
}

#[test]
fn a_kill_that_arrives_while_a_process_unwinds_does_not_abort_the_program() {
    // A destructor that blocks while the process unwinds from a panic, with a kill
    // pending: the kill must not start a second unwind (which would abort).
    struct SleepsOnDrop;
    impl Drop for SleepsOnDrop {
        fn drop(&mut self) {
            fibra::sleep(Duration::from_millis(50));
        }
    }
    within(30, || {
        let rt = runtime();
        let victim = rt
            .spawn_fn(|cx: &mut FnContext<()>| {
                let _guard = SleepsOnDrop;
                cx.receive();
                panic!("on purpose");
            })
            .unwrap();
        victim.pid().send(()).unwrap();
        // Kill it while its guard sleeps during the unwind (or before: either way
        // the program must go on).
        std::thread::sleep(Duration::from_millis(10));
        victim.pid().any().kill();
        let exit = victim.join().unwrap_err();
        assert!(
            matches!(exit, Exit::Panicked(_) | Exit::Killed),
            "unexpected {exit:?}"
        );
        // The runtime is unharmed.
        assert_eq!(rt.block_on(|_| 1), 1);
    });
}

#[test]
fn a_trapping_process_that_never_reads_its_notices_still_stops_and_fails() {
    const NOTICES: usize = 2_000;
    within(60, || {
        let rt = runtime();
        // It collects exit signals (trapped) and `Down`s it never reads, and keeps
        // resuming: each resume asks for fatal signals, which must neither miss the
        // stop nor mistake a notice for one.
        let (ready, is_ready) = std::sync::mpsc::channel();
        let hoarder = rt
            .spawn_fn(move |cx: &mut FnContext<()>| {
                cx.trap_exits(true);
                for _ in 0..NOTICES / 2 {
                    let child = cx.spawn_fn_link(|_cx: &mut FnContext<()>| {});
                    cx.monitor(&child.pid());
                    let _ = child.join();
                }
                for _ in 0..1_000 {
                    cx.yield_now();
                }
                ready.send(()).unwrap();
                loop {
                    cx.yield_now();
                }
            })
            .unwrap();
        is_ready.recv_timeout(LONG).unwrap();
        hoarder.pid().any().stop();
        assert_eq!(hoarder.join(), Err(Exit::Stopped));

        // A linked failure takes it down once it stops trapping exits.
        let failing = rt
            .spawn_fn(|cx: &mut FnContext<()>| {
                cx.trap_exits(true);
                let crashing = cx.spawn_fn_link(worker);
                for _ in 0..NOTICES {
                    cx.monitor(&crashing.pid());
                }
                crashing.pid().send(Exit::error(Oops)).unwrap();
                let _ = crashing.join();
                cx.trap_exits(false);
                loop {
                    cx.yield_now();
                }
            })
            .unwrap();
        assert!(matches!(failing.join(), Err(Exit::Error(_))));
    });
}

/// A worker that starts a linked helper and then waits to be stopped.
struct WithHelper {
    helper: std::sync::mpsc::Sender<AnyPid>,
}

impl Process for WithHelper {
    type Message = ();
    fn started(&mut self, cx: &mut Context<Self>) {
        let helper = cx.spawn_fn_link(|cx: &mut FnContext<()>| cx.receive());
        self.helper.send(helper.pid().any()).unwrap();
    }
    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
}

#[test]
fn a_stop_travels_along_links_as_any_reason_but_normal_does() {
    within(30, || {
        let rt = runtime();
        let reason = rt.block_on(|cx| {
            let (helper, helper_pid) = std::sync::mpsc::channel();
            let worker = cx.spawn(WithHelper { helper });
            let helper = helper_pid.recv().unwrap();
            let watch = cx.monitor(&helper);
            // The worker ends with Stopped; its helper, linked and not trapping,
            // must end too instead of living on unsupervised.
            worker.any().stop();
            match cx.receive_notice() {
                Notice::Down(down) if down.monitor == watch => down.reason,
                other => panic!("expected the helper's Down, got {other:?}"),
            }
        });
        assert_eq!(reason, Exit::Stopped);
    });
}

/// Waits for the `Down` of `monitor` and returns its reason.
fn down_reason(cx: &mut FnContext<()>, monitor: &MonitorRef) -> Exit {
    loop {
        if let Notice::Down(down) = cx.receive_notice() {
            if down.monitor == *monitor {
                return down.reason;
            }
        }
    }
}

#[test]
fn send_exit_ends_a_non_trapping_target_with_its_reason_unless_normal() {
    within(30, || {
        let rt = runtime();
        let (reason, alive_after_normal) = rt.block_on(|cx| {
            // Answers every sender it is sent, for ever.
            let target = cx.spawn_fn(|cx: &mut FnContext<std::sync::mpsc::Sender<()>>| loop {
                let _ = cx.receive().send(());
            });
            let watch = cx.monitor(&target.pid());
            cx.send_exit(&target.pid(), Exit::Normal);
            // A normal exit signal is dropped: the target, which takes signals before
            // messages, still answers the next message.
            let (answer, answered) = std::sync::mpsc::channel();
            target.pid().send(answer).unwrap();
            let alive = answered.recv().is_ok();
            let why = Exit::error(std::io::Error::other("told to go"));
            cx.send_exit(&target.pid(), why);
            (down_reason(cx, &watch), alive)
        });
        assert!(alive_after_normal, "a normal exit signal ended its target");
        assert_eq!(reason.to_string(), "error: told to go");
    });
}

#[test]
fn a_trapping_target_gets_send_exit_as_a_notice_but_killed_ends_it() {
    within(30, || {
        let rt = runtime();
        let (noticed, reason) = rt.block_on(|cx| {
            let me = cx.me().id();
            let (seen, notices) = std::sync::mpsc::channel();
            let (ready, trapping) = std::sync::mpsc::channel();
            let target = cx.spawn_fn(move |cx: &mut FnContext<()>| {
                cx.trap_exits(true);
                ready.send(()).unwrap();
                loop {
                    if let Notice::Exit { from, reason } = cx.receive_notice() {
                        seen.send((from, reason)).unwrap();
                    }
                }
            });
            let watch = cx.monitor(&target.pid());
            trapping.recv().unwrap();
            cx.send_exit(&target.pid(), Exit::Stopped);
            let noticed = notices.recv().unwrap();
            cx.send_exit(&target.pid(), Exit::Killed);
            ((noticed.0 == me, noticed.1), down_reason(cx, &watch))
        });
        assert_eq!(noticed, (true, Exit::Stopped));
        assert_eq!(reason, Exit::Killed);
    });
}

#[test]
fn receive_either_yields_notices_and_messages_a_user_can_match() {
    within(30, || {
        let rt = runtime();
        let got = rt.block_on(|cx| {
            let child = cx.spawn_fn(|cx: &mut FnContext<u32>| {
                let target = cx.spawn_fn(|_: &mut FnContext<()>| ());
                cx.monitor(&target.pid());
                target.join().unwrap();
                let mut seen = Vec::new();
                // Both arrive, in either order.
                for _ in 0..2 {
                    match cx.receive_either() {
                        Received::Notice(Notice::Down(down)) => {
                            seen.push(format!("down {}", down.reason))
                        }
                        Received::Notice(other) => seen.push(format!("{other:?}")),
                        Received::Message(n) => seen.push(format!("message {n}")),
                    }
                }
                seen.sort();
                seen
            });
            child.pid().send(7).unwrap();
            child.join().unwrap()
        });
        assert_eq!(got, ["down normal exit", "message 7"]);
    });
}
