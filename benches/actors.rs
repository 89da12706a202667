//! fibra's benchmark suite: the standard actor workloads, each run on fibra and on tokio.
//!
//! Every workload is written twice, once with fibra processes (`actors/on_fibra.rs`) and
//! once the way a tokio user would write it, with tasks and unbounded `mpsc` channels
//! (`actors/on_tokio.rs`). Both use their runtime's defaults: one worker per core and no
//! hand placement of processes or tasks. The channel workloads (`actors/channels.rs`)
//! also run on crossbeam-channel between plain threads. Absolute numbers on a shared machine drift from
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
//! Arguments that start with `--` (cargo passes `--bench`) are ignored. A workload has
//! one case per runtime, or several (`timers` runs different sizes and forms). Each case
//! runs in a fresh child process, the same executable started again with
//! `FIBRA_BENCH_CHILD=<workload>/<runtime>/<case number>`, so peak RSS and the
//! allocator's state belong to that one measurement. The parent prints the child's line;
//! a child that fails, or takes longer than `FIBRA_BENCH_TIMEOUT_SECS` (default 60), is
//! reported as `error=...` and makes the suite exit non-zero.
//!
//! # Output and metrics
//!
//! One line per case, `name=<workload> runtime=<fibra|tokio|crossbeam> [<case label>]
//! <metric>=<value> ...`, values are plain numbers; a case label, where a workload has
//! several cases, is `key=value` pairs too:
//!
//! | workload | what | metrics |
//! |---|---|---|
//! | `ping_pong` | 2 processes, 1,000,000 round trips | `ns_per_rt`: wall time / round trips |
//! | `ring` | 1,000 processes in a ring, one token passed 1,000,000 hops | `ns_per_hop`: wall time / hops |
//! | `skynet` | 10-ary tree of 1,111,111 processes; leaves send their number, parents sum | `secs`: from spawning the root to the root's sum; `peak_rss_mib`: the child's VmHWM |
//! | `fan_in` | 4 senders x 1,000,000 messages to one receiver | `msgs_per_sec`: messages / time from spawning the senders to the last receipt |
//! | `broadcast_ring` | one publisher, 4 subscribers, 10,000,000 `u64`s through a ring (channel) of 1,024; fibra: `channel::broadcast`, the publisher in batches of 64 (`next_n`), subscribers taking up to 64 (`recv_n`); tokio: `sync::broadcast`, the publisher yielding after every 64 sends, subscribers skipping what they lag behind by | `events_per_sec`: the fewest events any subscriber got / time from the first publish to the last subscriber's end; `missed`: events that subscriber did not get (fibra's ring never drops one) |
//! | `idle_connections` | as many idle connections as the descriptor limit allows (raised to its hard limit; up to 10,000, both ends in this process), each served by a process (task) whose client never sends; fibra: a handler process per connection owning an active socket (`into_active`, `Active::Once`); tokio: a task awaiting a read into a 1 KiB buffer | `connections`; `bytes_per_conn`: RSS growth from before the first connect to after the last accept / connections (the kernel's socket memory is not in RSS); `accepts_per_sec` |
//! | `shared_read` | fibra only: a handler process owns a published `(u64, u64)` (`Scope::publish`); a thread sends it 10,000 writes a second (`Shared::write`, each bumping both halves) while 2 threads read it (`Shared::read`) for 1 s, checking the halves agree | `reads_per_sec`: both readers' reads / 1 s; `writes_applied` |
//! | `bounded_fan_in` | `fan_in` into a bounded mailbox of 1,024 (fibra: `set_mailbox_capacity`, senders `send_wait`; tokio: a bounded `mpsc` of 1,024, senders `send().await`) | `msgs_per_sec`, as `fan_in` |
//! | `spawn_idle` | spawn 100,000 processes that wait for a message, then message each once | `ns_per_spawn`: spawn phase only; `bytes_per_process`: RSS growth over the spawn phase / 100,000 |
//! | `spawn_join` | spawn 1,000,000 free-running processes (tasks) that return their number, joining (awaiting) the oldest whenever 1,000 are outstanding | `ns_per_spawn_join`: wall time / processes |
//! | `free_blocked` | fibra only: spawn 10,000 free-running processes that each report in and then block in `receive`, all at once | `ns_per_spawn`: spawn phase / processes (each maps a fresh stack: more than the pools hold are alive at once); `bytes_per_process`: RSS growth from before the spawns to when all of them wait / processes |
//! | `million_idle` | fibra only: 1,000,000 idle handler processes, each has handled one message | `rss_mib`, `bytes_per_process` (RSS growth / 1,000,000), `max_map_count` of the machine |
//! | `timers` | `processes=<n>` processes (1,000 and 100,000) each wait once for a pseudo-random delay in 1..=100 ms | `late_p50_us`, `late_p99_us`: median and 99th percentile of lateness, in µs, where a process's lateness is the time it measured itself from its start to its wake-up, minus its delay; `wall_secs`: from spawning the first process to the last wake-up |
//! | `timeout_churn` | fibra only: 2 processes, 500,000 round trips, every receive a `receive_timeout(1 s)` that gets its message in time | `calls_per_sec`: `receive_timeout` calls (1,000,000, both processes) / wall time |
//! | `call` | a caller and a server, 1,000,000 request/reply round trips; fibra: a handler process answering `Pid::call` requests, each call with a 5 s timeout; tokio: a task answering `(n, oneshot::Sender)` pairs from an unbounded `mpsc`, the caller awaiting the `oneshot` with no timeout (fibra's `call` always carries one) | `ns_per_call`: wall time / calls |
//! | `restart` | fibra only: a one-for-one supervisor with one permanent handler child, registered under a name; the child is made to panic 10,000 times | `crashes`; `p50_us`, `p99_us`: median and 99th percentile, in µs, of the time from sending the crash to a new incarnation answering a call |
//! | `blocked_worker` | one process calls `std::thread::sleep(50 ms)` in a loop (a blocking call made by mistake), yielding between calls, while 100 ping-pong pairs each time 1,000 round trips; fibra: handler processes, the blocker free-running; tokio: tasks and unbounded channels, the blocker a task | `rt_p50_us`, `rt_p99_us`, `rt_max_us`: percentiles and maximum of the 100,000 round trips, in µs |
//! | `block_on_future` | `future=ready`: 1,000,000 awaits of `std::future::ready`; `future=remote`: 50,000 awaits, one after another, of a tokio `oneshot` that a plain thread completes (the sender handed to it through a std channel); fibra: `fibra::block_on` in a process; tokio: `.await` in a task | `ns_per_op`: wall time / awaits |
//! | `async_call` | 100,000 request/reply round trips awaited by a task on a default tokio runtime; fibra: `Pid::call_async` to a handler process on a default fibra runtime (each call crosses between the two runtimes' threads); tokio: the `call` workload's server task answering through a `oneshot` | `ns_per_call`: wall time / calls |
//! | `dynamic_churn` | one child per cycle, 100,000 cycles: fibra: a `DynamicSupervisor` starts a handler child with the cycle's number (`start_child_typed`), the driver calls it once, and `terminate_child` stops it and returns once it has ended; tokio: a task spawned into a `JoinSet` gets a `oneshot` sender through another `oneshot`, answers through it, is aborted, and `join_next` awaits its end | `cycles`; `ns_per_cycle`: wall time / cycles |
//! | `blocking` | fibra only: 8 processes each make 20,000 calls, one after another, of `fibra::blocking(|| n)`, which runs the closure on the blocking pool while only the calling process waits | `calls_per_sec`: calls (160,000) / time from spawning the first process to the last result |
//! | `tcp_echo` | an acceptor spawns one echo process (task) per connection; 100 client processes (tasks) each make 10,000 round trips of 64 bytes over loopback, server and clients in the one OS process; fibra: `fibra::net`, tokio: `tokio::net` | `clients`, `requests` (1,000,000); `req_per_sec`: requests / time from spawning the first client to the last client's last response; `cpu_us_per_req`: user plus system CPU time of the whole child process (runtime start to shutdown included) / requests |
//! | `channel_spsc`, `channel_mpsc` | 10,000,000 `u64`s through a bounded channel of capacity 1,024 from one producer (spsc) or four (mpsc) to one consumer; fibra: `fibra::channel` between processes (`ends=processes`) and plain threads (`ends=threads`); tokio: its bounded `mpsc` between tasks; crossbeam: crossbeam-channel between threads | `msgs_per_sec`: messages / time from creating the channel to the consumer's last receipt |
//! | `idle_cpu` | a default runtime with nothing to do (`connections=0`), and one serving 1,000 idle connections, each by a process (task) blocked in a socket read whose client never sends; 10 s watched | `cpu_pct`: user plus system CPU time of the whole child process over the 10 s, as a share of one core |
//!
//! The `timers` lines and how their processes wait:
//!
//! | line | process | waits with |
//! |---|---|---|
//! | `runtime=fibra processes=1000`, `processes=100000` | handler process | `cx.pid().send_after(Wake, delay)` in `started`; wakes when `handle` gets the `Wake` |
//! | `runtime=fibra mode=sleep processes=1000` | free-running process | `cx.sleep(delay)` |
//! | `runtime=tokio processes=1000`, `processes=100000` | task | `tokio::time::sleep(delay).await` |
//!
//! A sleeping free-running process holds its stack, two memory mappings, and the
//! machine's `vm.max_map_count` (65,530 by default) leaves room for about 32,000, so
//! fibra's 100,000 wait as handler processes, which hold no stack while idle; the
//! `send_after` form is used at 1,000 too so that fibra's two sizes compare, and
//! `mode=sleep` shows what `sleep` costs over it. The delays are the same on both
//! runtimes and in every run (a fixed hash of the process's number, in µs steps). At
//! 100,000 the wake-ups come 1,000 to the millisecond, more than two shared cores keep
//! up with on either runtime, so lateness there is mostly backlog and swings widely with
//! the machine's load; `wall_secs` says how far behind the last one fell.
//!
//! In `timeout_churn` each process's mailbox is empty when it calls `receive_timeout`
//! (the ball is still with the other one), so every call arms a timer and the ball's
//! arrival cancels it.
//!
//! In `call` the server answers request `n` with `3n + 1`, and the caller checks each
//! reply. The target is fibra at most 0.7 times tokio's `ns_per_call`, although every
//! fibra call also arms (or, when the reply is back by its first look, skips) a
//! timeout that the tokio caller does without.
//!
//! In `restart` the driver sends the child a crash, then looks the name up with
//! `Handle::whereis` and calls what it finds, again and again, until a process with
//! another id than the crashed one answers; the time from just before the crash was
//! sent to that answer is one sample, so it covers the panic, the supervisor's
//! handling of the child's exit, the new spawn, its registration and one call. The
//! supervisor allows 1,000,000 restarts a second, far more than the workload makes, so
//! it never gives up; the deliberate panics are kept off stderr by a panic hook. The
//! target is `p99_us` at most 50.
//!
//! In `dynamic_churn` every fibra cycle is three round trips through the supervisor
//! process (start, then terminate, which waits for the child's `Down`) and one call of
//! the child; the tokio cycle has no supervisor, only the `JoinSet`, and the aborted
//! task's end is awaited as `terminate_child` awaits the child's. The target is fibra
//! at most 1.0 times tokio's `ns_per_cycle`.
//!
//! In `blocking` each call's closure returns a number unique to the call, which the caller
//! checks. There are more calling processes than workers, so that calls overlap and the
//! pool runs several threads; each call is a hand-off to a pool thread and a wake-up of
//! the caller, so the rate is the pool's round-trip cost, not any work.
//!
//! In `tcp_echo` every socket has `TCP_NODELAY` set, on both runtimes; a client writes
//! its request, reads until it has 64 bytes back and compares them with what it sent
//! (its number, the request's number and a pattern of both), and only then sends the
//! next. The echo side writes back each read as it comes. The clock includes the 100
//! connects, a few milliseconds of the seconds a run takes.
//!
//! `ping_pong`, `ring` and `call` warm up (10,000 round trips or hops) in the same
//! processes before the clock starts, `restart` with 100 crashes. RSS comes from `/proc/self/statm`, peak RSS from `VmHWM` in
//! `/proc/self/status`; the vector that keeps the addresses of the spawned processes is
//! faulted in before the baseline is taken, so its pages are not charged to them.
//!
//! Every workload checks its result (the skynet sum, the token's final position, each
//! sender's sequence, the count of acknowledgements, a report from every timer process
//! and none woken before its delay, every `receive_timeout` returning its ball, every
//! call's reply, one restart reported by the supervisor per crash, every blocking call's
//! result, every echoed request), so a runtime that
//! loses or duplicates messages or fires timers early fails instead of printing a good
//! number.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[path = "actors/blocked.rs"]
mod blocked;
#[path = "actors/calls.rs"]
mod calls;
#[path = "actors/channels.rs"]
mod channels;
#[path = "actors/idle_conns.rs"]
mod idle_conns;
#[path = "actors/io.rs"]
mod io;
#[path = "actors/memory.rs"]
mod memory;
#[path = "actors/on_fibra.rs"]
mod on_fibra;
#[path = "actors/on_tokio.rs"]
mod on_tokio;
#[path = "actors/timing.rs"]
mod timing;

