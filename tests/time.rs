//! Time as a user sees it: receive with a timeout, sleep, delayed and periodic
//! messages, and a handler's idle timeout.

mod common;

use std::time::{Duration, Instant};

use common::{within, DropCounter, Tracked};
use fibra::prelude::*;
use fibra::{sleep, Builder};

fn runtime(workers: usize) -> Runtime {
    Builder::default()
        .workers(workers)
        .build()
        .expect("runtime")
}

const MS: Duration = Duration::from_millis(1);

#[test]
fn receive_timeout_returns_a_message_that_comes_in_time() {
    within(20, || {
        let rt = runtime(2);
        let got = rt.block_on(|cx| {
            let child = cx.spawn_fn(|cx: &mut FnContext<u32>| cx.receive_timeout(10_000 * MS));
            sleep(5 * MS);
            child.pid().send(9).unwrap();
            child.join().unwrap()
        });
        assert_eq!(got, Some(9));
    });
}

#[test]
fn receive_timeout_gives_up_after_the_deadline_and_not_before() {
    within(20, || {
        let rt = runtime(2);
        let (got, waited) = rt.block_on(|cx| {
            let child = cx.spawn_fn(|cx: &mut FnContext<u32>| {
                let start = Instant::now();
                (cx.receive_timeout(30 * MS), start.elapsed())
            });
            child.join().unwrap()
        });
        assert_eq!(got, None);
        assert!(waited >= 30 * MS, "gave up early after {waited:?}");
        assert!(waited < 2_000 * MS, "gave up late after {waited:?}");
    });
}

#[test]
fn zero_timeout_polls_and_huge_timeout_waits() {
    within(20, || {
        let rt = runtime(1);
        let got = rt.block_on(|cx| {
            let child = cx.spawn_fn(|cx: &mut FnContext<u32>| {
                let polled_empty = cx.receive_timeout(Duration::ZERO);
                let huge = cx.receive_timeout(Duration::MAX);
                let polled_full = cx.receive_timeout(Duration::ZERO);
                (polled_empty, huge, polled_full)
            });
            cx.yield_now();
            child.pid().send(1).unwrap();
            child.pid().send(2).unwrap();
            child.join().unwrap()
        });
        assert_eq!(got.0, None);
        assert_eq!(got.1, Some(1));
        assert_eq!(got.2, Some(2));
    });
}

#[test]
fn selective_receive_with_a_timeout_keeps_the_rest_queued() {
    within(20, || {
        let rt = runtime(2);
        let (missing, found, rest) = rt.block_on(|cx| {
            let child = cx.spawn_fn(|cx: &mut FnContext<u32>| {
                // Non-matching messages wake the process without ending the wait.
                let missing = cx.receive_matching_timeout(|&m| m == 99, 40 * MS);
                let found = cx.receive_matching_timeout(|&m| m == 3, 10_000 * MS);
                let rest: Vec<u32> = (0..4).map(|_| cx.receive()).collect();
                (missing, found, rest)
            });
            for m in 1..=5 {
                child.pid().send(m).unwrap();
                sleep(2 * MS);
            }
            child.join().unwrap()
        });
        assert_eq!(missing, None);
        assert_eq!(found, Some(3));
        assert_eq!(rest, [1, 2, 4, 5]);
    });
}

