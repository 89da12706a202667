//! Process introspection as a user sees it: `AnyPid::info` and
//! `Handle::process_infos` report a process's kind, state, queues, relations,
//! parent, reductions, memory and start time, and nothing once it has ended.

mod common;

use std::time::{Duration, Instant};

use common::within;
use fibra::prelude::*;
use fibra::{Builder, ProcessKind, ProcessState, WaitingOn};

const LONG: Duration = Duration::from_secs(10);

fn runtime() -> Runtime {
    Builder::default().workers(2).build().expect("runtime")
}

/// Counts what it handles; answers calls with the count.
#[derive(Default)]
struct Counter {
    n: u64,
}

impl Process for Counter {
    type Message = Option<ReplyTo<u64>>;
    fn handle(&mut self, msg: Option<ReplyTo<u64>>, _cx: &mut Context<Self>) {
        self.n += 1;
        if let Some(reply) = msg {
            reply.reply(self.n);
        }
    }
}

/// Polls `pid`'s state until `wanted` says yes (the process gets there on its
/// own, on another worker).
fn until_state(pid: &AnyPid, wanted: impl Fn(ProcessState) -> bool) -> ProcessState {
    let until = Instant::now() + LONG;
    loop {
        let state = pid.info().expect("ended").state;
        if wanted(state) {
            return state;
        }
        assert!(Instant::now() < until, "still {state:?}");
        std::thread::yield_now();
    }
}

#[test]
fn the_state_says_what_a_process_waits_for() {
    within(30, || {
        let rt = runtime();
        let idle = rt.spawn(Counter::default()).unwrap().any();
        assert_eq!(
            until_state(&idle, |s| s != ProcessState::Runnable),
            ProcessState::Waiting {
                on: WaitingOn::Message,
                timed: false
            }
        );
        let sleeper = rt
            .spawn_fn(|cx: &mut FnContext<()>| cx.sleep(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(
            until_state(&sleeper.pid().any(), |s| s != ProcessState::Runnable),
            ProcessState::Waiting {
                on: WaitingOn::Timer,
                timed: true
            }
        );
        let waiter = rt
            .spawn_fn(|cx: &mut FnContext<()>| cx.receive_timeout(Duration::from_secs(30)))
            .unwrap();
        assert_eq!(
            until_state(&waiter.pid().any(), |s| s != ProcessState::Runnable),
            ProcessState::Waiting {
                on: WaitingOn::Message,
                timed: true
            }
        );
        let joiner = rt
            .spawn_fn(|cx: &mut FnContext<()>| {
                let child = cx.spawn_fn(|cx: &mut FnContext<()>| cx.receive());
                child.join()
            })
            .unwrap();
        assert_eq!(
            until_state(&joiner.pid().any(), |s| s != ProcessState::Runnable),
            ProcessState::Waiting {
                on: WaitingOn::Event,
                timed: false
            }
        );
        sleeper.pid().any().kill();
        let sleeper_pid = sleeper.pid().any();
        let _ = sleeper.join();
        assert_eq!(sleeper_pid.info(), None, "an ended process has no info");
    });
}

#[test]
fn info_reports_the_queues_the_relations_and_the_parent() {
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            cx.trap_exits(true);
            // Blocked in a sleep, so its messages stay queued.
            let child = cx.spawn_fn_link(|cx: &mut FnContext<u64>| {
                cx.sleep(Duration::from_secs(30));
            });
            for n in 0..3 {
                child.pid().send(n).unwrap();
            }
            let watcher = cx.spawn_fn(|cx: &mut FnContext<()>| cx.receive());
            let me = cx.me().id();
            let watch = cx.monitor(&child.pid());
            cx.runtime().register("sleepy", &child.pid()).unwrap();
            let info = child.pid().any().info().unwrap();
            assert_eq!(info.id, child.pid().id());
            assert_eq!(info.name.as_deref(), Some("sleepy"));
            assert_eq!(info.kind, ProcessKind::Free);
            assert_eq!(info.message_type, std::any::type_name::<u64>());
            assert_eq!(info.mailbox_len, 3);
            assert_eq!(info.signals_len, 0);
            assert_eq!(info.links, [me]);
            assert_eq!(info.monitored_by, [me]);
            assert!(info.monitors.is_empty());
            assert_eq!(info.parent, Some(me));
            assert!(!info.trap_exits);
            assert!(info.memory >= 3 * std::mem::size_of::<u64>());

            let mine = cx.me().info().unwrap();
            assert!(mine.trap_exits);
            assert_eq!(mine.monitors, [child.pid().id()]);
            assert!(mine.links.contains(&child.pid().id()));
            assert_eq!(mine.parent, None, "spawned unlinked by block_on");

            let unlinked = watcher.pid().any().info().unwrap();
            assert_eq!(unlinked.parent, None);
            child.pid().any().kill();
            loop {
                if let Notice::Down(down) = cx.receive_notice() {
                    assert_eq!(down.monitor, watch);
                    break;
                }
            }
            watcher.pid().send(()).unwrap();
        });
    });
}

#[test]
fn a_supervisor_is_its_childrens_parent_and_reductions_add_up() {
    within(30, || {
        let rt = runtime();
        let sup = rt
            .handle()
            .spawn_supervisor(
                Supervisor::new(Strategy::OneForOne)
                    .child(ChildSpec::handler("counter", Counter::default)),
            )
            .unwrap();
        let child = sup.which_child("counter", LONG).unwrap();
        let counter = child.address::<Option<ReplyTo<u64>>>().unwrap();
        let info = counter.any().info().unwrap();
        assert_eq!(info.parent, Some(sup.id()));
        assert_eq!(info.kind, ProcessKind::Handler);
        let before = info.reductions;
        for _ in 0..100 {
            counter.send(None).unwrap();
        }
        assert_eq!(counter.call(Some, LONG), Ok(101));
        until_state(&counter.any(), |s| s != ProcessState::Runnable);
        let after = counter.any().info().unwrap().reductions;
        assert!(after >= before + 101, "{before} then {after}");
    });
}

#[test]
fn process_infos_lists_every_live_process_with_its_start_time() {
    within(30, || {
        let rt = runtime();
        let before = Instant::now();
        let pids: Vec<_> = (0..10)
            .map(|_| rt.spawn(Counter::default()).unwrap())
            .collect();
        let infos = rt.handle().process_infos();
        assert_eq!(infos.len(), rt.handle().processes());
        for pid in &pids {
            let info = infos
                .iter()
                .find(|info| info.id == pid.id())
                .expect("a spawned process is missing");
            // To the second, rounded down.
            assert!(info.started <= Instant::now());
            assert!(info.started + Duration::from_millis(1_100) >= before);
        }
        for pid in &pids {
            assert_eq!(pid.any().stop_and_wait(LONG), Ok(Exit::Stopped));
        }
        let left = rt.handle().process_infos();
        assert!(pids.iter().all(|pid| left.iter().all(|i| i.id != pid.id())));
    });
}
