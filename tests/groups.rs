//! Process groups, as a user sees them: counted joins and leaves, members,
//! broadcast, members leaving when they end, group monitors and scopes.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{await_end, echo, two_worker_runtime as runtime, within, xorshift};
use fibra::prelude::*;
use fibra::Builder;

#[test]
fn join_leave_members_and_broadcast() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let numbers: Vec<_> = (0..3).map(|_| cx.spawn_fn(echo::<u64>)).collect();
            let text = cx.spawn_fn(echo::<String>);
            for member in &numbers {
                assert!(handle.join_group("pool", &member.pid()));
            }
            assert!(handle.join_group("pool", &text.pid()));
            // Joins are counted: joining again lists the process again, and one
            // leave takes one join back.
            assert!(handle.join_group("pool", &numbers[0].pid()));
            let pids: Vec<_> = numbers.iter().map(|m| m.pid()).collect();
            let twice = [&pids[..1], &pids[..]].concat();
            assert_eq!(handle.group_members::<u64>("pool"), twice);
            assert!(handle.leave_group("pool", &numbers[0].pid()));
            assert_eq!(handle.group_members::<u64>("pool"), pids);
            assert_eq!(handle.group_members::<String>("pool"), vec![text.pid()]);
            assert!(handle.group_members::<u32>("pool").is_empty());
            assert!(handle.group_members::<u64>("nobody").is_empty());
            assert_eq!(handle.groups(), vec!["pool".to_string()]);

            assert!(handle.leave_group("pool", &numbers[1].pid()));
            assert!(!handle.leave_group("pool", &numbers[1].pid()));
            assert!(!handle.leave_group("elsewhere", &numbers[0].pid()));
            assert_eq!(
                handle.group_members::<u64>("pool"),
                vec![pids[0].clone(), pids[2].clone()]
            );

            // Only the members of the message's type get it.
            assert_eq!(handle.broadcast("pool", 5u64), 2);
            assert_eq!(handle.broadcast("pool", "hi".to_string()), 1);
            assert_eq!(handle.broadcast("nobody", 1u64), 0);
            numbers[1].pid().send(6).unwrap();
            let got: Vec<u64> = numbers.into_iter().map(|m| m.join().unwrap()).collect();
            assert_eq!(got, vec![5, 6, 5]);
            assert_eq!(text.join().unwrap(), "hi");
            assert!(handle.groups().is_empty());
        });
    });
}

#[test]
fn members_leave_when_they_end() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let doomed = cx.spawn_fn(echo::<u64>);
            let staying = cx.spawn_fn(echo::<u64>);
            handle.join_group("g", &doomed.pid());
            handle.join_group("g", &staying.pid());

            doomed.pid().any().kill();
            await_end(cx, &doomed.pid());
            assert_eq!(handle.group_members::<u64>("g"), vec![staying.pid()]);
            assert_eq!(handle.broadcast("g", 1u64), 1);
            assert_eq!(staying.join(), Ok(1));
            assert_eq!(doomed.join(), Err(Exit::Killed));

            // The group went with its last member.
            assert!(handle.groups().is_empty());
            assert_eq!(handle.broadcast("g", 2u64), 0);
        });
    });
}

#[test]
fn a_process_in_two_groups() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let member =
                cx.spawn_fn(|cx: &mut FnContext<&'static str>| (cx.receive(), cx.receive()));
            let pid = member.pid();
            assert!(handle.join_group("red", &pid));
            assert!(handle.join_group("blue", &pid));
            assert_eq!(handle.groups(), vec!["blue".to_string(), "red".to_string()]);
            assert_eq!(handle.broadcast("red", "from red"), 1);

            assert!(handle.leave_group("red", &pid));
            assert_eq!(handle.groups(), vec!["blue".to_string()]);
            assert!(handle.group_members::<&'static str>("red").is_empty());
            assert_eq!(
                handle.group_members::<&'static str>("blue"),
                vec![pid.clone()]
            );
            assert_eq!(handle.broadcast("red", "lost"), 0);
            assert_eq!(handle.broadcast("blue", "from blue"), 1);

            assert_eq!(member.join(), Ok(("from red", "from blue")));
            await_end(cx, &pid);
            assert!(handle.groups().is_empty());
            // Rejoining after the end fails, leaving nothing behind.
            assert!(!handle.join_group("red", &pid));
            assert!(handle.groups().is_empty());
        });
    });
}

