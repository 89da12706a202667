//! The poller thread, and the readiness protocol between it and the processes (or
//! threads) that wait on sockets.
//!
//! One thread per OS process, `fibra-net-poller`, started with the first socket,
//! runs `mio::Poll`. Every socket is registered once, for the directions it can
//! wait on, with a token made of its key in the registration slab and a
//! generation number; its [`IoState`] keeps, per direction, a "ready" flag and
//! the list of who waits.
//!
//! # An operation, step by step
//!
//! 1. Check the closed flag: a closed socket fails at once.
//! 2. Try the non-blocking system call. Anything but `WouldBlock` is the answer.
//! 3. Past the deadline? Then the answer is `TimedOut`.
//! 4. Lock the state. If the direction's ready flag is set, readiness arrived
//!    since (or just before) step 2: clear it, unlock and go back to 1.
//! 5. Otherwise add the caller's unparker to the direction's waiters, unlock, and
//!    park until unparked or the deadline. Then leave the waiters (the poller may
//!    have removed us already) and go back to 1.
//!
//! The poller, for each event: lock the state, set the ready flag of each
//! direction the event reports, take that direction's waiters, unlock, unpark
//! them. Closing a socket does the same for both directions after setting the
//! closed flag.
//!
//! Because both sides decide under the state's lock, readiness cannot slip
//! between a waiter's failed attempt and its park:
//!
//! ```text
//!   waiter                          poller
//!   read() -> WouldBlock
//!                                   event: readable
//!                                   lock; read_ready = true; no waiters; unlock
//!   lock; read_ready? yes -> clear
//!   unlock; read() -> data
//! ```
//!
//! and if the event comes after the waiter enlisted, the poller finds it in the
//! list and unparks it (an unpark before the park leaves a permit, so the park
//! returns at once).
//!
//! mio is edge-triggered and has no one-shot registration, so the same readiness
//! can be reported more than once, and an event can come for a socket nobody waits
//! on. Both are harmless: a flag that is set already stays set, an unpark makes
//! the waiter retry, and a retry that finds `WouldBlock` waits again. Every waiter
//! of a direction is woken, so when several processes wait in `accept` on one
//! listener, the kernel hands each connection to exactly one of them and the
//! others wait again.
//!
//! A token whose key was freed and reused carries the old generation, so a late
//! event for a closed socket finds nothing to wake.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use fibra_runtime::park::{consume_budget, current_unparker, park_until, Unparker};
use mio::event::{Event, Source};
use mio::{Events, Interest, Poll, Registry, Token};
use parking_lot::Mutex;
use slab::Slab;

/// Low bits of a token: the slab key. Half the word leaves 2^32 keys on 64-bit
/// targets, far beyond any descriptor limit.
const KEY_BITS: u32 = usize::BITS / 2;
/// Mask of the key bits. A key never reaches it, so no token is `usize::MAX`.
const KEY_MASK: usize = (1 << KEY_BITS) - 1;
/// Mask of a generation (the high bits of a token, shifted down).
const GENERATION_MASK: usize = usize::MAX >> KEY_BITS;

/// Events taken from the kernel per `poll` call. Picked out of thin air: enough
/// that a burst of a thousand connections is one call, small enough to stay in
/// cache (each event is 12 bytes).
const EVENTS_CAPACITY: usize = 1024;

/// How long the poller waits before polling again after `poll` itself failed with
/// something other than an interrupted call (it should not happen; this keeps a
/// persistent failure from spinning a core).
const POLL_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// The direction an operation waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Reading, receiving, accepting.
    Read,
    /// Writing, sending, connecting.
    Write,
}

/// The shared half of the poller: what sockets need to register, and what the
/// poller thread needs to find a socket from a token.
struct Poller {
    /// Registers and deregisters sources with the thread's `Poll`.
    registry: Registry,
    /// The registered sockets.
    sources: Mutex<Sources>,
}

/// The registration slab and its generation counter.
struct Sources {
    /// Each registered socket's state, by key.
    slab: Slab<Arc<IoState>>,
    /// The generation the next registration gets.
    next_generation: usize,
}

/// The poller, once started.
static POLLER: OnceLock<Arc<Poller>> = OnceLock::new();

