//! A small supervised service: workers pull jobs from a dispatcher and report to a
//! collector; some jobs are poison and crash the worker that takes them. Each
//! worker slot is watched by a supervisor process that sees the crash through
//! `join` and starts a fresh worker, so the service finishes every other job.
//!
//! Run it with `cargo run --release --example service`.

use std::collections::VecDeque;

use fibra::prelude::*;

/// Jobs the dispatcher hands out.
const JOBS: u64 = 1_000;

/// Every job divisible by this is poison: the worker that takes it panics.
const POISON_EVERY: u64 = 97;

/// Hands out jobs, one per request, until there are none left.
struct Dispatcher {
    jobs: VecDeque<u64>,
}

impl Process for Dispatcher {
    /// A worker asking for its next job.
    type Message = Pid<Option<u64>>;

    fn handle(&mut self, worker: Pid<Option<u64>>, _cx: &mut Context<Self>) {
        let _ = worker.send(self.jobs.pop_front());
    }
}

/// What the collector understands.
enum Collect {
    /// A finished job's result.
    Result(u64),
    /// Asks for (results received, their sum).
    Report(Pid<(u64, u64)>),
}

/// Adds up results.
#[derive(Default)]
struct Collector {
    count: u64,
    sum: u64,
}

impl Process for Collector {
    type Message = Collect;

    fn handle(&mut self, msg: Collect, _cx: &mut Context<Self>) {
        match msg {
            Collect::Result(value) => {
                self.count += 1;
                self.sum += value;
            }
            Collect::Report(to) => {
                let _ = to.send((self.count, self.sum));
            }
        }
    }
}

/// A worker: pulls jobs until the dispatcher runs dry. Panics on poison.
fn worker(
    cx: &mut FnContext<Option<u64>>,
    dispatcher: &Pid<Pid<Option<u64>>>,
    collector: &Pid<Collect>,
) {
    loop {
        if dispatcher.send(cx.pid()).is_err() {
            return;
        }
        let Some(job) = cx.receive() else { return };
        if job % POISON_EVERY == 0 {
            panic!("job {job} is poison");
        }
        let _ = collector.send(Collect::Result(job * 2));
    }
}

/// Supervises one worker slot: restarts the worker whenever it crashes, and
/// returns how many restarts it took once the worker ends normally.
fn supervise(
    cx: &mut FnContext<()>,
    slot: usize,
    dispatcher: Pid<Pid<Option<u64>>>,
    collector: Pid<Collect>,
) -> u32 {
    let mut restarts = 0;
    loop {
        let (dispatcher, collector) = (dispatcher.clone(), collector.clone());
        let child = cx.spawn_fn(move |cx| worker(cx, &dispatcher, &collector));
        match child.join() {
            Ok(()) => return restarts,
            Err(exit) => {
                restarts += 1;
                println!(
                    "slot {slot}: worker crashed on job {}; restarting it",
                    poison_job(&exit)
                );
            }
        }
    }
}

/// Panics carry the job number in their message; show just that.
fn poison_job(exit: &Exit) -> &str {
    match exit {
        Exit::Panicked(message) => message.split_whitespace().nth(1).unwrap_or("?"),
        _ => "?",
    }
}

fn main() {
    // The runtime reports every process panic through `tracing`; print those
    // reports instead of the default panic hook's backtraces.
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .init();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.contains("-worker-"))
        {
            return;
        }
        default_hook(info);
    }));

    let rt = Runtime::new().expect("start the runtime");
    let (restarts, (count, sum)) = rt.block_on(|cx| {
        let dispatcher = cx.spawn(Dispatcher {
            jobs: (1..=JOBS).collect(),
        });
        let collector = cx.spawn(Collector::default());
        let supervisors: Vec<_> = (0..4)
            .map(|slot| {
                let (dispatcher, collector) = (dispatcher.clone(), collector.clone());
                cx.spawn_fn(move |cx| supervise(cx, slot, dispatcher, collector))
            })
            .collect();
        let restarts: u32 = supervisors
            .into_iter()
            .map(|s| s.join().expect("supervisors do not crash"))
            .sum();
        let report = cx.spawn_fn(|cx: &mut FnContext<(u64, u64)>| cx.receive());
        collector
            .send(Collect::Report(report.pid()))
            .expect("collector alive");
        (restarts, report.join().expect("report"))
    });
    let poison = JOBS / POISON_EVERY;
    println!("{count} jobs done (sum {sum}), {poison} poison jobs, {restarts} restarts");
    assert_eq!(restarts as u64, poison, "every crash was restarted");
    assert_eq!(count, JOBS - poison, "every other job was done");
}
