//! The supervisor process: its state, its loop, restarts and shutdown.
//!
//! # Surviving a stop
//!
//! A stop signal ends a free-running process by unwinding its stack from the
//! blocking call it is in, which for a supervisor could be anywhere: waiting for
//! the next event, waiting for a child to stop, in a send that used up its budget,
//! in a child's factory. The supervisor catches that unwind (and only that one: a
//! kill or a runtime shutdown goes on unwinding) and runs its shutdown instead. It
//! can do so because its state lives outside the unwound code and is consistent at
//! every blocking call:
//!
//! * a child is recorded as running right after its start returns; the one
//!   blocking call inside a start, the wait for a handler child's `init`, kills
//!   the new child if the supervisor is unwound out of it (init.rs), so no child
//!   is left running unrecorded;
//! * a child's status changes only when a notice about it is handled, or when a
//!   decision about it is taken, before anything blocks;
//! * stopping a child is repeatable: a second stop of a stopping child is harmless,
//!   and the child is done once its `Down` has come, whoever waited for it.
//!
//! A second stop during the shutdown starts the shutdown over from where it is; a
//! child being stopped then gets its full timeout again.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::carrier::Cancelled;
use crate::error::{panic_message, Exit};
use crate::free::{FnContext, Received};
use crate::init::InitAck;
use crate::process::{AnyPid, ProcessId};
use crate::signal::{MonitorRef, Notice, Terminated};
use crate::time::deadline_after;

use super::address::{ChildError, ChildInfo, Control, SupervisorError};
use super::intensity::RestartWindow;
use super::spec::{ChildSpec, Restart, Shutdown, Started};
use super::{refuses, AutoShutdown, Backoff, Strategy, Supervisor};

/// The supervisor process's body.
pub(super) fn run(
    cx: &mut FnContext<'_, Control>,
    supervisor: Supervisor,
    parent: Option<ProcessId>,
    ack: InitAck,
) {
    let mut state = State::new(supervisor, parent, cx.me(), ack);
    supervise(cx, &mut state);
}

/// How a supervisor's logs name it: its registered name (registered before it
/// first runs, when it has one) and its pid, or the pid alone.
pub(super) fn label(me: &AnyPid) -> String {
    let shared = &me.0.header().shared;
    match shared.registry.name_of(me) {
        Some(name) => format!("{name} {}", me.id()),
        None => me.id().to_string(),
    }
}

/// An exit signal from a process that is not a child: the parent's end ends the
/// supervisor (the reason to exit with is returned); any other is ignored.
pub(super) fn exit_from_outside(
    label: &str,
    parent: Option<ProcessId>,
    from: ProcessId,
    reason: Exit,
) -> Option<Exit> {
    if Some(from) == parent {
        tracing::info!(supervisor = %label, parent = %from, %reason, "parent ended; shutting down");
        return Some(reason);
    }
    tracing::debug!(
        supervisor = %label,
        from = %from,
        %reason,
        "ignored an exit signal from a process that is not a child"
    );
    None
}

/// What both kinds of supervisor do as processes (see the module comment).
pub(super) trait Supervising<M: Send + 'static> {
    /// This supervisor.
    fn me(&self) -> &AnyPid;
    /// Runs until the supervisor is to exit; returns the reason. Called again
    /// after a stop signal unwound it.
    fn serve(&mut self, cx: &mut FnContext<'_, M>) -> Exit;
    /// Decides to shut down and exit with `reason`, unless already decided.
    fn exit_with(&mut self, reason: Exit);
}

/// Runs a supervisor process to its end: traps exits, serves, turns a stop signal
/// into an orderly shutdown, and exits with the reason `serve` returns.
pub(super) fn supervise<M: Send + 'static>(
    cx: &mut FnContext<'_, M>,
    state: &mut impl Supervising<M>,
) {
    cx.trap_exits(true);
    let reason = loop {
        match panic::catch_unwind(AssertUnwindSafe(|| state.serve(cx))) {
            Ok(reason) => break reason,
            Err(payload) => match payload.downcast::<Terminated>() {
                // A stop is the supervisor's to carry out: its children first.
                Ok(terminated) if terminated.0 == Exit::Stopped && cx.forget_stop() => {
                    state.exit_with(Exit::Stopped)
                }
                Ok(terminated) => panic::resume_unwind(terminated),
                Err(payload) => panic::resume_unwind(payload),
            },
        }
    };
    tracing::debug!(supervisor = %state.me().id(), %reason, "supervisor exits");
    if reason != Exit::Normal {
        cx.exit(reason);
    }
}

