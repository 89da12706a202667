//! Dynamic supervisors as a user sees them: children started from a template with
//! their own arguments, restarted by their restart type with the same arguments,
//! terminated by process, counted, limited, and all stopped at once on shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::within;
use fibra::prelude::*;
use fibra::{Builder, ChildError, MonitorRef, SupervisorError};

/// A timeout no test should reach.
const LONG: Duration = Duration::from_secs(20);

fn runtime() -> Runtime {
    common::quiet_panics_on_purpose();
    Builder::default().workers(2).build().expect("runtime")
}

/// What a test worker takes.
enum Cmd {
    /// Panic.
    Crash,
    /// Stop normally.
    Quit,
    /// Reply with the argument it was started with.
    Arg(ReplyTo<u64>),
}

/// A child that knows the argument it was started with.
struct Worker {
    arg: u64,
}

impl Process for Worker {
    type Message = Cmd;

    fn handle(&mut self, cmd: Cmd, cx: &mut Context<Self>) {
        match cmd {
            Cmd::Crash => panic!("worker {} crashed on purpose", self.arg),
            Cmd::Quit => cx.stop(),
            Cmd::Arg(reply_to) => {
                reply_to.reply(self.arg);
            }
        }
    }
}

/// A dynamic supervisor of workers with this restart type.
fn workers(restart: Restart) -> DynamicSupervisor<u64> {
    DynamicSupervisor::new(move |arg: u64| {
        ChildSpec::handler("worker", move || Worker { arg }).restart(restart)
    })
}

/// The typed address of a child started by `start_child`.
fn typed(sup: &DynamicSupervisorPid<u64>, child: &AnyPid) -> Pid<Cmd> {
    sup.children(LONG)
        .unwrap()
        .into_iter()
        .find(|info| info.pid() == Some(child))
        .and_then(|info| info.address::<Cmd>())
        .expect("the child is listed")
}

/// Waits for the `Down` of `monitor` and returns its reason.
fn down_of<M: Send + 'static>(cx: &mut FnContext<M>, monitor: &MonitorRef) -> Exit {
    loop {
        if let Notice::Down(down) = cx.receive_notice() {
            if down.monitor == *monitor {
                return down.reason;
            }
        }
    }
}

/// The one child the supervisor has running now, once it has one that is not
/// `old`.
fn successor(sup: &DynamicSupervisorPid<u64>, old: &AnyPid) -> Pid<Cmd> {
    loop {
        let children = sup.children(LONG).unwrap();
        assert_eq!(children.len(), 1, "{children:?}");
        if let Some(pid) = children[0].address::<Cmd>() {
            if pid.any() != *old {
                return pid;
            }
        }
        std::thread::yield_now();
    }
}

#[test]
fn children_start_from_the_template_with_their_own_arguments() {
    let rt = runtime();
    within(30, move || {
        let sup = workers(Restart::Permanent).spawn(&rt.handle()).unwrap();
        let started: Vec<AnyPid> = (1..=3)
            .map(|n| sup.start_child(n * 10, LONG).unwrap())
            .collect();
        let children = sup.children(LONG).unwrap();
        // In start order, all under the template's id.
        assert_eq!(
            children
                .iter()
                .map(|c| c.pid().cloned())
                .collect::<Vec<_>>(),
            started.iter().cloned().map(Some).collect::<Vec<_>>()
        );
        assert!(children
            .iter()
            .all(|c| c.id() == "worker" && !c.is_restarting()));
        for (child, n) in started.iter().zip([10, 20, 30]) {
            assert_eq!(typed(&sup, child).call(Cmd::Arg, LONG).unwrap(), n);
        }
        let counts = sup.count_children(LONG).unwrap();
        assert_eq!(
            (
                counts.specs,
                counts.active,
                counts.workers,
                counts.supervisors
            ),
            (3, 3, 3, 0)
        );
        sup.stop();
    });
}

#[test]
fn a_permanent_child_is_restarted_with_the_same_arguments() {
    let rt = runtime();
    within(30, move || {
        let sup = workers(Restart::Permanent).spawn(&rt.handle()).unwrap();
        let first = sup.start_child(7, LONG).unwrap();
        typed(&sup, &first).send(Cmd::Crash).unwrap();
        let second = successor(&sup, &first);
        assert_eq!(second.call(Cmd::Arg, LONG).unwrap(), 7);
        // A normal exit restarts a permanent child too.
        second.send(Cmd::Quit).unwrap();
        let third = successor(&sup, &second.any());
        assert_eq!(third.call(Cmd::Arg, LONG).unwrap(), 7);
        let info = sup.children(LONG).unwrap().remove(0);
        assert_eq!(info.restarts(), 2);
        sup.stop();
    });
}

