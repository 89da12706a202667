//! The one place the timer takes its concurrency primitives from.
//!
//! Under `cfg(loom)` these are loom's model-checked mutex, atomics, `Arc` and threads, so
//! the models in `tests/loom.rs` run the real timer thread and the real handles, not a
//! copy of them. Otherwise they are `parking_lot`'s mutex and the standard library's
//! atomics and threads.
//!
//! Loom has no clock: under it a timed park is an untimed one, so a model only reaches a
//! deadline that has already passed when it is inserted, and a thread parked until a
//! future deadline wakes only if somebody unparks it. That is exactly what the models
//! need to see a lost wake-up: it shows up as a deadlock.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;
#[cfg(loom)]
pub(crate) use loom::thread::{current, park, Builder, JoinHandle, Thread};

#[cfg(not(loom))]
pub(crate) use parking_lot::Mutex;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
#[cfg(not(loom))]
pub(crate) use std::thread::{current, park, park_timeout, Builder, JoinHandle, Thread};

#[cfg(loom)]
pub(crate) use self::loom_mutex::Mutex;

/// Parks the current thread for at most `timeout`. Loom cannot time out, so the model
/// parks until unparked (a park may always return early, so callers loop anyway).
#[cfg(loom)]
pub(crate) fn park_timeout(_timeout: std::time::Duration) {
    park();
}

#[cfg(loom)]
mod loom_mutex {
    /// `loom::sync::Mutex` with `parking_lot`'s interface: `lock` hands out the guard
    /// directly. Nothing the timer runs under its lock can panic, and a poisoned lock
    /// would only tell us that a model already failed, so poisoning is ignored.
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        /// Wraps `value`.
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        /// Locks the mutex, blocking until it is free.
        pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}
