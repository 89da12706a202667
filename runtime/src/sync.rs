//! One place for the concurrency primitives the protocols use, so that the model
//! checker runs the real code: under `--cfg loom` these are loom's types, otherwise
//! std's.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
