//! The watch thread: the backstop that keeps a process woken into a busy
//! worker's LIFO slot from waiting out its waker's whole activation.
//!
//! Once per hand-off interval ([`Builder::handoff_after`], 1 ms by default) it
//! looks at every worker ([`Shared::hand_off_stuck`]): a worker that is still in
//! the activation it was in at the last look, and holds a stackless process in its
//! LIFO slot, has that process moved to the injector, and an idle worker is woken
//! for it. So the process waits at most about two intervals, however long its
//! waker computes. A suspended activation in the slot stays: its stack may not
//! change threads.
//!
//! The thread costs one wake-up per interval while any worker is awake, and one
//! per [`ASLEEP_INTERVAL`] while all of them sleep (nothing can be stuck then).
//! A runtime with one worker has no watch thread: there is nobody to hand to.
//!
//! [`Builder::handoff_after`]: crate::Builder::handoff_after

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
    /// Starts the watch thread, unless there is only one worker.
    pub(crate) fn start(shared: &Arc<Shared>) -> std::io::Result<Option<Watch>> {
        if shared.config.workers < 2 {
            return Ok(None);
        }
        crate::sync::asymmetric::init();
        let shared = Arc::clone(shared);
        let thread = thread::Builder::new()
            .name(format!("{}-watch", shared.config.name))
            .spawn(move || watch(&shared))?;
        Ok(Some(Watch { thread }))
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
    let mut last = vec![u32::MAX; shared.config.workers];
    while !shared.is_shutdown() {
        let pause = if shared.all_asleep() {
            ASLEEP_INTERVAL.max(interval)
        } else {
            interval
        };
        thread::park_timeout(pause);
        if shared.is_shutdown() {
            break;
        }
        shared.hand_off_stuck(&mut last);
    }
}
