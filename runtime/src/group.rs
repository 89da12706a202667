//! Process groups, after Erlang's `pg`: named sets of processes that can be listed
//! and sent to all at once, in independent scopes. A process may be in any number
//! of groups, and in one group several times: joins are counted, as in `pg`, and
//! each leave takes one back. It leaves each group entirely when it ends, through
//! one exit hook per group it is in. A group can be monitored: its monitors are
//! told of every join and leave.
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
//! A group monitor is installed the same way, with its hook on the watcher, which
//! takes the monitor away when the watcher ends.
//!
//! Notices of joins and leaves are queued under the groups lock, so that every
//! monitor of a group sees its changes in the order they happened; queueing a
//! signal takes no relations lock, so the lock order (relations, then groups)
//! holds.
//!
//! A group exists while it has members or monitors; it is dropped with its last.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::process::{AnyPid, Pid, ProcessId, Run, Task};
use crate::signal::{deliver, on_exit, remove_exit_hook, ExitHook, HookId, Signal};

/// The process groups of one runtime, in all their scopes.
pub(crate) struct Groups {
    /// The groups and their members.
    state: Mutex<State>,
}

/// What the groups lock guards.
#[derive(Default)]
struct State {
    /// Each scope's groups, by name; a scope exists while it has a group.
    scopes: HashMap<Arc<str>, HashMap<String, Group>>,
    /// The token of the next join or monitor.
    next_token: u64,
}

/// One group's members and monitors.
#[derive(Default)]
struct Group {
    members: HashMap<AnyPid, Member>,
    /// The group's monitors, by token.
    monitors: HashMap<u64, Watch>,
}

/// A process's membership of one group.
struct Member {
    /// The member's `Pid<M>`, for typed listing and broadcast.
    typed: Box<dyn Any + Send + Sync>,
    /// Tells this membership apart from earlier and later ones of the same
    /// process, for the exit hook; also orders the members by when they first
    /// joined.
    token: u64,
    /// How many times it joined and has not left.
    joins: usize,
    /// The exit hook that takes the process out of the group; `None` while
    /// `join` is installing it.
    hook: Option<HookId>,
}

/// A monitor of a group.
struct Watch {
    /// The ref its notices carry.
    monitor: GroupMonitor,
    /// The monitoring process, held weakly like every hook's process.
    watcher: Weak<dyn Run>,
    /// The exit hook that takes the monitor away when the watcher ends; `None`
    /// while `monitor` is installing it.
    hook: Option<HookId>,
}

/// A monitor of a process group, as returned by
/// [`Scope::monitor_group`](crate::Scope::monitor_group) and carried by its
/// [`GroupNotice`]s.
#[derive(Clone)]
pub struct GroupMonitor {
    /// Unique within the runtime.
    token: u64,
    /// The group's scope.
    scope: Arc<str>,
    /// The group.
    group: String,
    /// The monitoring process: only it may remove the monitor.
    watcher: ProcessId,
}

impl GroupMonitor {
    /// The monitored group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The monitored group's scope ("" for the runtime's default one).
    pub fn scope(&self) -> &str {
        &self.scope
    }
}

impl PartialEq for GroupMonitor {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token
    }
}

impl Eq for GroupMonitor {}

impl std::hash::Hash for GroupMonitor {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.token.hash(state);
    }
}

impl fmt::Debug for GroupMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GroupMonitor(#{} {:?}/{:?})",
            self.token, self.scope, self.group
        )
    }
}

/// What changed in a monitored group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// The process joined (once more, if it was a member already).
    Joined,
    /// The process left once (it may still be a member, if it joined more
    /// often), or ended and left for good.
    Left,
}

/// A join or a leave in a monitored group ([`Notice::Group`](crate::Notice::Group)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNotice {
    /// The monitor it comes through.
    pub monitor: GroupMonitor,
    /// Whether the process joined or left.
    pub change: Membership,
    /// The process that joined or left.
    pub pid: AnyPid,
    /// How many times the process is in the group now.
    pub joins: usize,
}