/// Serializes starting the poller, so only one thread is ever spawned.
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The poller, started on first use. A failure to start it (no descriptors left
/// for the epoll instance, no thread) is returned, and the next call tries again.
fn poller() -> io::Result<&'static Poller> {
    if let Some(poller) = POLLER.get() {
        return Ok(poller);
    }
    let _starting = STARTING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(poller) = POLLER.get() {
        return Ok(poller);
    }
    let poll = Poll::new()?;
    let poller = Arc::new(Poller {
        registry: poll.registry().try_clone()?,
        sources: Mutex::new(Sources {
            slab: Slab::new(),
            next_generation: 0,
        }),
    });
    let for_thread = Arc::clone(&poller);
    thread::Builder::new()
        .name("fibra-net-poller".to_owned())
        .spawn(move || run(poll, &for_thread))?;
    tracing::debug!("network poller started");
    Ok(POLLER.get_or_init(|| poller))
}

/// After a round that found events, the poller keeps polling without blocking for
/// this long before it sleeps in the kernel again. Under load the next readiness
/// usually comes within microseconds, and finding it by polling spares the kernel
/// waking a sleeping poller, which perf showed as about a fifth of a TCP echo's
/// time. Each empty poll yields the core, and an idle poller sleeps after this
/// long. tcp_echo went from 0.60-0.63x to 0.84-0.89x tokio's throughput with it;
/// 50 us is about twice a loopback round trip here.
const BUSY_POLL: Duration = Duration::from_micros(50);

/// The poller thread: waits for events and wakes whoever waits on them, forever.
fn run(mut poll: Poll, poller: &Poller) {
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    // Both reused across rounds, so a steady state allocates nothing.
    let mut ready: Vec<(Arc<IoState>, Readiness)> = Vec::with_capacity(EVENTS_CAPACITY);
    let mut wake: Vec<Unparker> = Vec::new();
    // Until when to poll without blocking (see BUSY_POLL).
    let mut busy_until: Option<Instant> = None;
    loop {
        let timeout = match busy_until {
            Some(until) if Instant::now() < until => Some(Duration::ZERO),
            _ => None,
        };
        if let Err(err) = poll.poll(&mut events, timeout) {
            if err.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %err, "network poller: poll failed");
                thread::sleep(POLL_ERROR_BACKOFF);
            }
            continue;
        }
        {
            // One lock of the slab per round; the states are woken after it.
            let sources = poller.sources.lock();
            for event in &events {
                let token = event.token().0;
                let (key, generation) = (token & KEY_MASK, token >> KEY_BITS);
                if let Some(state) = sources.slab.get(key) {
                    if state.generation == generation {
                        ready.push((Arc::clone(state), Readiness::of(event)));
                    }
                }
            }
        }
        if !events.is_empty() {
            busy_until = Some(Instant::now() + BUSY_POLL);
        } else if timeout.is_some() {
            // An empty poll while busy-polling: let a worker have the core.
            thread::yield_now();
        }
        for (state, readiness) in ready.drain(..) {
            state.wake(readiness, &mut wake);
        }
    }
}

/// Which directions an event makes worth retrying.
#[derive(Debug, Clone, Copy)]
struct Readiness {
    /// Reading may make progress (data, a connection, end of stream, an error).
    read: bool,
    /// Writing may make progress (buffer space, a finished connect, an error).
    write: bool,
}

impl Readiness {
    fn of(event: &Event) -> Readiness {
        // An error or hang-up ends every wait: the retried call reports it.
        let failed = event.is_error();
        Readiness {
            read: failed || event.is_readable() || event.is_read_closed(),
            write: failed || event.is_writable() || event.is_write_closed(),
        }
    }
}

/// One registered socket's readiness and waiters, shared by the socket and the
/// poller's slab.
struct IoState {
    /// The generation half of the socket's token.
    generation: usize,
    /// Set once by `close`; every operation checks it before each attempt. Written
    /// under `waiting`'s lock, so an enlisting waiter sees it or gets woken.
    closed: AtomicBool,
    /// The ready flags and the waiters.
    waiting: Mutex<Waiting>,
}

/// The lock-protected part of an [`IoState`].
#[derive(Default)]
struct Waiting {
    /// Readiness for reading reported since a waiter last cleared it.
    read_ready: bool,
    /// Readiness for writing reported since a waiter last cleared it.
    write_ready: bool,
    /// Who waits to read (several may wait to accept on one listener).
    readers: Vec<Waiter>,
    /// Who waits to write.
    writers: Vec<Waiter>,
    /// The number the next waiter gets, so it can find itself to leave.
    next_id: u64,
}

