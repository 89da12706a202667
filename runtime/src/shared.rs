//! Published state: a value owned by one process that any process or thread
//! reads without a message and without waiting for the owner.
//!
//! The owner publishes a value with [`Scope::publish`] and keeps the
//! [`Published`] handle; it hands out [`Shared`] readers. The current version
//! sits in an atomically swapped `Arc` (the arc-swap crate): a read takes the
//! latest version in a few nanoseconds, never blocks the owner nor is blocked
//! by it, never sees a half-written value, and a reader holding an old
//! version ([`Shared::load`]) keeps it valid for as long as it likes.
//!
//! Only the owner changes the value. Its own changes ([`Published::set`],
//! [`Published::update`]) take effect at once; anyone else asks for one with
//! [`Shared::write`], a closure that the owner applies in the order the writes
//! came, ahead of its ordinary messages (the write travels in the owner's signal
//! queue, which a handler process looks at before each message and a
//! free-running one before each receive). Each write can be waited for
//! ([`Write::wait`]); a write the owner never applies, because it ended first,
//! says so.
//!
//! ```
//! use std::time::Duration;
//! use fibra_runtime::*;
//!
//! struct Config { published: Option<Published<String>> }
//! impl Process for Config {
//!     type Message = ReplyTo<Shared<String>>;
//!     fn started(&mut self, cx: &mut Context<Self>) {
//!         self.published = Some(cx.publish("v1".to_string()));
//!     }
//!     fn handle(&mut self, reply: ReplyTo<Shared<String>>, _cx: &mut Context<Self>) {
//!         let _ = reply.reply(self.published.as_ref().unwrap().reader());
//!     }
//! }
//!
//! let rt = Runtime::builder().workers(2).build().unwrap();
//! let config = rt.spawn(Config { published: None }).unwrap();
//! let shared = config.call(|r| r, Duration::from_secs(5)).unwrap();
//! assert_eq!(*shared.load(), "v1");
//! // A write from outside, applied by the owner; then every reader sees it.
//! shared.write(|old| format!("{old}+v2")).wait().unwrap();
//! assert_eq!(*shared.load(), "v1+v2");
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::carrier::with_current;
use crate::channel::{oneshot, RecvTimeoutError};
use crate::process::{AnyPid, ProcessId};
use crate::scope::Scope;
use crate::signal::{deliver, Apply, Signal};

/// The owner's handle on a value it publishes ([`Scope::publish`]). Only the
/// owning process may change the value through it: its methods panic in any
/// other.
pub struct Published<T> {
    /// The current version.
    cell: Arc<ArcSwap<T>>,
    /// The owner.
    owner: AnyPid,
}

/// A reader's handle on a published value: cheap to clone, `Send` and `Sync`.
pub struct Shared<T> {
    /// The current version.
    cell: Arc<ArcSwap<T>>,
    /// The owner, which applies writes.
    owner: AnyPid,
}

/// A write sent to the owner ([`Shared::write`]), to be waited for or not.
#[must_use = "a write is applied whether or not it is waited for; drop it to not wait"]
pub struct Write {
    /// Filled when the owner has applied the write.
    done: oneshot::Receiver<()>,
}

/// Why a write was not (yet) applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The owner ended before it applied the write (or its closure panicked,
    /// which ended the owner).
    OwnerEnded,
    /// The owner had not applied it within the timeout; it still may.
    Timeout,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::OwnerEnded => f.write_str("the owner ended before it applied the write"),
            WriteError::Timeout => f.write_str("the owner had not applied the write in time"),
        }
    }
}

impl std::error::Error for WriteError {}

impl Scope<'_> {
    /// Publishes `value`, owned by this process, for any process or thread to
    /// read: see [`Published`] and [`Shared`].
    pub fn publish<T: Send + Sync + 'static>(&self, value: T) -> Published<T> {
        Published {
            cell: Arc::new(ArcSwap::from_pointee(value)),
            owner: self.me(),
        }
    }
}

impl<T: Send + Sync + 'static> Published<T> {
    /// The current version.
    pub fn get(&self) -> Arc<T> {
        self.cell.load_full()
    }

    /// Replaces the value; readers see the new version from now on.
    ///
    /// # Panics
    ///
    /// Outside the owning process.
    pub fn set(&self, value: T) {
        self.check_owner("set");
        self.cell.store(Arc::new(value));
    }

    /// Replaces the value with `f` of the current one.
    ///
    /// # Panics
    ///
    /// Outside the owning process.
    pub fn update(&self, f: impl FnOnce(&T) -> T) {
        self.check_owner("update");
        let next = f(&self.cell.load());
        self.cell.store(Arc::new(next));
    }

    /// A reader.
    pub fn reader(&self) -> Shared<T> {
        Shared {
            cell: Arc::clone(&self.cell),
            owner: self.owner.clone(),
        }
    }

    /// Panics unless the calling process is the owner.
    fn check_owner(&self, what: &str) {
        let caller = with_current(|frame| frame.map(|f| f.header().id));
        assert_eq!(
            caller,
            Some(self.owner.id().0),
            "Published::{what} outside its owner {}: others write through Shared::write",
            self.owner.id()
        );
    }
}

impl<T: Send + Sync + 'static> Shared<T> {
    /// The latest version; it stays valid (unchanged) however long it is held.
    pub fn load(&self) -> Arc<T> {
        self.cell.load_full()
    }

    /// Runs `f` on the latest version, without taking a reference count of
    /// its own: the cheaper read, for a look that does not keep the value.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.cell.load())
    }

    /// Asks the owner to replace the value with `f` of its current version.
    /// The owner applies writes in the order they come, ahead of its ordinary
    /// messages; a write that panics ends the owner, as a panic in its own
    /// code would.
    pub fn write(&self, f: impl FnOnce(&T) -> T + Send + 'static) -> Write {
        let (done_tx, done) = oneshot::channel();
        let cell = Arc::clone(&self.cell);
        let apply = Apply(Box::new(move || {
            let next = f(&cell.load());
            cell.store(Arc::new(next));
            let _ = done_tx.send(());
        }));
        // An owner that has ended drops the write, and `done` says so.
        deliver(&*self.owner.0, Signal::Apply(apply));
        Write { done }
    }

    /// The owner.
    pub fn owner(&self) -> &AnyPid {
        &self.owner
    }
}

impl Write {
    /// Waits until the owner has applied the write (only the calling process,
    /// or thread, waits).
    pub fn wait(self) -> Result<(), WriteError> {
        self.done.recv().map_err(|_| WriteError::OwnerEnded)
    }

    /// Waits at most `timeout`.
    pub fn wait_timeout(mut self, timeout: Duration) -> Result<(), WriteError> {
        self.done.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => WriteError::Timeout,
            RecvTimeoutError::Disconnected => WriteError::OwnerEnded,
        })
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            cell: Arc::clone(&self.cell),
            owner: self.owner.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("value", &self.cell.load())
            .field("owner", &ProcessId(self.owner.id().0))
            .finish()
    }
}

impl<T: fmt::Debug> fmt::Debug for Published<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published")
            .field("value", &self.cell.load())
            .field("owner", &ProcessId(self.owner.id().0))
            .finish()
    }
}

impl fmt::Debug for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Write(..)")
    }
}
