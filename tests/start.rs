//! Synchronous starts as a user sees them: `Handle::start` and `Scope::start_link`
//! wait for a handler process's `init`, which says ok, ignore or stop; a failed
//! `init` comes back as an error, never as an exit signal; supervisors start
//! their children this way and keep an ignoring child's spec, not running.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::within;
use fibra::prelude::*;
use fibra::{Builder, ChildError, SupervisorError};

const LONG: Duration = Duration::from_secs(10);

fn runtime() -> Runtime {
    common::quiet_panics_on_purpose();
    Builder::default().workers(2).build().expect("runtime")
}

/// What `init` does.
#[derive(Clone)]
enum Plan {
    Ok,
    Ignore,
    Stop,
    Panic,
    /// Sleeps this long, then says ok.
    Slow(Duration),
}

/// Answers `Ask` with whether `started` ran; records its drop.
struct Service {
    plan: Plan,
    started: bool,
    dropped: Arc<AtomicBool>,
}

impl Service {
    fn new(plan: Plan) -> (Service, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let service = Service {
            plan,
            started: false,
            dropped: Arc::clone(&dropped),
        };
        (service, dropped)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl Process for Service {
    type Message = ReplyTo<bool>;

    fn init(&mut self, cx: &mut Context<Self>) -> Init {
        match self.plan.clone() {
            Plan::Ok => Init::Ok,
            Plan::Ignore => Init::Ignore,
            Plan::Stop => Init::Stop(Exit::error(std::io::Error::other("no config"))),
            Plan::Panic => panic!("init panicked on purpose"),
            Plan::Slow(delay) => {
                cx.sleep(delay);
                Init::Ok
            }
        }
    }

    fn started(&mut self, _cx: &mut Context<Self>) {
        self.started = true;
    }

    fn handle(&mut self, reply: ReplyTo<bool>, _cx: &mut Context<Self>) {
        reply.reply(self.started);
    }
}

#[test]
fn a_start_returns_once_init_said_ok_and_fails_with_what_it_said_otherwise() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        let (ok, _) = Service::new(Plan::Ok);
        let pid = handle.start(ok, LONG).unwrap();
        assert_eq!(pid.call(|r| r, LONG), Ok(true), "started runs after init");

        let (ignore, dropped) = Service::new(Plan::Ignore);
        assert!(matches!(
            handle.start(ignore, LONG),
            Err(SpawnError::Ignored)
        ));
        // It ended: its value is dropped.
        common::eventually(|| dropped.load(Ordering::SeqCst));

        let (stop, _) = Service::new(Plan::Stop);
        match handle.start(stop, LONG) {
            Err(SpawnError::InitFailed(reason)) => {
                assert_eq!(reason.to_string(), "error: no config")
            }
            other => panic!("{other:?}"),
        }
        let (panics, _) = Service::new(Plan::Panic);
        match handle.start(panics, LONG) {
            Err(SpawnError::InitFailed(Exit::Panicked(message))) => {
                assert!(message.contains("on purpose"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_start_that_times_out_kills_the_process() {
    within(30, || {
        let rt = runtime();
        let (slow, dropped) = Service::new(Plan::Slow(Duration::from_secs(30)));
        match rt.handle().start(slow, Duration::from_millis(20)) {
            Err(SpawnError::InitTimeout(timeout)) => {
                assert_eq!(timeout, Duration::from_millis(20))
            }
            other => panic!("{other:?}"),
        }
        common::eventually(|| dropped.load(Ordering::SeqCst));
        // A slow init within the timeout is fine, and may block.
        let (slowish, _) = Service::new(Plan::Slow(Duration::from_millis(10)));
        assert!(rt.handle().start(slowish, LONG).is_ok());
    });
}

#[test]
fn a_failed_start_link_is_an_error_not_an_exit_signal() {
    within(30, || {
        let rt = runtime();
        let survived = rt.block_on(|cx| {
            // Not trapping exits: an exit signal with a failure would end it.
            for plan in [Plan::Stop, Plan::Panic] {
                let (service, _) = Service::new(plan);
                assert!(matches!(
                    cx.start_link(service, LONG),
                    Err(SpawnError::InitFailed(_))
                ));
            }
            let (slow, _) = Service::new(Plan::Slow(Duration::from_secs(30)));
            assert!(matches!(
                cx.start_link(slow, Duration::from_millis(20)),
                Err(SpawnError::InitTimeout(_))
            ));
            // Nothing more is coming: no exit signal is on its way.
            assert!(cx
                .receive_notice_timeout(Duration::from_millis(50))
                .is_none());
            let (ok, _) = Service::new(Plan::Ok);
            let linked = cx.start_link(ok, LONG).unwrap();
            let info = linked.any().info().unwrap();
            assert_eq!(info.links, [cx.me().id()]);
            cx.unlink(&linked);
            true
        });
        assert!(survived);
    });
}

fn service_spec(id: &'static str, plan: Plan) -> ChildSpec {
    ChildSpec::handler(id, move || Service::new(plan.clone()).0)
}

#[test]
fn a_supervisor_starts_its_children_through_init_and_keeps_an_ignoring_one_down() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        let sup = Supervisor::new(Strategy::OneForOne)
            .child(service_spec("a", Plan::Ok).name("service-a"))
            .child(service_spec("idle", Plan::Ignore))
            .spawn(&handle)
            .unwrap();
        // Up and named when spawn returns.
        let a = handle.whereis::<ReplyTo<bool>>("service-a").expect("named");
        assert_eq!(a.call(|r| r, LONG), Ok(true));
        let counts = sup.count_children(LONG).unwrap();
        assert_eq!((counts.specs, counts.active), (2, 1));
        let idle = sup.which_child("idle", LONG).unwrap();
        assert!(idle.pid().is_none(), "an ignoring child does not run");
        assert!(matches!(
            sup.restart_child("idle", LONG),
            Err(ChildError::Ignored(_))
        ));
        assert_eq!(sup.count_children(LONG).unwrap().specs, 2, "its spec stays");
        sup.stop();
    });
}

#[test]
fn a_child_whose_init_fails_or_is_too_slow_fails_the_supervisors_start() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        let failed = |err: SpawnError| match err {
            SpawnError::InitFailed(Exit::Error(error)) => match error.get().downcast_ref() {
                Some(SupervisorError::StartFailed { child, reason }) => {
                    (child.clone(), reason.clone())
                }
                _ => panic!("not a start failure: {error}"),
            },
            other => panic!("not a failed start: {other}"),
        };
        let err = Supervisor::new(Strategy::OneForOne)
            .child(service_spec("ok", Plan::Ok))
            .child(service_spec("stop", Plan::Stop))
            .spawn(&handle)
            .unwrap_err();
        let (child, reason) = failed(err);
        assert_eq!(child, "stop");
        assert_eq!(reason.to_string(), "error: no config");

        let err = Supervisor::new(Strategy::OneForOne)
            .child(
                service_spec("slow", Plan::Slow(Duration::from_secs(30)))
                    .start_timeout(Duration::from_millis(20)),
            )
            .spawn(&handle)
            .unwrap_err();
        let (child, reason) = failed(err);
        assert_eq!(child, "slow");
        assert!(reason.to_string().contains("did not finish"), "{reason}");

        // A nested supervisor's failed start fails its parent's, reason inside.
        let err = Supervisor::new(Strategy::OneForOne)
            .child(ChildSpec::supervisor(
                "inner",
                Supervisor::new(Strategy::OneForOne).child(service_spec("stop", Plan::Stop)),
            ))
            .spawn(&handle)
            .unwrap_err();
        let (child, reason) = failed(err);
        assert_eq!(child, "inner");
        assert!(reason.to_string().contains("no config"), "{reason}");
    });
}