/// One process (or thread) waiting on a direction.
struct Waiter {
    /// Its number in this state.
    id: u64,
    /// Wakes it.
    unparker: Unparker,
}

impl Waiting {
    fn ready_flag(&mut self, direction: Direction) -> &mut bool {
        match direction {
            Direction::Read => &mut self.read_ready,
            Direction::Write => &mut self.write_ready,
        }
    }

    fn waiters(&mut self, direction: Direction) -> &mut Vec<Waiter> {
        match direction {
            Direction::Read => &mut self.readers,
            Direction::Write => &mut self.writers,
        }
    }
}

impl IoState {
    /// Marks the directions of `readiness` ready and wakes their waiters. `wake` is
    /// scratch space, empty on return.
    fn wake(&self, readiness: Readiness, wake: &mut Vec<Unparker>) {
        {
            let mut waiting = self.waiting.lock();
            for (direction, ready) in [
                (Direction::Read, readiness.read),
                (Direction::Write, readiness.write),
            ] {
                if ready {
                    *waiting.ready_flag(direction) = true;
                    wake.extend(waiting.waiters(direction).drain(..).map(|w| w.unparker));
                }
            }
        }
        // Unparked after the unlock: a woken waiter takes the lock first thing.
        for unparker in wake.drain(..) {
            unparker.unpark();
        }
    }

    /// Step 4 and the first half of step 5: either consumes a readiness report or
    /// enlists the caller as a waiter.
    fn enlist(&self, direction: Direction) -> Enlist<'_> {
        self.enlist_with(direction, current_unparker())
    }

    /// [`enlist`](Self::enlist) with a given unparker.
    fn enlist_with(&self, direction: Direction, unparker: Unparker) -> Enlist<'_> {
        let mut waiting = self.waiting.lock();
        if self.closed.load(Ordering::Acquire) {
            return Enlist::Retry;
        }
        let ready = waiting.ready_flag(direction);
        if *ready {
            *ready = false;
            return Enlist::Retry;
        }
        let id = waiting.next_id;
        waiting.next_id += 1;
        waiting.waiters(direction).push(Waiter { id, unparker });
        Enlist::Waiting(Enlisted {
            state: self,
            direction,
            id,
        })
    }
}

/// What [`IoState::enlist`] did.
enum Enlist<'a> {
    /// Readiness (or the close) came since the failed attempt: try again now.
    Retry,
    /// The caller is on the waiter list and may park.
    Waiting(Enlisted<'a>),
}

/// A waiter's place in a waiter list; leaving it (dropping this) removes the
/// waiter if the poller has not taken it already. Being a guard, it also cleans
/// up when a process is killed while it waits and its stack unwinds.
struct Enlisted<'a> {
    /// The state whose list holds the waiter.
    state: &'a IoState,
    /// Which list.
    direction: Direction,
    /// Which waiter.
    id: u64,
}

impl Drop for Enlisted<'_> {
    fn drop(&mut self) {
        let mut waiting = self.state.waiting.lock();
        let id = self.id;
        waiting.waiters(self.direction).retain(|w| w.id != id);
    }
}

/// A socket's registration with the poller. The socket closes it when dropped
/// (or earlier, by `close`), and deregisters its source.
pub(crate) struct Registration {
    /// The poller it is registered with.
    poller: &'static Poller,
    /// Its key in the poller's slab.
    key: usize,
    /// Its readiness and waiters.
    state: Arc<IoState>,
}

