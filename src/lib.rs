//! placeholder
pub use fibra_runtime::*;
/// The names most programs need.
pub mod prelude {
    pub use fibra_runtime::{Context, Exit, FnContext, JoinHandle, Pid, Process, Runtime, SendError, SpawnError};
}
