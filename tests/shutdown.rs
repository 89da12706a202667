//! Shutting a runtime down stops every process, runs every destructor and makes
//! later spawns and sends fail.

mod common;

use common::{within, DropCounter, Tracked};
use fibra::prelude::*;
use fibra::Builder;

struct Holder {
    _token: Tracked,
}

impl Process for Holder {
    type Message = Tracked;
    fn handle(&mut self, msg: Tracked, cx: &mut Context<Self>) {
        // Keep the message on the stack while blocked on a child that never ends:
        // the process is suspended mid-handler at shutdown.
        let _kept = msg;
        let never = cx.spawn_fn(|cx: &mut FnContext<()>| cx.receive());
        let _ = never.join();
    }
}

#[test]
fn shutdown_runs_every_destructor_and_later_calls_fail() {
    within(30, || {
        let drops = DropCounter::default();
        let rt = Builder::default().workers(2).build().unwrap();
        let handle = rt.handle();

        // An idle handler process holding a value.
        let idle = rt
            .spawn(Holder {
                _token: drops.token(),
            })
            .unwrap();
        // A handler suspended mid-handler with a message on its stack.
        let busy = rt
            .spawn(Holder {
                _token: drops.token(),
            })
            .unwrap();
        busy.send(drops.token()).unwrap();
        // A free-running process blocked in receive with a local.
        let local = drops.token();
        let blocked = rt
            .spawn_fn(move |cx: &mut FnContext<Tracked>| {
                let _local = local;
                loop {
                    let _ = cx.receive_matching(|_| false);
                }
            })
            .unwrap();
        // Messages that will sit in its mailbox, never matched.
        for _ in 0..3 {
            blocked.pid().send(drops.token()).unwrap();
        }
        // The busy handler may already have spawned its child.
        assert!(rt.processes() >= 3);

        // Wait for the busy handler to be suspended in its join: its child exists.
        while rt.processes() < 4 {
            std::thread::yield_now();
        }

        let created = 2 + 1 + 1 + 3;
        rt.shutdown();
        assert_eq!(
            drops.get(),
            created,
            "every value, local and message is dropped"
        );

        assert!(matches!(
            handle.spawn_fn(|_: &mut FnContext<()>| ()),
            Err(SpawnError::Shutdown)
        ));
        let err = handle
            .spawn(Holder {
                _token: drops.token(),
            })
            .unwrap_err();
        assert!(err.to_string().contains("shut down"), "{err}");
        assert!(idle.send(drops.token()).is_err());
        assert_eq!(blocked.join(), Err(Exit::Shutdown));
        assert!(handle.is_shutdown());
    });
}

#[test]
fn dropping_the_runtime_shuts_it_down_and_wakes_joiners() {
    within(30, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let stuck = rt.spawn_fn(|cx: &mut FnContext<()>| cx.receive()).unwrap();
        let pid = stuck.pid();
        drop(rt);
        assert_eq!(stuck.join(), Err(Exit::Shutdown));
        assert!(pid.send(()).is_err());
    });
}

#[test]
fn finished_processes_leave_nothing_behind() {
    within(30, || {
        let drops = DropCounter::default();
        let rt = Builder::default().workers(2).build().unwrap();
        let n = 2_000;
        let made = rt.block_on({
            let drops = drops.clone();
            move |cx| {
                let handles: Vec<_> = (0..n)
                    .map(|_| {
                        let token = drops.token();
                        cx.spawn_fn(move |cx: &mut FnContext<Tracked>| {
                            let _mine = token;
                            drop(cx.receive());
                        })
                    })
                    .collect();
                for h in &handles {
                    h.pid().send(drops.token()).unwrap();
                }
                for h in handles {
                    h.join().unwrap();
                }
                2 * n
            }
        });
        assert_eq!(drops.get(), made);
        assert_eq!(rt.processes(), 0);
    });
}
