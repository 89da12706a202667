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

/// Checks that the runtime still keeps time: a process's `receive_timeout` gives up
/// at its deadline (not never), and `sleep` sleeps its whole duration (not not at
/// all), in a process and in a handler.
fn assert_time_is_kept(rt: &Runtime) {
    let (got, waited, slept) = rt.block_on(|cx| {
        let waiter = cx.spawn_fn(|cx: &mut FnContext<u32>| {
            let start = Instant::now();
            (cx.receive_timeout(30 * MS), start.elapsed())
        });
        let start = Instant::now();
        sleep(20 * MS);
        let slept = start.elapsed();
        let (got, waited) = waiter.join().unwrap();
        (got, waited, slept)
    });
    assert_eq!(got, None);
    assert!(
        waited >= 30 * MS,
        "receive_timeout gave up early: {waited:?}"
    );
    assert!(
        waited < 5_000 * MS,
        "receive_timeout gave up late: {waited:?}"
    );
    assert!(slept >= 20 * MS, "sleep returned early: {slept:?}");
}

#[test]
fn a_panicking_interval_closure_stops_that_interval_and_nothing_else() {
    common::quiet_panics_on_purpose();
    within(30, || {
        let rt = runtime(2);
        let (panicky, steady, ticks) = rt.block_on(|cx| {
            let target = cx.spawn_fn(|cx: &mut FnContext<&'static str>| {
                let mut steady = 0;
                while steady < 20 {
                    if cx.receive() == "steady" {
                        steady += 1;
                    }
                }
                steady
            });
            let mut calls = 0;
            let panicky = target.pid().send_interval(
                move || {
                    calls += 1;
                    assert!(calls < 3, "an interval closure panicked on purpose");
                    "panicky"
                },
                MS,
            );
            let steady = target.pid().send_interval(|| "steady", 2 * MS);
            // The steady interval goes on past the panic, to its 20th message.
            let ticks = target.join().unwrap();
            (panicky, steady, ticks)
        });
        // The steady interval went on long after the other one panicked (on its
        // third tick, at about 3 ms), to its 20th message at about 40 ms.
        assert_eq!(ticks, 20);
        assert!(!panicky.is_active(), "the panic stopped its interval");
        steady.cancel();
        assert_time_is_kept(&rt);
    });
}

/// A message that counts its drop, then panics.
struct PanicsOnDrop(#[allow(dead_code)] Tracked);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("a message destructor panicked on purpose");
    }
}

#[test]
fn a_message_whose_destructor_panics_dropped_for_an_exited_target_harms_nothing() {
    common::quiet_panics_on_purpose();
    within(30, || {
        let rt = runtime(2);
        let drops = DropCounter::default();
        let refused = rt.block_on({
            let drops = drops.clone();
            move |cx| {
                // Dropped when its target exits, an hour before its deadline.
                let target = cx.spawn_fn(|cx: &mut FnContext<PanicsOnDrop>| {
                    cx.receive_timeout(Duration::from_millis(1));
                });
                target
                    .pid()
                    .send_after(PanicsOnDrop(drops.token()), Duration::from_secs(3600))
                    .unwrap();
                common::await_end(cx, &target.pid());
                assert_eq!(drops.get(), 1, "dropped by the time the Down came");
                // Due in 250 µs, to targets that end at about that time: each is
                // received (and dropped by the target), dropped by the ending
                // target, or, if the timer fired just before the end, dropped on the
                // timeout thread when the send fails.
                let mut refused = 0;
                for round in 0..100u64 {
                    let wait = Duration::from_micros(round * 5);
                    let target = cx.spawn_fn(move |cx: &mut FnContext<PanicsOnDrop>| {
                        cx.receive_timeout(wait);
                    });
                    if let Err(undelivered) =
                        target.pid().send_after(PanicsOnDrop(drops.token()), MS / 4)
                    {
                        // It had ended already: the message comes back to us.
                        std::mem::forget(undelivered.into_inner());
                        refused += 1;
                    }
                    common::await_end(cx, &target.pid());
                }
                refused
            }
        });
        // Every one of them is gone in the end, and time goes on.
        let start = Instant::now();
        while drops.get() + refused < 101 && start.elapsed() < 5_000 * MS {
            sleep(MS);
        }
        assert_eq!(drops.get() + refused, 101);
        assert_time_is_kept(&rt);
    });
}

#[test]
fn timers_to_processes_that_exit_are_released_at_the_exit_not_the_deadline() {
    const TARGETS: usize = 200;
    const LETTERS: usize = 100;
    within(120, || {
        let rt = runtime(2);
        let letters = DropCounter::default();
        let closures = DropCounter::default();
        let (refs, intervals) = rt.block_on({
            let letters = letters.clone();
            let closures = closures.clone();
            move |cx| {
                let targets: Vec<_> = (0..TARGETS)
                    .map(|_| {
                        cx.spawn_fn(|cx: &mut FnContext<Option<Tracked>>| {
                            // Ends on the first message that is not a letter.
                            while cx.receive().is_some() {}
                        })
                    })
                    .collect();
                let mut refs = Vec::with_capacity(TARGETS * LETTERS);
                let mut intervals = Vec::with_capacity(TARGETS);
                for target in &targets {
                    for _ in 0..LETTERS {
                        let letter = Some(letters.token());
                        refs.push(target.pid().send_after(letter, Duration::from_secs(3600)));
                    }
                    let token = closures.token();
                    intervals.push(target.pid().send_interval(
                        move || {
                            let _ = &token;
                            None
                        },
                        Duration::from_secs(3600),
                    ));
                }
                assert_eq!(letters.get(), 0);
                for target in targets {
                    target.pid().send(None).unwrap();
                    common::await_end(cx, &target.pid());
                }
                // Every target's Down has come: all of it is gone already.
                assert_eq!(letters.get(), TARGETS * LETTERS);
                assert_eq!(closures.get(), TARGETS);
                (refs, intervals)
            }
        });
        for interval in &intervals {
            assert!(!interval.is_active());
        }
        for timer in refs {
            assert!(!timer.unwrap().cancel(), "nothing left to cancel");
        }
        // A letter to a process that has exited already comes back at once.
        let gone = rt
            .spawn_fn(|_cx: &mut FnContext<Option<Tracked>>| {})
            .unwrap();
        let pid = gone.pid();
        gone.join().unwrap();
        let late = pid.send_after(Some(letters.token()), Duration::from_secs(3600));
        assert!(matches!(late, Err(SendError::Exited(Some(_)))));
    });
}