/// Starts one incarnation of the child `spec` describes, linked to and monitored
/// by the supervisor `me`. A panicking factory is a failed start; a stop, a kill or
/// a cancellation that reached the supervisor while the factory ran goes on.
///
/// `Ok(None)`: the child's `init` said ignore, and it has ended.
pub(super) fn start_incarnation(
    me: &AnyPid,
    spec: &ChildSpec,
) -> Result<Option<Incarnation>, Exit> {
    let start = Arc::clone(&spec.start);
    let started = panic::catch_unwind(AssertUnwindSafe(|| {
        start(&me.0, spec.name.as_deref(), spec.start_timeout)
    }))
    .unwrap_or_else(|payload| {
        if payload.is::<Terminated>() || payload.is::<Cancelled>() {
            panic::resume_unwind(payload);
        }
        Err(Exit::Panicked(panic_message(payload.as_ref())))
    });
    let Some(Started { pid, typed }) = started? else {
        tracing::info!(supervisor = %me.id(), child = %spec.id, "child ignored its start");
        return Ok(None);
    };
    // Recorded as soon as the start returns (see the module comment).
    let monitor = crate::signal::monitor(&me.0, &pid.0);
    tracing::debug!(
        supervisor = %me.id(),
        child = %spec.id,
        pid = %pid.id(),
        "child started"
    );
    Ok(Some(Incarnation {
        pid,
        typed,
        monitor,
        reason: None,
        since: Instant::now(),
    }))
}

/// Where a child is in its life.
enum Status {
    /// Not running, and not to be started unless a sibling's restart takes it
    /// along: before the first start, after a transient child ended normally, or
    /// once the supervisor stopped it.
    Down,
    /// Running.
    Running(Incarnation),
    /// Ended (its `Down` came) with this reason; the supervisor has yet to decide
    /// what to do.
    Exited(Exit),
    /// To be started at this time.
    Waiting(Instant),
}

/// One running incarnation of a child.
pub(super) struct Incarnation {
    /// The process.
    pub(super) pid: AnyPid,
    /// Its `Pid<M>`, for reports.
    pub(super) typed: Arc<dyn std::any::Any + Send + Sync>,
    /// The supervisor's monitor on it.
    pub(super) monitor: MonitorRef,
    /// The reason its link reported, which comes just before the `Down` (whose own
    /// reason is `NoProc` if the child ended before the monitor was set).
    pub(super) reason: Option<Exit>,
    /// When it started.
    pub(super) since: Instant,
}

/// A child and its life so far.
struct Child {
    /// How to start and stop it.
    spec: ChildSpec,
    /// Where it is now.
    status: Status,
    /// How long its last incarnation ran (set when it ends).
    ran_for: Duration,
    /// Restarts since it last ran for a whole intensity period, for the backoff.
    recent: u32,
    /// Restarts in all, for reports.
    restarts: u64,
    /// Whether its last restart failed to start it (its next one is a retry).
    retrying: bool,
}

impl Child {
    /// A child of `spec` that has not started yet.
    fn new(spec: ChildSpec) -> Child {
        Child {
            spec,
            status: Status::Down,
            ran_for: Duration::ZERO,
            recent: 0,
            restarts: 0,
            retrying: false,
        }
    }

    fn running(&self) -> Option<&Incarnation> {
        match &self.status {
            Status::Running(incarnation) => Some(incarnation),
            _ => None,
        }
    }

    fn due(&self) -> Option<Instant> {
        match self.status {
            Status::Waiting(due) => Some(due),
            _ => None,
        }
    }

    fn info(&self) -> ChildInfo {
        ChildInfo {
            id: self.spec.id.clone(),
            current: self
                .running()
                .map(|run| (run.pid.clone(), Arc::clone(&run.typed))),
            restart: self.spec.restart,
            supervisor: self.spec.supervisor,
            restarts: self.restarts,
            restarting: matches!(self.status, Status::Waiting(_)),
        }
    }
}

/// Everything the supervisor knows.
struct State {
    /// This supervisor.
    me: AnyPid,
    /// How its logs name it (see [`label`]).
    label: String,
    /// The process that spawned it linked, if any: its exit ends the supervisor.
    parent: Option<ProcessId>,
    /// Which children a restart takes along.
    strategy: Strategy,
    /// The restart intensity and the restarts it has counted.
    window: RestartWindow,
    /// The delay before restarts.
    backoff: Backoff,
    /// The children, in start order.
    children: Vec<Child>,
    /// Whether the initial start is still to be done.
    starting: bool,
    /// Whether the end of significant children ends the supervisor.
    auto_shutdown: AutoShutdown,
    /// Whom to tell that the initial start is done; taken when it is.
    ack: Option<InitAck>,
    /// Set once the supervisor is to shut down, with the reason it will exit with.
    exiting: Option<Exit>,
}

