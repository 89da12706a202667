//! Synchronous starts (OTP's `gen_server:start_link` and `proc_lib:init_ack`): a
//! spawn that waits until the new process has run its `init` and says whether it
//! is up.
//!
//! The acknowledgement travels like a call's reply, through a one-shot slot with
//! an exit hook on the new process (call.rs), made before the process is first
//! scheduled, so it cannot end unobserved. The process answers "started",
//! "ignored", or "failed" with the reason it is about to end with; one that ends
//! without answering (killed before it ran) answers with its exit reason. Before
//! it answers a failure it unlinks its starter, so that a starter that spawned it
//! linked hears of the failure as an error, not as an exit signal (OTP 26's
//! `init_fail`). The starter returns at the answer: a failed process may still
//! be ending (a supervisor stopping the children it had started).
//!
//! If the starter gives up (the timeout passes) or is ended while it waits, the
//! new process is killed, unlinked first: nobody else knows of it.

use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use crate::call::{open_reply, Call, CallError, ReplyTo};
use crate::carrier::Frame;
use crate::error::{Exit, SpawnError};
use crate::process::{Run, Task};
use crate::rights::RunRights;
use crate::scheduler::Shared;
use crate::signal::{self, Signal};

/// What a handler process's [`Process::init`](crate::Process::init) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Init {
    /// Up and running: the start returns the process.
    Ok,
    /// Nothing to do: the process ends normally, and the start fails with
    /// [`SpawnError::Ignored`]; a supervisor keeps such a child's spec, not
    /// running (OTP's `ignore`).
    Ignore,
    /// It cannot run: the process ends with this reason, and the start fails
    /// with [`SpawnError::InitFailed`] carrying it.
    Stop(Exit),
}

/// What a started process tells its starter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Started,
    Ignored,
    Failed(Exit),
}

/// The new process's side of a start: how to answer its starter.
pub(crate) struct InitAck {
    /// The answer's slot.
    reply: ReplyTo<Outcome>,
    /// The starter, if it spawned the process linked: unlinked on failure.
    starter: Option<Weak<dyn Run>>,
}

impl InitAck {
    /// `init` went well.
    pub(crate) fn started(self) {
        self.reply.reply(Outcome::Started);
    }

    /// `init` said there is nothing to do; the process is about to end normally.
    pub(crate) fn ignored(self) {
        self.reply.reply(Outcome::Ignored);
    }

    /// `init` failed; the process is about to end with `reason`. Unlinks the
    /// starter first, so that the exit does not reach it as a signal too.
    pub(crate) fn fail(self, frame: &Frame<'_>, reason: Exit) {
        if let Some(starter) = self.starter.as_ref().and_then(Weak::upgrade) {
            signal::unlink(&frame.task(), &starter);
        }
        self.reply.reply(Outcome::Failed(reason));
    }
}

/// The starter's side of a start in progress.
pub(crate) struct Starting {
    wait: Call<Outcome>,
    child: Task,
    starter: Option<Task>,
}

/// Starts `child`, spawned but not yet scheduled (`rights`), by `starter` if it
/// spawned it linked: hands the child its acknowledgement through `hand_ack`,
/// schedules it, and waits at most `timeout` for its answer. Fails at once if
/// the child has ended already (a runtime shutdown took it).
pub(crate) fn start(
    shared: &Arc<Shared>,
    rights: RunRights,
    child: &Task,
    starter: Option<&Task>,
    timeout: Duration,
    hand_ack: impl FnOnce(InitAck),
) -> Result<(), SpawnError> {
    match prepare(child, starter) {
        Ok((starting, ack)) => {
            hand_ack(ack);
            shared.schedule_spawned(rights);
            starting.wait(timeout)
        }
        Err(err) => {
            shared.schedule_spawned(rights);
            Err(err)
        }
    }
}

/// The wait for `child`'s start, and the acknowledgement to hand it.
fn prepare(child: &Task, starter: Option<&Task>) -> Result<(Starting, InitAck), SpawnError> {
    let (wait, reply) = open_reply::<Outcome>(Arc::clone(child)).ok_or(SpawnError::Shutdown)?;
    let ack = InitAck {
        reply,
        starter: starter.map(Arc::downgrade),
    };
    let starting = Starting {
        wait,
        child: Arc::clone(child),
        starter: starter.cloned(),
    };
    Ok((starting, ack))
}

impl Starting {
    /// Waits, at most `timeout`, for the child's answer.
    pub(crate) fn wait(mut self, timeout: Duration) -> Result<(), SpawnError> {
        let guard = KillUnlessDone {
            child: &self.child,
            starter: self.starter.as_ref(),
            done: false,
        };
        let outcome = self.wait.wait(timeout);
        let mut guard = guard;
        let result = match outcome {
            Ok(Outcome::Started) => Ok(()),
            Ok(Outcome::Ignored) => Err(SpawnError::Ignored),
            Ok(Outcome::Failed(reason)) | Err(CallError::Exited(reason)) => {
                Err(SpawnError::InitFailed(reason))
            }
            Err(CallError::Timeout) => return Err(SpawnError::InitTimeout(timeout)),
            Err(CallError::NoReply | CallError::CallingSelf) => {
                unreachable!("the runtime holds a start's reply handle until it answers or ends")
            }
        };
        guard.done = true;
        result
    }
}

/// Kills a child whose start was given up, on a timeout or because the starter
/// unwinds out of the wait; unlinks it from the starter first.
struct KillUnlessDone<'a> {
    child: &'a Task,
    starter: Option<&'a Task>,
    done: bool,
}

impl Drop for KillUnlessDone<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(starter) = self.starter {
            signal::unlink(starter, self.child);
        }
        signal::deliver(&**self.child, Signal::Kill);
        if thread::panicking() {
            tracing::debug!("a start was given up as its starter ended: the new process is killed");
        }
    }
}
