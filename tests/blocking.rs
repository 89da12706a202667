//! The blocking pool and the park/unpark primitive, as a user sees them.

mod common;

use std::time::{Duration, Instant};

use common::{two_worker_runtime, within};
use fibra::park::{current_unparker, park_until, ParkOutcome};
use fibra::prelude::*;
use fibra::{blocking, Builder};

#[test]
fn blocking_returns_the_value_computed_on_a_pool_thread() {
    within(30, || {
        let rt = two_worker_runtime();
        let (value, thread_name) = rt.block_on(|_| {
            blocking(|| {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                (6 * 7, name)
            })
        });
        assert_eq!(value, 42);
        assert!(thread_name.ends_with("-blocking"), "ran on {thread_name:?}");
    });
}

#[test]
fn a_blocking_call_does_not_hold_up_the_worker() {
    // One worker: while one process is in a 200 ms blocking call, another runs.
    within(30, || {
        let rt = Builder::default().workers(1).build().unwrap();
        let order = rt.block_on(|cx| {
            let log = cx.spawn_fn(|cx: &mut FnContext<&'static str>| (cx.receive(), cx.receive()));
            let slow = {
                let log = log.pid();
                cx.spawn_fn(move |_: &mut FnContext<()>| {
                    blocking(|| std::thread::sleep(Duration::from_millis(200)));
                    log.send("blocking call done").unwrap();
                })
            };
            let quick = {
                let log = log.pid();
                cx.spawn_fn(move |_: &mut FnContext<()>| log.send("other process ran").unwrap())
            };
            slow.join().unwrap();
            quick.join().unwrap();
            log.join().unwrap()
        });
        assert_eq!(order, ("other process ran", "blocking call done"));
    });
}

#[test]
fn a_panic_in_a_blocking_call_comes_back_to_the_caller() {
    within(30, || {
        let rt = two_worker_runtime();
        let caller = rt
            .spawn_fn(|_: &mut FnContext<()>| -> u32 { blocking(|| panic!("disk on fire")) })
            .unwrap();
        assert_eq!(caller.join(), Err(Exit::Panicked("disk on fire".into())));
        // The pool goes on.
        assert_eq!(rt.block_on(|_| blocking(|| 1)), 1);
    });
}

#[test]
fn many_blocking_calls_run_in_parallel() {
    within(60, || {
        let rt = two_worker_runtime();
        let start = Instant::now();
        let done = rt.block_on(|cx| {
            let callers: Vec<_> = (0..64)
                .map(|_| {
                    cx.spawn_fn(|_: &mut FnContext<()>| {
                        blocking(|| std::thread::sleep(Duration::from_millis(100)))
                    })
                })
                .collect();
            callers.into_iter().filter_map(|c| c.join().ok()).count()
        });
        assert_eq!(done, 64);
        // 64 x 100 ms one after another would take 6.4 s.
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn outside_a_process_blocking_runs_inline() {
    let here = std::thread::current().id();
    assert!(blocking(move || std::thread::current().id() == here));
}

#[test]
fn an_unpark_before_the_park_is_not_lost_and_deadlines_end_parks() {
    within(30, || {
        let rt = two_worker_runtime();
        let (first, second) = rt.block_on(|_| {
            current_unparker().unpark();
            let first = park_until(Some(Instant::now() + Duration::from_secs(10)));
            let second = park_until(Some(Instant::now() + Duration::from_millis(20)));
            (first, second)
        });
        assert_eq!(first, ParkOutcome::Unparked);
        assert_eq!(second, ParkOutcome::TimedOut);
        // The same on a plain thread.
        current_unparker().unpark();
        assert_eq!(park_until(None), ParkOutcome::Unparked);
    });
}