#[test]
fn handler_processes_in_a_group_all_get_a_broadcast() {
    struct Relay {
        to: Pid<u32>,
    }
    impl Process for Relay {
        type Message = u32;
        fn handle(&mut self, msg: u32, cx: &mut Context<Self>) {
            let _ = self.to.send(msg + 1);
            cx.stop();
        }
    }

    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        let sum = rt.block_on(move |cx| {
            let collector =
                cx.spawn_fn(|cx: &mut FnContext<u32>| (0..10).map(|_| cx.receive()).sum::<u32>());
            for _ in 0..10 {
                let relay = cx.spawn(Relay {
                    to: collector.pid(),
                });
                handle.join_group("relays", &relay);
            }
            assert_eq!(handle.broadcast("relays", 4u32), 10);
            collector.join().unwrap()
        });
        assert_eq!(sum, 50);
    });
}

/// Eight threads race joins, leaves and exits of 10,000 processes over four
/// groups; afterwards no group is left.
#[test]
fn concurrent_churn_leaves_no_stale_members() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 1250;
    const GROUPS: [&str; 4] = ["w", "x", "y", "z"];

    within(120, || {
        let rt = Builder::default().workers(4).build().expect("runtime");
        let joined = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let handle = rt.handle();
                let joined = Arc::clone(&joined);
                std::thread::spawn(move || {
                    let mut next = xorshift(
                        0x2545_F491_4F6C_DD1Du64 ^ ((t as u64 + 1) * 0x1234_5678_9ABC_DEF1),
                    );
                    for _ in 0..PER_THREAD {
                        let roll = next();
                        // One in four ends by itself at once, racing its joins.
                        let child = if roll % 4 == 0 {
                            handle.spawn_fn(|_: &mut FnContext<u32>| 0).unwrap()
                        } else {
                            handle.spawn_fn(echo::<u32>).unwrap()
                        };
                        let first = GROUPS[(roll >> 4) as usize % GROUPS.len()];
                        let second = GROUPS[(roll >> 8) as usize % GROUPS.len()];
                        for group in [first, second] {
                            if handle.join_group(group, &child.pid()) {
                                joined.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        match (roll >> 12) % 3 {
                            0 => {
                                handle.leave_group(first, &child.pid());
                            }
                            1 => {
                                handle.broadcast(second, 1u32);
                            }
                            _ => {
                                let _ = handle.group_members::<u32>(first);
                            }
                        }
                        let _ = child.pid().send(2);
                        child.join().unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(joined.load(Ordering::Relaxed) > 0);

        let handle = rt.handle();
        rt.block_on(move |cx| {
            assert!(
                handle.groups().is_empty(),
                "stale groups: {:?}",
                handle.groups()
            );
            for group in GROUPS {
                assert!(handle.group_members::<u32>(group).is_empty());
            }
            // The groups work as before.
            let member = cx.spawn_fn(echo::<u32>);
            for group in GROUPS {
                assert!(handle.join_group(group, &member.pid()));
            }
            assert_eq!(handle.broadcast("w", 3u32), 1);
            assert_eq!(member.join(), Ok(3));
        });
    });
}

#[test]
fn a_process_joined_three_times_is_listed_three_times_and_broadcast_to_once() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let member = cx.spawn_fn(|cx: &mut FnContext<u64>| {
                let first = cx.receive();
                (first, cx.try_receive())
            });
            for _ in 0..3 {
                assert!(handle.join_group("g", &member.pid()));
            }
            assert_eq!(handle.group_members::<u64>("g").len(), 3);
            assert!(handle.leave_group("g", &member.pid()));
            assert_eq!(handle.group_members::<u64>("g").len(), 2);
            assert_eq!(handle.broadcast("g", 7u64), 1);
            // It ends with two joins left: it leaves entirely.
            let (first, second) = member.join().unwrap();
            assert_eq!((first, second), (7, None), "one copy per process");
            assert!(handle.group_members::<u64>("g").is_empty());
            assert!(handle.groups().is_empty());
        });
    });
}

/// The next group notice, skipping nothing else: the tests' processes have no other
/// relations.
fn group_notice(cx: &mut FnContext<()>) -> fibra::GroupNotice {
    match cx.receive_notice() {
        Notice::Group(notice) => notice,
        other => panic!("not a group notice: {other:?}"),
    }
}

