//! Supervisors as a user sees them: restart strategies and types, restart
//! intensity and its escalation, backoff, orderly shutdown, nesting, and children
//! reached by name across restarts.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::within;
use fibra::prelude::*;
use fibra::{Builder, ChildError, MonitorRef, ProcessId, SupervisorError};

/// A timeout no test should reach.
const LONG: Duration = Duration::from_secs(20);

fn runtime() -> Runtime {
    common::quiet_panics_on_purpose();
    Builder::default().workers(2).build().expect("runtime")
}

/// The log's entries, with the time each was recorded.
type Entries = Vec<(Instant, String)>;

/// What the log process takes.
enum LogMsg {
    /// Appends an entry.
    Record(String),
    /// Replies with every entry once there are at least this many.
    WaitFor(usize, ReplyTo<Entries>),
}

/// Records what the children do, in the order it hears of it.
#[derive(Default)]
struct Log {
    entries: Entries,
    waiting: Vec<(usize, ReplyTo<Entries>)>,
}

impl Process for Log {
    type Message = LogMsg;

    fn handle(&mut self, msg: LogMsg, _cx: &mut Context<Self>) {
        match msg {
            LogMsg::Record(entry) => self.entries.push((Instant::now(), entry)),
            LogMsg::WaitFor(n, reply_to) => self.waiting.push((n, reply_to)),
        }
        let len = self.entries.len();
        for (n, reply_to) in std::mem::take(&mut self.waiting) {
            if len >= n {
                reply_to.reply(self.entries.clone());
            } else {
                self.waiting.push((n, reply_to));
            }
        }
    }
}

/// The first `n` entries, once there are that many.
fn wait_for(log: &Pid<LogMsg>, n: usize) -> Vec<String> {
    timed_entries(log, n).into_iter().map(|(_, e)| e).collect()
}

fn timed_entries(log: &Pid<LogMsg>, n: usize) -> Entries {
    let mut entries = log
        .call(|r| LogMsg::WaitFor(n, r), LONG)
        .expect("the log answers");
    entries.truncate(n);
    entries
}

/// What a test worker takes.
enum Cmd {
    /// Panic.
    Crash,
    /// Stop normally (the `stopped` hook runs, the exit is normal).
    Quit,
    /// Reply with this incarnation's id.
    Ping(ReplyTo<ProcessId>),
}

/// A handler child that logs `stop <id>` when it is stopped. Its factory logs
/// `start <id>`: factories run in the supervisor, one after another, so the log
/// shows the order in which the supervisor starts its children.
struct Worker {
    id: &'static str,
    log: Pid<LogMsg>,
    /// Whether its `stopped` hook ignores the stop (sleeps for an hour).
    stubborn: bool,
}

impl Process for Worker {
    type Message = Cmd;

    fn handle(&mut self, cmd: Cmd, cx: &mut Context<Self>) {
        match cmd {
            Cmd::Crash => panic!("{} crashed on purpose", self.id),
            Cmd::Quit => cx.stop(),
            Cmd::Ping(reply_to) => {
                reply_to.reply(cx.id());
            }
        }
    }

    fn stopped(&mut self, cx: &mut Context<Self>) {
        let _ = self.log.send(LogMsg::Record(format!("stop {}", self.id)));
        if self.stubborn {
            cx.sleep(Duration::from_secs(3600));
        }
    }
}

fn worker(id: &'static str, log: &Pid<LogMsg>) -> ChildSpec {
    spec(id, log, false)
}

fn spec(id: &'static str, log: &Pid<LogMsg>, stubborn: bool) -> ChildSpec {
    let log = log.clone();
    ChildSpec::handler(id, move || {
        let _ = log.send(LogMsg::Record(format!("start {id}")));
        Worker {
            id,
            log: log.clone(),
            stubborn,
        }
    })
}

/// The supervisor's children that are up, by id.
fn children(sup: &SupervisorPid) -> HashMap<String, Pid<Cmd>> {
    sup.children(LONG)
        .expect("the supervisor answers")
        .into_iter()
        .filter_map(|child| Some((child.id().to_owned(), child.address::<Cmd>()?)))
        .collect()
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

/// Stops `sup` and waits until it has ended; returns its exit reason.
fn stop_and_wait<M: Send + 'static>(cx: &mut FnContext<M>, sup: &SupervisorPid) -> Exit {
    let monitor = cx.monitor(sup);
    sup.stop();
    down_of(cx, &monitor)
}

/// The supervisor error inside an exit reason.
fn supervisor_error(reason: &Exit) -> Option<SupervisorError> {
    match reason {
        Exit::Error(error) | Exit::Done(error) => {
            error.get().downcast_ref::<SupervisorError>().cloned()
        }
        _ => None,
    }
}

/// Crashes the middle of three children under `strategy`; returns the log from
/// start to shutdown, and which children kept their process.
fn crash_the_middle_child(strategy: Strategy) -> (Vec<String>, Vec<&'static str>) {
    let rt = runtime();
    rt.block_on(move |cx| {
        let log = cx.spawn(Log::default());
        let sup = cx
            .spawn_supervisor(
                Supervisor::new(strategy)
                    .child(worker("a", &log))
                    .child(worker("b", &log))
                    .child(worker("c", &log)),
            )
            .unwrap();
        let before = children(&sup);
        wait_for(&log, 3);
        before["b"].send(Cmd::Crash).unwrap();
        let restarted = match strategy {
            Strategy::OneForOne => 1,
            Strategy::OneForAll => 5,
            Strategy::RestForOne => 3,
        };
        wait_for(&log, 3 + restarted);
        let after = children(&sup);
        let kept = ["a", "b", "c"]
            .into_iter()
            .filter(|id| before[*id] == after[*id])
            .collect();
        for pid in after.values() {
            assert!(pid.call(Cmd::Ping, LONG).is_ok());
        }
        assert_eq!(stop_and_wait(cx, &sup), Exit::Stopped);
        (wait_for(&log, 3 + restarted + 3), kept)
    })
}

