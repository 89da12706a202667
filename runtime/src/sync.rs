//! One place for the concurrency primitives the protocols use, so that the model
//! checker runs the real code: under `--cfg loom` these are loom's types, otherwise
//! std's and parking_lot's.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

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

/// A cell whose accesses the model checker tracks: under loom a data race on it
/// fails the model. Access goes through [`UnsafeCell::with_mut`] only.
#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// [`std::cell::UnsafeCell`] in loom's shape.
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` on a pointer to the contents; the caller's protocol must make the
    /// access exclusive.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` on a pointer to the contents for reading; the caller's
    /// protocol must keep writers away meanwhile.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
}

/// One turn of a spin-wait on another thread's short critical section. Under loom,
/// a yield, so that the checker runs the other thread.
#[inline]
pub(crate) fn spin_wait(turns: &mut u32) {
    #[cfg(loom)]
    {
        let _ = turns;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    {
        *turns += 1;
        if *turns < 64 {
            std::hint::spin_loop();
        } else {
            // The other thread may have been preempted inside its section.
            std::thread::yield_now();
        }
    }
}

/// Asymmetric fences: the frequent side of a Dekker-style handshake pays a
/// compiler fence (`light_fence`), the rare side a process-wide barrier
/// (`heavy_fence`, Linux's `membarrier`), which makes every running thread of
/// the process execute a full fence. Together they order "store, then load"
/// against the other side's "store, then load" exactly as two `SeqCst` fences
/// would. Where `membarrier` is missing (an old kernel, a seccomp filter), both
/// sides fall back to `SeqCst` fences. Under loom both are `SeqCst` fences, which
/// is the ordering the pair promises.
pub(crate) mod asymmetric {
    #[cfg(not(loom))]
    use std::sync::atomic::{compiler_fence, AtomicBool, Ordering};

    /// Set once `membarrier` is registered for this process; never cleared.
    #[cfg(not(loom))]
    static EXPEDITED: AtomicBool = AtomicBool::new(false);

    /// Registers the process for expedited `membarrier` (once; later calls do
    /// nothing). Call before starting the threads that use the fences: a thread
    /// that sees the registration afterwards may rely on it.
    pub(crate) fn init() {
        #[cfg(all(not(loom), target_os = "linux"))]
        {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                // Safety: membarrier takes no pointers; with these commands it only
                // queries and registers, and reports failure in its result.
                let supported =
                    unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
                if supported < 0 || supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED == 0 {
                    return;
                }
                // Safety: as above.
                let registered = unsafe {
                    libc::syscall(
                        libc::SYS_membarrier,
                        MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                        0,
                        0,
                    )
                };
                if registered == 0 {
                    EXPEDITED.store(true, Ordering::SeqCst);
                }
            });
        }
    }

    #[cfg(all(not(loom), target_os = "linux"))]
    const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
    #[cfg(all(not(loom), target_os = "linux"))]
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    #[cfg(all(not(loom), target_os = "linux"))]
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    /// The frequent side's fence.
    #[inline(always)]
    pub(crate) fn light_fence() {
        #[cfg(loom)]
        loom::sync::atomic::fence(loom::sync::atomic::Ordering::SeqCst);
        #[cfg(not(loom))]
        if EXPEDITED.load(Ordering::Relaxed) {
            compiler_fence(Ordering::SeqCst);
        } else {
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    }

    /// The rare side's fence: a few microseconds, and an interrupt on every CPU
    /// that runs a thread of this process. Returns false if the barrier could not
    /// be made (the kernel refused a registered `membarrier`, which it documents
    /// it never does): then the caller must not rely on the handshake.
    #[must_use]
    pub(crate) fn heavy_fence() -> bool {
        #[cfg(loom)]
        loom::sync::atomic::fence(loom::sync::atomic::Ordering::SeqCst);
        #[cfg(not(loom))]
        {
            #[cfg(target_os = "linux")]
            if EXPEDITED.load(Ordering::Relaxed) {
                // Safety: as in `init`.
                let done = unsafe {
                    libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)
                };
                return done == 0;
            }
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        true
    }
}