#[test]
fn sleep_suspends_only_the_process() {
    // One worker: while one process sleeps, another runs.
    within(20, || {
        let rt = runtime(1);
        let order = rt.block_on(|cx| {
            let log = cx.spawn_fn(|cx: &mut FnContext<&'static str>| (cx.receive(), cx.receive()));
            let sleeper = {
                let log = log.pid();
                cx.spawn_fn(move |cx: &mut FnContext<()>| {
                    cx.sleep(30 * MS);
                    log.send("sleeper").unwrap();
                })
            };
            let quick = {
                let log = log.pid();
                cx.spawn_fn(move |_: &mut FnContext<()>| log.send("quick").unwrap())
            };
            sleeper.join().unwrap();
            quick.join().unwrap();
            log.join().unwrap()
        });
        assert_eq!(order, ("quick", "sleeper"));
    });
}

#[test]
fn sleep_in_a_handler_and_on_a_plain_thread() {
    struct Napper;
    impl Process for Napper {
        type Message = Pid<Duration>;
        fn handle(&mut self, reply: Pid<Duration>, cx: &mut Context<Self>) {
            let start = Instant::now();
            cx.sleep(15 * MS);
            reply.send(start.elapsed()).unwrap();
        }
    }
    within(20, || {
        let rt = runtime(2);
        let slept = rt.block_on(|cx| {
            let napper = cx.spawn(Napper);
            let reply = cx.spawn_fn(|cx: &mut FnContext<Duration>| cx.receive());
            napper.send(reply.pid()).unwrap();
            reply.join().unwrap()
        });
        assert!(slept >= 15 * MS, "{slept:?}");
        let start = Instant::now();
        sleep(5 * MS);
        assert!(start.elapsed() >= 5 * MS);
    });
}

#[test]
fn send_after_delivers_later_and_cancel_stops_it() {
    within(20, || {
        let rt = runtime(2);
        let drops = DropCounter::default();
        let (first, waited) = rt.block_on({
            let drops = drops.clone();
            move |cx| {
                let child = cx.spawn_fn(|cx: &mut FnContext<(u32, Option<Tracked>)>| {
                    let start = Instant::now();
                    let first = cx.receive().0;
                    let waited = start.elapsed();
                    // Nothing else arrives: the cancelled one never does.
                    let more = cx.receive_timeout(60 * MS).map(|m| m.0);
                    (first, waited, more)
                });
                let pid = child.pid();
                let cancelled = pid.send_after((1, Some(drops.token())), 30 * MS).unwrap();
                pid.send_after((2, None), 20 * MS).unwrap();
                assert!(cancelled.cancel(), "cancelled before it was due");
                assert!(!cancelled.cancel(), "only once");
                let (first, waited, more) = child.join().unwrap();
                assert_eq!(more, None);
                (first, waited)
            }
        });
        assert_eq!(first, 2);
        assert!(waited >= 20 * MS, "{waited:?}");
        assert_eq!(drops.get(), 1, "the cancelled message was dropped");
    });
}

#[test]
fn send_interval_ticks_until_cancelled() {
    within(20, || {
        let rt = runtime(2);
        let ticks = rt.block_on(|cx| {
            let counter = cx.spawn_fn(|cx: &mut FnContext<u32>| {
                let mut seen = Vec::new();
                while let Some(n) = cx.receive_timeout(200 * MS) {
                    seen.push(n);
                }
                seen
            });
            let mut n = 0;
            let interval = counter.pid().send_interval(
                move || {
                    n += 1;
                    n
                },
                5 * MS,
            );
            sleep(60 * MS);
            interval.cancel();
            assert!(!interval.is_active());
            counter.join().unwrap()
        });
        assert!(ticks.len() >= 3, "only {} ticks", ticks.len());
        let expected: Vec<u32> = (1..=ticks.len() as u32).collect();
        assert_eq!(ticks, expected, "in order, none lost or repeated");
    });
}

#[test]
fn an_interval_stops_when_its_target_exits() {
    within(20, || {
        let rt = runtime(2);
        let interval = rt.block_on(|cx| {
            let target = cx.spawn_fn(|cx: &mut FnContext<()>| {
                cx.receive();
            });
            let interval = target.pid().send_interval(|| (), MS);
            target.join().unwrap();
            // The next tick finds the target gone and stops the interval.
            let start = Instant::now();
            while interval.is_active() && start.elapsed() < 5_000 * MS {
                cx.sleep(MS);
            }
            interval
        });
        assert!(!interval.is_active());
    });
}

#[test]
fn a_handler_times_out_when_idle_and_not_while_busy() {
    struct Session {
        report: Pid<(u32, u32)>,
        messages: u32,
        timeouts: u32,
    }
    impl Process for Session {
        type Message = ();
        fn started(&mut self, cx: &mut Context<Self>) {
            cx.set_idle_timeout(Some(40 * MS));
        }
        fn handle(&mut self, _: (), _cx: &mut Context<Self>) {
            self.messages += 1;
        }
        fn timeout(&mut self, cx: &mut Context<Self>) {
            self.timeouts += 1;
            let _ = self.report.send((self.messages, self.timeouts));
            cx.stop();
        }
    }
    within(20, || {
        let rt = runtime(2);
        let (messages, timeouts) = rt.block_on(|cx| {
            let report = cx.spawn_fn(|cx: &mut FnContext<(u32, u32)>| cx.receive());
            let session = cx.spawn(Session {
                report: report.pid(),
                messages: 0,
                timeouts: 0,
            });
            // Messages every 5 ms for 100 ms keep it from timing out.
            for _ in 0..20 {
                session.send(()).unwrap();
                sleep(5 * MS);
            }
            report.join().unwrap()
        });
        assert_eq!(messages, 20, "timed out while messages kept coming");
        assert_eq!(timeouts, 1);
    });
}

#[test]
fn shutdown_drops_pending_timers_and_their_messages() {
    within(20, || {
        let rt = runtime(2);
        let drops = DropCounter::default();
        let target = rt
            .spawn_fn(|cx: &mut FnContext<Tracked>| {
                let _ = cx.receive_timeout(Duration::from_secs(3600));
            })
            .unwrap();
        let delayed = target
            .pid()
            .send_after(drops.token(), Duration::from_secs(3600))
            .unwrap();
        let _interval = target.pid().send_interval(
            {
                let drops = drops.clone();
                move || drops.token()
            },
            Duration::from_secs(3600),
        );
        let sleeper = rt
            .spawn_fn(|cx: &mut FnContext<()>| cx.sleep(Duration::from_secs(3600)))
            .unwrap();
        let start = Instant::now();
        rt.shutdown();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert_eq!(drops.get(), 1, "the pending message was dropped");
        assert!(!delayed.cancel());
        assert_eq!(target.join(), Err(Exit::Shutdown));
        assert_eq!(sleeper.join(), Err(Exit::Shutdown));
    });
}
