//! The process table: every live process, so that shutdown can stop them all and
//! the runtime can count them. Sharded by the worker that spawns, so spawning on
//! different workers takes different locks.

use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use slab::Slab;

use crate::error::SpawnError;
use crate::process::Task;

/// One shard: a slab of processes, and whether it still admits new ones.
struct Shard {
    /// The live processes, keyed by slab key.
    slab: Slab<Task>,
    /// Set at shutdown: no process is admitted any more.
    closed: bool,
}

/// Every live process of a runtime.
pub(crate) struct Table {
    /// The shards; a process's slot is `key * shards + shard`.
    shards: Box<[CachePadded<Mutex<Shard>>]>,
}

impl Table {
    pub(crate) fn new(shards: usize) -> Table {
        Table {
            shards: (0..shards.max(1))
                .map(|_| {
                    CachePadded::new(Mutex::new(Shard {
                        slab: Slab::new(),
                        closed: false,
                    }))
                })
                .collect(),
        }
    }

    /// Admits a new process into shard `hint` (modulo the shard count) and records
    /// its slot in its header. Fails once the table is closed.
    pub(crate) fn insert(&self, hint: usize, task: Task) -> Result<(), SpawnError> {
        let n = self.shards.len();
        let index = hint % n;
        let mut shard = self.shards[index].lock();
        if shard.closed {
            return Err(SpawnError::Shutdown);
        }
        let entry = shard.slab.vacant_entry();
        // Safety: the process is not scheduled yet, so nobody else can see it.
        unsafe { task.header().set_slot(entry.key() * n + index) };
        entry.insert(task);
        Ok(())
    }

    /// Removes a process by its slot; a no-op if it is not there any more (the
    /// shutdown drain took it already).
    pub(crate) fn remove(&self, slot: usize) {
        let n = self.shards.len();
        let removed = self.shards[slot % n].lock().slab.try_remove(slot / n);
        // The table's reference is dropped here, outside the lock.
        drop(removed);
    }

    /// Closes every shard to new processes and takes out all live ones.
    pub(crate) fn close_and_drain(&self) -> Vec<Task> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            shard.closed = true;
            all.extend(shard.slab.drain());
        }
        all
    }

    /// Closes every shard to new processes.
    pub(crate) fn close(&self) {
        for shard in self.shards.iter() {
            shard.lock().closed = true;
        }
    }

    /// The live processes, for introspection; the references are dropped by the
    /// caller, outside the locks.
    pub(crate) fn snapshot(&self) -> Vec<Task> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            all.extend(shard.lock().slab.iter().map(|(_, task)| Arc::clone(task)));
        }
        all
    }

    /// How many processes are alive.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().slab.len())
            .sum()
    }
}