#[test]
fn one_for_one_restarts_only_the_crashed_child() {
    within(30, || {
        let (log, kept) = crash_the_middle_child(Strategy::OneForOne);
        assert_eq!(
            log,
            ["start a", "start b", "start c", "start b", "stop c", "stop b", "stop a"]
        );
        assert_eq!(kept, ["a", "c"]);
    });
}

#[test]
fn one_for_all_stops_the_others_in_reverse_order_and_restarts_all_in_order() {
    within(30, || {
        let (log, kept) = crash_the_middle_child(Strategy::OneForAll);
        assert_eq!(
            log,
            [
                "start a", "start b", "start c", // started
                "stop c", "stop a", // b crashed: the others stop, last first
                "start a", "start b", "start c", // all start again, in order
                "stop c", "stop b", "stop a", // shutdown
            ]
        );
        assert!(kept.is_empty());
    });
}

#[test]
fn rest_for_one_restarts_the_crashed_child_and_those_after_it() {
    within(30, || {
        let (log, kept) = crash_the_middle_child(Strategy::RestForOne);
        assert_eq!(
            log,
            [
                "start a", "start b", "start c", // started
                "stop c",  // b crashed: c, started after it, stops
                "start b", "start c", // and both start again
                "stop c", "stop b", "stop a", // shutdown
            ]
        );
        assert_eq!(kept, ["a"]);
    });
}

#[test]
fn restart_types_decide_which_exits_are_restarted() {
    within(30, || {
        let rt = runtime();
        let (log, report) = rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let sup = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .child(worker("perm", &log))
                        .child(worker("trans", &log).restart(Restart::Transient))
                        .child(worker("trans2", &log).restart(Restart::Transient))
                        .child(worker("temp", &log).restart(Restart::Temporary)),
                )
                .unwrap();
            wait_for(&log, 4);
            let kids = children(&sup);
            // Each child ends in turn; waiting for our own `Down` of it means the
            // supervisor's notices about it are already queued ahead of the next
            // question we ask it.
            let mut end = |id: &str, cmd: Cmd| {
                let monitor = cx.monitor(&kids[id]);
                kids[id].send(cmd).unwrap();
                down_of(cx, &monitor)
            };
            assert_eq!(end("perm", Cmd::Quit), Exit::Normal);
            wait_for(&log, 6);
            assert_eq!(end("trans", Cmd::Quit), Exit::Normal);
            wait_for(&log, 7);
            assert!(matches!(end("trans2", Cmd::Crash), Exit::Panicked(_)));
            wait_for(&log, 8);
            assert!(matches!(end("temp", Cmd::Crash), Exit::Panicked(_)));
            let report: Vec<(String, bool, u64)> = sup
                .children(LONG)
                .unwrap()
                .into_iter()
                .map(|c| (c.id().to_owned(), c.pid().is_some(), c.restarts()))
                .collect();
            assert_eq!(stop_and_wait(cx, &sup), Exit::Stopped);
            // 4 starts, 2 stops on quit, 2 restarts, 2 stops at shutdown.
            (wait_for(&log, 10), report)
        });
        assert_eq!(
            log,
            [
                "start perm",
                "start trans",
                "start trans2",
                "start temp",
                "stop perm",    // quit normally...
                "start perm",   // ...and, being permanent, restarted
                "stop trans",   // quit normally: a transient child stays down
                "start trans2", // crashed: restarted
                // the temporary child crashed: never restarted
                "stop trans2",
                "stop perm",
            ]
        );
        assert_eq!(
            report,
            [
                ("perm".to_owned(), true, 1),
                ("trans".to_owned(), false, 0),
                ("trans2".to_owned(), true, 1),
                // the temporary child is forgotten
            ]
        );
    });
}

/// A free-running child that crashes at once.
fn crash_at_once(id: &'static str, log: &Pid<LogMsg>) -> ChildSpec {
    let log = log.clone();
    ChildSpec::free(id, move || {
        let _ = log.send(LogMsg::Record(format!("start {id}")));
        move |_cx: &mut FnContext<()>| -> () { panic!("{id} crashed on purpose") }
    })
}

#[test]
fn exceeding_the_restart_intensity_stops_the_children_and_escalates() {
    within(30, || {
        let rt = runtime();
        let (reason, log) = rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let parent_log = log.clone();
            // The supervisor's parent traps exits, so its failure reaches it as a
            // notice.
            let parent = cx.spawn_fn(move |cx: &mut FnContext<()>| {
                cx.trap_exits(true);
                let sup = Supervisor::new(Strategy::OneForOne)
                    .intensity(2, Duration::from_secs(60))
                    .child(worker("steady", &parent_log))
                    .child(crash_at_once("doomed", &parent_log))
                    .spawn_link(cx)
                    .unwrap();
                loop {
                    if let Notice::Exit { from, reason } = cx.receive_notice() {
                        if from == sup.id() {
                            return reason;
                        }
                    }
                }
            });
            let reason = parent.join().unwrap();
            // steady starts, doomed starts 3 times (2 restarts allowed), then the
            // supervisor stops steady.
            (reason, wait_for(&log, 5))
        });
        match supervisor_error(&reason) {
            Some(SupervisorError::IntensityExceeded {
                max_restarts,
                child,
                reason,
                ..
            }) => {
                assert_eq!(max_restarts, 2);
                assert_eq!(child, "doomed");
                assert_eq!(reason, Exit::Panicked("doomed crashed on purpose".into()));
            }
            other => panic!("expected an intensity error, got {reason:?} ({other:?})"),
        }
        assert!(reason.to_string().contains("restart intensity exceeded"));
        let mut sorted = log.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "start doomed",
                "start doomed",
                "start doomed",
                "start steady",
                "stop steady"
            ]
        );
        assert_eq!(log.last().map(String::as_str), Some("stop steady"));
    });
}

