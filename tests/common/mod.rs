//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs `f` on its own thread and fails the test if it has not finished within
/// `secs` seconds, so a lost wake-up or a deadlock fails instead of hanging CI.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(value) => {
            worker.join().expect("test thread panicked after finishing");
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the test thread ended without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {secs} s: a process is stuck (lost wake-up or deadlock)")
        }
    }
}

/// Counts drops of values that carry it.
#[derive(Clone, Default)]
pub struct DropCounter(pub std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl DropCounter {
    pub fn token(&self) -> Tracked {
        Tracked(self.0.clone())
    }
    pub fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Bumps its counter when dropped.
pub struct Tracked(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A runtime with two workers, as most tests use.
pub fn two_worker_runtime() -> fibra::Runtime {
    fibra::Builder::default()
        .workers(2)
        .build()
        .expect("runtime")
}

/// A free-running process that waits for one message and returns it.
pub fn echo<M: Send + 'static>(cx: &mut fibra::FnContext<M>) -> M {
    cx.receive()
}

/// Waits, inside a process, until `pid` has ended (its exit hooks have run by the
/// time the monitor's notice arrives).
pub fn await_end(cx: &mut fibra::FnContext<()>, pid: impl Into<fibra::AnyPid>) {
    cx.monitor(pid);
    match cx.receive_notice() {
        fibra::Notice::Down(_) => {}
        other => panic!("expected a Down, got {other:?}"),
    }
}

/// A small pseudo-random sequence (xorshift64) for stress tests; `seed` must not
/// be zero.
pub fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Keeps the panics that tests cause on purpose (their message says "on purpose")
/// out of the output; every other panic still reaches the default hook.
pub fn quiet_panics_on_purpose() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            if !message.contains("on purpose") {
                default_hook(info);
            }
        }));
    });
}

/// Counts the bytes the program holds from the allocator; a test binary that
/// wants the count installs it with `#[global_allocator]`.
pub struct CountingAllocator;

/// Bytes allocated and not yet freed.
pub static LIVE_BYTES: std::sync::atomic::AtomicIsize = std::sync::atomic::AtomicIsize::new(0);

// Safety: every method passes its arguments on to the system allocator unchanged and
// only adds bookkeeping beside it.
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // Safety: the caller's contract for `alloc` is passed on.
        let ptr = unsafe { std::alloc::System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // Safety: the caller's contract for `dealloc` is passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as isize, std::sync::atomic::Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        // Safety: the caller's contract for `realloc` is passed on.
        let new = unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        new
    }
}

/// Makes the tests of one binary that count allocations run one at a time, so
/// that each count sees only its own allocations.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits until `done` holds, looking again after each short yield; panics after
/// ten seconds. For state another thread reaches on its own, with no event to
/// wait on (a value dropped as its process ends).
#[allow(dead_code)]
pub fn eventually(done: impl Fn() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < until, "not within ten seconds");
        std::thread::yield_now();
    }
}
