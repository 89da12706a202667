//! The name registry: a runtime-wide map from names to live processes, so that a
//! process can be reached without passing its [`Pid`] around, and a restarted
//! process can be reached under the same name as the one it replaces.
//!
//! A name belongs to at most one process and a process has at most one name (as in
//! Erlang). A name is freed when its process ends, through an exit hook on the
//! process (`signal::on_exit`).
//!
//! # Registering, step by step
//!
//! The exit hook runs under the ending process's relations lock and takes the
//! registry lock; so nothing here may take a relations lock (`on_exit`,
//! `remove_exit_hook`) while holding the registry lock, or the two would deadlock.
//! Registering therefore happens in three steps:
//!
//! 1. Under the registry lock: check the name and the process, and insert the entry
//!    with a fresh token and no hook yet.
//! 2. Without it: install the exit hook. The hook removes the entry only if it still
//!    carries the same token, so it never frees a later registration of the name.
//!    If the process has already ended, `on_exit` runs the hook at once (it has
//!    removed the entry by the time `on_exit` returns) and registering fails with
//!    [`RegisterError::Exited`].
//! 3. Under the registry lock again: store the hook's id in the entry so that
//!    `unregister` can remove the hook. If the entry is gone by then, either the
//!    process ended (its hook ran) or somebody unregistered the name meanwhile; the
//!    hook is removed, which does nothing in the first case.
//!
//! A process that ends while it is being registered leaves no stale name behind:
//!
//! ```text
//!   register (thread A)                      process P ends (thread B)
//!   ───────────────────                      ─────────────────────────
//!   lock; insert "db" → P (token 7); unlock
//!                                            retire: P is no longer alive
//!                                            lock P's relations; ended = true
//!                                            run P's hooks (none for token 7)
//!   on_exit(P): P ended → runs the hook now,
//!     which removes "db" (token 7)
//!   → Err(Exited)
//! ```
//!
//! Had B taken the relations lock after A's `on_exit`, B would have run the hook
//! instead, and A's step 3 would find the entry gone.
//!
//! An ended process stops counting as the holder as soon as it is no longer alive,
//! slightly before its hook runs: look-ups skip it, and registering the name again
//! replaces its entry (its hook then finds another token and leaves the new entry
//! alone). So a supervisor that restarts a child the moment it learns of the end can
//! register the new child under the old name straight away.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::process::{AnyPid, Pid, ProcessId};
use crate::signal::{on_exit, remove_exit_hook, ExitHook, HookId};

/// The names registered in one runtime.
pub(crate) struct Registry {
    /// The names and their holders.
    names: Mutex<Names>,
}

/// What the registry lock guards.
#[derive(Default)]
struct Names {
    /// Each name's entry.
    by_name: HashMap<String, Entry>,
    /// Each named process's name, to keep to one name per process.
    by_process: HashMap<AnyPid, String>,
    /// The token of the next registration.
    next_token: u64,
}

/// A registered name's holder.
struct Entry {
    /// The holder, untyped: for `whereis_any` and liveness checks.
    pid: AnyPid,
    /// The holder's `Pid<M>`, for typed look-ups.
    typed: Box<dyn Any + Send + Sync>,
    /// Tells this registration apart from earlier and later ones of the same name,
    /// for the exit hook.
    token: u64,
    /// The exit hook that frees the name; `None` while `register` is installing it.
    hook: Option<HookId>,
}

impl Registry {
    pub(crate) fn new() -> Arc<Registry> {
        Arc::new(Registry {
            names: Mutex::new(Names::default()),
        })
    }