use timing::{TIMERS_FEW, TIMERS_MANY};

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
/// The receiver's bound in `bounded_fan_in`.
const BOUNDED_FAN_IN_CAPACITY: usize = 1_024;
/// Processes spawned in `spawn_idle`.
const SPAWN_IDLE_PROCESSES: usize = 100_000;
/// Processes kept alive at once in `million_idle`.
const MILLION_IDLE_PROCESSES: usize = 1_000_000;
/// Free-running processes blocked in `receive` at once in `free_blocked`: well
/// within the default `vm.max_map_count` (each stack is two mappings).
const FREE_BLOCKED_PROCESSES: usize = 10_000;
/// Processes spawned and joined in `spawn_join`.
const SPAWN_JOIN_PROCESSES: u64 = 1_000_000;
/// At most this many `spawn_join` processes are spawned and not yet joined.
const SPAWN_JOIN_OUTSTANDING: usize = 1_000;

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
    /// crossbeam-channel, for the channel workloads' plain threads.
    Crossbeam,
}

impl Contender {
    const ALL: [Contender; 3] = [Contender::Fibra, Contender::Tokio, Contender::Crossbeam];

    fn name(self) -> &'static str {
        match self {
            Contender::Fibra => "fibra",
            Contender::Tokio => "tokio",
            Contender::Crossbeam => "crossbeam",
        }
    }

    fn from_name(name: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One measurement: a workload on one runtime in one configuration. Each case runs in a
/// child of its own and prints one line.
struct Case {
    /// The `key=value` pairs that tell the case apart from the workload's other cases on
    /// the same runtime, printed before its metrics; empty for a workload's only case.
    label: &'static str,
    /// Measures it and returns the metric part of the output line.
    measure: fn() -> String,
}

impl Case {
    /// A workload's only case on a runtime.
    const fn only(measure: fn() -> String) -> Case {
        Case { label: "", measure }
    }
}

/// One workload: its name and its cases on each runtime.
struct Workload {
    /// Name on the command line and in the output.
    name: &'static str,
    /// Its cases on fibra, in the order they run.
    fibra: &'static [Case],
    /// Its cases on tokio; none where there is no tokio version.
    tokio: &'static [Case],
    /// Its cases on crossbeam; only the channel workloads have them.
    crossbeam: &'static [Case],
}

impl Workload {
    fn cases(&self, contender: Contender) -> &'static [Case] {
        match contender {
            Contender::Fibra => self.fibra,
            Contender::Tokio => self.tokio,
            Contender::Crossbeam => self.crossbeam,
        }
    }
}

