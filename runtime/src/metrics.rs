//! Runtime metrics: a snapshot cheap enough to take every second on a busy system
//! ([`Handle::metrics`]), and its Prometheus text form.
//!
//! The scheduler's counters are per worker, on the worker's own cache line, and
//! only that worker writes them (a plain load and store, no read-modify-write);
//! a snapshot sums them. Ends other than normal (stops, kills, failures, rare by
//! nature) are counted on shared counters; normal ends are the rest of the
//! processes spawned and no longer alive, so the common exit costs nothing. The
//! rest is read from where it is kept anyway: the process table, the id
//! counter, the timer thread's statistics, the stack pool.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::error::Exit;
use crate::runtime::Handle;

/// Adds one to a counter that only the calling worker writes.
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
}

/// One worker's scheduler counters (see the module comment).
#[derive(Default)]
pub(crate) struct WorkerCounters {
    pub(crate) activations: AtomicU64,
    pub(crate) steals: AtomicU64,
    pub(crate) injector_takes: AtomicU64,
    pub(crate) parks: AtomicU64,
}

/// Processes ended other than normally, by kind of reason: stopped, killed,
/// panicked, failed otherwise, at shutdown. Normal ends are not counted (see
/// the module comment).
#[derive(Default)]
pub(crate) struct ExitCounters([AtomicU64; 5]);

/// The `reason` labels, normal ends first.
const EXIT_NAMES: [&str; 6] = [
    "normal", "stopped", "killed", "panicked", "failed", "shutdown",
];

impl ExitCounters {
    /// Counts a process's end, from any thread; a normal one costs a match.
    #[inline]
    pub(crate) fn count(&self, exit: &Exit) {
        let kind = match exit {
            Exit::Normal | Exit::Done(_) => return,
            Exit::Stopped => 0,
            Exit::Killed => 1,
            Exit::Panicked(_) => 2,
            Exit::Shutdown => 4,
            _ => 3,
        };
        self.0[kind].fetch_add(1, Relaxed);
    }

    fn snapshot(&self) -> [u64; 5] {
        self.0.each_ref().map(|counter| counter.load(Relaxed))
    }
}

/// A snapshot of a runtime's metrics ([`Handle::metrics`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Processes alive.
    pub processes: usize,
    /// Processes spawned since the runtime started.
    pub spawned: u64,
    /// Processes ended: normally (or done, [`Exit::Done`]), stopped, killed,
    /// panicked, failed otherwise, and at shutdown.
    pub exited: ExitedMetrics,
    /// Each worker's scheduler counters, in worker order.
    pub workers: Vec<WorkerMetrics>,
    /// Timers armed and not yet fired or cancelled.
    pub timers_pending: usize,
    /// Timers fired.
    pub timers_fired: u64,
    /// Timers cancelled (most: waits that ended before their deadline).
    pub timers_cancelled: u64,
    /// Times the timer heap was rebuilt without its cancelled entries.
    pub timer_compactions: u64,
    /// Process stacks mapped, in use or pooled.
    pub stacks_mapped: usize,
    /// Mapped stacks in the runtime's spare pool.
    pub stacks_spare: usize,
    /// Names registered.
    pub names: usize,
}

/// Processes ended, by kind of reason (see [`Metrics::exited`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExitedMetrics {
    /// [`Exit::Normal`] or [`Exit::Done`].
    pub normal: u64,
    /// [`Exit::Stopped`].
    pub stopped: u64,
    /// [`Exit::Killed`].
    pub killed: u64,
    /// [`Exit::Panicked`].
    pub panicked: u64,
    /// Any other failure (an error, a link's failure, no stack, ...).
    pub failed: u64,
    /// [`Exit::Shutdown`].
    pub shutdown: u64,
}

/// One worker's scheduler counters (see [`Metrics::workers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// Activations run (a process resumed until it suspended or ended).
    pub activations: u64,
    /// Batches of work stolen from other workers.
    pub steals: u64,
    /// Batches taken from the runtime's shared queue (wake-ups from outside the
    /// workers, spawns from plain threads).
    pub injector_takes: u64,
    /// Times the worker went to sleep for want of work.
    pub parks: u64,
}

