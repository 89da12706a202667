//! One report per panic: a panic inside a process is reported once, by the
//! runtime, through `tracing` (with the process, the message, where it
//! happened, and a backtrace when `RUST_BACKTRACE` asks for one), instead of
//! twice (std's hook on standard error, then the runtime's report).
//!
//! The first runtime built installs a panic hook that wraps the one installed
//! before it. A panic on a thread that is running a process (of a runtime that
//! has not asked for std's report, [`Builder::std_panic_hook`]), while a
//! `tracing` subscriber is set, leaves where and how in a thread-local for the
//! runtime's report, which comes right after, on the same thread, as the process
//! ends. Every other panic goes to the previous hook, as if this one were not
//! there: with no subscriber set, std's report is the one that is seen.
//!
//! [`Builder::std_panic_hook`]: crate::Builder::std_panic_hook

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;
use std::panic;
use std::sync::Once;

use crate::carrier::with_current;

thread_local! {
    /// Where the last panic in a process on this thread happened, and its
    /// backtrace if one was asked for; taken by the process's report.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the hook, once per program.
pub(crate) fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let in_process = with_current(|frame| {
                frame.is_some_and(|frame| !frame.header().shared.config.std_panic_hook)
            });
            // Without a subscriber the runtime's report goes nowhere: then std's
            // is the one report.
            if !in_process || !tracing::dispatcher::has_been_set() {
                return previous(info);
            }
            let mut place = info
                .location()
                .map(|at| format!("{}:{}:{}", at.file(), at.line(), at.column()))
                .unwrap_or_default();
            let backtrace = Backtrace::capture();
            if backtrace.status() == BacktraceStatus::Captured {
                place.push_str(&format!("\n{backtrace}"));
            }
            LAST.with(|last| *last.borrow_mut() = Some(place));
        }));
    });
}

/// Where the panic that is ending the running process happened, if the hook
/// recorded it.
pub(crate) fn take_location() -> Option<String> {
    LAST.with(|last| last.borrow_mut().take())
}