    pub(crate) fn register<M: Send + 'static>(
        self: &Arc<Self>,
        name: String,
        pid: &Pid<M>,
    ) -> Result<(), RegisterError> {
        let process = pid.any();
        // Step 1 (see the module comment).
        let (token, stale) = {
            let mut names = self.names.lock();
            if !process.is_alive() {
                return Err(RegisterError::Exited {
                    name,
                    process: process.id(),
                });
            }
            if let Some(existing) = names.by_process.get(&process) {
                return Err(RegisterError::AlreadyNamed {
                    existing: existing.clone(),
                    name,
                    process: process.id(),
                });
            }
            let stale = match names.by_name.get(&name) {
                Some(holder) if holder.pid.is_alive() => {
                    return Err(RegisterError::Taken {
                        holder: holder.pid.id(),
                        name,
                    })
                }
                // Its process has ended and its hook has yet to run.
                Some(_) => names.remove(&name),
                None => None,
            };
            let token = names.next_token;
            names.next_token += 1;
            names.by_process.insert(process.clone(), name.clone());
            names.by_name.insert(
                name.clone(),
                Entry {
                    pid: process.clone(),
                    typed: Box::new(pid.clone()),
                    token,
                    hook: None,
                },
            );
            (token, stale)
        };
        // Dropped outside the lock: it may hold the last reference to a process.
        drop(stale);
        // Step 2.
        let registry = Arc::downgrade(self);
        let hook_name = name.clone();
        let hook = on_exit(
            &*process.0,
            ExitHook::Fn(Box::new(move |_| {
                Registry::free(&registry, &hook_name, token)
            })),
        );
        let Some(hook) = hook else {
            return Err(RegisterError::Exited {
                name,
                process: process.id(),
            });
        };
        // Step 3.
        let attached = match self.names.lock().by_name.get_mut(&name) {
            Some(entry) if entry.token == token => {
                entry.hook = Some(hook);
                true
            }
            _ => false,
        };
        if !attached {
            remove_exit_hook(&*process.0, hook);
        }
        Ok(())
    }

    /// The exit hook: frees `name` if it still holds the registration `token`.
    fn free(registry: &Weak<Registry>, name: &str, token: u64) {
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let mut names = registry.names.lock();
        let freed = match names.by_name.get(name) {
            Some(entry) if entry.token == token => names.remove(name),
            _ => None,
        };
        drop(names);
        // The entry holds the ending process, which its caller keeps alive: dropping
        // it here releases no process.
        drop(freed);
    }

    pub(crate) fn unregister(&self, name: &str) -> bool {
        let removed = self.names.lock().remove(name);
        let Some(entry) = removed else {
            return false;
        };
        if let Some(hook) = entry.hook {
            remove_exit_hook(&*entry.pid.0, hook);
        }
        // Without a hook, `register` is still at step 2 and removes it at step 3.
        entry.pid.is_alive()
    }

    /// The live holder of `name`.
    /// The live process registered under `name` if its messages are of type `M`.
    pub(crate) fn whereis<M: Send + 'static>(&self, name: &str) -> Option<Pid<M>> {
        self.holder(name, |entry| entry.typed.downcast_ref::<Pid<M>>().cloned())
    }

    /// The live process registered under `name`, whatever its message type.
    pub(crate) fn whereis_any(&self, name: &str) -> Option<AnyPid> {
        self.holder(name, |entry| Some(entry.pid.clone()))
    }

    fn holder<R>(&self, name: &str, f: impl FnOnce(&Entry) -> Option<R>) -> Option<R> {
        let names = self.names.lock();
        names
            .by_name
            .get(name)
            .filter(|entry| entry.pid.is_alive())
            .and_then(f)
    }

    /// The name of the process with id `id`, if it has one (a scan: for reports).
    pub(crate) fn name_of_id(&self, id: u64) -> Option<String> {
        let names = self.names.lock();
        names
            .by_process
            .iter()
            .find(|(pid, _)| pid.id().0 == id)
            .map(|(_, name)| name.clone())
    }

    /// The name `pid` is registered under, if any.
    pub(crate) fn name_of(&self, pid: &AnyPid) -> Option<String> {
        self.names.lock().by_process.get(pid).cloned()
    }

    pub(crate) fn registered(&self) -> Vec<String> {
        let names = self.names.lock();
        let mut live: Vec<String> = names
            .by_name
            .iter()
            .filter(|(_, entry)| entry.pid.is_alive())
            .map(|(name, _)| name.clone())
            .collect();
        drop(names);
        live.sort_unstable();
        live
    }
}

