//! The dynamic supervisor process: its children keyed by process, restarts, and a
//! shutdown that stops every child at once.
//!
//! It survives a stop signal as the static supervisor does (see `run.rs`), and for
//! the same reason: its state is consistent at every blocking call. A child is
//! recorded as running right after its start, a `Down` moves it to `ended` before
//! anything blocks, and stopping children is repeatable.
//!
//! Every event costs the same however many children there are: a child's exit
//! notice and `Down` find it by process id, and only restarts under way (usually
//! none) are looked through.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::carrier::Cancelled;
use crate::error::{panic_message, Exit};
use crate::free::{FnContext, Received};
use crate::process::{AnyPid, ProcessId};
use crate::signal::{Notice, Terminated};
use crate::time::deadline_after;

use super::address::{ChildError, ChildInfo};
use super::dynamic::{DynControl, DynamicSupervisor, Started, Template};
use super::intensity::RestartWindow;
use super::run::{exit_from_outside, start_incarnation, supervise, Incarnation, Supervising};
use super::spec::{ChildSpec, Restart, Shutdown};
use super::Backoff;

/// The dynamic supervisor process's body.
pub(super) fn run<A: Send + 'static>(
    cx: &mut FnContext<'_, DynControl<A>>,
    supervisor: DynamicSupervisor<A>,
    parent: Option<ProcessId>,
) {
    let me = cx.me();
    let mut state = Dynamic {
        label: super::run::label(&me),
        me,
        parent,
        template: supervisor.template,
        max_children: supervisor.max_children,
        window: RestartWindow::new(supervisor.max_restarts, supervisor.period),
        backoff: supervisor.backoff,
        running: HashMap::new(),
        pending: Vec::new(),
        ended: VecDeque::new(),
        stopping: 0,
        next_seq: 0,
        exiting: None,
    };
    supervise(cx, &mut state);
}

/// A child's life across its incarnations.
struct Record {
    /// Its spec, made by the template from its arguments.
    spec: ChildSpec,
    /// When it was first started, among its siblings: reports list children so.
    seq: u64,
    /// Restarts since it last ran for a whole intensity period, for the backoff.
    recent: u32,
    /// Restarts in all, for reports.
    restarts: u64,
}

impl Record {
    fn info(&self, current: Option<&Incarnation>) -> ChildInfo {
        ChildInfo {
            id: self.spec.id.clone(),
            current: current.map(|run| (run.pid.clone(), Arc::clone(&run.typed))),
            restart: self.spec.restart,
            supervisor: self.spec.supervisor,
            restarts: self.restarts,
            restarting: current.is_none(),
        }
    }
}

/// A running child.
struct Child {
    record: Record,
    run: Incarnation,
    /// Whether the supervisor has stopped (or killed) it and waits for its end.
    stopping: bool,
}

/// A child that ended (its `Down` came), to be decided on.
struct Ended {
    record: Record,
    reason: Exit,
    /// How long its last incarnation ran (zero for a start that failed).
    ran_for: Duration,
    /// Whether it ended because a restart failed to start it.
    failed_start: bool,
}

/// A restart to do.
struct Pending {
    record: Record,
    /// When.
    due: Instant,
    /// Whether it retries a restart that failed to start the child.
    retry: bool,
}

/// Everything the dynamic supervisor knows.
struct Dynamic<A> {
    me: AnyPid,
    /// How its logs name it.
    label: String,
    /// The process that spawned it linked, if any: its exit ends the supervisor.
    parent: Option<ProcessId>,
    template: Arc<Template<A>>,
    max_children: Option<usize>,
    window: RestartWindow,
    backoff: Backoff,
    /// The running children, by process.
    running: HashMap<ProcessId, Child>,
    /// Restarts to do, in no order.
    pending: Vec<Pending>,
    /// Children that ended, in the order their `Down`s came.
    ended: VecDeque<Ended>,
    /// Running children marked `stopping`.
    stopping: usize,
    /// The next child's `seq`.
    next_seq: u64,
    /// Set once the supervisor is to shut down, with the reason it will exit with.
    exiting: Option<Exit>,
}