impl Handle {
    /// A snapshot of the runtime's metrics; reading it costs the workers nothing
    /// (see [`Metrics::to_prometheus`] for the text form).
    ///
    /// ```
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().workers(2).build().unwrap();
    /// let child = rt.spawn_fn(|_: &mut FnContext<()>| ()).unwrap();
    /// child.join().unwrap();
    /// let metrics = rt.handle().metrics();
    /// assert!(metrics.spawned >= 1);
    /// assert!(metrics.exited.normal >= 1);
    /// assert_eq!(metrics.workers.len(), 2);
    /// assert!(metrics.to_prometheus().contains("fibra_processes_spawned_total"));
    /// ```
    pub fn metrics(&self) -> Metrics {
        let shared = self.shared();
        // Read before the process count, so that a process spawned meanwhile is
        // counted alive rather than ended.
        let spawned = shared.spawned();
        let workers = shared
            .worker_counters()
            .map(|counters| WorkerMetrics {
                activations: counters.activations.load(Relaxed),
                steals: counters.steals.load(Relaxed),
                injector_takes: counters.injector_takes.load(Relaxed),
                parks: counters.parks.load(Relaxed),
            })
            .collect();
        let timers = shared.timers.stats();
        let processes = shared.table.len();
        let [stopped, killed, panicked, failed, shutdown] = shared.exits.snapshot();
        let otherwise = stopped + killed + panicked + failed + shutdown;
        let normal = spawned.saturating_sub(processes as u64 + otherwise);
        Metrics {
            processes,
            spawned,
            exited: ExitedMetrics {
                normal,
                stopped,
                killed,
                panicked,
                failed,
                shutdown,
            },
            workers,
            timers_pending: timers.pending,
            timers_fired: timers.fired,
            timers_cancelled: timers.cancelled,
            timer_compactions: timers.compactions,
            stacks_mapped: shared.stacks_mapped(),
            stacks_spare: shared.stacks_spare(),
            names: shared.registry.registered().len(),
        }
    }
}

impl Metrics {
    /// The snapshot in the Prometheus (OpenMetrics) text format, every name
    /// prefixed `fibra_`, the workers' counters labelled `worker`, the exits
    /// `reason`; encoded by the prometheus-client crate.
    pub fn to_prometheus(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Snapshot(self.clone())));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// A per-worker counter family: its name, its help, and how to read it.
type WorkerFamily = (&'static str, &'static str, fn(&WorkerMetrics) -> u64);

/// A snapshot as a prometheus-client collector.
#[derive(Debug)]
struct Snapshot(Metrics);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let m = &self.0;
        let gauge = |encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: i64| {
            let metric = ConstGauge::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
        };
        let counter = |encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64| {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
        };
        let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "fibra_processes",
            "Processes alive.",
            int(m.processes),
        )?;
        counter(
            &mut encoder,
            "fibra_processes_spawned",
            "Processes spawned.",
            m.spawned,
        )?;
        {
            let e = &m.exited;
            let values = [
                e.normal, e.stopped, e.killed, e.panicked, e.failed, e.shutdown,
            ];
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(
                "fibra_processes_exited",
                "Processes ended, by kind of reason.",
                None,
                probe.metric_type(),
            )?;
            for (reason, value) in EXIT_NAMES.iter().zip(values) {
                let labels = [("reason", *reason)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let per_worker: [WorkerFamily; 4] = [
            ("fibra_worker_activations", "Activations run.", |w| {
                w.activations
            }),
            (
                "fibra_worker_steals",
                "Batches stolen from other workers.",
                |w| w.steals,
            ),
            (
                "fibra_worker_injector_takes",
                "Batches taken from the shared queue.",
                |w| w.injector_takes,
            ),
            (
                "fibra_worker_parks",
                "Times the worker slept for want of work.",
                |w| w.parks,
            ),
        ];
        for (name, help, value) in per_worker {
            let probe = ConstCounter::new(0u64);
            let mut family = encoder.encode_descriptor(name, help, None, probe.metric_type())?;
            for (index, worker) in m.workers.iter().enumerate() {
                let index = index.to_string();
                let labels = [("worker", index.as_str())];
                ConstCounter::new(value(worker)).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "fibra_timers_pending",
            "Timers armed, not yet fired or cancelled.",
            int(m.timers_pending),
        )?;
        counter(
            &mut encoder,
            "fibra_timers_fired",
            "Timers fired.",
            m.timers_fired,
        )?;
        counter(
            &mut encoder,
            "fibra_timers_cancelled",
            "Timers cancelled.",
            m.timers_cancelled,
        )?;
        counter(
            &mut encoder,
            "fibra_timer_compactions",
            "Timer heap compactions.",
            m.timer_compactions,
        )?;
        gauge(
            &mut encoder,
            "fibra_stacks_mapped",
            "Process stacks mapped.",
            int(m.stacks_mapped),
        )?;
        gauge(
            &mut encoder,
            "fibra_stacks_spare",
            "Mapped stacks in the spare pool.",
            int(m.stacks_spare),
        )?;
        gauge(
            &mut encoder,
            "fibra_names",
            "Names registered.",
            int(m.names),
        )?;
        Ok(())
    }
}
