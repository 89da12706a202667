//! The watch thread: the backstop that keeps a process woken into a busy
//! worker's LIFO slot from waiting out its waker's whole activation, and the
//! janitor that gives spare stacks back while the runtime idles.
//!
//! Once per hand-off interval ([`Builder::handoff_after`], 1 ms by default) it
//! looks at every worker ([`Shared::hand_off_stuck`]): a worker that is still in
//! the activation it was in at the last look, and holds a stackless process in its
//! LIFO slot, has that process moved to the injector, and an idle worker is woken
//! for it. So the process waits at most about two intervals, however long its
//! waker computes. A suspended activation in the slot stays: its stack may not
//! change threads.
//!
//! Whatever the worker count, it also reports a worker that has run one
//! activation for longer than [`Builder::blocked_after`] (10 ms by default):
//! once per activation, a `tracing` warning naming the process, so that a
//! blocking call made by mistake shows up in the logs. While such a worker is
//! blocked, an idle worker is woken for each look that finds its queue non-empty,
//! so its stackless processes are stolen rather than left waiting.
//!
//! Each turn it also advances the runtime's clock of whole seconds, which every
//! spawn reads as the new process's start time (info.rs).
//!
//! While every worker sleeps nothing can be stuck; the thread then unmaps half
//! the runtime's spare stacks (see `SPARE_CAPACITY` in `scheduler.rs`) once per
//! [`ASLEEP_INTERVAL`]. So it costs one wake-up per hand-off interval while any
//! worker is awake, and one per [`ASLEEP_INTERVAL`] while all sleep. With one
//! worker there is nobody to hand to, and it only trims.
//!
//! [`Builder::handoff_after`]: crate::Builder::handoff_after
//! [`Builder::blocked_after`]: crate::Builder::blocked_after

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::scheduler::Shared;

/// How long the watch thread sleeps while every worker sleeps.
const ASLEEP_INTERVAL: Duration = Duration::from_millis(20);

/// The running watch thread.
pub(crate) struct Watch {
    thread: thread::JoinHandle<()>,
}

impl Watch {
    /// Starts the watch thread.
    pub(crate) fn start(shared: &Arc<Shared>) -> std::io::Result<Watch> {
        crate::sync::asymmetric::init();
        let shared = Arc::clone(shared);
        let thread = thread::Builder::new()
            .name(format!("{}-watch", shared.config.name))
            .spawn(move || watch(&shared))?;
        Ok(Watch { thread })
    }

    /// Stops the thread (the runtime has set its shutdown flag) and waits for it.
    pub(crate) fn stop(self) {
        self.thread.thread().unpark();
        if self.thread.join().is_err() {
            tracing::error!("the watch thread panicked");
        }
    }
}

fn watch(shared: &Shared) {
    let interval = shared.config.handoff_after;
    let mut looks = vec![crate::scheduler::Look::new(); shared.config.workers];
    let hand_off = shared.config.workers > 1;
    while !shared.is_shutdown() {
        let asleep = shared.all_asleep();
        thread::park_timeout(if asleep {
            ASLEEP_INTERVAL.max(interval)
        } else {
            interval
        });
        if shared.is_shutdown() {
            break;
        }
        shared.clock_secs.store(
            crate::info::seconds_since(shared.epoch),
            std::sync::atomic::Ordering::Relaxed,
        );
        if asleep && shared.all_asleep() {
            shared.trim_spares(false);
        } else {
            shared.hand_off_stuck(&mut looks, hand_off);
        }
    }
}
