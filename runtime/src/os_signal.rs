//! Operating-system signals as messages: SIGINT, SIGTERM and SIGHUP delivered to
//! a process of the program's choosing, so that a supervised service shuts down
//! in order on Ctrl-C instead of dying where it stands.
//!
//! The signal handlers are signal-hook's (the ecosystem's well-kept choice: its
//! handler only writes to a pipe, the one thing a handler may safely do), read
//! by one thread per forwarding, which sends each signal to the process. A
//! signal that can no longer be delivered, because the forwarding was dropped or
//! the process has ended, is not swallowed: it does what it would have done
//! without the forwarding (SIGINT and SIGTERM end the program).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::thread;

use parking_lot::Mutex;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::process::Pid;
use crate::runtime::Handle;

/// A signal that can be forwarded to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OsSignal {
    /// SIGINT: Ctrl-C in a terminal.
    Interrupt,
    /// SIGTERM: the polite "stop" of service managers and `kill`.
    Terminate,
    /// SIGHUP: the terminal went away, or, by convention, "reload".
    Hangup,
}

impl OsSignal {
    fn number(self) -> i32 {
        match self {
            OsSignal::Interrupt => SIGINT,
            OsSignal::Terminate => SIGTERM,
            OsSignal::Hangup => SIGHUP,
        }
    }

    fn from_number(number: i32) -> Option<OsSignal> {
        match number {
            SIGINT => Some(OsSignal::Interrupt),
            SIGTERM => Some(OsSignal::Terminate),
            SIGHUP => Some(OsSignal::Hangup),
            _ => None,
        }
    }
}

/// Delivers a signal; false once it cannot.
type Deliver = Box<dyn Fn(OsSignal) -> bool + Send>;

/// Signals forwarded to a process ([`Handle::forward_os_signals`]). Dropping it
/// ends the forwarding: later signals do what they would without it.
pub struct OsSignals {
    /// How to deliver; `None` once dropped.
    deliver: Arc<Mutex<Option<Deliver>>>,
    signals: Vec<OsSignal>,
}

impl Handle {
    /// Delivers `signals` to `to`, each as the message `wrap(signal)`, from now
    /// until the returned guard is dropped. A signal that arrives after that, or
    /// after `to` has ended, does what it would without the forwarding: SIGINT
    /// and SIGTERM end the program, as if never caught. Fails if the handlers
    /// cannot be installed.
    ///
    /// ```no_run
    /// use fibra_runtime::*;
    ///
    /// let rt = Runtime::builder().build().unwrap();
    /// let main = rt.spawn_fn(|cx: &mut FnContext<OsSignal>| {
    ///     let signal = cx.receive(); // Ctrl-C, or a service manager's stop
    ///     println!("{signal:?}: shutting down in order");
    /// }).unwrap();
    /// let _signals = rt
    ///     .handle()
    ///     .forward_os_signals(&[OsSignal::Interrupt, OsSignal::Terminate], &main.pid(), |s| s)
    ///     .unwrap();
    /// main.join().unwrap();
    /// ```
    pub fn forward_os_signals<M: Send + 'static>(
        &self,
        signals: &[OsSignal],
        to: &Pid<M>,
        wrap: impl Fn(OsSignal) -> M + Send + 'static,
    ) -> io::Result<OsSignals> {
        let numbers: Vec<i32> = signals.iter().map(|s| s.number()).collect();
        let mut incoming = Signals::new(&numbers)?;
        let to = to.clone();
        let deliver: Deliver = Box::new(move |signal| to.send(wrap(signal)).is_ok());
        let deliver = Arc::new(Mutex::new(Some(deliver)));
        let reader = Arc::clone(&deliver);
        thread::Builder::new()
            .name(format!("{}-signals", self.shared().config.name))
            .spawn(move || {
                // Runs for the rest of the program: after the guard is dropped it
                // still stands in for the default action of its signals.
                for number in incoming.forever() {
                    let Some(signal) = OsSignal::from_number(number) else {
                        continue;
                    };
                    let delivered = reader
                        .lock()
                        .as_ref()
                        .is_some_and(|deliver| deliver(signal));
                    if !delivered {
                        tracing::info!(?signal, "signal not forwarded: its default action follows");
                        // What the signal would have done: for SIGINT and SIGTERM,
                        // end the program.
                        let _ = signal_hook::low_level::emulate_default_handler(number);
                    }
                }
            })?;
        Ok(OsSignals {
            deliver,
            signals: signals.to_vec(),
        })
    }
}

impl OsSignals {
    /// The signals forwarded.
    pub fn signals(&self) -> &[OsSignal] {
        &self.signals
    }
}

impl Drop for OsSignals {
    fn drop(&mut self) {
        // Dropped outside the lock: the target's `Pid` goes with it.
        let deliver = self.deliver.lock().take();
        drop(deliver);
    }
}

impl fmt::Debug for OsSignals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OsSignals")
            .field("signals", &self.signals)
            .finish()
    }
}