#[test]
fn a_child_that_fails_its_first_start_fails_the_supervisor() {
    within(30, || {
        let rt = runtime();
        let reason = rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            // Linked, not trapping exits: the failure comes back as an error, and
            // this process lives on.
            let err = Supervisor::new(Strategy::OneForOne)
                .child(worker("first", &log))
                .child(ChildSpec::handler("broken", || -> Worker {
                    panic!("no configuration, on purpose")
                }))
                .child(worker("never", &log))
                .spawn_link(cx)
                .unwrap_err();
            let SpawnError::InitFailed(reason) = err else {
                panic!("not a failed start: {err}");
            };
            assert_eq!(wait_for(&log, 2), ["start first", "stop first"]);
            reason
        });
        match supervisor_error(&reason) {
            Some(SupervisorError::StartFailed { child, reason }) => {
                assert_eq!(child, "broken");
                assert_eq!(
                    reason,
                    Exit::Panicked("no configuration, on purpose".into())
                );
            }
            other => panic!("expected a start failure, got {other:?}"),
        }
    });
}

#[test]
fn backoff_delays_restarts_without_blocking_the_supervisor() {
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let ms = Duration::from_millis;
            let sup = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .intensity(10, Duration::from_secs(60))
                        .backoff(Backoff::Exponential {
                            initial: ms(50),
                            max: ms(120),
                        })
                        .child(worker("slow", &log))
                        .child(worker("other", &log)),
                )
                .unwrap();
            wait_for(&log, 2);
            let mut expected = 2;
            for delay in [ms(50), ms(100), ms(120)] {
                let pid = children(&sup)["slow"].clone();
                let monitor = cx.monitor(&pid);
                let crashed_at = Instant::now();
                pid.send(Cmd::Crash).unwrap();
                down_of(cx, &monitor);
                // While the restart waits, the supervisor answers, with the child
                // down.
                let down = sup.children(LONG).unwrap();
                assert!(down[0].pid().is_none() || crashed_at.elapsed() >= delay);
                expected += 1;
                let (restarted_at, entry) = timed_entries(&log, expected).pop().unwrap();
                assert_eq!(entry, "start slow");
                assert!(
                    restarted_at.duration_since(crashed_at) >= delay,
                    "restarted after {:?}, expected at least {delay:?}",
                    restarted_at.duration_since(crashed_at)
                );
            }
            // A restart far off does not hold up a shutdown.
            let sup2 = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .backoff(Backoff::Fixed(Duration::from_secs(3600)))
                        .child(worker("late", &log)),
                )
                .unwrap();
            expected += 1;
            wait_for(&log, expected);
            let late = children(&sup2)["late"].clone();
            let monitor = cx.monitor(&late);
            late.send(Cmd::Crash).unwrap();
            down_of(cx, &monitor);
            let waiting = sup2.children(LONG).unwrap();
            assert!(waiting[0].pid().is_none());
            let stopping = Instant::now();
            assert_eq!(stop_and_wait(cx, &sup2), Exit::Stopped);
            assert!(stopping.elapsed() < Duration::from_secs(5));
            assert_eq!(stop_and_wait(cx, &sup), Exit::Stopped);
        });
    });
}

#[test]
fn shutdown_stops_children_in_reverse_order_and_kills_one_past_its_timeout() {
    within(30, || {
        let rt = runtime();
        let (log, stubborn_exit, took) = rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let stubborn_log = log.clone();
            let sup = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .child(worker("a", &log))
                        .child(
                            spec("stubborn", &stubborn_log, true)
                                .shutdown(Shutdown::Timeout(Duration::from_millis(100))),
                        )
                        .child(worker("c", &log).shutdown(Shutdown::Infinity)),
                )
                .unwrap();
            wait_for(&log, 3);
            let stubborn = children(&sup)["stubborn"].clone();
            let watch = cx.monitor(&stubborn);
            let watch_sup = cx.monitor(&sup);
            let started = Instant::now();
            sup.stop();
            // The stubborn child ends first (down_of drops other notices).
            let stubborn_exit = down_of(cx, &watch);
            assert_eq!(down_of(cx, &watch_sup), Exit::Stopped);
            let took = started.elapsed();
            (wait_for(&log, 6), stubborn_exit, took)
        });
        assert_eq!(
            log,
            [
                "start a",
                "start stubborn",
                "start c",
                "stop c",
                "stop stubborn",
                "stop a"
            ]
        );
        assert_eq!(stubborn_exit, Exit::Killed);
        assert!(took >= Duration::from_millis(100), "took {took:?}");
    });
}

#[test]
fn a_killed_supervisor_takes_its_children_down() {
    within(30, || {
        let rt = runtime();
        let reasons = rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let sup = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .child(worker("a", &log))
                        .child(worker("b", &log)),
                )
                .unwrap();
            for pid in children(&sup).values() {
                cx.monitor(pid);
            }
            sup.any().kill();
            (0..2)
                .map(|_| match cx.receive_notice() {
                    Notice::Down(down) => down.reason,
                    other => panic!("{other:?}"),
                })
                .collect::<Vec<_>>()
        });
        assert_eq!(reasons, [Exit::Killed, Exit::Killed]);
    });
}