impl Groups {
    pub(crate) fn new() -> Arc<Groups> {
        Arc::new(Groups {
            state: Mutex::new(State::default()),
        })
    }

    pub(crate) fn join<M: Send + 'static>(
        self: &Arc<Self>,
        scope: &Arc<str>,
        group: String,
        pid: &Pid<M>,
    ) -> bool {
        let process = pid.any();
        // Step 1 (see the module comment).
        let token = {
            let mut state = self.state.lock();
            if !process.is_alive() {
                return false;
            }
            let token = state.take_token();
            let entry = state.group_mut(scope, &group);
            if let Some(member) = entry.members.get_mut(&process) {
                member.joins += 1;
                let joins = member.joins;
                entry.tell(Membership::Joined, &process, joins);
                return true;
            }
            entry.members.insert(
                process.clone(),
                Member {
                    typed: Box::new(pid.clone()),
                    token,
                    joins: 1,
                    hook: None,
                },
            );
            entry.tell(Membership::Joined, &process, 1);
            token
        };
        // Step 2. The hook holds the process weakly: it is stored with the process,
        // and a strong reference would keep it alive until it ends.
        let groups = Arc::downgrade(self);
        let member = Arc::downgrade(&process.0);
        let (hook_scope, hook_group) = (Arc::clone(scope), group.clone());
        let hook = on_exit(
            &*process.0,
            ExitHook::Fn(Box::new(move |_| {
                Groups::drop_member(&groups, &hook_scope, &hook_group, &member, token)
            })),
        );
        let Some(hook) = hook else {
            return false;
        };
        // Step 3.
        let attached = {
            let mut state = self.state.lock();
            match state
                .group(scope, &group)
                .and_then(|entry| entry.members.get_mut(&process))
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

    /// The exit hook: takes the process out of `group` for good if its
    /// membership still carries `token`.
    fn drop_member(
        groups: &Weak<Groups>,
        scope: &Arc<str>,
        group: &str,
        process: &Weak<dyn Run>,
        token: u64,
    ) {
        let (Some(groups), Some(process)) = (groups.upgrade(), process.upgrade()) else {
            // The process is always there: the hook runs while its caller holds it.
            return;
        };
        let process = AnyPid(process);
        let mut state = groups.state.lock();
        let left = match state
            .group(scope, group)
            .and_then(|m| m.members.get(&process))
        {
            Some(member) if member.token == token => state.remove(scope, group, &process),
            _ => None,
        };
        drop(state);
        drop(left);
    }

    /// Takes back one of `process`'s joins of `group`; true if it was a member
    /// and is alive.
    pub(crate) fn leave(&self, scope: &Arc<str>, group: &str, process: &AnyPid) -> bool {
        let removed = {
            let mut state = self.state.lock();
            let Some(entry) = state.group(scope, group) else {
                return false;
            };
            let Some(member) = entry.members.get_mut(process) else {
                return false;
            };
            if member.joins > 1 {
                member.joins -= 1;
                let joins = member.joins;
                entry.tell(Membership::Left, process, joins);
                return process.is_alive();
            }
            state.remove(scope, group, process)
        };
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
    /// they first joined, each as many times as it joined.
    pub(crate) fn members<M: Send + 'static>(&self, scope: &str, group: &str) -> Vec<Pid<M>> {
        let state = self.state.lock();
        let Some(entry) = state.scopes.get(scope).and_then(|groups| groups.get(group)) else {
            return Vec::new();
        };
        let found: Vec<(u64, usize, Pid<M>)> = entry
            .members
            .iter()
            .filter(|(process, _)| process.is_alive())
            .filter_map(|(_, member)| {
                let pid = member.typed.downcast_ref::<Pid<M>>()?;
                Some((member.token, member.joins, pid.clone()))
            })
            .collect();
        drop(state);
        in_join_order(found)
    }

    /// The groups of `scope` that have live members, sorted.
    pub(crate) fn names(&self, scope: &str) -> Vec<String> {
        let state = self.state.lock();
        let mut names: Vec<String> = state
            .scopes
            .get(scope)
            .into_iter()
            .flatten()
            .filter(|(_, entry)| entry.members.keys().any(AnyPid::is_alive))
            .map(|(name, _)| name.clone())
            .collect();
        drop(state);
        names.sort_unstable();
        names
    }

    /// Monitors `group` for `watcher`; returns the monitor and the members now,
    /// each as many times as it joined, in the order they first joined. A watcher
    /// that has ended gets a monitor that never fires.
    pub(crate) fn monitor(
        self: &Arc<Self>,
        watcher: &Task,
        scope: &Arc<str>,
        group: &str,
    ) -> (GroupMonitor, Vec<AnyPid>) {
        // Step 1 (see the module comment).
        let (monitor, members) = {
            let mut state = self.state.lock();
            let token = state.take_token();
            let monitor = GroupMonitor {
                token,
                scope: Arc::clone(scope),
                group: group.to_string(),
                watcher: ProcessId(watcher.header().id),
            };
            let entry = state.group_mut(scope, group);
            entry.monitors.insert(
                token,
                Watch {
                    monitor: monitor.clone(),
                    watcher: Arc::downgrade(watcher),
                    hook: None,
                },
            );
            let members = in_join_order(
                entry
                    .members
                    .iter()
                    .map(|(pid, member)| (member.token, member.joins, pid.clone()))
                    .collect(),
            );
            (monitor, members)
        };
        // Step 2.
        let groups = Arc::downgrade(self);
        let ended = monitor.clone();
        let hook = on_exit(
            &**watcher,
            ExitHook::Fn(Box::new(move |_| {
                if let Some(groups) = groups.upgrade() {
                    drop(groups.state.lock().unwatch(&ended));
                }
            })),
        );
        // Step 3.
        if let Some(hook) = hook {
            let attached = {
                let mut state = self.state.lock();
                match state
                    .group(scope, group)
                    .and_then(|entry| entry.monitors.get_mut(&monitor.token))
                {
                    Some(watch) => {
                        watch.hook = Some(hook);
                        true
                    }
                    None => false,
                }
            };
            if !attached {
                remove_exit_hook(&**watcher, hook);
            }
        }
        (monitor, members)
    }

    /// Removes a group monitor, if `watcher` made it; true if it was there.
    pub(crate) fn demonitor(&self, watcher: &dyn Run, monitor: &GroupMonitor) -> bool {
        if monitor.watcher != ProcessId(watcher.header().id) {
            return false;
        }
        let removed = self.state.lock().unwatch(monitor);
        let Some(watch) = removed else {
            return false;
        };
        if let Some(hook) = watch.hook {
            remove_exit_hook(watcher, hook);
        }
        true
    }
}

/// Members as `(first join's token, joins, member)`, listed in the order they
/// first joined, each as many times as it joined.
fn in_join_order<T: Clone>(mut members: Vec<(u64, usize, T)>) -> Vec<T> {
    members.sort_unstable_by_key(|(token, _, _)| *token);
    members
        .into_iter()
        .flat_map(|(_, joins, member)| std::iter::repeat_n(member, joins))
        .collect()
}

impl State {
    fn take_token(&mut self) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        token
    }

    fn group(&mut self, scope: &str, group: &str) -> Option<&mut Group> {
        self.scopes.get_mut(scope)?.get_mut(group)
    }

    fn group_mut(&mut self, scope: &Arc<str>, group: &str) -> &mut Group {
        let groups = self.scopes.entry(Arc::clone(scope)).or_default();
        if !groups.contains_key(group) {
            groups.insert(group.to_string(), Group::default());
        }
        groups.get_mut(group).expect("inserted above")
    }

    /// Takes `process` out of `group` entirely (it left its last join, or
    /// ended), telling the group's monitors; drops the group if it empties.
    fn remove(&mut self, scope: &str, group: &str, process: &AnyPid) -> Option<Member> {
        let entry = self.group(scope, group)?;
        let member = entry.members.remove(process)?;
        entry.tell(Membership::Left, process, 0);
        self.drop_if_empty(scope, group);
        Some(member)
    }

    /// Removes a monitor; drops its group if that empties it.
    fn unwatch(&mut self, monitor: &GroupMonitor) -> Option<Watch> {
        let watch = self
            .group(&monitor.scope, &monitor.group)?
            .monitors
            .remove(&monitor.token)?;
        self.drop_if_empty(&monitor.scope, &monitor.group);
        Some(watch)
    }

    fn drop_if_empty(&mut self, scope: &str, group: &str) {
        let Some(groups) = self.scopes.get_mut(scope) else {
            return;
        };
        if groups
            .get(group)
            .is_some_and(|entry| entry.members.is_empty() && entry.monitors.is_empty())
        {
            groups.remove(group);
            if groups.is_empty() {
                self.scopes.remove(scope);
            }
        }
    }
}