impl<A: Send + 'static> Supervising<DynControl<A>> for Dynamic<A> {
    fn me(&self) -> &AnyPid {
        &self.me
    }

    fn exit_with(&mut self, reason: Exit) {
        if self.exiting.is_none() {
            self.exiting = Some(reason);
        }
    }

    fn serve(&mut self, cx: &mut FnContext<'_, DynControl<A>>) -> Exit {
        loop {
            if let Some(reason) = self.exiting.clone() {
                self.shut_down(cx);
                return reason;
            }
            // Decided before anything else is read, so that a question asked after
            // a child's end hears of the decision.
            if let Some(ended) = self.ended.pop_front() {
                self.decide(ended);
                continue;
            }
            if self.pending.is_empty() {
                let received = cx.receive_either();
                self.take(cx, received);
                continue;
            }
            let now = Instant::now();
            if let Some(k) = self.pending.iter().position(|p| p.due <= now) {
                // A retry of a restart that failed looks at the mailbox once and
                // yields first, as in the static supervisor (see `run.rs`).
                if self.pending[k].retry {
                    if let Some(received) = cx.receive_either_timeout(Duration::ZERO) {
                        self.take(cx, received);
                        continue;
                    }
                    cx.yield_now();
                }
                let pending = self.pending.swap_remove(k);
                self.restart(pending.record);
                continue;
            }
            let next = self.pending.iter().map(|p| p.due).min();
            let next = next.expect("restarts are pending");
            if let Some(received) = cx.receive_either_timeout(next.saturating_duration_since(now)) {
                self.take(cx, received);
            }
        }
    }
}

