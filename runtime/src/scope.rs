//! What every process can do about other processes' lives, whatever its kind:
//! links, monitors, trapping exits and ending itself. Both [`Context`] and
//! [`FnContext`] dereference to a [`Scope`].
//!
//! [`Context`]: crate::Context
//! [`FnContext`]: crate::FnContext

use std::panic;

use crate::carrier::Frame;
use crate::error::Exit;
use crate::process::AnyPid;
use crate::signal::{self, MonitorRef, Terminated};

/// The running process's view of its relations to others.
pub struct Scope<'a> {
    /// The activation's frame on its carrier.
    pub(crate) frame: &'a Frame<'a>,
}

impl Scope<'_> {
    /// This process's address, without its message type.
    pub fn me(&self) -> AnyPid {
        AnyPid(self.frame.task())
    }

    /// Links this process to `other`: when either ends with a failure, the other
    /// ends too with the same reason, unless it traps exits (then it gets a
    /// [`Notice::Exit`](crate::Notice::Exit)). Linking to a process that has ended
    /// works like its ending now, with [`Exit::NoProc`].
    pub fn link(&self, other: impl Into<AnyPid>) {
        signal::link(&self.frame.task(), &other.into().0);
        self.frame.take_fatal_signal();
    }

    /// Removes a link, in both directions.
    pub fn unlink(&self, other: impl Into<AnyPid>) {
        signal::unlink(&self.frame.task(), &other.into().0);
    }

    /// Watches `target`: exactly one [`Down`](crate::Down) notice comes when it
    /// ends, at once if it has ended already (with [`Exit::NoProc`]).
    pub fn monitor(&self, target: impl Into<AnyPid>) -> MonitorRef {
        signal::monitor(&self.frame.task(), &target.into().0)
    }

    /// Stops watching: once this returns, no `Down` for `monitor` arrives, not
    /// even one that was already on its way.
    pub fn demonitor(&self, monitor: &MonitorRef) {
        signal::demonitor(self.frame.process(), monitor);
    }

    /// Whether exit signals from linked processes become notices (true) or end
    /// this process when they carry a failure (false, the default). Returns the
    /// previous setting. Kills cannot be trapped.
    pub fn trap_exits(&self, trap: bool) -> bool {
        signal::set_trap_exits(self.frame.process(), trap)
    }

    /// Ends this process now with `reason` (its stack unwinds; a handler's `stopped`
    /// hook does not run). Linked processes and monitors see `reason`.
    pub fn exit(&self, reason: Exit) -> ! {
        panic::resume_unwind(Box::new(Terminated(reason)))
    }
}