impl Group {
    /// Tells every monitor of the group that `process` joined or left.
    fn tell(&self, change: Membership, process: &AnyPid, joins: usize) {
        for watch in self.monitors.values() {
            // Not the last reference: a watcher in the map has not run its exit
            // hooks, and the process table holds it until it has.
            let Some(watcher) = watch.watcher.upgrade() else {
                continue;
            };
            let notice = GroupNotice {
                monitor: watch.monitor.clone(),
                change,
                pid: process.clone(),
                joins,
            };
            deliver(&*watcher, Signal::Group(notice));
        }
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
                assert!(handle.leave_group("g", &child.pid()));
            }
            // Every hook holds the groups weakly: none is left behind.
            assert_eq!(Arc::weak_count(&groups), 0);
            assert!(groups.state.lock().scopes.is_empty());

            assert!(handle.join_group("g", &child.pid()));
            assert!(handle.join_group("h", &child.pid()));
            assert_eq!(Arc::weak_count(&groups), 2);
            cx.monitor(&child.pid());
            child.pid().send(1).unwrap();
            // Hooks run before monitors hear of the end.
            assert!(matches!(cx.receive_notice(), Notice::Down(_)));
            assert_eq!(Arc::weak_count(&groups), 0);
            assert!(groups.state.lock().scopes.is_empty());
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
        assert!(groups.state.lock().scopes.is_empty());
        assert_eq!(Arc::weak_count(&groups), 0);
    }

    #[test]
    fn monitors_go_with_their_watchers_and_leave_nothing_behind() {
        let rt = Runtime::builder().workers(4).build().unwrap();
        let groups = Arc::clone(&rt.handle().shared().groups);
        // Watchers that monitor, hear some changes, demonitor or just end, while
        // threads join and leave.
        let watchers: Vec<_> = (0..4u64)
            .map(|w| {
                rt.handle()
                    .spawn_fn(move |cx: &mut FnContext<()>| {
                        for i in 0..200u64 {
                            let (monitor, _) = cx.monitor_group(["a", "b"][(i % 2) as usize]);
                            while cx
                                .receive_notice_timeout(std::time::Duration::ZERO)
                                .is_some()
                            {}
                            if (i + w) % 3 != 0 {
                                cx.demonitor_group(&monitor);
                            }
                        }
                    })
                    .unwrap()
            })
            .collect();
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let handle = rt.handle();
                std::thread::spawn(move || {
                    for i in 0..500u64 {
                        let child = handle
                            .spawn_fn(|cx: &mut FnContext<u32>| cx.receive())
                            .unwrap();
                        let group = ["a", "b"][((i + t) % 2) as usize];
                        handle.join_group(group, &child.pid());
                        handle.join_group(group, &child.pid());
                        if i % 2 == 0 {
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
        for watcher in watchers {
            watcher.join().unwrap();
        }
        rt.shutdown();
        assert!(groups.state.lock().scopes.is_empty());
        assert_eq!(Arc::weak_count(&groups), 0);
    }
}
