//! fibra's benchmark suite: the standard actor workloads, each run on fibra and on tokio.
//!
//! Every workload is written twice, once with fibra processes (`actors/on_fibra.rs`) and
//! once the way a tokio user would write it, with tasks and unbounded `mpsc` channels
//! (`actors/on_tokio.rs`). Both use their runtime's defaults: one worker per core and no
//! hand placement of processes or tasks. Absolute numbers on a shared machine drift from
//! run to run; the ratio between the two lines of a workload is the number to quote.
//!
//! # Running
//!
//! ```text
//! cargo bench --bench actors                 # every workload on both runtimes
//! cargo bench --bench actors -- ring skynet  # only the named workloads
//! cargo bench --bench actors -- ring tokio   # a runtime's name narrows to that runtime
//! ```
//!
//! Arguments that start with `--` (cargo passes `--bench`) are ignored. Each
//! (workload, runtime) pair runs in a fresh child process, the same executable started
//! again with `FIBRA_BENCH_CHILD=<workload>/<runtime>`, so peak RSS and the allocator's
//! state belong to that one measurement. The parent prints the child's line; a child that
//! fails, or takes longer than `FIBRA_BENCH_TIMEOUT_SECS` (default 60), is reported as
//! `error=...` and makes the suite exit non-zero.
//!
//! # Output and metrics
//!
//! One line per workload and runtime, `name=<workload> runtime=<fibra|tokio>
//! <metric>=<value> ...`, values are plain numbers:
//!
//! | workload | what | metrics |
//! |---|---|---|
//! | `ping_pong` | 2 processes, 1,000,000 round trips | `ns_per_rt`: wall time / round trips |
//! | `ring` | 1,000 processes in a ring, one token passed 1,000,000 hops | `ns_per_hop`: wall time / hops |
//! | `skynet` | 10-ary tree of 1,111,111 processes; leaves send their number, parents sum | `secs`: from spawning the root to the root's sum; `peak_rss_mib`: the child's VmHWM |
//! | `fan_in` | 4 senders x 1,000,000 messages to one receiver | `msgs_per_sec`: messages / time from spawning the senders to the last receipt |
//! | `spawn_idle` | spawn 100,000 processes that wait for a message, then message each once | `ns_per_spawn`: spawn phase only; `bytes_per_process`: RSS growth over the spawn phase / 100,000 |
//! | `million_idle` | fibra only: 1,000,000 idle handler processes, each has handled one message | `rss_mib`, `bytes_per_process` (RSS growth / 1,000,000), `max_map_count` of the machine |
//!
//! `ping_pong` and `ring` warm up (10,000 round trips or hops) in the same processes
//! before the clock starts. RSS comes from `/proc/self/statm`, peak RSS from `VmHWM` in
//! `/proc/self/status`; the vector that keeps the addresses of the spawned processes is
//! faulted in before the baseline is taken, so its pages are not charged to them.
//!
//! Every workload checks its result (the skynet sum, the token's final position, each
//! sender's sequence, the count of acknowledgements), so a runtime that loses or
//! duplicates messages fails instead of printing a good number.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[path = "actors/memory.rs"]
mod memory;
#[path = "actors/on_fibra.rs"]
mod on_fibra;
#[path = "actors/on_tokio.rs"]
mod on_tokio;

/// Round trips timed in `ping_pong`.
const PING_PONG_ROUND_TRIPS: u64 = 1_000_000;
/// Processes in the `ring`.
const RING_PROCESSES: usize = 1_000;
/// Hops of the token timed in `ring`.
const RING_HOPS: u64 = 1_000_000;
/// Round trips or hops run before the clock starts, so that stacks, queues and caches
/// are warm and every ring member exists. Ten laps of the ring; picked out of thin air.
const WARM_UP: u64 = 10_000;
/// Levels below the skynet root; the leaves are at this level.
const SKYNET_DEPTH: u32 = 6;
/// Children of every inner skynet node.
const SKYNET_FAN_OUT: u64 = 10;
/// What the skynet root must add up to: the sum of the leaf numbers 0..999,999.
const SKYNET_SUM: u64 = 499_999_500_000;
/// Senders in `fan_in`.
const FAN_IN_SENDERS: u64 = 4;
/// Messages each `fan_in` sender sends.
const FAN_IN_MESSAGES: u64 = 1_000_000;
/// Processes spawned in `spawn_idle`.
const SPAWN_IDLE_PROCESSES: usize = 100_000;
/// Processes kept alive at once in `million_idle`.
const MILLION_IDLE_PROCESSES: usize = 1_000_000;

