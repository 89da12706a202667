//! Parking and waking idle workers: which workers sleep, which search, and how a
//! push of work reaches a sleeping one.
//!
//! Parking and waking cost syscalls (a futex wake is ~20 µs on the machines this
//! runs on), so the send path makes none while the workers are busy:
//!
//! 1. A message wake goes to the waking worker's LIFO slot and wakes nobody: this
//!    worker will run it as soon as the sender suspends. (If the sender computes
//!    on instead, the watch thread hands the process on: `watch.rs`.)
//! 2. Work pushed where any worker can take it (a deque, the injector) wakes one
//!    parked worker ([`Idle::notify_one`]) only when nobody is searching already
//!    (`searching == 0`) and somebody sleeps.
//! 3. Work pushed where only one worker can take it (its inbox: an activation
//!    suspended on that worker, see `scheduler.rs`) wakes exactly that worker if it
//!    sleeps ([`Idle::wake_worker`]).
//! 4. A parking worker first registers as a sleeper, then (after a `SeqCst` fence)
//!    looks at every queue it could take work from once more; a pusher pushes,
//!    fences, then reads the sleeper count. One of the two sees the other: no work
//!    is stranded while a worker sleeps.
//!
//!    ```text
//!      parking worker                      pusher
//!      --------------                      ------
//!      sleepers += me; sleeping += 1       queue.push(work)
//!      fence(SeqCst)                       fence(SeqCst)
//!      any work visible?                   sleeping > 0?
//!        yes: take myself off, run it        yes: pop a sleeper, unpark it
//!        no: sleep on my parker              no: somebody is awake and will look
//!    ```
//!
//! 5. The waker counts the woken worker as searching on its behalf, so a burst of
//!    pushes wakes one worker, not all of them; a searcher that finds work while
//!    more is visible passes the baton by waking the next.
//!
//! Everything here goes through the `sync` shim, and `tests/loom_idle.rs` checks
//! the protocol under every interleaving.

use crossbeam_utils::CachePadded;

use crate::sync::{fence, AtomicUsize, Condvar, Mutex, Ordering};

/// How a parked worker was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// By a push of shared work: the waker counted this worker as searching, and
    /// the worker must end that search ([`Idle::end_search`]) when it finds work or
    /// gives up.
    Searching,
    /// For work only it can take, for shutdown, or because work appeared while it
    /// was registering: it is not counted as searching.
    Plain,
}

/// Lets one worker sleep until another wakes it.
struct Parker {
    /// A pending wake-up: `Some(true)` if the waker counted this worker as
    /// searching.
    wake: Mutex<Option<bool>>,
    /// Signalled on wake-up.
    condvar: Condvar,
}

impl Parker {
    fn new() -> Parker {
        Parker {
            wake: Mutex::new(None),
            condvar: Condvar::new(),
        }
    }

    /// Sleeps until woken; returns whether the waker counted us as searching.
    fn park(&self) -> bool {
        let mut wake = self.wake.lock();
        loop {
            if let Some(searching) = wake.take() {
                return searching;
            }
            self.condvar.wait(&mut wake);
        }
    }

    fn unpark(&self, searching: bool) {
        let mut wake = self.wake.lock();
        *wake = Some(wake.unwrap_or(false) || searching);
        self.condvar.notify_one();
    }
}

/// Which workers sleep and which search.
pub struct Idle {
    /// Workers looking for work to steal (or woken to do so).
    searching: CachePadded<AtomicUsize>,
    /// Workers registered as asleep (the length of `sleepers`, readable without the
    /// lock).
    sleeping: CachePadded<AtomicUsize>,
    /// The indices of the sleeping workers.
    sleepers: Mutex<Vec<usize>>,
    /// One parker per worker.
    parkers: Box<[Parker]>,
}

impl Idle {
    /// The idle state of `workers` workers, all awake.
    pub fn new(workers: usize) -> Idle {
        Idle {
            searching: CachePadded::new(AtomicUsize::new(0)),
            sleeping: CachePadded::new(AtomicUsize::new(0)),
            sleepers: Mutex::new(Vec::with_capacity(workers)),
            parkers: (0..workers).map(|_| Parker::new()).collect(),
        }
    }

    /// How many workers are registered as asleep (a snapshot).
    pub fn sleeping(&self) -> usize {
        self.sleeping.load(Ordering::Relaxed)
    }

    /// After pushing work any worker may take: wakes one parked worker if somebody
    /// sleeps and nobody is already searching (step 2 of the module comment).
    pub fn notify_one(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) == 0 || self.searching.load(Ordering::Relaxed) > 0
        {
            return;
        }
        let woken = {
            let mut sleepers = self.sleepers.lock();
            let woken = sleepers.pop();
            if woken.is_some() {
                self.sleeping.fetch_sub(1, Ordering::Relaxed);
                // Count the woken worker as searching now, so the next push does not
                // wake another one for the same work.
                self.searching.fetch_add(1, Ordering::SeqCst);
            }
            woken
        };
        if let Some(index) = woken {
            self.parkers[index].unpark(true);
        }
    }

    /// After pushing work only worker `index` may take: wakes that worker if it
    /// sleeps (step 3).
    pub fn wake_worker(&self, index: usize) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) == 0 {
            return;
        }
        let found = {
            let mut sleepers = self.sleepers.lock();
            match sleepers.iter().position(|&i| i == index) {
                Some(at) => {
                    sleepers.swap_remove(at);
                    self.sleeping.fetch_sub(1, Ordering::Relaxed);
                    true
                }
                None => false,
            }
        };
        if found {
            self.parkers[index].unpark(false);
        }
    }

    /// A worker starts searching (it counts itself in `searching`).
    pub fn begin_search(&self) {
        self.searching.fetch_add(1, Ordering::SeqCst);
    }

    /// A worker that counted itself (or was counted) as searching stops; returns
    /// whether it was the last searcher.
    pub fn end_search(&self) -> bool {
        self.searching.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Worker `index` sleeps until woken, unless `has_work` (every queue the worker
    /// could take from, and the shutdown flag) says there is something to do after
    /// it registered (step 4).
    pub fn park(&self, index: usize, has_work: impl Fn() -> bool) -> Woken {
        self.sleepers.lock().push(index);
        self.sleeping.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if has_work() {
            let mut sleepers = self.sleepers.lock();
            if let Some(at) = sleepers.iter().position(|&i| i == index) {
                sleepers.swap_remove(at);
                self.sleeping.fetch_sub(1, Ordering::Relaxed);
                return Woken::Plain;
            }
            // A waker took us off the list already; its unpark is on its way.
        }
        if self.parkers[index].park() {
            Woken::Searching
        } else {
            Woken::Plain
        }
    }

    /// Wakes every worker, sleeping or about to sleep (shutdown). The caller has
    /// set the flag that `has_work` reports first.
    pub fn wake_all(&self) {
        fence(Ordering::SeqCst);
        {
            let mut sleepers = self.sleepers.lock();
            self.sleeping.fetch_sub(sleepers.len(), Ordering::Relaxed);
            sleepers.clear();
        }
        for parker in self.parkers.iter() {
            parker.unpark(false);
        }
    }
}
