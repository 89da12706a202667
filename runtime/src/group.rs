//! Process groups, after Erlang's `pg`: named sets of processes that can be listed
//! and sent to all at once. A process may be in any number of groups; it leaves
//! each of them when it ends, through one exit hook per group it is in.
//!
//! Joining follows the registry's three steps (see registry.rs), for the same
//! reason: the exit hook takes the groups lock under the ending process's relations
//! lock, so hooks are installed and removed only while the groups lock is not held.
//!
//! 1. Under the groups lock: add the member with a fresh token and no hook yet.
//! 2. Without it: install the hook, which removes the member only if it still
//!    carries that token. If the process has ended already, the hook runs at once
//!    and the join fails.
//! 3. Under the lock again: store the hook's id with the member, so that leaving
//!    removes the hook; if the member is gone already (the process ended, or left
//!    meanwhile), remove the hook instead.
//!
//! A group exists while it has members; it is dropped with its last one.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::process::{AnyPid, Pid, Run};
use crate::signal::{on_exit, remove_exit_hook, ExitHook, HookId};

/// The process groups of one runtime.
pub(crate) struct Groups {
    /// The groups and their members.
    state: Mutex<State>,
}

/// What the groups lock guards.
#[derive(Default)]
struct State {
    /// Each non-empty group's members.
    groups: HashMap<String, HashMap<AnyPid, Member>>,
    /// The token of the next join.
    next_token: u64,
}

/// A process's membership of one group.
struct Member {
    /// The member's `Pid<M>`, for typed listing and broadcast.
    typed: Box<dyn Any + Send + Sync>,
    /// Tells this join apart from earlier and later ones of the same process, for
    /// the exit hook; also orders the members by when they joined.
    token: u64,
    /// The exit hook that takes the process out of the group; `None` while
    /// `join` is installing it.
    hook: Option<HookId>,
}

impl Groups {
    pub(crate) fn new() -> Arc<Groups> {
        Arc::new(Groups {
            state: Mutex::new(State::default()),
        })
    }

    pub(crate) fn join<M: Send + 'static>(self: &Arc<Self>, group: String, pid: &Pid<M>) -> bool {
        let process = pid.any();
        // Step 1 (see the module comment).
        let token = {
            let mut state = self.state.lock();
            if !process.is_alive() {
                return false;
            }
            let token = state.next_token;
            let members = state.groups.entry(group.clone()).or_default();
            if members.contains_key(&process) {
                return true;
            }
            members.insert(
                process.clone(),
                Member {
                    typed: Box::new(pid.clone()),
                    token,
                    hook: None,
                },
            );
            state.next_token += 1;
            token
        };
        // Step 2. The hook holds the process weakly: it is stored with the process,
        // and a strong reference would keep it alive until it ends.
        let groups = Arc::downgrade(self);
        let member = Arc::downgrade(&process.0);
        let hook_group = group.clone();
        let hook = on_exit(
            &*process.0,
            ExitHook::Fn(Box::new(move |_| {
                Groups::drop_member(&groups, &hook_group, &member, token)
            })),
        );
        let Some(hook) = hook else {
            return false;
        };
        // Step 3.
        let attached = {
            let mut state = self.state.lock();
            match state
                .groups
                .get_mut(&group)
                .and_then(|members| members.get_mut(&process))
            {
                Some(member) if member.token == token => {
                    member.hook = Some(hook);
                    true
                }
                _ => false,
            }
        };
        if !attached {
            remove_exit_hook(&*process.0, hook);
        }
        true
    }

    /// The exit hook: takes the process out of `group` if its membership still
    /// carries `token`.
    fn drop_member(groups: &Weak<Groups>, group: &str, process: &Weak<dyn Run>, token: u64) {
        let (Some(groups), Some(process)) = (groups.upgrade(), process.upgrade()) else {
            // The process is always there: the hook runs while its caller holds it.
            return;
        };
        let process = AnyPid(process);
        let mut state = groups.state.lock();
        let left = match state.groups.get(group).and_then(|m| m.get(&process)) {
            Some(member) if member.token == token => state.remove(group, &process),
            _ => None,
        };
        drop(state);
        drop(left);
    }

    pub(crate) fn leave(&self, group: &str, process: &AnyPid) -> bool {
        let removed = self.state.lock().remove(group, process);
        let Some(member) = removed else {
            return false;
        };
        if let Some(hook) = member.hook {
            remove_exit_hook(&*process.0, hook);
        }
        // Without a hook, `join` is still at step 2 and removes it at step 3.
        process.is_alive()
    }

    /// The live members of `group` whose messages are of type `M`, in the order
    /// they joined.
    pub(crate) fn members<M: Send + 'static>(&self, group: &str) -> Vec<Pid<M>> {
        let state = self.state.lock();
        let Some(members) = state.groups.get(group) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, Pid<M>)> = members
            .iter()
            .filter(|(process, _)| process.is_alive())
            .filter_map(|(_, member)| {
                let pid = member.typed.downcast_ref::<Pid<M>>()?;
                Some((member.token, pid.clone()))
            })
            .collect();
        drop(state);
        found.sort_unstable_by_key(|(token, _)| *token);
        found.into_iter().map(|(_, pid)| pid).collect()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let state = self.state.lock();
        let mut names: Vec<String> = state
            .groups
            .iter()
            .filter(|(_, members)| members.keys().any(AnyPid::is_alive))
            .map(|(name, _)| name.clone())
            .collect();
        drop(state);
        names.sort_unstable();
        names
    }
}