#[test]
fn a_child_supervisor_that_gives_up_is_restarted_by_its_parent() {
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let inner = Supervisor::new(Strategy::OneForOne)
                .intensity(1, Duration::from_secs(60))
                .child(worker("w", &log));
            let root = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .child(worker("sibling", &log))
                        .child(ChildSpec::supervisor("inner", inner)),
                )
                .unwrap();
            wait_for(&log, 2);
            let find_inner = || {
                root.children(LONG)
                    .unwrap()
                    .into_iter()
                    .find(|c| c.id() == "inner")
                    .and_then(|c| c.supervisor())
                    .expect("inner is up")
            };
            let first_inner = find_inner();
            let inner_watch = cx.monitor(&first_inner);
            // First crash: the inner supervisor restarts w.
            children(&first_inner)["w"].send(Cmd::Crash).unwrap();
            wait_for(&log, 3);
            // Second: one restart too many for it; it gives up, and the root
            // restarts it with a fresh w.
            children(&first_inner)["w"].send(Cmd::Crash).unwrap();
            let reason = down_of(cx, &inner_watch);
            assert!(
                matches!(
                    supervisor_error(&reason),
                    Some(SupervisorError::IntensityExceeded { .. })
                ),
                "{reason:?}"
            );
            let log = wait_for(&log, 4);
            assert_eq!(log, ["start sibling", "start w", "start w", "start w"]);
            let second_inner = find_inner();
            assert_ne!(second_inner, first_inner);
            let w = children(&second_inner)["w"].clone();
            assert!(w.call(Cmd::Ping, LONG).is_ok());
            let report = root.children(LONG).unwrap();
            assert_eq!(report[0].restarts(), 0);
            assert_eq!(report[1].restarts(), 1);
            assert!(report[1].is_supervisor());
            assert_eq!(stop_and_wait(cx, &root), Exit::Stopped);
            assert!(!second_inner.is_alive());
            assert!(!w.is_alive());
        });
    });
}

#[test]
fn a_supervisor_linked_to_its_parent_shuts_down_when_the_parent_ends() {
    within(30, || {
        let rt = runtime();
        let log = rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let parent_log = log.clone();
            let got = cx.spawn_fn(|cx: &mut FnContext<SupervisorPid>| cx.receive());
            let report = got.pid();
            let parent = cx.spawn_fn(move |cx: &mut FnContext<()>| {
                let sup = Supervisor::new(Strategy::OneForOne)
                    .child(worker("a", &parent_log))
                    .child(worker("b", &parent_log))
                    .spawn_link(cx)
                    .unwrap();
                sup.children(LONG).unwrap();
                report.send(sup).unwrap();
                // Returning, once told to, ends the parent normally.
                cx.receive();
            });
            let sup = got.join().unwrap();
            let monitor = cx.monitor(&sup);
            parent.pid().send(()).unwrap();
            parent.join().unwrap();
            assert_eq!(down_of(cx, &monitor), Exit::Normal);
            wait_for(&log, 4)
        });
        assert_eq!(log, ["start a", "start b", "stop b", "stop a"]);
    });
}

#[test]
fn a_named_child_is_reachable_by_name_after_each_restart() {
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let handle = cx.runtime();
            let sup = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .intensity(10, Duration::from_secs(60))
                        .child(worker("svc", &log).name("svc")),
                )
                .unwrap();
            sup.children(LONG).unwrap();
            let mut seen = Vec::new();
            for round in 0..5 {
                let pid = handle.whereis::<Cmd>("svc").expect("registered");
                let id = pid.call(Cmd::Ping, LONG).unwrap();
                assert_eq!(id, pid.id());
                assert!(!seen.contains(&id), "round {round}: a fresh process");
                seen.push(id);
                let monitor = cx.monitor(&pid);
                pid.send(Cmd::Crash).unwrap();
                assert!(matches!(down_of(cx, &monitor), Exit::Panicked(_)));
                // The supervisor has seen the end by the time it answers.
                sup.children(LONG).unwrap();
            }
            let pid = handle.whereis::<Cmd>("svc").expect("registered");
            assert!(pid.call(Cmd::Ping, LONG).is_ok());
            assert_eq!(stop_and_wait(cx, &sup), Exit::Stopped);
            assert!(handle.whereis_any("svc").is_none());
        });
    });
}

/// A named counter whose handler panics on request, for call tests.
struct Counter {
    count: u64,
    starts: Arc<AtomicU64>,
    crashes: Arc<AtomicU64>,
}

enum CounterMsg {
    Add(u64, ReplyTo<u64>),
    Crash,
}

impl Process for Counter {
    type Message = CounterMsg;

    fn started(&mut self, _cx: &mut Context<Self>) {
        self.starts.fetch_add(1, Ordering::SeqCst);
    }

    fn handle(&mut self, msg: CounterMsg, _cx: &mut Context<Self>) {
        match msg {
            CounterMsg::Add(n, reply_to) => {
                self.count += n;
                reply_to.reply(self.count);
            }
            CounterMsg::Crash => {
                self.crashes.fetch_add(1, Ordering::SeqCst);
                panic!("counter crashed on purpose");
            }
        }
    }
}