#[test]
fn transient_and_temporary_children_follow_their_restart_types() {
    let rt = runtime();
    rt.block_on(|cx| {
        // A transient child that fails comes back; one that ends normally does not.
        let sup = workers(Restart::Transient).spawn(&cx.runtime()).unwrap();
        let child = sup.start_child(1, LONG).unwrap();
        typed(&sup, &child).send(Cmd::Crash).unwrap();
        let again = successor(&sup, &child);
        let monitor = cx.monitor(&again);
        again.send(Cmd::Quit).unwrap();
        assert_eq!(down_of(cx, &monitor), Exit::Normal);
        assert_eq!(sup.count_children(LONG).unwrap().specs, 0);

        // A temporary child is forgotten however it ends.
        let temp = workers(Restart::Temporary).spawn(&cx.runtime()).unwrap();
        let child = temp.start_child(2, LONG).unwrap();
        let monitor = cx.monitor(&child);
        typed(&temp, &child).send(Cmd::Crash).unwrap();
        assert!(matches!(down_of(cx, &monitor), Exit::Panicked(_)));
        assert_eq!(temp.count_children(LONG).unwrap().specs, 0);
        sup.stop();
        temp.stop();
    });
}

#[test]
fn terminate_child_stops_and_forgets_a_child_and_refuses_strangers() {
    let rt = runtime();
    rt.block_on(|cx| {
        let sup = workers(Restart::Permanent).spawn(&cx.runtime()).unwrap();
        let a = sup.start_child(1, LONG).unwrap();
        let b = sup.start_child(2, LONG).unwrap();
        let monitor = cx.monitor(&a);
        sup.terminate_child(&a, LONG).unwrap();
        // It has ended by the time terminate_child returns, and is not restarted.
        assert!(!a.is_alive());
        assert_eq!(down_of(cx, &monitor), Exit::Stopped);
        let children = sup.children(LONG).unwrap();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].pid(), Some(&b));
        // Neither a process that is not a child nor a child already gone is found.
        assert_eq!(
            sup.terminate_child(&a, LONG),
            Err(ChildError::NotFound(a.id().to_string()))
        );
        let me = cx.me();
        assert!(matches!(
            sup.terminate_child(&me, LONG),
            Err(ChildError::NotFound(_))
        ));
        assert!(me.is_alive());
        sup.stop();
    });
}

#[test]
fn max_children_limits_the_children_running_and_restarting() {
    let rt = runtime();
    within(30, move || {
        let sup = workers(Restart::Permanent)
            .max_children(2)
            .spawn(&rt.handle())
            .unwrap();
        let a = sup.start_child(1, LONG).unwrap();
        sup.start_child(2, LONG).unwrap();
        assert_eq!(sup.start_child(3, LONG), Err(ChildError::MaxChildren(2)));
        sup.terminate_child(&a, LONG).unwrap();
        sup.start_child(3, LONG).unwrap();
        assert_eq!(sup.count_children(LONG).unwrap().active, 2);
        sup.stop();
    });
}