impl State {
    /// Takes `process` out of `group`, dropping the group if it empties.
    fn remove(&mut self, group: &str, process: &AnyPid) -> Option<Member> {
        let members = self.groups.get_mut(group)?;
        let member = members.remove(process)?;
        if members.is_empty() {
            self.groups.remove(group);
        }
        Some(member)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FnContext, Notice, Runtime};

    #[test]
    fn leaving_removes_the_exit_hook_and_an_end_empties_the_groups() {
        let rt = Runtime::builder().workers(2).build().unwrap();
        rt.block_on(|cx| {
            let handle = cx.runtime();
            let groups = Arc::clone(&handle.shared().groups);
            let child = cx.spawn_fn(|cx: &mut FnContext<u32>| cx.receive());
            for _ in 0..100 {
                assert!(handle.join_group("g", &child.pid()));
                assert!(handle.join_group("g", &child.pid()));
                assert!(handle.leave_group("g", &child.pid()));
            }
            // Every hook holds the groups weakly: none is left behind.
            assert_eq!(Arc::weak_count(&groups), 0);
            assert!(groups.state.lock().groups.is_empty());

            assert!(handle.join_group("g", &child.pid()));
            assert!(handle.join_group("h", &child.pid()));
            assert_eq!(Arc::weak_count(&groups), 2);
            cx.monitor(&child.pid());
            child.pid().send(1).unwrap();
            // Hooks run before monitors hear of the end.
            assert!(matches!(cx.receive_notice(), Notice::Down(_)));
            assert_eq!(Arc::weak_count(&groups), 0);
            assert!(groups.state.lock().groups.is_empty());
        });
    }

    #[test]
    fn churn_leaves_no_member_and_no_hook() {
        let rt = Runtime::builder().workers(4).build().unwrap();
        let groups = Arc::clone(&rt.handle().shared().groups);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let handle = rt.handle();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        let group = ["a", "b", "c"][((i * 7 + t) % 3) as usize];
                        let child = if i % 3 == 0 {
                            handle.spawn_fn(|_: &mut FnContext<u32>| 0).unwrap()
                        } else {
                            handle
                                .spawn_fn(|cx: &mut FnContext<u32>| cx.receive())
                                .unwrap()
                        };
                        handle.join_group(group, &child.pid());
                        handle.join_group("all", &child.pid());
                        if (i + t) % 2 == 0 {
                            handle.leave_group(group, &child.pid());
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
        assert!(groups.state.lock().groups.is_empty());
        assert_eq!(Arc::weak_count(&groups), 0);
    }
}