impl State {
    fn new(supervisor: Supervisor, parent: Option<ProcessId>, me: AnyPid, ack: InitAck) -> State {
        State {
            label: label(&me),
            me,
            parent,
            strategy: supervisor.strategy,
            window: RestartWindow::new(supervisor.max_restarts, supervisor.period),
            backoff: supervisor.backoff,
            children: supervisor.children.into_iter().map(Child::new).collect(),
            starting: true,
            auto_shutdown: supervisor.auto_shutdown,
            ack: Some(ack),
            exiting: None,
        }
    }
}

impl Supervising<Control> for State {
    fn me(&self) -> &AnyPid {
        &self.me
    }

    fn exit_with(&mut self, reason: Exit) {
        if self.exiting.is_none() {
            self.exiting = Some(reason);
        }
    }

    fn serve(&mut self, cx: &mut FnContext<'_, Control>) -> Exit {
        if std::mem::take(&mut self.starting) {
            self.start_all();
            // Told after the children are up; a failed start is told by the exit
            // reason, with the spawner unlinked first.
            if let Some(ack) = self.ack.take() {
                match self.exiting.clone() {
                    None => ack.started(),
                    Some(reason) => ack.fail(cx.frame, reason),
                }
            }
        }
        // A stop that came during the initial start: the start failed.
        if let Some(ack) = self.ack.take() {
            ack.fail(cx.frame, self.exiting.clone().unwrap_or(Exit::Stopped));
        }
        loop {
            if let Some(reason) = self.exiting.clone() {
                self.shut_down(cx);
                return reason;
            }
            if let Some(i) = self
                .children
                .iter()
                .position(|c| matches!(c.status, Status::Exited(_)))
            {
                // Decided before anything else is read, so that a question asked
                // after a child's end hears of the decision.
                self.decide(cx, i);
                continue;
            }
            let now = Instant::now();
            if let Some(i) = self
                .children
                .iter()
                .position(|c| c.due().is_some_and(|due| due <= now))
            {
                // A first restart goes at once, so that a question asked after a
                // child's end hears of its successor. A retry of a restart that
                // failed first looks at the mailbox once and yields: a child whose
                // restarts keep failing (each failure is decided, counted and
                // retried at once without a backoff) must not keep the supervisor
                // from answering, from being stopped, or its worker from the other
                // processes. OTP retries through its mailbox too.
                if !self.children[i].retrying {
                    self.restart(i);
                    continue;
                }
                match cx.receive_either_timeout(Duration::ZERO) {
                    Some(Received::Notice(notice)) => self.note(notice),
                    Some(Received::Message(control)) => self.control(cx, control),
                    None => {
                        // Only this process changes the children: `i` is still due.
                        cx.yield_now();
                        self.restart(i);
                    }
                }
                continue;
            }
            let next = self.children.iter().filter_map(Child::due).min();
            let received = match next {
                Some(due) => cx.receive_either_timeout(due.saturating_duration_since(now)),
                None => Some(cx.receive_either()),
            };
            match received {
                Some(Received::Notice(notice)) => self.note(notice),
                Some(Received::Message(control)) => self.control(cx, control),
                None => {}
            }
        }
    }
}

impl State {
    /// Carries out a request from outside (see [`Control`]).
    fn control(&mut self, cx: &mut FnContext<'_, Control>, control: Control) {
        match control {
            Control::WhichChildren(reply_to) => {
                reply_to.reply(self.children.iter().map(Child::info).collect());
            }
            Control::StartChild(spec, reply_to) => {
                if self.find(&spec.id).is_ok() {
                    reply_to.reply(Err(ChildError::Duplicate(spec.id)));
                    return;
                }
                if let Some(why) = refuses(self.auto_shutdown, &spec) {
                    reply_to.reply(Err(ChildError::Invalid(why)));
                    return;
                }
                self.children.push(Child::new(spec));
                let started = self.start_dynamic(self.children.len() - 1);
                if matches!(started, Err(ChildError::StartFailed(_))) {
                    // A child that cannot start is not kept (OTP's start_child).
                    self.children.pop();
                }
                reply_to.reply(started);
            }
            Control::TerminateChild(id, reply_to) => {
                let stopped = self.find(&id).map(|i| {
                    self.terminate(cx, i);
                    if self.children[i].spec.restart == Restart::Temporary {
                        self.children.remove(i);
                    }
                });
                reply_to.reply(stopped);
            }
            Control::RestartChild(id, reply_to) => {
                let started = self.find_stopped(id).and_then(|i| self.start_dynamic(i));
                reply_to.reply(started);
            }
            Control::DeleteChild(id, reply_to) => {
                let deleted = self.find_stopped(id).map(|i| {
                    self.children.remove(i);
                });
                reply_to.reply(deleted);
            }
        }
    }