fn counter(id: String, starts: Arc<AtomicU64>, crashes: Arc<AtomicU64>) -> ChildSpec {
    ChildSpec::handler(id.clone(), move || Counter {
        count: 0,
        starts: Arc::clone(&starts),
        crashes: Arc::clone(&crashes),
    })
    .name(id)
}

/// Waits until each counter `c<i>` has started once more than it crashed and is
/// registered again: every crash was followed by a restart.
fn settle(handle: &Handle, starts: &[Arc<AtomicU64>], crashes: &[Arc<AtomicU64>]) {
    let began = Instant::now();
    loop {
        let lagging = (0..starts.len())
            .filter(|&i| {
                starts[i].load(Ordering::SeqCst) != 1 + crashes[i].load(Ordering::SeqCst)
                    || handle.whereis::<CounterMsg>(&format!("c{i}")).is_none()
            })
            .count();
        if lagging == 0 {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "{lagging} children did not come back"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Calls counter `c0` a hundred times, crashing it before every tenth call;
/// returns how many calls were answered. Panics on any outcome but an answer, or
/// the crash.
fn call_through_crashes(handle: &Handle) -> u32 {
    let mut answered = 0;
    for round in 0..100 {
        let Some(pid) = handle.whereis::<CounterMsg>("c0") else {
            // Between two incarnations.
            fibra::sleep(Duration::from_millis(1));
            continue;
        };
        if round % 10 == 9 {
            let _ = pid.send(CounterMsg::Crash);
        }
        match pid.call(|r| CounterMsg::Add(1, r), LONG) {
            Ok(count) => {
                assert!((1..=10).contains(&count), "a fresh counter: {count}");
                answered += 1;
            }
            Err(CallError::Exited(Exit::Panicked(_))) => {}
            Err(err) => panic!("{err}"),
        }
    }
    answered
}

#[test]
fn a_panicking_handler_keeps_serving_calls_by_name() {
    within(30, || {
        let rt = runtime();
        let (starts, crashes) = ([Arc::default()], [Arc::default()]);
        let sup = rt
            .spawn_supervisor(
                Supervisor::new(Strategy::OneForOne)
                    .intensity(100, Duration::from_secs(60))
                    .child(counter(
                        "c0".into(),
                        Arc::clone(&starts[0]),
                        Arc::clone(&crashes[0]),
                    )),
            )
            .unwrap();
        sup.children(LONG).unwrap();
        let handle = rt.handle();
        // From a plain thread, then from a process.
        let on_thread = call_through_crashes(&handle);
        let in_process = rt.block_on(|cx| call_through_crashes(&cx.runtime()));
        assert!(on_thread >= 80, "answered {on_thread}");
        assert!(in_process >= 80, "answered {in_process}");
        settle(&handle, &starts, &crashes);
        assert_eq!(crashes[0].load(Ordering::SeqCst), 20);
        assert_eq!(sup.children(LONG).unwrap()[0].restarts(), 20);
    });
}

/// A tiny xorshift generator, so the stress test needs no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn a_thousand_children_crash_at_random_while_clients_call_them_by_name() {
    const CHILDREN: usize = 1_000;
    const CLIENTS: u64 = 4;
    const RUN_FOR: Duration = Duration::from_secs(3);
    const CALL_TIMEOUT: Duration = Duration::from_millis(500);
    within(90, || {
        let rt = runtime();
        let starts: Vec<Arc<AtomicU64>> = (0..CHILDREN).map(|_| Arc::default()).collect();
        let crashes: Vec<Arc<AtomicU64>> = (0..CHILDREN).map(|_| Arc::default()).collect();
        let sup = rt
            .spawn_supervisor(
                Supervisor::new(Strategy::OneForOne)
                    .intensity(u32::MAX, Duration::from_secs(1))
                    .children((0..CHILDREN).map(|i| {
                        counter(
                            format!("c{i}"),
                            Arc::clone(&starts[i]),
                            Arc::clone(&crashes[i]),
                        )
                    })),
            )
            .unwrap();
        assert_eq!(sup.children(LONG).unwrap().len(), CHILDREN);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let stop = Arc::clone(&stop);
                rt.spawn_fn(move |cx: &mut FnContext<()>| {
                    let handle = cx.runtime();
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (client + 1));
                    // ok, timeout, exited, absent, crashes sent, slowest call
                    let mut tally = (0u64, 0u64, 0u64, 0u64, 0u64, Duration::ZERO);
                    while !stop.load(Ordering::Relaxed) {
                        let name = format!("c{}", rng.below(CHILDREN as u64));
                        let Some(pid) = handle.whereis::<CounterMsg>(&name) else {
                            tally.3 += 1;
                            cx.yield_now();
                            continue;
                        };
                        if rng.below(50) == 0 {
                            let _ = pid.send(CounterMsg::Crash);
                            tally.4 += 1;
                            continue;
                        }
                        let began = Instant::now();
                        let result = pid.call(|r| CounterMsg::Add(1, r), CALL_TIMEOUT);
                        tally.5 = tally.5.max(began.elapsed());
                        match result {
                            Ok(_) => tally.0 += 1,
                            Err(CallError::Timeout) => tally.1 += 1,
                            Err(CallError::Exited(_)) => tally.2 += 1,
                            Err(err) => panic!("unexpected call result: {err}"),
                        }
                    }
                    tally
                })
                .unwrap()
            })
            .collect();
        std::thread::sleep(RUN_FOR);
        stop.store(true, Ordering::Relaxed);
        let mut total = (0, 0, 0, 0, 0, Duration::ZERO);
        for client in clients {
            let t = client.join().expect("clients do not fail");
            total = (
                total.0 + t.0,
                total.1 + t.1,
                total.2 + t.2,
                total.3 + t.3,
                total.4 + t.4,
                total.5.max(t.5),
            );
        }
        let (ok, timeouts, exited, absent, crash_requests, slowest) = total;
        eprintln!(
            "{ok} calls answered, {timeouts} timed out, {exited} hit a crash, \
             {absent} look-ups between incarnations, {crash_requests} crashes asked for, \
             slowest call {slowest:?}"
        );
        assert!(ok > 1_000, "too few calls answered: {ok}");
        assert!(
            slowest < CALL_TIMEOUT + Duration::from_secs(2),
            "a call hung for {slowest:?}"
        );
        // Every crashed child comes back.
        let handle = rt.handle();
        settle(&handle, &starts, &crashes);
        let crashed: u64 = crashes.iter().map(|c| c.load(Ordering::SeqCst)).sum();
        assert!(crashed > 100, "too few crashes: {crashed}");
        let report = sup.children(LONG).unwrap();
        assert_eq!(report.len(), CHILDREN);
        for (i, child) in report.iter().enumerate() {
            assert_eq!(child.restarts(), crashes[i].load(Ordering::SeqCst));
            assert_eq!(child.pid().cloned(), handle.whereis_any(&format!("c{i}")));
        }
    });
}