#[test]
fn a_dynamic_child_that_ignores_or_fails_its_start_is_not_kept() {
    within(30, || {
        let rt = runtime();
        let sup = DynamicSupervisor::new(|plan: Plan| service_spec("job", plan))
            .spawn(&rt.handle())
            .unwrap();
        assert!(matches!(
            sup.start_child(Plan::Ignore, LONG),
            Err(ChildError::Ignored(_))
        ));
        assert!(matches!(
            sup.start_child(Plan::Stop, LONG),
            Err(ChildError::StartFailed(_))
        ));
        let job: Pid<ReplyTo<bool>> = sup.start_child_typed(Plan::Ok, LONG).unwrap();
        assert_eq!(job.call(|r| r, LONG), Ok(true));
        assert_eq!(sup.count_children(LONG).unwrap().specs, 1);
        sup.stop();
    });
}

/// Says ok, ignore or stop after yielding a pseudo-random number of times, so
/// that starts meet their timeouts, kills and each other at every point.
struct Racer {
    seed: u64,
}

impl Process for Racer {
    type Message = ();

    fn init(&mut self, cx: &mut Context<Self>) -> Init {
        for _ in 0..self.seed % 4 {
            cx.yield_now();
        }
        match self.seed % 3 {
            0 => Init::Ok,
            1 => Init::Ignore,
            _ => Init::Stop(Exit::error(std::io::Error::other("no"))),
        }
    }

    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
}

#[test]
fn starts_racing_timeouts_and_kills_from_many_threads_leave_nothing_behind() {
    within(120, || {
        let rt = Builder::default().workers(4).build().expect("runtime");
        let before = rt.handle().processes();
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let handle = rt.handle();
                std::thread::spawn(move || {
                    let mut next = common::xorshift(t + 1);
                    for _ in 0..2_000 {
                        let seed = next();
                        // Mostly long enough, now and then far too short.
                        let timeout = match seed % 7 {
                            0 => Duration::from_micros(1),
                            _ => LONG,
                        };
                        match handle.start(Racer { seed }, timeout) {
                            Ok(pid) => {
                                assert_eq!(seed % 3, 0, "started although init refused");
                                if seed % 2 == 0 {
                                    pid.any().kill();
                                } else {
                                    assert_eq!(pid.any().stop_and_wait(LONG), Ok(Exit::Stopped));
                                }
                            }
                            Err(SpawnError::Ignored) => assert_eq!(seed % 3, 1),
                            Err(SpawnError::InitFailed(reason)) => {
                                assert_eq!(seed % 3, 2, "{reason}");
                            }
                            Err(SpawnError::InitTimeout(_)) => {
                                assert_eq!(timeout, Duration::from_micros(1))
                            }
                            Err(other) => panic!("{other}"),
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // Every process started, ignored, failed, killed or timed out has ended.
        common::eventually(|| rt.handle().processes() == before);
    });
}
