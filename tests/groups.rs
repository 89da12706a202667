//! Process groups, as a user sees them: join, leave, members, broadcast, and
//! members leaving when they end.

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
            // Joining again changes nothing.
            assert!(handle.join_group("pool", &numbers[0].pid()));

            let pids: Vec<_> = numbers.iter().map(|m| m.pid()).collect();
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