/// A stop that arrives while a transient child ends normally must still end the
/// supervisor at once: the two signals land in its queue a few microseconds apart,
/// and the stop must not be left behind while the supervisor goes back to sleep.
#[test]
fn a_stop_racing_a_transient_childs_normal_exit_always_stops_the_supervisor() {
    const ROUNDS: u64 = 2_000;
    /// Far longer than a stop takes; a lost stop waits until the test gives up.
    const PROMPTLY: Duration = Duration::from_secs(5);
    within(120, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let mut rng = Rng(0x2545_f491_4f6c_dd1d);
            for round in 0..ROUNDS {
                let sup = cx
                    .spawn_supervisor(
                        Supervisor::new(Strategy::OneForOne).child(
                            ChildSpec::free("once", || {
                                |cx: &mut FnContext<()>| {
                                    cx.receive();
                                }
                            })
                            .restart(Restart::Transient),
                        ),
                    )
                    .unwrap();
                let child = sup.children(LONG).unwrap()[0]
                    .address::<()>()
                    .expect("the child is up");
                let monitor = cx.monitor(&sup);
                // The child returns as soon as it gets this; the stop follows
                // 0 to 30 µs later.
                child.send(()).unwrap();
                let spin = Duration::from_nanos(rng.below(30_000));
                let began = Instant::now();
                while began.elapsed() < spin {
                    std::hint::spin_loop();
                }
                sup.stop();
                let reason = loop {
                    match cx.receive_notice_timeout(PROMPTLY) {
                        Some(Notice::Down(down)) if down.monitor == monitor => break down.reason,
                        Some(_) => continue,
                        None => panic!("round {round}: the supervisor ignored its stop"),
                    }
                };
                assert_eq!(reason, Exit::Stopped, "round {round}");
            }
        });
    });
}

#[test]
fn a_supervisor_that_gives_up_ends_cleanly_so_its_transient_parent_leaves_it_down() {
    within(30, || {
        let rt = runtime();
        let log = rt.spawn(Log::default()).unwrap();
        let inner = Supervisor::new(Strategy::OneForOne)
            .intensity(1, Duration::from_secs(60))
            .child(crash_at_once("doomed", &log));
        // The parent allows one restart too: restarting the inner supervisor would
        // make it give up in turn.
        let outer = Supervisor::new(Strategy::OneForOne)
            .intensity(1, Duration::from_secs(60))
            .child(ChildSpec::supervisor("inner", inner).restart(Restart::Transient))
            .spawn(&rt.handle())
            .unwrap();
        // doomed starts twice (one restart allowed), then the inner supervisor ends.
        wait_for(&log, 2);
        loop {
            let children = outer.children(LONG).expect("the parent lives on");
            if children[0].pid().is_none() {
                break;
            }
            std::thread::yield_now();
        }
        assert!(outer.is_alive());
        let entries = log
            .call(|r| LogMsg::WaitFor(2, r), LONG)
            .expect("the log answers");
        let starts = entries.iter().filter(|(_, e)| e == "start doomed").count();
        assert_eq!(starts, 2, "the inner supervisor was restarted");
    });
}