/// The suite, in the order it runs.
const WORKLOADS: [Workload; 25] = [
    Workload {
        name: "ping_pong",
        fibra: &[Case::only(|| ping_pong(on_fibra::ping_pong()))],
        tokio: &[Case::only(|| ping_pong(on_tokio::ping_pong()))],
        crossbeam: &[],
    },
    Workload {
        name: "ring",
        fibra: &[Case::only(|| ring(on_fibra::ring()))],
        tokio: &[Case::only(|| ring(on_tokio::ring()))],
        crossbeam: &[],
    },
    Workload {
        name: "skynet",
        fibra: &[Case::only(|| skynet(on_fibra::skynet()))],
        tokio: &[Case::only(|| skynet(on_tokio::skynet()))],
        crossbeam: &[],
    },
    Workload {
        name: "fan_in",
        fibra: &[Case::only(|| fan_in(on_fibra::fan_in()))],
        tokio: &[Case::only(|| fan_in(on_tokio::fan_in()))],
        crossbeam: &[],
    },
    Workload {
        name: "broadcast_ring",
        fibra: &[Case::only(|| {
            channels::events_per_sec(channels::fibra_broadcast())
        })],
        tokio: &[Case::only(|| {
            channels::events_per_sec(channels::tokio_broadcast())
        })],
        crossbeam: &[],
    },
    Workload {
        name: "idle_connections",
        fibra: &[Case::only(|| idle_conns::report(idle_conns::fibra()))],
        tokio: &[Case::only(|| idle_conns::report(idle_conns::tokio()))],
        crossbeam: &[],
    },
    Workload {
        name: "shared_read",
        fibra: &[Case::only(|| {
            channels::reads_per_sec(channels::fibra_shared_read())
        })],
        tokio: &[],
        crossbeam: &[],
    },
    Workload {
        name: "bounded_fan_in",
        fibra: &[Case::only(|| fan_in(on_fibra::bounded_fan_in()))],
        tokio: &[Case::only(|| fan_in(on_tokio::bounded_fan_in()))],
        crossbeam: &[],
    },
    Workload {
        name: "spawn_idle",
        fibra: &[Case::only(|| spawn_idle(on_fibra::spawn_idle()))],
        tokio: &[Case::only(|| spawn_idle(on_tokio::spawn_idle()))],
        crossbeam: &[],
    },
    Workload {
        name: "spawn_join",
        fibra: &[Case::only(|| spawn_join(on_fibra::spawn_join()))],
        tokio: &[Case::only(|| spawn_join(on_tokio::spawn_join()))],
        crossbeam: &[],
    },
    Workload {
        name: "free_blocked",
        fibra: &[Case::only(|| free_blocked(on_fibra::free_blocked()))],
        tokio: &[],
        crossbeam: &[],
    },
    Workload {
        name: "million_idle",
        fibra: &[Case::only(|| million_idle(on_fibra::million_idle()))],
        tokio: &[],
        crossbeam: &[],
    },
    Workload {
        name: "timers",
        fibra: &[
            Case {
                label: "processes=1000",
                measure: || timing::timers(on_fibra::timers(TIMERS_FEW)),
            },
            Case {
                label: "processes=100000",
                measure: || timing::timers(on_fibra::timers(TIMERS_MANY)),
            },
            Case {
                label: "mode=sleep processes=1000",
                measure: || timing::timers(on_fibra::timers_sleeping(TIMERS_FEW)),
            },
        ],
        tokio: &[
            Case {
                label: "processes=1000",
                measure: || timing::timers(on_tokio::timers(TIMERS_FEW)),
            },
            Case {
                label: "processes=100000",
                measure: || timing::timers(on_tokio::timers(TIMERS_MANY)),
            },
        ],
        crossbeam: &[],
    },
    Workload {
        name: "timeout_churn",
        fibra: &[Case::only(|| {
            timing::timeout_churn(on_fibra::timeout_churn())
        })],
        tokio: &[],
        crossbeam: &[],
    },
    Workload {
        name: "call",
        fibra: &[Case::only(|| calls::call(on_fibra::call()))],
        tokio: &[Case::only(|| calls::call(on_tokio::call()))],
        crossbeam: &[],
    },
    Workload {
        name: "restart",
        fibra: &[Case::only(|| calls::restart(on_fibra::restart()))],
        tokio: &[],
        crossbeam: &[],
    },
    Workload {
        name: "blocked_worker",
        fibra: &[Case::only(|| {
            blocked::blocked_worker(on_fibra::blocked_worker())
        })],
        tokio: &[Case::only(|| {
            blocked::blocked_worker(on_tokio::blocked_worker())
        })],
        crossbeam: &[],
    },
    Workload {
        name: "block_on_future",
        fibra: &[
            Case {
                label: "future=ready",
                measure: || calls::block_on_future(on_fibra::block_on_ready(), calls::READY_AWAITS),
            },
            Case {
                label: "future=remote",
                measure: || {
                    calls::block_on_future(on_fibra::block_on_remote(), calls::REMOTE_AWAITS)
                },
            },
        ],
        tokio: &[
            Case {
                label: "future=ready",
                measure: || calls::block_on_future(on_tokio::await_ready(), calls::READY_AWAITS),
            },
            Case {
                label: "future=remote",
                measure: || calls::block_on_future(on_tokio::await_remote(), calls::REMOTE_AWAITS),
            },
        ],
        crossbeam: &[],
    },
    Workload {
        name: "async_call",
        fibra: &[Case::only(|| calls::async_call(on_fibra::async_call()))],
        tokio: &[Case::only(|| calls::async_call(on_tokio::async_call()))],
        crossbeam: &[],
    },
    Workload {
        name: "dynamic_churn",
        fibra: &[Case::only(|| {
            calls::dynamic_churn(on_fibra::dynamic_churn())
        })],
        tokio: &[Case::only(|| {
            calls::dynamic_churn(on_tokio::dynamic_churn())
        })],
        crossbeam: &[],
    },
    Workload {
        name: "blocking",
        fibra: &[Case::only(|| io::blocking(on_fibra::blocking()))],
        tokio: &[],
        crossbeam: &[],
    },
    Workload {
        name: "tcp_echo",
        fibra: &[Case::only(|| io::tcp_echo(on_fibra::tcp_echo()))],
        tokio: &[Case::only(|| io::tcp_echo(on_tokio::tcp_echo()))],
        crossbeam: &[],
    },
    Workload {
        name: "idle_cpu",
        fibra: &[
            Case {
                label: "connections=0",
                measure: || on_fibra::idle_cpu_with(0),
            },
            Case {
                label: "connections=1000",
                measure: || on_fibra::idle_cpu_with(io::IDLE_CONNECTIONS),
            },
        ],
        tokio: &[
            Case {
                label: "connections=0",
                measure: || on_tokio::idle_cpu_with(0),
            },
            Case {
                label: "connections=1000",
                measure: || on_tokio::idle_cpu_with(io::IDLE_CONNECTIONS),
            },
        ],
        crossbeam: &[],
    },
    Workload {
        name: "channel_spsc",
        fibra: &[
            Case {
                label: "ends=processes",
                measure: || channels::msgs_per_sec(channels::fibra_spsc_processes()),
            },
            Case {
                label: "ends=threads",
                measure: || channels::msgs_per_sec(channels::fibra_threads(1)),
            },
        ],
        tokio: &[Case::only(|| {
            channels::msgs_per_sec(channels::tokio_tasks(1))
        })],
        crossbeam: &[Case::only(|| {
            channels::msgs_per_sec(channels::crossbeam_threads(1))
        })],
    },
    Workload {
        name: "channel_mpsc",
        fibra: &[
            Case {
                label: "ends=processes",
                measure: || {
                    channels::msgs_per_sec(channels::fibra_processes(channels::MPSC_PRODUCERS))
                },
            },
            Case {
                label: "ends=threads",
                measure: || {
                    channels::msgs_per_sec(channels::fibra_threads(channels::MPSC_PRODUCERS))
                },
            },
        ],
        tokio: &[Case::only(|| {
            channels::msgs_per_sec(channels::tokio_tasks(channels::MPSC_PRODUCERS))
        })],
        crossbeam: &[Case::only(|| {
            channels::msgs_per_sec(channels::crossbeam_threads(channels::MPSC_PRODUCERS))
        })],
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

/// What a spawn_idle or free_blocked run saw.
struct SpawnIdleOutcome {
    /// Time to spawn all processes.
    spawn: Duration,
    /// Resident bytes just before the first spawn.
    rss_before: u64,
    /// Resident bytes once the processes are spawned (spawn_idle) or all wait in
    /// `receive` (free_blocked).
    rss_after: u64,
    /// Sum of the numbers the processes acknowledged or returned, 0..n.
    acknowledged: u64,
}

/// The spawn cost and memory per process of a run of `n` processes, once every
/// one of them has reported back.
fn per_spawn(outcome: SpawnIdleOutcome, n: u64) -> String {
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

fn spawn_idle(outcome: SpawnIdleOutcome) -> String {
    per_spawn(outcome, SPAWN_IDLE_PROCESSES as u64)
}

fn spawn_join((elapsed, sum): (Duration, u64)) -> String {
    let n = SPAWN_JOIN_PROCESSES;
    assert_eq!(sum, n * (n - 1) / 2, "results went missing");
    format!("ns_per_spawn_join={:.1}", ns_per(elapsed, n))
}

fn free_blocked(outcome: SpawnIdleOutcome) -> String {
    let n = FREE_BLOCKED_PROCESSES as u64;
    format!("processes={n} {}", per_spawn(outcome, n))
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

/// The start of a case's output line: workload, runtime and the case's label.
fn line_prefix(workload: &Workload, contender: Contender, case: &Case) -> String {
    let mut prefix = format!("name={} runtime={}", workload.name, contender.name());
    if !case.label.is_empty() {
        prefix.push(' ');
        prefix.push_str(case.label);
    }
    prefix
}

/// The value of `CHILD_ENV` that runs case number `index` of `workload` on `contender`.
fn child_spec(workload: &Workload, contender: Contender, index: usize) -> String {
    format!("{}/{}/{index}", workload.name, contender.name())
}

/// Child side: run one measurement and print its line.
fn run_child(spec: &str) -> ExitCode {
    let Some((workload, contender, case)) = find_case(spec) else {
        eprintln!("{CHILD_ENV}={spec}: no such workload/runtime/case");
        return ExitCode::FAILURE;
    };
    let metrics = (case.measure)();
    println!("{} {metrics}", line_prefix(workload, contender, case));
    ExitCode::SUCCESS
}

/// The case that a `child_spec` names.
fn find_case(spec: &str) -> Option<(&'static Workload, Contender, &'static Case)> {
    let mut parts = spec.split('/');
    let name = parts.next()?;
    let workload = WORKLOADS.iter().find(|w| w.name == name)?;
    let contender = Contender::from_name(parts.next()?)?;
    let index: usize = parts.next()?.parse().ok()?;
    let case = workload.cases(contender).get(index)?;
    match parts.next() {
        None => Some((workload, contender, case)),
        Some(_) => None,
    }
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
            if !contenders.is_empty() && !contenders.contains(&contender) {
                continue;
            }
            for (index, case) in workload.cases(contender).iter().enumerate() {
                let prefix = line_prefix(workload, contender, case);
                let spec = child_spec(workload, contender, index);
                match run_in_child(&spec, &prefix, timeout) {
                    Ok(line) => println!("{line}"),
                    Err(error) => {
                        failed = true;
                        println!("{prefix} error={error}");
                    }
                }
                // Keep lines appearing as they are measured when piped.
                let _ = std::io::stdout().flush();
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs one measurement in a fresh copy of this executable, started with
/// `CHILD_ENV=spec`, and returns its output line (the one that starts with `prefix`),
/// or a one-word-ish reason why there is none.
fn run_in_child(spec: &str, prefix: &str, timeout: Duration) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe:{e}"))?;
    let mut child = Command::new(exe)
        .env(CHILD_ENV, spec)
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
    let prefix = format!("{prefix} ");
    output
        .lines()
        .find(|line| line.starts_with(&prefix))
        .map(str::to_string)
        .ok_or_else(|| "no_output".to_string())
}
