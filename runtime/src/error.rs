//! Errors and exit reasons.

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::Arc;

/// Why a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// The process finished: a free-running process returned, or a handler process
    /// called [`Context::stop`](crate::Context::stop).
    Normal,
    /// The process was asked to stop ([`AnyPid::stop`](crate::AnyPid::stop), e.g. by
    /// its supervisor) and did.
    Stopped,
    /// The process was killed ([`AnyPid::kill`](crate::AnyPid::kill)); a kill cannot be
    /// trapped. Also the reason a kill propagates with along links.
    Killed,
    /// The process ended with an error of the program's own
    /// ([`Exit::error`], then `cx.exit(..)`).
    Error(ExitError),
    /// Linking to or monitoring a process that had already ended (or never existed).
    NoProc,
    /// The process panicked; this is the panic message.
    Panicked(String),
    /// The process could not get a stack to run on (see [`SpawnError::Stack`]).
    NoStack(String),
    /// The runtime shut down before the process finished.
    Shutdown,
    /// The process ended cleanly, because of a value of the program's own
    /// ([`Exit::done`]; OTP's `{shutdown, Reason}`). Not a failure: a supervisor
    /// does not restart a transient child for it, nor count it against its restart
    /// intensity. Like every reason but [`Exit::Normal`], it travels along links.
    Done(ExitError),
}

impl Exit {
    /// Whether this is a normal exit.
    pub fn is_normal(&self) -> bool {
        matches!(self, Exit::Normal)
    }

    /// Whether the process ended the way it meant to or was asked to (normal, stopped,
    /// runtime shutdown). Anything else is a failure: a supervisor restarts a
    /// transient child for it. (Along links every reason but normal travels, as in
    /// OTP; see [`Scope::link`](crate::Scope::link).)
    pub fn is_failure(&self) -> bool {
        !matches!(
            self,
            Exit::Normal | Exit::Stopped | Exit::Shutdown | Exit::Done(_)
        )
    }

    /// An exit reason carrying an error value of the program's own.
    ///
    /// ```
    /// use fibra_runtime::Exit;
    ///
    /// let exit = Exit::error(std::io::Error::other("disk full"));
    /// assert!(exit.is_failure());
    /// assert_eq!(exit.to_string(), "error: disk full");
    /// ```
    pub fn error(error: impl std::error::Error + Send + Sync + 'static) -> Exit {
        Exit::Error(ExitError(Arc::new(error)))
    }

    /// A clean exit carrying a value of the program's own: "ended, because of
    /// `why`", without counting as a crash ([`Exit::Done`]).
    ///
    /// ```
    /// use fibra_runtime::Exit;
    ///
    /// let exit = Exit::done(std::io::Error::other("the client left"));
    /// assert!(!exit.is_failure());
    /// assert_eq!(exit.to_string(), "ended: the client left");
    /// ```
    pub fn done(why: impl std::error::Error + Send + Sync + 'static) -> Exit {
        Exit::Done(ExitError(Arc::new(why)))
    }
}

/// An error value that ended a process; cheap to clone, compared by identity.
#[derive(Clone)]
pub struct ExitError(Arc<dyn std::error::Error + Send + Sync>);

impl ExitError {
    /// The error.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl PartialEq for ExitError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ExitError {}

impl fmt::Debug for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Normal => f.write_str("normal exit"),
            Exit::Stopped => f.write_str("stopped"),
            Exit::Killed => f.write_str("killed"),
            Exit::Error(error) => write!(f, "error: {error}"),
            Exit::NoProc => f.write_str("no such process"),
            Exit::Panicked(message) => write!(f, "panicked: {message}"),
            Exit::NoStack(message) => write!(f, "no stack: {message}"),
            Exit::Shutdown => f.write_str("the runtime shut down"),
            Exit::Done(why) => write!(f, "ended: {why}"),
        }
    }
}

impl std::error::Error for Exit {}

/// A message could not be delivered; the message is handed back.
#[derive(PartialEq, Eq, Clone, Copy)]
#[non_exhaustive]
pub enum SendError<M> {
    /// The process has exited (or the runtime shut down, which ends every
    /// process), or no process is registered under the name sent to.
    Exited(M),
    /// The process's mailbox is bounded and full
    /// ([`Process::mailbox_capacity`](crate::Process::mailbox_capacity)); a
    /// later send may succeed, and [`Pid::send_wait`](crate::Pid::send_wait)
    /// waits for room.
    Full(M),
}

