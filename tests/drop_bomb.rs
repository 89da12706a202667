//! A message whose destructor panics, still queued when its process ends, does
//! not take the program down: the process ends with its own reason and the
//! runtime goes on. Its own test binary, because the failure it guards against is
//! an abort of the whole OS process.

mod common;

use std::time::Duration;

use common::within;
use fibra::prelude::*;
use fibra::Builder;

/// A message that panics when dropped.
enum Msg {
    /// Ends the receiver.
    Quit,
    /// Panics in its destructor.
    Bomb(Bomb),
}

struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("a message destructor panicked on purpose");
    }
}

/// Spawns a free-running process that waits for `Quit`, leaving every bomb
/// queued, queues a bomb behind the `Quit` (or only a bomb, when `kill`), ends
/// it (with the `Quit`, or a kill), and returns how it ended as a monitor sees it.
fn end_with_a_bomb_queued(rt: &Runtime, kill: bool) -> Exit {
    rt.block_on(move |cx| {
        let victim = cx.spawn_fn(|cx: &mut FnContext<Msg>| {
            // Only a Quit is taken; bombs stay queued.
            let _ = cx.receive_matching(|msg| matches!(msg, Msg::Quit));
        });
        let pid = victim.pid();
        cx.monitor(&pid);
        if kill {
            pid.send(Msg::Bomb(Bomb)).unwrap();
            pid.any().kill();
        } else {
            // Both queued before the process runs again: it takes the Quit and
            // returns with the bomb still in its mailbox.
            pid.send(Msg::Bomb(Bomb)).unwrap();
            pid.send(Msg::Quit).unwrap();
            pid.send(Msg::Bomb(Bomb)).unwrap();
        }
        match cx.receive_notice_timeout(Duration::from_secs(10)) {
            Some(Notice::Down(down)) => down.reason,
            other => panic!("expected a Down, got {other:?}"),
        }
    })
}

/// A process that returns normally with a panicking message still queued ends
/// with its own reason (normal), not with the destructor's panic and not by
/// aborting the program; the runtime keeps working, and other processes are
/// unaffected.
#[test]
fn a_panicking_queued_message_does_not_abort_a_normal_exit() {
    survives_a_bomb(false, Exit::Normal);
}

/// A process killed with a panicking message queued ends with `Exit::Killed`,
/// and the program goes on.
#[test]
fn a_panicking_queued_message_does_not_abort_a_kill() {
    survives_a_bomb(true, Exit::Killed);
}

/// Ends a process with a bomb queued (killed or not), and checks it ended with
/// `expected` while a bystander and new processes carry on.
fn survives_a_bomb(kill: bool, expected: Exit) {
    common::quiet_panics_on_purpose();
    within(60, move || {
        let rt = Builder::default().workers(2).build().unwrap();
        let bystander = rt.spawn_fn(|cx: &mut FnContext<u32>| cx.receive()).unwrap();
        assert_eq!(end_with_a_bomb_queued(&rt, kill), expected);
        bystander.pid().send(5).unwrap();
        assert_eq!(bystander.join(), Ok(5));
        assert_eq!(
            rt.spawn_fn(|_: &mut FnContext<()>| 1).unwrap().join(),
            Ok(1)
        );
    });
}

/// A handler process that stops itself with a panicking message queued behind
/// the current one ends normally, and the program goes on.
#[test]
fn a_handler_stopping_with_a_panicking_message_queued_does_not_abort() {
    common::quiet_panics_on_purpose();
    struct Stopper;
    impl Process for Stopper {
        type Message = Msg;
        fn handle(&mut self, msg: Msg, cx: &mut Context<Self>) {
            if let Msg::Quit = msg {
                cx.stop();
            }
        }
    }
    within(60, || {
        let rt = Builder::default().workers(1).build().unwrap();
        let reason = rt.block_on(|cx| {
            let pid = cx.spawn(Stopper);
            cx.monitor(&pid);
            // One worker, and this process does not suspend in between: both are
            // queued before the handler runs.
            pid.send(Msg::Quit).unwrap();
            pid.send(Msg::Bomb(Bomb)).unwrap();
            match cx.receive_notice_timeout(Duration::from_secs(10)) {
                Some(Notice::Down(down)) => down.reason,
                other => panic!("expected a Down, got {other:?}"),
            }
        });
        assert_eq!(reason, Exit::Normal);
        assert_eq!(
            rt.spawn_fn(|_: &mut FnContext<()>| 1).unwrap().join(),
            Ok(1)
        );
    });
}
