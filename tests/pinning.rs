//! Pinned processes as a user sees them: every message is handled on one worker
//! thread, through idle waits, budget yields and other workers stealing, and the
//! rest of a process's life (calls, stops) works as for any other.

mod common;

use std::collections::HashSet;
use std::thread::ThreadId;
use std::time::Duration;

use common::within;
use fibra::prelude::*;
use fibra::Builder;

const LONG: Duration = Duration::from_secs(10);

/// Records the thread each message is handled on.
#[derive(Default)]
struct Recorder {
    threads: HashSet<ThreadId>,
}

enum Msg {
    Work,
    Report(ReplyTo<HashSet<ThreadId>>),
}

impl Process for Recorder {
    type Message = Msg;
    fn handle(&mut self, msg: Msg, _cx: &mut Context<Self>) {
        match msg {
            Msg::Work => {
                self.threads.insert(std::thread::current().id());
            }
            Msg::Report(reply) => {
                reply.reply(std::mem::take(&mut self.threads));
            }
        }
    }
}

#[test]
fn a_pinned_process_handles_every_message_on_one_thread_under_load() {
    within(60, || {
        let rt = Builder::default().workers(2).build().expect("runtime");
        let handle = rt.handle();
        // Busy neighbours that keep both workers stealing from each other.
        let busy: Vec<_> = (0..8)
            .map(|_| {
                handle
                    .spawn_fn(|cx: &mut FnContext<()>| {
                        while cx.try_receive().is_none() {
                            std::hint::black_box((0..200).sum::<u64>());
                            cx.yield_now();
                        }
                    })
                    .unwrap()
            })
            .collect();
        let from_a_thread = handle.spawn_pinned(Recorder::default()).unwrap();
        let from_a_process = rt.block_on(|cx| cx.spawn_pinned(Recorder::default()).unwrap());
        let normal = handle.spawn(Recorder::default()).unwrap();
        for round in 0..1000 {
            for pid in [&from_a_thread, &from_a_process, &normal] {
                for _ in 0..10 {
                    pid.send(Msg::Work).unwrap();
                }
            }
            // Now and then idle long enough to park and be woken from outside.
            if round % 20 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        for pinned in [&from_a_thread, &from_a_process] {
            let threads = pinned.call(Msg::Report, LONG).unwrap();
            assert_eq!(threads.len(), 1, "a pinned process moved: {threads:?}");
        }
        let threads = normal.call(Msg::Report, LONG).unwrap();
        assert!(!threads.is_empty());
        for pid in busy.iter().map(|b| b.pid()) {
            pid.send(()).unwrap();
        }
        for b in busy {
            b.join().unwrap();
        }
        // A pinned process stops like any other.
        assert_eq!(from_a_thread.any().stop_and_wait(LONG), Ok(Exit::Stopped));
    });
}

#[test]
fn a_pinned_free_running_process_runs_on_its_spawners_thread() {
    within(30, || {
        let rt = Builder::default().workers(2).build().expect("runtime");
        let (spawner, child) = rt.block_on(|cx| {
            let here = std::thread::current().id();
            let child = cx
                .spawn_fn_pinned(|cx: &mut FnContext<()>| {
                    let first = std::thread::current().id();
                    // Suspended and resumed many times: it stays.
                    for _ in 0..100 {
                        cx.yield_now();
                        assert_eq!(std::thread::current().id(), first);
                    }
                    first
                })
                .unwrap();
            (here, child.join().unwrap())
        });
        assert_eq!(
            spawner, child,
            "it did not first run on its spawner's thread"
        );
    });
}