impl<A: Send + 'static> Dynamic<A> {
    /// Takes in a notice or carries out a request.
    fn take(&mut self, cx: &mut FnContext<'_, DynControl<A>>, received: Received<DynControl<A>>) {
        match received {
            Received::Notice(notice) => self.note(notice),
            Received::Message(DynControl::Start(args, reply_to)) => {
                reply_to.reply(self.start_child(args));
            }
            Received::Message(DynControl::Terminate(id, reply_to)) => {
                let found = self.running.contains_key(&id);
                if found {
                    self.terminate(cx, vec![id]);
                }
                reply_to.reply(if found {
                    Ok(())
                } else {
                    Err(ChildError::NotFound(id.to_string()))
                });
            }
            Received::Message(DynControl::WhichChildren(reply_to)) => {
                let mut children: Vec<(u64, ChildInfo)> = self
                    .running
                    .values()
                    .map(|c| (c.record.seq, c.record.info(Some(&c.run))))
                    .chain(
                        self.pending
                            .iter()
                            .map(|p| (p.record.seq, p.record.info(None))),
                    )
                    .chain(
                        self.ended
                            .iter()
                            .map(|e| (e.record.seq, e.record.info(None))),
                    )
                    .collect();
                children.sort_unstable_by_key(|(seq, _)| *seq);
                reply_to.reply(children.into_iter().map(|(_, info)| info).collect());
            }
        }
    }

    /// Starts a new child from the template.
    fn start_child(&mut self, args: A) -> Result<Started, ChildError> {
        if let Some(max) = self.max_children {
            if self.running.len() + self.pending.len() + self.ended.len() >= max {
                return Err(ChildError::MaxChildren(max));
            }
        }
        let template = Arc::clone(&self.template);
        let spec = panic::catch_unwind(AssertUnwindSafe(|| template(args))).map_err(|payload| {
            if payload.is::<Terminated>() || payload.is::<Cancelled>() {
                panic::resume_unwind(payload);
            }
            ChildError::StartFailed(Exit::Panicked(panic_message(payload.as_ref())))
        })?;
        if let Some(why) = super::refuses(super::AutoShutdown::Never, &spec) {
            // A dynamic supervisor has no auto-shutdown.
            return Err(ChildError::Invalid(why));
        }
        let run = start_incarnation(&self.me, &spec)
            .map_err(ChildError::StartFailed)?
            // Nothing is kept of a child whose `init` said ignore.
            .ok_or_else(|| ChildError::Ignored(spec.id.clone()))?;
        let started = (run.pid.clone(), Arc::clone(&run.typed));
        let record = Record {
            spec,
            seq: self.next_seq,
            recent: 0,
            restarts: 0,
        };
        self.next_seq += 1;
        self.running.insert(
            started.0.id(),
            Child {
                record,
                run,
                stopping: false,
            },
        );
        Ok(started)
    }

    /// Takes in a notice: a child's exit reason or end, or the parent's exit.
    fn note(&mut self, notice: Notice) {
        match notice {
            Notice::Exit { from, reason } => {
                if let Some(child) = self.running.get_mut(&from) {
                    child.run.reason = Some(reason);
                } else if let Some(reason) =
                    exit_from_outside(&self.label, self.parent, from, reason)
                {
                    self.exit_with(reason);
                }
            }
            // A supervisor monitors no group.
            Notice::Group(_) => {}
            Notice::Down(down) => {
                if !self
                    .running
                    .get(&down.id)
                    .is_some_and(|c| c.run.monitor == down.monitor)
                {
                    return;
                }
                let Some(mut child) = self.running.remove(&down.id) else {
                    return;
                };
                if child.stopping {
                    // Stopped on purpose: not restarted, whatever its restart type.
                    self.stopping -= 1;
                    return;
                }
                self.ended.push_back(Ended {
                    reason: child.run.reason.take().unwrap_or(down.reason),
                    ran_for: child.run.since.elapsed(),
                    record: child.record,
                    failed_start: false,
                });
            }
        }
    }

    /// Acts on a child's end: forgets it, or counts and schedules its restart.
    fn decide(&mut self, ended: Ended) {
        let Ended {
            mut record,
            reason,
            ran_for,
            failed_start,
        } = ended;
        let sup = self.label.clone();
        let id = record.spec.id.clone();
        if reason.is_failure() {
            tracing::warn!(supervisor = %sup, child = %id, %reason, "child failed");
        } else {
            tracing::info!(supervisor = %sup, child = %id, %reason, "child ended");
        }
        match record.spec.restart {
            Restart::Temporary => return,
            Restart::Transient if !reason.is_failure() => return,
            _ => {}
        }
        if let Some(exit) = self.window.admit_or_give_up(&sup, &id, &reason) {
            self.exit_with(exit);
            return;
        }
        if ran_for >= self.window.period {
            record.recent = 0;
        }
        let delay = self.backoff.delay(record.recent);
        record.recent = record.recent.saturating_add(1);
        if !delay.is_zero() {
            tracing::info!(supervisor = %sup, child = %id, ?delay, "restart delayed");
        }
        self.pending.push(Pending {
            record,
            due: deadline_after(delay),
            retry: failed_start,
        });
    }

    /// Starts a child again, its restart being due.
    fn restart(&mut self, mut record: Record) {
        record.restarts += 1;
        match start_incarnation(&self.me, &record.spec) {
            Ok(None) => {
                // Its `init` said ignore this time: forgotten.
            }
            Ok(Some(run)) => {
                tracing::info!(
                    supervisor = %self.label,
                    child = %record.spec.id,
                    pid = %run.pid.id(),
                    "child restarted"
                );
                self.running.insert(
                    run.pid.id(),
                    Child {
                        record,
                        run,
                        stopping: false,
                    },
                );
            }
            Err(Exit::Shutdown) => self.exit_with(Exit::Shutdown),
            Err(reason) => {
                tracing::warn!(
                    supervisor = %self.label,
                    child = %record.spec.id,
                    %reason,
                    "child failed to restart"
                );
                self.ended.push_back(Ended {
                    record,
                    reason,
                    ran_for: Duration::ZERO,
                    failed_start: true,
                });
            }
        }
    }

    /// Stops these running children all at once, each as its spec's [`Shutdown`]
    /// says, and waits until every child being stopped has ended.
    fn terminate(&mut self, cx: &mut FnContext<'_, DynControl<A>>, ids: Vec<ProcessId>) {
        let mut deadlines = BinaryHeap::new();
        for id in ids {
            let Some(child) = self.running.get_mut(&id) else {
                continue;
            };
            if !child.stopping {
                child.stopping = true;
                self.stopping += 1;
            }
            match child.record.spec.shutdown {
                Shutdown::Kill => child.run.pid.kill(),
                Shutdown::Timeout(timeout) => {
                    child.run.pid.stop();
                    deadlines.push(Reverse((deadline_after(timeout), id)));
                }
                Shutdown::Infinity => child.run.pid.stop(),
            }
        }
        while self.stopping > 0 {
            let notice = match deadlines.peek() {
                None => Some(cx.receive_notice()),
                Some(&Reverse((at, id))) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() || !self.running.contains_key(&id) {
                        deadlines.pop();
                        if let Some(child) = self.running.get(&id) {
                            tracing::warn!(
                                supervisor = %self.label,
                                child = %child.record.spec.id,
                                pid = %id,
                                shutdown = ?child.record.spec.shutdown,
                                "child did not stop in time; killing it"
                            );
                            child.run.pid.kill();
                        }
                        continue;
                    }
                    cx.receive_notice_timeout(left)
                }
            };
            if let Some(notice) = notice {
                self.note(notice);
            }
        }
    }

    /// Stops every child at once; forgets restarts under way.
    fn shut_down(&mut self, cx: &mut FnContext<'_, DynControl<A>>) {
        self.pending.clear();
        self.ended.clear();
        let ids = self.running.keys().copied().collect();
        self.terminate(cx, ids);
    }
}
