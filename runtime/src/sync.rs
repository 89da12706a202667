//! One place for the concurrency primitives the protocols use, so that the model
//! checker runs the real code: under `--cfg loom` these are loom's types, otherwise
//! std's.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};

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