impl Names {
    /// Removes `name` and its process's reverse entry.
    fn remove(&mut self, name: &str) -> Option<Entry> {
        let entry = self.by_name.remove(name)?;
        self.by_process.remove(&entry.pid);
        Some(entry)
    }
}

/// Why a name could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// Another live process holds the name.
    Taken {
        /// The name asked for.
        name: String,
        /// The process that holds it.
        holder: ProcessId,
    },
    /// The process has exited (or exited while it was being registered).
    Exited {
        /// The name asked for.
        name: String,
        /// The process that was to get it.
        process: ProcessId,
    },
    /// The process already has a name; as in Erlang, a process has at most one.
    AlreadyNamed {
        /// The name asked for.
        name: String,
        /// The process that was to get it.
        process: ProcessId,
        /// The name it has.
        existing: String,
    },
}

impl RegisterError {
    /// The name that could not be registered.
    pub fn name(&self) -> &str {
        match self {
            RegisterError::Taken { name, .. }
            | RegisterError::Exited { name, .. }
            | RegisterError::AlreadyNamed { name, .. } => name,
        }
    }
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Taken { name, holder } => {
                write!(f, "cannot register {name:?}: the name is taken by {holder}")
            }
            RegisterError::Exited { name, process } => {
                write!(f, "cannot register {name:?}: process {process} has exited")
            }
            RegisterError::AlreadyNamed {
                name,
                process,
                existing,
            } => write!(
                f,
                "cannot register {name:?}: process {process} is already registered as \
                 {existing:?}, and a process has at most one name"
            ),
        }
    }
}

impl std::error::Error for RegisterError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FnContext, Notice, Runtime};

    fn is_empty(registry: &Registry) -> bool {
        let names = registry.names.lock();
        names.by_name.is_empty() && names.by_process.is_empty()
    }

    #[test]
    fn unregistering_removes_the_exit_hook_and_an_end_empties_the_maps() {
        let rt = Runtime::builder().workers(2).build().unwrap();
        rt.block_on(|cx| {
            let handle = cx.runtime();
            let registry = Arc::clone(&handle.shared().registry);
            let child = cx.spawn_fn(|cx: &mut FnContext<u32>| cx.receive());
            for _ in 0..100 {
                handle.register("n", &child.pid()).unwrap();
                assert!(handle.unregister("n"));
            }
            // Every hook holds the registry weakly: none is left behind.
            assert_eq!(Arc::weak_count(&registry), 0);
            assert!(is_empty(&registry));

            handle.register("n", &child.pid()).unwrap();
            assert_eq!(Arc::weak_count(&registry), 1);
            cx.monitor(&child.pid());
            child.pid().send(1).unwrap();
            // Hooks run before monitors hear of the end.
            assert!(matches!(cx.receive_notice(), Notice::Down(_)));
            assert_eq!(Arc::weak_count(&registry), 0);
            assert!(is_empty(&registry));
        });
    }

    #[test]
    fn churn_leaves_no_entry_and_no_hook() {
        let rt = Runtime::builder().workers(4).build().unwrap();
        let registry = Arc::clone(&rt.handle().shared().registry);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let handle = rt.handle();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        let name = ["a", "b", "c"][((i * 7 + t) % 3) as usize];
                        let child = if i % 3 == 0 {
                            handle.spawn_fn(|_: &mut FnContext<u32>| 0).unwrap()
                        } else {
                            handle
                                .spawn_fn(|cx: &mut FnContext<u32>| cx.receive())
                                .unwrap()
                        };
                        let _ = handle.register(name, &child.pid());
                        if (i + t) % 2 == 0 {
                            handle.unregister(name);
                        }
                        let _ = child.pid().send(1);
                        let _ = child.join();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // Shutting down waits for every worker, so every exit hook has run.
        rt.shutdown();
        assert!(is_empty(&registry));
        assert_eq!(Arc::weak_count(&registry), 0);
    }
}