/// Environment variable that turns the executable into a child running one measurement.
const CHILD_ENV: &str = "FIBRA_BENCH_CHILD";
/// Environment variable overriding how long a child may take.
const TIMEOUT_ENV: &str = "FIBRA_BENCH_TIMEOUT_SECS";
/// Default limit for one child. The slowest pair takes a few seconds here; a child that
/// needs a minute is hung, not slow.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The runtimes under test.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Contender {
    Fibra,
    Tokio,
}

impl Contender {
    const ALL: [Contender; 2] = [Contender::Fibra, Contender::Tokio];

    fn name(self) -> &'static str {
        match self {
            Contender::Fibra => "fibra",
            Contender::Tokio => "tokio",
        }
    }

    fn from_name(name: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One workload: its name and, per runtime, the function that measures it and returns
/// the metric part of the output line.
struct Workload {
    /// Name on the command line and in the output.
    name: &'static str,
    /// Measures the workload on fibra.
    fibra: fn() -> String,
    /// Measures the workload on tokio, where there is a tokio version.
    tokio: Option<fn() -> String>,
}

impl Workload {
    fn measure(&self, contender: Contender) -> Option<fn() -> String> {
        match contender {
            Contender::Fibra => Some(self.fibra),
            Contender::Tokio => self.tokio,
        }
    }
}

/// The suite, in the order it runs.
const WORKLOADS: [Workload; 6] = [
    Workload {
        name: "ping_pong",
        fibra: || ping_pong(on_fibra::ping_pong()),
        tokio: Some(|| ping_pong(on_tokio::ping_pong())),
    },
    Workload {
        name: "ring",
        fibra: || ring(on_fibra::ring()),
        tokio: Some(|| ring(on_tokio::ring())),
    },
    Workload {
        name: "skynet",
        fibra: || skynet(on_fibra::skynet()),
        tokio: Some(|| skynet(on_tokio::skynet())),
    },
    Workload {
        name: "fan_in",
        fibra: || fan_in(on_fibra::fan_in()),
        tokio: Some(|| fan_in(on_tokio::fan_in())),
    },
    Workload {
        name: "spawn_idle",
        fibra: || spawn_idle(on_fibra::spawn_idle()),
        tokio: Some(|| spawn_idle(on_tokio::spawn_idle())),
    },
    Workload {
        name: "million_idle",
        fibra: || million_idle(on_fibra::million_idle()),
        tokio: None,
    },
];

// ---------------------------------------------------------------------------------------
// What each workload reports, and the checks and metrics shared by both runtimes.
// ---------------------------------------------------------------------------------------

/// Nanoseconds per operation.
fn ns_per(elapsed: Duration, operations: u64) -> f64 {
    elapsed.as_nanos() as f64 / operations as f64
}

/// Bytes in a mebibyte.
const MIB: f64 = 1024.0 * 1024.0;

fn ping_pong(elapsed: Duration) -> String {
    format!("ns_per_rt={:.1}", ns_per(elapsed, PING_PONG_ROUND_TRIPS))
}

/// What a ring run saw.
struct RingOutcome {
    /// Time for `RING_HOPS` hops.
    elapsed: Duration,
    /// Position in the ring (0 = the member the token was handed to) that received the
    /// token when it had no hops left.
    last: usize,
}

fn ring(outcome: RingOutcome) -> String {
    let expected = (RING_HOPS % RING_PROCESSES as u64) as usize;
    assert_eq!(
        outcome.last, expected,
        "the token stopped at the wrong member"
    );
    format!("ns_per_hop={:.1}", ns_per(outcome.elapsed, RING_HOPS))
}

/// The number of ring member `index + 1`, or of the first member after the last one.
fn ring_successor(index: usize) -> usize {
    (index + 1) % RING_PROCESSES
}

/// What a skynet run saw.
struct SkynetOutcome {
    /// From spawning the root to receiving its sum.
    elapsed: Duration,
    /// The root's sum.
    sum: u64,
}

fn skynet(outcome: SkynetOutcome) -> String {
    assert_eq!(outcome.sum, SKYNET_SUM, "skynet added up to the wrong sum");
    format!(
        "secs={:.3} peak_rss_mib={:.1}",
        outcome.elapsed.as_secs_f64(),
        memory::peak_resident_bytes() as f64 / MIB
    )
}

/// The number of child `i` of the skynet node numbered `number`. Numbers are unique per
/// level, so the leaves are numbered 0..10^depth.
fn skynet_child(number: u64, i: u64) -> u64 {
    number * SKYNET_FAN_OUT + i
}

fn fan_in(elapsed: Duration) -> String {
    let messages = FAN_IN_SENDERS * FAN_IN_MESSAGES;
    format!(
        "msgs_per_sec={:.0}",
        messages as f64 / elapsed.as_secs_f64()
    )
}

/// A fan-in message: the sender's number in the high half, its sequence number in the
/// low half.
fn fan_in_message(sender: u64, seq: u64) -> u64 {
    (sender << 32) | seq
}

/// Checks, at the receiver, that each fan-in sender's messages arrive once each and in
/// the order sent.
struct FanInCheck {
    /// The sequence number expected next from each sender.
    next: Vec<u64>,
}

impl FanInCheck {
    fn new() -> FanInCheck {
        FanInCheck {
            next: vec![0; FAN_IN_SENDERS as usize],
        }
    }

    fn record(&mut self, message: u64) {
        let sender = (message >> 32) as usize;
        let seq = message & 0xffff_ffff;
        let next = self
            .next
            .get_mut(sender)
            .unwrap_or_else(|| panic!("message from unknown sender {sender}"));
        assert_eq!(seq, *next, "sender {sender}'s messages out of order");
        *next += 1;
    }

    fn finish(self) {
        for (sender, next) in self.next.iter().enumerate() {
            assert_eq!(*next, FAN_IN_MESSAGES, "sender {sender} came up short");
        }
    }
}

/// What a spawn_idle run saw.
struct SpawnIdleOutcome {
    /// Time to spawn all processes.
    spawn: Duration,
    /// Resident bytes just before the first spawn.
    rss_before: u64,
    /// Resident bytes just after the last spawn.
    rss_after: u64,
    /// Sum of the numbers the processes acknowledged, 0..SPAWN_IDLE_PROCESSES.
    acknowledged: u64,
}

fn spawn_idle(outcome: SpawnIdleOutcome) -> String {
    let n = SPAWN_IDLE_PROCESSES as u64;
    assert_eq!(
        outcome.acknowledged,
        n * (n - 1) / 2,
        "lost acknowledgements"
    );
    let growth = outcome.rss_after.saturating_sub(outcome.rss_before);
    format!(
        "ns_per_spawn={:.1} bytes_per_process={:.0}",
        ns_per(outcome.spawn, n),
        growth as f64 / n as f64
    )
}

/// What a million_idle run saw.
struct MillionIdleOutcome {
    /// Resident bytes before the first spawn.
    rss_before: u64,
    /// Resident bytes once every process has handled its message.
    rss_after: u64,
    /// Sum of the numbers the processes acknowledged, 0..MILLION_IDLE_PROCESSES.
    acknowledged: u64,
}

fn million_idle(outcome: MillionIdleOutcome) -> String {
    let n = MILLION_IDLE_PROCESSES as u64;
    assert_eq!(
        outcome.acknowledged,
        n * (n - 1) / 2,
        "lost acknowledgements"
    );
    let growth = outcome.rss_after.saturating_sub(outcome.rss_before);
    let max_map_count =
        memory::max_map_count().map_or_else(|| "unknown".to_string(), |count| count.to_string());
    format!(
        "processes={n} rss_mib={:.1} bytes_per_process={:.0} max_map_count={max_map_count}",
        outcome.rss_after as f64 / MIB,
        growth as f64 / n as f64
    )
}

// ---------------------------------------------------------------------------------------
// Parent and child.
// ---------------------------------------------------------------------------------------

fn main() -> ExitCode {
    match std::env::var(CHILD_ENV) {
        Ok(spec) => run_child(&spec),
        Err(_) => run_suite(),
    }
}

/// Child side: run one measurement and print its line.
fn run_child(spec: &str) -> ExitCode {
    let found = spec.split_once('/').and_then(|(workload, contender)| {
        let workload = WORKLOADS.iter().find(|w| w.name == workload)?;
        let contender = Contender::from_name(contender)?;
        Some((workload, contender, workload.measure(contender)?))
    });
    let Some((workload, contender, measure)) = found else {
        eprintln!("{CHILD_ENV}={spec}: no such workload/runtime pair");
        return ExitCode::FAILURE;
    };
    let metrics = measure();
    println!(
        "name={} runtime={} {metrics}",
        workload.name,
        contender.name()
    );
    ExitCode::SUCCESS
}

/// Parent side: pick the pairs the arguments ask for and run each in a child.
fn run_suite() -> ExitCode {
    let mut names = Vec::new();
    let mut contenders = Vec::new();
    for arg in std::env::args().skip(1).filter(|a| !a.starts_with("--")) {
        if let Some(contender) = Contender::from_name(&arg) {
            contenders.push(contender);
        } else if WORKLOADS.iter().any(|w| w.name == arg) {
            names.push(arg);
        } else {
            let known: Vec<_> = WORKLOADS.iter().map(|w| w.name).collect();
            eprintln!(
                "unknown workload {arg:?}; known: {}, or a runtime: fibra, tokio",
                known.join(", ")
            );
            return ExitCode::FAILURE;
        }
    }

    let timeout = match std::env::var(TIMEOUT_ENV) {
        Ok(secs) => match secs.parse() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => {
                eprintln!("{TIMEOUT_ENV}={secs:?} is not a number of seconds");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => DEFAULT_TIMEOUT,
    };

    let mut failed = false;
    for workload in &WORKLOADS {
        if !names.is_empty() && !names.iter().any(|n| n == workload.name) {
            continue;
        }
        for contender in Contender::ALL {
            if workload.measure(contender).is_none()
                || !contenders.is_empty() && !contenders.contains(&contender)
            {
                continue;
            }
            match run_in_child(workload.name, contender, timeout) {
                Ok(line) => println!("{line}"),
                Err(error) => {
                    failed = true;
                    println!(
                        "name={} runtime={} error={error}",
                        workload.name,
                        contender.name()
                    );
                }
            }
            // Keep lines appearing as they are measured when piped.
            let _ = std::io::stdout().flush();
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs one measurement in a fresh copy of this executable and returns its output line,
/// or a one-word-ish reason why there is none.
fn run_in_child(workload: &str, contender: Contender, timeout: Duration) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe:{e}"))?;
    let mut child = Command::new(exe)
        .env(CHILD_ENV, format!("{workload}/{}", contender.name()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn:{e}"))?;

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                // The child is hung; it was started here and is ended by its own handle.
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timeout_after_{}s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("wait:{e}")),
        }
    };

    // A line or two: it fits in the pipe, so reading after the exit cannot deadlock.
    let mut output = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_string(&mut output)
            .map_err(|e| format!("read:{e}"))?;
    }
    if !status.success() {
        return Err(match status.code() {
            Some(code) => format!("exit_code_{code}"),
            None => match status.signal() {
                Some(signal) => format!("signal_{signal}"),
                None => "abnormal_exit".to_string(),
            },
        });
    }
    let prefix = format!("name={workload} ");
    output
        .lines()
        .find(|line| line.starts_with(&prefix))
        .map(str::to_string)
        .ok_or_else(|| "no_output".to_string())
}
