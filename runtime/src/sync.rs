//! One place for the concurrency primitives the protocols use, so that the model
//! checker runs the real code: under `--cfg loom` these are loom's types, otherwise
//! std's and parking_lot's.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex};

#[cfg(loom)]
pub(crate) use self::loom_locks::{Condvar, Mutex};

/// loom's locks in parking_lot's shape (no poisoning, `wait` on a borrowed guard).
#[cfg(loom)]
mod loom_locks {
    /// A mutex whose `lock` cannot fail, like parking_lot's.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    /// The guard of [`Mutex`]; an `Option` so that [`Condvar::wait`] can move it.
    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap_or_else(|e| e.into_inner())))
        }
    }

    impl<T> std::ops::Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard present")
        }
    }

    impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard present")
        }
    }

    /// A condition variable whose `wait` takes the guard by reference.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.0.take().expect("guard present");
            guard.0 = Some(self.0.wait(inner).unwrap_or_else(|e| e.into_inner()));
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }
    }
}

/// Stands in, under loom, for the single total order of `SeqCst` operations.
///
/// The no-lost-wake-up argument (see `state.rs`) is a store-then-load on two
/// words by each of two threads, made safe because all four operations are
/// `SeqCst`. Loom models `SeqCst` loads and stores as `AcqRel` only (its README
/// lists this as a source of false alarms) but models `fence(SeqCst)` exactly, so
/// under loom a fence takes the place of that ordering. In normal builds it
/// compiles to nothing: the `SeqCst` operations around it already give the order,
/// and a real fence would add an `mfence` to every send.
#[inline(always)]
pub(crate) fn seqcst_order_for_loom() {
    #[cfg(loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}