#[test]
fn children_can_be_started_stopped_restarted_and_deleted_on_a_running_supervisor() {
    use fibra::ChildError;
    within(30, || {
        let rt = runtime();
        let log = rt.spawn(Log::default()).unwrap();
        let sup = rt
            .handle()
            .spawn_supervisor(Supervisor::new(Strategy::OneForOne).child(worker("static", &log)))
            .unwrap();
        let counts = |sup: &SupervisorPid| sup.count_children(LONG).unwrap();
        assert_eq!(counts(&sup).specs, 1);

        let first = sup.start_child(worker("dyn", &log), LONG).unwrap();
        assert!(first.is_alive());
        let c = counts(&sup);
        assert_eq!((c.specs, c.active, c.workers, c.supervisors), (2, 2, 2, 0));
        assert_eq!(
            sup.start_child(worker("dyn", &log), LONG),
            Err(ChildError::Duplicate("dyn".into()))
        );
        assert_eq!(sup.which_child("dyn", LONG).unwrap().pid(), Some(&first));

        // A running child can be neither restarted nor deleted.
        assert_eq!(
            sup.restart_child("dyn", LONG),
            Err(ChildError::Running("dyn".into()))
        );
        assert_eq!(
            sup.delete_child("dyn", LONG),
            Err(ChildError::Running("dyn".into()))
        );

        // Stopped, its spec stays; restarted, it is a new process.
        sup.terminate_child("dyn", LONG).unwrap();
        assert!(!first.is_alive());
        assert_eq!(sup.which_child("dyn", LONG).unwrap().pid(), None);
        assert_eq!(counts(&sup).active, 1);
        let second = sup.restart_child("dyn", LONG).unwrap();
        assert_ne!(second.id(), first.id());

        // A crash of a dynamic child is restarted like any permanent child.
        sup.which_child("dyn", LONG)
            .unwrap()
            .address::<Cmd>()
            .unwrap()
            .send(Cmd::Crash)
            .unwrap();
        let third = loop {
            let now = sup.which_child("dyn", LONG).unwrap();
            match now.pid() {
                Some(pid) if pid.id() != second.id() => break pid.clone(),
                _ => std::thread::yield_now(),
            }
        };
        assert!(third.is_alive());

        sup.terminate_child("dyn", LONG).unwrap();
        sup.delete_child("dyn", LONG).unwrap();
        assert_eq!(counts(&sup).specs, 1);
        for missing in [
            sup.terminate_child("dyn", LONG),
            sup.delete_child("dyn", LONG),
            sup.restart_child("dyn", LONG).map(|_| ()),
            sup.which_child("dyn", LONG).map(|_| ()),
        ] {
            assert_eq!(missing, Err(ChildError::NotFound("dyn".into())));
        }
        let err = sup.delete_child("dyn", LONG).unwrap_err();
        assert!(err.to_string().contains("\"dyn\""), "{err}");
    });
}

#[test]
fn a_dynamic_child_that_fails_to_start_is_not_kept_and_the_supervisor_lives_on() {
    use fibra::ChildError;
    within(30, || {
        let rt = runtime();
        let sup = rt
            .handle()
            .spawn_supervisor(Supervisor::new(Strategy::OneForOne))
            .unwrap();
        let broken = ChildSpec::handler("broken", || -> Worker { panic!("no config, on purpose") });
        assert_eq!(
            sup.start_child(broken, LONG),
            Err(ChildError::StartFailed(Exit::Panicked(
                "no config, on purpose".into()
            )))
        );
        assert_eq!(sup.count_children(LONG).unwrap().specs, 0);
        assert!(sup.is_alive());
        // A temporary child's spec goes with its termination.
        let temp = ChildSpec::free("temp", || |cx: &mut FnContext<()>| cx.receive())
            .restart(Restart::Temporary);
        sup.start_child(temp, LONG).unwrap();
        sup.terminate_child("temp", LONG).unwrap();
        assert_eq!(
            sup.which_child("temp", LONG).map(|_| ()),
            Err(ChildError::NotFound("temp".into()))
        );
    });
}

#[test]
fn a_supervisor_with_invalid_flags_is_refused_at_spawn() {
    within(30, || {
        let rt = runtime();
        let log = rt.spawn(Log::default()).unwrap();
        let twins = Supervisor::new(Strategy::OneForOne)
            .child(worker("twin", &log))
            .child(worker("twin", &log));
        let err = twins.spawn(&rt.handle()).unwrap_err();
        assert!(matches!(err, SpawnError::InvalidSupervisor(_)), "{err:?}");
        assert!(err.to_string().contains("\"twin\""), "{err}");

        let no_period = Supervisor::new(Strategy::OneForOne)
            .intensity(3, Duration::ZERO)
            .child(worker("w", &log));
        let err = no_period.spawn(&rt.handle()).unwrap_err();
        assert!(err.to_string().contains("period of zero"), "{err}");

        // Zero restarts allowed needs no period: it gives up at the first restart.
        let strict = Supervisor::new(Strategy::OneForOne).intensity(0, Duration::ZERO);
        let sup = strict.spawn(&rt.handle()).unwrap();
        assert!(sup.is_alive());
        // Nothing started: no child's factory ran.
        assert_eq!(rt.processes(), 2);
    });
}

#[test]
fn a_supervisor_whose_child_keeps_failing_to_restart_still_answers_and_stops() {
    within(30, || {
        let rt = runtime();
        let reason = rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let starts = Arc::new(AtomicU64::new(0));
            let counted = starts.clone();
            let factory_log = log.clone();
            // Starts once; every restart after that fails.
            let flaky = ChildSpec::handler("flaky", move || {
                if counted.fetch_add(1, Ordering::SeqCst) > 0 {
                    panic!("cannot start again, on purpose");
                }
                let _ = factory_log.send(LogMsg::Record("start flaky".into()));
                Worker {
                    id: "flaky",
                    log: factory_log.clone(),
                    stubborn: false,
                }
            });
            let sup = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .intensity(u32::MAX, Duration::from_secs(60))
                        .child(flaky),
                )
                .unwrap();
            wait_for(&log, 1);
            children(&sup)["flaky"].send(Cmd::Crash).unwrap();
            // The restarts fail one after another; the supervisor still answers.
            while starts.load(Ordering::SeqCst) < 50 {
                cx.yield_now();
            }
            let report = sup
                .children(Duration::from_secs(5))
                .expect("a supervisor retrying a failing restart answers");
            assert_eq!(report.len(), 1);
            stop_and_wait(cx, &sup)
        });
        assert_eq!(reason, Exit::Stopped);
    });
}

/// A significant worker child of this restart type.
fn significant(id: &'static str, log: &Pid<LogMsg>, restart: Restart) -> ChildSpec {
    worker(id, log).restart(restart).significant(true)
}