impl Registration {
    /// Registers `source` for `interest`.
    pub(crate) fn new<S: Source>(source: &mut S, interest: Interest) -> io::Result<Registration> {
        let poller = poller()?;
        let (key, state) = {
            let mut sources = poller.sources.lock();
            let generation = sources.next_generation;
            let entry = sources.slab.vacant_entry();
            let key = entry.key();
            if key >= KEY_MASK {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "too many sockets registered with the network poller",
                ));
            }
            let state = Arc::new(IoState {
                generation,
                closed: AtomicBool::new(false),
                waiting: Mutex::new(Waiting::default()),
            });
            entry.insert(Arc::clone(&state));
            sources.next_generation = (generation + 1) & GENERATION_MASK;
            (key, state)
        };
        let token = Token(key | (state.generation << KEY_BITS));
        let registration = Registration { poller, key, state };
        if let Err(err) = poller.registry.register(source, token, interest) {
            registration.close();
            return Err(err);
        }
        Ok(registration)
    }

    /// Runs the non-blocking `op` until it does not return `WouldBlock`, waiting
    /// for readiness in `direction` between attempts (the steps in the module
    /// docs). Fails with `TimedOut` once `deadline` passes, and with `NotConnected`
    /// once the socket is closed.
    pub(crate) fn io<T>(
        &self,
        direction: Direction,
        deadline: Option<Instant>,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        loop {
            if self.state.closed.load(Ordering::Acquire) {
                return Err(closed_error());
            }
            match op() {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                result => {
                    // Work done without waiting counts towards the process's budget,
                    // so one that always finds its socket ready still lets the others
                    // on its worker run.
                    consume_budget();
                    return result;
                }
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(timed_out_error(direction));
            }
            if let Enlist::Waiting(enlisted) = self.state.enlist(direction) {
                // Timed out or not, the next round tells: one more attempt, then
                // the deadline check above.
                let _ = park_until(deadline);
                drop(enlisted);
            }
        }
    }

    /// Enlists `unparker` (a callback: an active socket's reader) to be run at
    /// the next readiness to read. Returns false instead if readiness (or the
    /// close) came since the caller's last attempt: it should try again now.
    /// The entry stays until the poller takes it; a closed socket drops it.
    pub(crate) fn arm_read(&self, unparker: Unparker) -> bool {
        match self.state.enlist_with(Direction::Read, unparker) {
            Enlist::Retry => false,
            Enlist::Waiting(enlisted) => {
                // The guard would take the entry off the list; this one stays.
                std::mem::forget(enlisted);
                true
            }
        }
    }

    /// Closes the registration: operations waiting on it, and any started later,
    /// fail with `NotConnected`; the poller forgets it. Idempotent.
    pub(crate) fn close(&self) {
        let mut wake = Vec::new();
        {
            let mut waiting = self.state.waiting.lock();
            if self.state.closed.swap(true, Ordering::AcqRel) {
                return;
            }
            for direction in [Direction::Read, Direction::Write] {
                wake.extend(waiting.waiters(direction).drain(..).map(|w| w.unparker));
            }
        }
        {
            let mut sources = self.poller.sources.lock();
            if sources
                .slab
                .get(self.key)
                .is_some_and(|state| Arc::ptr_eq(state, &self.state))
            {
                sources.slab.remove(self.key);
            }
        }
        for unparker in wake {
            unparker.unpark();
        }
    }

    /// Whether [`close`](Self::close) has run.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::Acquire)
    }

    /// Removes `source` from the poller (the socket's last step before its
    /// descriptor closes).
    pub(crate) fn deregister<S: Source>(&self, source: &mut S) {
        if let Err(err) = self.poller.registry.deregister(source) {
            tracing::debug!(error = %err, "network poller: deregister failed");
        }
    }
}

/// The error of an operation on a closed socket.
pub(crate) fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the socket was closed (by `close` on another handle to it)",
    )
}

/// The error of an operation whose deadline passed.
fn timed_out_error(direction: Direction) -> io::Error {
    let message = match direction {
        Direction::Read => "timed out waiting for the socket to become readable",
        Direction::Write => "timed out waiting for the socket to become writable",
    };
    io::Error::new(io::ErrorKind::TimedOut, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_collide_with_usize_max() {
        let token = (KEY_MASK - 1) | (GENERATION_MASK << KEY_BITS);
        assert_ne!(token, usize::MAX);
        assert_eq!(token & KEY_MASK, KEY_MASK - 1);
        assert_eq!(token >> KEY_BITS, GENERATION_MASK);
    }

    #[test]
    fn a_late_event_for_a_reused_key_wakes_nobody() {
        let poller = poller().unwrap();
        let mut first = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let reg = Registration::new(&mut first, Interest::READABLE).unwrap();
        let (key, generation) = (reg.key, reg.state.generation);
        reg.deregister(&mut first);
        reg.close();
        let mut second = mio::net::UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let again = Registration::new(&mut second, Interest::READABLE).unwrap();
        let sources = poller.sources.lock();
        // Whatever key the new socket got, the old token's generation does not
        // match what lives under the old key now.
        if let Some(state) = sources.slab.get(key) {
            assert_ne!(state.generation, generation);
        }
        drop(sources);
        again.deregister(&mut second);
        again.close();
    }
}