    /// The index of the child with this id.
    fn find(&self, id: &str) -> Result<usize, ChildError> {
        self.children
            .iter()
            .position(|c| c.spec.id == id)
            .ok_or_else(|| ChildError::NotFound(id.to_owned()))
    }

    /// The index of the child with this id, if it is not running.
    fn find_stopped(&self, id: String) -> Result<usize, ChildError> {
        let i = self.find(&id)?;
        match self.children[i].running() {
            Some(_) => Err(ChildError::Running(id)),
            None => Ok(i),
        }
    }

    /// Starts child `i` on request; its process, or why it did not start (a start
    /// that fails leaves the child down, not exited: nothing is restarted for it).
    fn start_dynamic(&mut self, i: usize) -> Result<AnyPid, ChildError> {
        match self.start(i) {
            // Its `init` said ignore: the spec is kept, not running.
            Ok(()) => self.children[i]
                .running()
                .map(|run| run.pid.clone())
                .ok_or_else(|| ChildError::Ignored(self.children[i].spec.id.clone())),
            Err(reason) => {
                self.children[i].status = Status::Down;
                Err(ChildError::StartFailed(reason))
            }
        }
    }

    /// Starts every child in order; the first that fails makes the supervisor shut
    /// down and exit with [`SupervisorError::StartFailed`].
    fn start_all(&mut self) {
        for i in 0..self.children.len() {
            if let Err(reason) = self.start(i) {
                let child = self.children[i].spec.id.clone();
                tracing::warn!(
                    supervisor = %self.label,
                    child = %child,
                    %reason,
                    "child failed to start"
                );
                self.exit_with(Exit::error(SupervisorError::StartFailed { child, reason }));
                return;
            }
        }
    }

    /// Starts child `i` and records it as running, or as down if its `init` said
    /// ignore (its spec is kept, as in OTP).
    fn start(&mut self, i: usize) -> Result<(), Exit> {
        let child = &mut self.children[i];
        child.status = match start_incarnation(&self.me, &child.spec)? {
            Some(run) => Status::Running(run),
            None => Status::Down,
        };
        Ok(())
    }

    /// Starts child `i` again, its restart being due.
    fn restart(&mut self, i: usize) {
        self.children[i].restarts += 1;
        match self.start(i) {
            Ok(()) => {
                self.children[i].retrying = false;
                let child = &self.children[i];
                if let Some(run) = child.running() {
                    tracing::info!(
                        supervisor = %self.label,
                        child = %child.spec.id,
                        pid = %run.pid.id(),
                        "child restarted"
                    );
                }
            }
            Err(Exit::Shutdown) => self.exit_with(Exit::Shutdown),
            Err(reason) => {
                tracing::warn!(
                    supervisor = %self.label,
                    child = %self.children[i].spec.id,
                    %reason,
                    "child failed to restart"
                );
                let child = &mut self.children[i];
                child.ran_for = Duration::ZERO;
                child.retrying = true;
                child.status = Status::Exited(reason);
            }
        }
    }

    /// Takes in a notice: a child's exit reason or end, or the parent's exit.
    fn note(&mut self, notice: Notice) {
        match notice {
            Notice::Exit { from, reason } => {
                if let Some(Status::Running(run)) = self
                    .children
                    .iter_mut()
                    .map(|c| &mut c.status)
                    .find(|s| matches!(s, Status::Running(run) if run.pid.id() == from))
                {
                    run.reason = Some(reason);
                } else if let Some(reason) =
                    exit_from_outside(&self.label, self.parent, from, reason)
                {
                    self.exit_with(reason);
                }
            }
            // A supervisor monitors no group.
            Notice::Group(_) => {}
            Notice::Down(down) => {
                let Some(child) = self.children.iter_mut().find(
                    |c| matches!(&c.status, Status::Running(run) if run.monitor == down.monitor),
                ) else {
                    return;
                };
                let Status::Running(run) = std::mem::replace(&mut child.status, Status::Down)
                else {
                    unreachable!("found running above");
                };
                child.ran_for = run.since.elapsed();
                child.status = Status::Exited(run.reason.unwrap_or(down.reason));
            }
        }
    }

