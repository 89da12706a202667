//! The blocking pool: extra threads that take blocking calls (file IO, a blocking
//! C library, DNS) off the workers, so a worker is never stuck in the kernel.
//!
//! [`blocking`] hands the closure to the pool and parks the calling process (see
//! `park.rs`); the pool thread runs it, leaves the result (or the panic) in a slot
//! and unparks the process, which takes it from there. The pool starts a thread
//! when a job finds none idle, up to [`MAX_THREADS`], and a thread that has had no
//! job for [`KEEP_ALIVE`] exits, so an idle runtime keeps none.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::carrier::with_current;
use crate::park::{current_unparker, park_until};

/// The most pool threads at once; more jobs than that wait in the queue. Blocking
/// calls mostly wait, so many threads cost memory, not CPU: 512 covers a server's
/// worth of concurrent file operations without letting a storm exhaust threads.
pub const MAX_THREADS: usize = 512;

/// How long an idle pool thread waits for a job before it exits. Long enough that
/// a steady trickle of calls reuses threads, short enough that bursts are undone.
pub const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// A job: the caller's closure wrapped with the hand-back of its result.
type Job = Box<dyn FnOnce() + Send>;

/// What the pool's lock guards.
#[derive(Default)]
struct PoolState {
    /// Jobs no thread has taken yet.
    queue: VecDeque<Job>,
    /// Threads alive.
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
    /// Set at runtime shutdown: threads exit once the queue is empty.
    closed: bool,
}

/// A runtime's blocking pool.
#[derive(Default)]
pub(crate) struct BlockingPool {
    /// The queue and the thread counts.
    state: Mutex<PoolState>,
    /// Signalled when a job arrives or the pool closes.
    work: Condvar,
    /// Name prefix of the pool's threads.
    name: String,
}

impl BlockingPool {
    pub(crate) fn new(runtime_name: &str) -> Self {
        BlockingPool {
            name: format!("{runtime_name}-blocking"),
            ..BlockingPool::default()
        }
    }

    /// Queues a job, starting a thread if none is idle and the cap allows; false if
    /// the pool has closed (the job is dropped).
    fn submit(self: &Arc<Self>, job: Job) -> bool {
        let mut state = self.state.lock();
        if state.closed {
            return false;
        }
        state.queue.push_back(job);
        if state.idle > 0 {
            self.work.notify_one();
        } else if state.threads < MAX_THREADS {
            let pool = Arc::clone(self);
            let started = thread::Builder::new()
                .name(self.name.clone())
                .spawn(move || pool.serve());
            match started {
                Ok(_) => state.threads += 1,
                // The queued job waits for a thread that is running already; with
                // none at all it would wait for ever, so say so.
                Err(err) if state.threads == 0 => {
                    tracing::error!("cannot start a blocking-pool thread: {err}");
                    state.queue.pop_back();
                    return false;
                }
                Err(err) => tracing::warn!("cannot start another blocking-pool thread: {err}"),
            }
        }
        true
    }

    /// A pool thread's loop.
    fn serve(&self) {
        let mut state = self.state.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                job();
                state = self.state.lock();
                continue;
            }
            if state.closed {
                break;
            }
            state.idle += 1;
            let timed_out = self.work.wait_for(&mut state, KEEP_ALIVE).timed_out();
            state.idle -= 1;
            if timed_out && state.queue.is_empty() {
                break;
            }
        }
        state.threads -= 1;
    }

    /// Closes the pool at runtime shutdown: queued jobs are dropped (their callers
    /// are being stopped), running ones finish on their threads, which then exit.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut state = self.state.lock();
            state.closed = true;
            std::mem::take(&mut state.queue)
        };
        self.work.notify_all();
        drop(dropped);
    }
}

/// Runs `f` on the runtime's blocking pool and returns its result; only the
/// calling process waits, its worker runs others meanwhile. A panic in `f` is
/// resumed in the caller. Outside any process `f` simply runs on the calling
/// thread.
///
/// ```
/// use fibra_runtime::*;
///
/// let rt = Runtime::builder().workers(1).build().unwrap();
/// let len = rt.block_on(|_cx| {
///     fibra_runtime::blocking(|| std::fs::read_to_string("/proc/self/stat").map(|s| s.len()))
/// });
/// assert!(len.unwrap() > 0);
/// ```
///
/// # Panics
/// With `f`'s panic, or if the runtime shuts down before `f` could start.
pub fn blocking<R, F>(f: F) -> R
where
    R: Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    let pool = with_current(|frame| {
        frame.map(|frame| Arc::clone(&frame.process().header().shared.blocking))
    });
    let Some(pool) = pool else {
        return f();
    };
    let slot: Arc<Mutex<Option<thread::Result<R>>>> = Arc::default();
    let unparker = current_unparker();
    let job = {
        let slot = Arc::clone(&slot);
        Box::new(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(f));
            *slot.lock() = Some(result);
            unparker.unpark();
        })
    };
    assert!(
        pool.submit(job),
        "the blocking pool could not take the call: the runtime shut down, or no thread could be started"
    );
    loop {
        if let Some(result) = slot.lock().take() {
            return result.unwrap_or_else(|payload| panic::resume_unwind(payload));
        }
        park_until(None);
    }
}
