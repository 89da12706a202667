//! Published state as users use it: readers on threads and processes see the
//! latest version and never a torn one; writes from others are applied by the
//! owner in order, ahead of its ordinary messages, and can be waited for; a
//! write to an owner that ended says so.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::within;
use fibra::prelude::*;
use fibra::{Builder, Published, Shared, WriteError};

/// Owns a pair whose halves are always equal, and answers with a reader.
struct Owner {
    published: Option<Published<(u64, u64)>>,
    hold: Arc<Barrier>,
}

enum Msg {
    Reader(ReplyTo<Shared<(u64, u64)>>),
    /// Waits at the barrier twice: the test queues things meanwhile.
    Hold,
    /// Replies with the value as the owner sees it when it handles this.
    Look(ReplyTo<(u64, u64)>),
    /// The owner changes the value itself.
    Bump,
}

impl Process for Owner {
    type Message = Msg;
    fn started(&mut self, cx: &mut Context<Self>) {
        self.published = Some(cx.publish((0, 0)));
    }
    fn handle(&mut self, msg: Msg, _cx: &mut Context<Self>) {
        let published = self.published.as_ref().unwrap();
        match msg {
            Msg::Reader(reply) => {
                let _ = reply.reply(published.reader());
            }
            Msg::Hold => {
                self.hold.wait();
                self.hold.wait();
            }
            Msg::Look(reply) => {
                let _ = reply.reply(*published.get());
            }
            Msg::Bump => published.update(|&(a, b)| (a + 1, b + 1)),
        }
    }
}

fn start(rt: &Runtime) -> (Pid<Msg>, Shared<(u64, u64)>, Arc<Barrier>) {
    let hold = Arc::new(Barrier::new(2));
    let owner = rt
        .spawn(Owner {
            published: None,
            hold: hold.clone(),
        })
        .unwrap();
    let shared = owner.call(Msg::Reader, Duration::from_secs(5)).unwrap();
    (owner, shared, hold)
}

/// Writes from several threads are all applied, each writer's in order, while
/// readers on other threads never see the two halves differ.
#[test]
fn writes_are_applied_in_order_and_readers_never_see_a_torn_value() {
    within(60, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let (_owner, shared, _) = start(&rt);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (shared, stop) = (shared.clone(), stop.clone());
                thread::spawn(move || {
                    let mut reads = 0u64;
                    let mut last = 0;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let (a, b) = shared.read(|v| *v);
                        assert_eq!(a, b, "a torn value");
                        assert!(a >= last, "a version went back");
                        last = a;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let shared = shared.clone();
                thread::spawn(move || {
                    let mut last = None;
                    for _ in 0..2_000 {
                        last = Some(shared.write(|&(a, b)| (a + 1, b + 1)));
                    }
                    last.unwrap().wait()
                })
            })
            .collect();
        for writer in writers {
            assert_eq!(writer.join().unwrap(), Ok(()));
        }
        // The last write of each writer was applied, so all before it were.
        assert_eq!(*shared.load(), (4_000, 4_000));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for reader in readers {
            assert!(reader.join().unwrap() > 0);
        }
    });
}

/// A message queued before a write is handled after it: writes come first.
#[test]
fn writes_come_ahead_of_ordinary_messages() {
    within(30, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let (owner, shared, hold) = start(&rt);
        owner.send(Msg::Hold).unwrap();
        hold.wait();
        // The owner is busy; queue a look, then a write.
        let look = {
            let owner = owner.clone();
            thread::spawn(move || owner.call(Msg::Look, Duration::from_secs(5)))
        };
        while owner.mailbox_len() == 0 {
            thread::yield_now();
        }
        let write = shared.write(|_| (7, 7));
        hold.wait();
        assert_eq!(write.wait(), Ok(()));
        assert_eq!(look.join().unwrap(), Ok((7, 7)));
    });
}

/// An old version stays valid while held; the owner's own changes are seen at
/// once.
#[test]
fn a_held_version_stays_valid_and_owner_changes_are_seen() {
    within(30, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let (owner, shared, _) = start(&rt);
        let old = shared.load();
        owner.send(Msg::Bump).unwrap();
        assert_eq!(owner.call(Msg::Look, Duration::from_secs(5)), Ok((1, 1)));
        assert_eq!(*shared.load(), (1, 1));
        assert_eq!(*old, (0, 0));
    });
}

/// A write the owner cannot apply in time, or ever, says so.
#[test]
fn a_write_reports_a_busy_or_ended_owner() {
    within(30, || {
        let rt = Builder::default().workers(2).build().unwrap();
        let (owner, shared, hold) = start(&rt);
        owner.send(Msg::Hold).unwrap();
        hold.wait();
        assert_eq!(
            shared.write(|v| *v).wait_timeout(Duration::from_millis(20)),
            Err(WriteError::Timeout)
        );
        hold.wait();
        owner.any().kill();
        while owner.is_alive() {
            thread::yield_now();
        }
        assert_eq!(shared.write(|v| *v).wait(), Err(WriteError::OwnerEnded));
        // Readers keep the last version.
        assert_eq!(*shared.load(), (0, 0));
    });
}

/// A free-running owner applies writes when it receives.
#[test]
fn a_free_running_owner_applies_writes_as_it_receives() {
    within(30, || {
        let rt = Builder::default().workers(1).build().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let owner = rt
            .spawn_fn(move |cx: &mut FnContext<&'static str>| {
                let published = cx.publish(String::from("start"));
                tx.send(published.reader()).unwrap();
                // Writes are applied while it waits here.
                let last = cx.receive();
                format!("{} {last}", published.get())
            })
            .unwrap();
        let shared = rx.recv().unwrap();
        shared.write(|s| format!("{s}+write")).wait().unwrap();
        owner.pid().send("end").unwrap();
        assert_eq!(owner.join().unwrap(), "start+write end");
    });
}

#[test]
fn only_the_owner_sets_its_value() {
    within(30, || {
        let rt = Builder::default().workers(1).build().unwrap();
        let published = rt
            .block_on(|cx| {
                let published = cx.publish(1u8);
                published.set(2);
                Some(published)
            })
            .unwrap();
        assert_eq!(*published.get(), 2);
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| published.set(3)));
        assert!(refused.is_err(), "set outside the owner was accepted");
        assert_eq!(*published.reader().load(), 2);
    });
}