#[test]
fn a_start_that_fails_is_reported_and_nothing_is_kept() {
    let rt = runtime();
    within(30, move || {
        let sup = DynamicSupervisor::new(|arg: u64| {
            assert!(arg != 0, "zero is refused on purpose");
            ChildSpec::handler("worker", move || {
                assert!(arg != 1, "one fails its factory on purpose");
                Worker { arg }
            })
        })
        .spawn(&rt.handle())
        .unwrap();
        for bad in [0, 1] {
            match sup.start_child(bad, LONG) {
                Err(ChildError::StartFailed(Exit::Panicked(why))) => {
                    assert!(why.contains("on purpose"), "{why}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sup.count_children(LONG).unwrap().specs, 0);
        assert!(sup.start_child(2, LONG).is_ok());
        sup.stop();
    });
}

#[test]
fn too_many_restarts_end_the_supervisor_cleanly() {
    let rt = runtime();
    rt.block_on(|cx| {
        let sup = workers(Restart::Permanent)
            .intensity(2, Duration::from_secs(60))
            .spawn(&cx.runtime())
            .unwrap();
        let monitor = cx.monitor(&sup);
        let mut child = sup.start_child(5, LONG).unwrap();
        // Two restarts are allowed; the third crash is one too many.
        for _ in 0..2 {
            typed(&sup, &child).send(Cmd::Crash).unwrap();
            child = successor(&sup, &child).any();
        }
        typed(&sup, &child).send(Cmd::Crash).unwrap();
        let reason = down_of(cx, &monitor);
        let Exit::Done(error) = &reason else {
            panic!("{reason:?}")
        };
        assert!(matches!(
            error.get().downcast_ref::<SupervisorError>(),
            Some(SupervisorError::IntensityExceeded {
                max_restarts: 2,
                ..
            })
        ));
    });
}

/// A child whose `stopped` hook waits until every one of `of` siblings has been
/// asked to stop too.
struct Patient {
    stopping: Arc<AtomicUsize>,
    of: usize,
}

impl Process for Patient {
    type Message = ();

    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}

    fn stopped(&mut self, cx: &mut Context<Self>) {
        self.stopping.fetch_add(1, Ordering::SeqCst);
        while self.stopping.load(Ordering::SeqCst) < self.of {
            cx.sleep(Duration::from_millis(1));
        }
    }
}

#[test]
fn shutdown_stops_all_children_at_once() {
    // Each child ends only once all its siblings have been asked to stop, and is
    // killed if it takes longer than its shutdown timeout: one at a time, the
    // first would be killed; all at once, every one ends as stopped.
    const CHILDREN: usize = 8;
    let rt = runtime();
    rt.block_on(|cx| {
        let stopping = Arc::new(AtomicUsize::new(0));
        let template = {
            let stopping = Arc::clone(&stopping);
            move |(): ()| {
                let stopping = Arc::clone(&stopping);
                ChildSpec::handler("patient", move || Patient {
                    stopping: Arc::clone(&stopping),
                    of: CHILDREN,
                })
                .shutdown(fibra::Shutdown::Timeout(Duration::from_secs(5)))
            }
        };
        let sup = DynamicSupervisor::new(template)
            .spawn(&cx.runtime())
            .unwrap();
        let monitors: Vec<MonitorRef> = (0..CHILDREN)
            .map(|_| cx.monitor(sup.start_child((), LONG).unwrap()))
            .collect();
        let sup_monitor = cx.monitor(&sup);
        sup.stop();
        // The children end in any order, the supervisor after all of them.
        let mut left = monitors;
        while !left.is_empty() {
            let Notice::Down(down) = cx.receive_notice() else {
                continue;
            };
            assert_ne!(down.monitor, sup_monitor, "the supervisor ended first");
            let k = left
                .iter()
                .position(|m| *m == down.monitor)
                .expect("a child");
            left.swap_remove(k);
            assert_eq!(down.reason, Exit::Stopped, "killed: not stopped at once");
        }
        assert_eq!(down_of(cx, &sup_monitor), Exit::Stopped);
    });
}

#[test]
fn a_dynamic_supervisor_nests_under_a_static_one_and_dies_with_it() {
    let rt = runtime();
    rt.block_on(|cx| {
        let top = cx
            .spawn_supervisor(
                Supervisor::new(Strategy::OneForOne)
                    .child(workers(Restart::Temporary).child_spec("jobs").name("jobs")),
            )
            .unwrap();
        let info = top.which_child("jobs", LONG).unwrap();
        assert!(info.is_supervisor());
        assert!(info.supervisor().is_none(), "not a static supervisor");
        let jobs = info
            .dynamic_supervisor::<u64>()
            .expect("a dynamic supervisor");
        assert!(
            info.dynamic_supervisor::<String>().is_none(),
            "arguments are typed"
        );
        assert_eq!(
            DynamicSupervisorPid::<u64>::whereis(&cx.runtime(), "jobs"),
            Some(jobs.clone())
        );
        let job = jobs.start_child(3, LONG).unwrap();
        let job_monitor = cx.monitor(&job);
        let jobs_monitor = cx.monitor(&jobs);
        top.stop();
        assert_eq!(down_of(cx, &job_monitor), Exit::Stopped);
        assert_eq!(down_of(cx, &jobs_monitor), Exit::Stopped);
    });
}

#[test]
fn one_shot_children_carry_values_that_cannot_be_made_twice() {
    let rt = runtime();
    rt.block_on(|cx| {
        // A value that is not Clone, moved into its one child.
        struct Ticket(u64);
        let sup = DynamicSupervisor::new(|ticket: Ticket| {
            ChildSpec::free_once("holder", move |cx: &mut FnContext<ReplyTo<u64>>| {
                let reply_to = cx.receive();
                reply_to.reply(ticket.0);
            })
        })
        .spawn(&cx.runtime())
        .unwrap();
        let child = sup.start_child(Ticket(99), LONG).unwrap();
        let info = sup.children(LONG).unwrap().remove(0);
        assert_eq!(info.restart(), Restart::Temporary);
        let pid = info.address::<ReplyTo<u64>>().unwrap();
        let monitor = cx.monitor(&child);
        assert_eq!(pid.call(|r| r, LONG).unwrap(), 99);
        assert_eq!(down_of(cx, &monitor), Exit::Normal);
        assert_eq!(sup.count_children(LONG).unwrap().specs, 0);
        sup.stop();
    });
}

#[test]
#[should_panic(expected = "cannot be Permanent")]
fn a_one_shot_child_cannot_be_made_permanent() {
    let _ = ChildSpec::handler_once("once", Worker { arg: 1 }).restart(Restart::Permanent);
}

#[test]
fn a_zero_restart_period_is_refused() {
    let rt = runtime();
    let err = workers(Restart::Permanent)
        .intensity(1, Duration::ZERO)
        .spawn(&rt.handle())
        .unwrap_err();
    assert!(matches!(err, SpawnError::InvalidSupervisor(_)), "{err}");
}