/// The auto-shutdown reason of a supervisor's exit, if it is one.
fn auto_shutdown_child(reason: &Exit) -> Option<String> {
    match supervisor_error(reason)? {
        SupervisorError::AutoShutdown { child } => Some(child),
        _ => None,
    }
}

#[test]
fn a_significant_child_that_ends_ends_an_any_significant_supervisor() {
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let sup = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .auto_shutdown(AutoShutdown::AnySignificant)
                        .child(worker("helper", &log))
                        .child(significant("job", &log, Restart::Temporary)),
                )
                .unwrap();
            let watch = cx.monitor(&sup);
            let kids = children(&sup);
            kids["job"].send(Cmd::Quit).unwrap();
            let reason = down_of(cx, &watch);
            assert!(!reason.is_failure(), "{reason}");
            assert_eq!(auto_shutdown_child(&reason).as_deref(), Some("job"));
            // The job stopped itself; the supervisor stopped the helper.
            assert_eq!(
                wait_for(&log, 4),
                ["start helper", "start job", "stop job", "stop helper"]
            );
        });
    });
}

#[test]
fn an_all_significant_supervisor_ends_with_its_last_significant_child() {
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let sup = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .auto_shutdown(AutoShutdown::AllSignificant)
                        .child(significant("a", &log, Restart::Transient))
                        .child(significant("b", &log, Restart::Transient)),
                )
                .unwrap();
            let watch = cx.monitor(&sup);
            let kids = children(&sup);
            // A failure is restarted, so it does not count.
            kids["a"].send(Cmd::Crash).unwrap();
            let a = loop {
                let now = children(&sup);
                if let Some(a) = now.get("a").filter(|a| **a != kids["a"]) {
                    break a.clone();
                }
            };
            a.send(Cmd::Quit).unwrap();
            // One of two done: the supervisor lives on.
            let counts = loop {
                let counts = sup.count_children(LONG).unwrap();
                if counts.active == 1 {
                    break counts;
                }
            };
            assert_eq!(counts.specs, 2);
            kids["b"].send(Cmd::Quit).unwrap();
            let reason = down_of(cx, &watch);
            assert_eq!(auto_shutdown_child(&reason).as_deref(), Some("b"));
        });
    });
}

#[test]
fn a_significant_child_stopped_by_its_supervisor_ends_nothing() {
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let log = cx.spawn(Log::default());
            let sup = cx
                .spawn_supervisor(
                    Supervisor::new(Strategy::OneForOne)
                        .auto_shutdown(AutoShutdown::AnySignificant)
                        .child(significant("job", &log, Restart::Transient)),
                )
                .unwrap();
            sup.terminate_child("job", LONG).unwrap();
            assert!(sup.is_alive());
            assert_eq!(sup.count_children(LONG).unwrap().active, 0);
            assert_eq!(stop_and_wait(cx, &sup), Exit::Stopped);
        });
    });
}

#[test]
fn significant_children_are_checked_against_the_rules() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        let log = rt.spawn(Log::default()).unwrap();
        let refused = |sup: Supervisor| match sup.spawn(&handle) {
            Err(SpawnError::InvalidSupervisor(why)) => why,
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("a supervisor breaking the rules was spawned"),
        };
        let why = refused(
            Supervisor::new(Strategy::OneForOne)
                .auto_shutdown(AutoShutdown::AnySignificant)
                .child(worker("p", &log).significant(true)),
        );
        assert!(why.contains("permanent"), "{why}");
        let why = refused(Supervisor::new(Strategy::OneForOne).child(significant(
            "t",
            &log,
            Restart::Temporary,
        )));
        assert!(why.contains("Never"), "{why}");
        // Started on a running supervisor, and on a dynamic one.
        let sup = Supervisor::new(Strategy::OneForOne).spawn(&handle).unwrap();
        let err = sup
            .start_child(significant("t", &log, Restart::Temporary), LONG)
            .unwrap_err();
        assert!(matches!(err, ChildError::Invalid(_)), "{err}");
        let log2 = log.clone();
        let jobs =
            DynamicSupervisor::new(move |(): ()| significant("job", &log2, Restart::Temporary))
                .spawn(&handle)
                .unwrap();
        let err = jobs.start_child((), LONG).unwrap_err();
        assert!(matches!(err, ChildError::Invalid(_)), "{err}");
        assert_eq!(jobs.count_children(LONG).unwrap().specs, 0);
    });
}

#[test]
fn a_top_level_supervisor_is_registered_from_its_start() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        let sup = Supervisor::new(Strategy::OneForOne)
            .name("top")
            .spawn(&handle)
            .unwrap();
        // No window: found by name the moment spawn returns.
        assert_eq!(SupervisorPid::whereis(&handle, "top"), Some(sup.clone()));
        let err = Supervisor::new(Strategy::OneForOne)
            .name("top")
            .spawn(&handle)
            .unwrap_err();
        assert!(matches!(err, SpawnError::Name(_)), "{err}");
        let jobs = DynamicSupervisor::new(|(): ()| {
            ChildSpec::free("job", || |cx: &mut FnContext<()>| cx.receive())
        })
        .name("jobs")
        .spawn(&handle)
        .unwrap();
        assert_eq!(
            DynamicSupervisorPid::<()>::whereis(&handle, "jobs"),
            Some(jobs.clone())
        );
        assert_eq!(sup.any().stop_and_wait(LONG), Ok(Exit::Stopped));
        assert_eq!(SupervisorPid::whereis(&handle, "top"), None);
        jobs.stop();
    });
}
