//! The one place the mailbox takes its concurrency primitives from.
//!
//! Under `cfg(loom)` these are loom's model-checked atomics and cells, so the loom models
//! in `tests/loom.rs` explore the mailbox code as it is written, not a copy of it.
//! Otherwise they are the standard library's atomics and a zero-cost `UnsafeCell`
//! wrapper with loom's closure-based interface.

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

#[cfg(not(loom))]
pub(crate) use self::cell::UnsafeCell;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

#[cfg(not(loom))]
mod cell {
    /// `core::cell::UnsafeCell` with the access interface of `loom::cell::UnsafeCell`:
    /// the raw pointer is only handed to a closure, which is where loom records the
    /// access.
    #[repr(transparent)]
    pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        /// Wraps `value`.
        pub(crate) const fn new(value: T) -> Self {
            Self(core::cell::UnsafeCell::new(value))
        }

        /// Calls `f` with a pointer for reading the value.
        #[inline(always)]
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        /// Calls `f` with a pointer for reading or writing the value.
        #[inline(always)]
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}