impl<M> SendError<M> {
    /// Takes the undelivered message back.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Exited(msg) | SendError::Full(msg) => msg,
        }
    }

    /// Whether the process had exited.
    pub fn is_exited(&self) -> bool {
        matches!(self, SendError::Exited(_))
    }

    /// Whether the mailbox was full.
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_))
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Exited(_) => f.write_str("Exited(..)"),
            SendError::Full(_) => f.write_str("Full(..)"),
        }
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Exited(_) => {
                f.write_str("the receiving process has exited; the message was not delivered")
            }
            SendError::Full(_) => f.write_str(
                "the receiving process's mailbox is full; the message was not delivered",
            ),
        }
    }
}

impl<M> std::error::Error for SendError<M> {}

/// A process could not be spawned.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpawnError {
    /// The runtime has shut down (or is shutting down).
    Shutdown,
    /// The operating system refused to map a stack for the process.
    Stack {
        /// The stack size asked for, in bytes.
        size: usize,
        /// What the OS said.
        source: io::Error,
        /// The kernel's `vm.max_map_count`, when it could be read. Every stack is two
        /// memory mappings (the stack and its guard page), so live stacks stop near
        /// half this number.
        max_map_count: Option<u64>,
    },
    /// A supervisor's flags or child specs are invalid (two children with one id,
    /// a restart period of zero); this says which.
    InvalidSupervisor(String),
    /// The name a process was to be spawned under could not be had (`spawn_named`);
    /// the process never ran.
    Name(crate::registry::RegisterError),
    /// A started process's `init` said [`Init::Ignore`](crate::Init::Ignore): it
    /// ended normally.
    Ignored,
    /// A started process's `init` failed, and the process ended with this reason
    /// ([`Init::Stop`](crate::Init::Stop), a panic, a kill); a supervisor's start
    /// failed because a child's did.
    InitFailed(Exit),
    /// A started process had not finished its `init` within this timeout; it was
    /// killed.
    InitTimeout(std::time::Duration),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Shutdown => f.write_str("cannot spawn: the runtime has shut down"),
            SpawnError::InvalidSupervisor(why) => write!(f, "invalid supervisor: {why}"),
            SpawnError::Name(err) => write!(f, "cannot spawn under that name: {err}"),
            SpawnError::Ignored => f.write_str("the process's init said ignore"),
            SpawnError::InitFailed(reason) => write!(f, "the process's init failed: {reason}"),
            SpawnError::InitTimeout(timeout) => {
                write!(f, "the process's init did not finish within {timeout:?}")
            }
            SpawnError::Stack {
                size,
                source,
                max_map_count,
            } => {
                write!(f, "cannot map a {size}-byte process stack: {source}; ")?;
                match max_map_count {
                    Some(limit) => write!(f, "the kernel limit vm.max_map_count is {limit}")?,
                    None => f.write_str("the kernel limit is vm.max_map_count")?,
                }
                f.write_str(
                    " and each stack takes two mappings: raise it \
                     (sysctl -w vm.max_map_count=...) or keep fewer free-running \
                     processes suspended at once",
                )
            }
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::Stack { source, .. } => Some(source),
            SpawnError::Name(err) => Some(err),
            SpawnError::Shutdown
            | SpawnError::InvalidSupervisor(_)
            | SpawnError::Ignored
            | SpawnError::InitFailed(_)
            | SpawnError::InitTimeout(_) => None,
        }
    }
}

/// A runtime could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// `workers(0)`: a runtime needs at least one worker thread.
    ZeroWorkers,
    /// `stack_size(0)`: processes need a stack.
    ZeroStackSize,
    /// `handoff_after(Duration::ZERO)`: the watch thread needs an interval.
    ZeroHandoff,
    /// `blocked_after(Duration::ZERO)`: every activation would be reported.
    ZeroBlockedAfter,
    /// A worker thread could not be started.
    Thread(io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::ZeroWorkers => f.write_str("a runtime needs at least one worker thread"),
            BuildError::ZeroStackSize => f.write_str("the process stack size must be above zero"),
            BuildError::ZeroHandoff => f.write_str("the hand-off interval must be above zero"),
            BuildError::ZeroBlockedAfter => {
                f.write_str("the blocked-worker threshold must be above zero")
            }
            BuildError::Thread(err) => write!(f, "cannot start a worker thread: {err}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Thread(err) => Some(err),
            _ => None,
        }
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}