#[test]
fn a_group_monitor_hears_every_join_and_leave_in_order() {
    use fibra::Membership::{Joined, Left};
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let handle = cx.runtime();
            let early = cx.spawn_fn(echo::<u64>);
            handle.join_group("g", &early.pid());
            let (monitor, members) = cx.monitor_group("g");
            assert_eq!(monitor.group(), "g");
            assert_eq!(members, vec![early.pid().any()]);

            let late = cx.spawn_fn(echo::<u64>);
            handle.join_group("g", &late.pid());
            handle.join_group("g", &late.pid());
            handle.leave_group("g", &late.pid());
            // Another group, and the same name in another scope, are not watched.
            handle.join_group("other", &late.pid());
            handle.group_scope("elsewhere").join("g", &late.pid());
            let e = early.pid().any();
            early.pid().send(1).unwrap();
            early.join().unwrap();
            let seen: Vec<_> = (0..4)
                .map(|_| {
                    let notice = group_notice(cx);
                    assert_eq!(notice.monitor, monitor);
                    (notice.change, notice.pid, notice.joins)
                })
                .collect();
            let l = late.pid().any();
            assert_eq!(
                seen,
                vec![
                    (Joined, l.clone(), 1),
                    (Joined, l.clone(), 2),
                    (Left, l, 1),
                    (Left, e, 0),
                ]
            );
            late.pid().send(1).unwrap();
            late.join().unwrap();
            let notice = group_notice(cx);
            assert_eq!((notice.change, notice.joins), (Left, 0));
            cx.demonitor_group(&monitor);
            assert!(handle.groups().is_empty());
        });
    });
}

#[test]
fn a_removed_group_monitor_says_nothing_more_and_only_its_owner_removes_it() {
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let handle = cx.runtime();
            let (monitor, _) = cx.monitor_group("g");
            // A copy in another process's hands removes nothing.
            let copy = monitor.clone();
            let other = cx.spawn_fn(move |cx: &mut FnContext<()>| cx.demonitor_group(&copy));
            other.join().unwrap();
            let member = cx.spawn_fn(echo::<u64>);
            handle.join_group("g", &member.pid());
            assert_eq!(group_notice(cx).monitor, monitor);
            // Queued but not yet taken: taken back by the removal.
            handle.leave_group("g", &member.pid());
            handle.join_group("g", &member.pid());
            cx.demonitor_group(&monitor);
            handle.leave_group("g", &member.pid());
            assert!(
                cx.receive_notice_timeout(std::time::Duration::from_millis(20))
                    .is_none(),
                "a notice came through a removed monitor"
            );
            member.pid().send(1).unwrap();
            member.join().unwrap();
            assert!(handle.groups().is_empty());
        });
    });
}

#[test]
fn a_monitor_ends_with_its_process() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(|cx| {
            let watcher = cx.spawn_fn(|cx: &mut FnContext<()>| {
                let (_, members) = cx.monitor_group("g");
                members.len()
            });
            assert_eq!(watcher.join().unwrap(), 0);
            // Its monitor went with it: the group, which only it kept, is gone, and
            // a join tells nobody.
            let member = cx.spawn_fn(echo::<u64>);
            assert!(cx.runtime().join_group("g", &member.pid()));
            member.pid().send(1).unwrap();
            member.join().unwrap();
        });
        assert!(handle.groups().is_empty());
    });
}

#[test]
fn scopes_keep_the_same_group_names_apart() {
    within(30, || {
        let rt = runtime();
        let handle = rt.handle();
        rt.block_on(move |cx| {
            let (a, b) = (handle.group_scope("a"), handle.group_scope("b"));
            assert_eq!(a.name(), "a");
            let in_a = cx.spawn_fn(echo::<u64>);
            let in_b = cx.spawn_fn(echo::<u64>);
            assert!(a.join("workers", &in_a.pid()));
            assert!(b.join("workers", &in_b.pid()));
            assert_eq!(a.members::<u64>("workers"), vec![in_a.pid()]);
            assert_eq!(b.members::<u64>("workers"), vec![in_b.pid()]);
            assert!(handle.group_members::<u64>("workers").is_empty());
            assert_eq!(a.groups(), vec!["workers".to_string()]);
            assert!(
                handle.groups().is_empty(),
                "the default scope saw another's"
            );
            let (monitor, members) = a.monitor(cx, "workers");
            assert_eq!(monitor.scope(), "a");
            assert_eq!(members, vec![in_a.pid().any()]);
            assert_eq!(a.broadcast("workers", 1u64), 1);
            assert_eq!(b.broadcast("workers", 2u64), 1);
            assert_eq!(in_a.join().unwrap(), 1);
            assert_eq!(in_b.join().unwrap(), 2);
            cx.demonitor_group(&monitor);
            assert!(a.groups().is_empty() && b.groups().is_empty());
        });
    });
}