    /// Acts on the end of child `i` (see the module comment of `supervisor`).
    fn decide(&mut self, cx: &mut FnContext<'_, Control>, i: usize) {
        let Status::Exited(reason) = std::mem::replace(&mut self.children[i].status, Status::Down)
        else {
            return;
        };
        let sup = self.label.clone();
        let child = &self.children[i];
        let id = child.spec.id.clone();
        if reason.is_failure() {
            tracing::warn!(supervisor = %sup, child = %id, %reason, "child failed");
        } else {
            tracing::info!(supervisor = %sup, child = %id, %reason, "child ended");
        }
        let significant = child.spec.significant;
        match child.spec.restart {
            Restart::Temporary => {
                self.children.remove(i);
                if significant {
                    self.significant_ended(id);
                }
                return;
            }
            Restart::Transient if !reason.is_failure() => {
                if significant {
                    self.significant_ended(id);
                }
                return;
            }
            _ => {}
        }
        if let Some(exit) = self.window.admit_or_give_up(&sup, &id, &reason) {
            self.exit_with(exit);
            return;
        }
        let delay = self.next_delay(i);
        let group = match self.strategy {
            Strategy::OneForOne => i..i + 1,
            Strategy::OneForAll => 0..self.children.len(),
            Strategy::RestForOne => i..self.children.len(),
        };
        for j in group.clone().rev() {
            self.terminate(cx, j);
        }
        let due = deadline_after(delay);
        if !delay.is_zero() {
            tracing::info!(supervisor = %sup, child = %id, ?delay, "restart delayed");
        }
        let mut j = 0;
        self.children.retain_mut(|child| {
            let in_group = group.contains(&j);
            j += 1;
            if !in_group {
                return true;
            }
            if child.spec.restart == Restart::Temporary {
                return false;
            }
            child.status = Status::Waiting(due);
            true
        });
    }

    /// Acts on the end, by itself and for good, of the significant child `id`.
    fn significant_ended(&mut self, id: String) {
        let shut_down = match self.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            // Every other significant child is down too (or gone, if temporary).
            AutoShutdown::AllSignificant => !self
                .children
                .iter()
                .any(|c| c.spec.significant && !matches!(c.status, Status::Down)),
        };
        if shut_down {
            tracing::info!(
                supervisor = %self.label,
                child = %id,
                auto_shutdown = ?self.auto_shutdown,
                "a significant child ended; shutting down"
            );
            self.exit_with(Exit::done(SupervisorError::AutoShutdown { child: id }));
        }
    }

    /// The backoff delay before child `i`'s restart, counting the restart.
    fn next_delay(&mut self, i: usize) -> Duration {
        let child = &mut self.children[i];
        if child.ran_for >= self.window.period {
            child.recent = 0;
        }
        let delay = self.backoff.delay(child.recent);
        child.recent = child.recent.saturating_add(1);
        delay
    }

    /// Stops child `i` if it runs, and waits until it has ended (see [`Shutdown`]).
    fn terminate(&mut self, cx: &mut FnContext<'_, Control>, i: usize) {
        let Some(run) = self.children[i].running() else {
            if matches!(
                self.children[i].status,
                Status::Waiting(_) | Status::Exited(_)
            ) {
                self.children[i].status = Status::Down;
            }
            return;
        };
        let pid = run.pid.clone();
        let shutdown = self.children[i].spec.shutdown;
        let mut deadline = match shutdown {
            Shutdown::Kill => {
                pid.kill();
                None
            }
            Shutdown::Timeout(timeout) => {
                pid.stop();
                Some(deadline_after(timeout))
            }
            Shutdown::Infinity => {
                pid.stop();
                None
            }
        };
        // The child is done once its `Down` has been noted.
        while self.children[i].running().is_some() {
            let notice = match deadline {
                None => Some(cx.receive_notice()),
                Some(at) => {
                    let left = at.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        tracing::warn!(
                            supervisor = %self.label,
                            child = %self.children[i].spec.id,
                            pid = %pid.id(),
                            ?shutdown,
                            "child did not stop in time; killing it"
                        );
                        pid.kill();
                        deadline = None;
                        continue;
                    }
                    cx.receive_notice_timeout(left)
                }
            };
            if let Some(notice) = notice {
                self.note(notice);
            }
        }
        self.children[i].status = Status::Down;
    }

    /// Stops every child, in reverse start order.
    fn shut_down(&mut self, cx: &mut FnContext<'_, Control>) {
        for i in (0..self.children.len()).rev() {
            self.terminate(cx, i);
        }
    }
}
