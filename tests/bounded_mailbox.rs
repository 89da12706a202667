//! Bounded mailboxes as users use them: a full mailbox hands the message back,
//! `send_wait` and `send_timeout` wait for room (a process suspends, a thread
//! blocks), a `call` waits within its timeout, waiting senders get their
//! message back when the process ends, and signals never wait for room.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::within;
use fibra::prelude::*;
use fibra::{Builder, CallError, Notice};

fn runtime() -> Runtime {
    Builder::default().workers(2).build().expect("runtime")
}

/// Holds each message until told to go on, recording the most messages it ever
/// saw queued behind the one in hand.
struct Gate {
    capacity: usize,
    open: Arc<Barrier>,
    seen: Seen,
    most_queued: Arc<AtomicUsize>,
}

enum GateMsg {
    Item(u32),
    Wait,
    Ask(ReplyTo<usize>),
}

impl Process for Gate {
    type Message = GateMsg;
    fn mailbox_capacity(&self) -> Option<usize> {
        Some(self.capacity)
    }
    fn handle(&mut self, msg: GateMsg, cx: &mut Context<Self>) {
        let queued = cx.pid().mailbox_len();
        self.most_queued.fetch_max(queued, Ordering::SeqCst);
        match msg {
            GateMsg::Item(n) => self.seen.lock().unwrap().push(n),
            GateMsg::Wait => {
                self.open.wait();
                self.open.wait();
            }
            GateMsg::Ask(reply) => {
                let _ = reply.reply(self.seen.lock().unwrap().len());
            }
        }
    }
}

/// What the gate took, in order.
type Seen = Arc<std::sync::Mutex<Vec<u32>>>;

/// A gate, its barrier, what it took and the most it saw queued.
fn gate(capacity: usize) -> (Gate, Arc<Barrier>, Seen, Arc<AtomicUsize>) {
    let open = Arc::new(Barrier::new(2));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let most = Arc::new(AtomicUsize::new(0));
    (
        Gate {
            capacity,
            open: open.clone(),
            seen: seen.clone(),
            most_queued: most.clone(),
        },
        open,
        seen,
        most,
    )
}

/// Sends the gate a `Wait` and returns once it handles it (the first of its two
/// barrier waits), so that what is queued is what the test sends after it; the
/// gate goes on after one more `open.wait()`.
fn hold(pid: &Pid<GateMsg>, open: &Barrier) {
    pid.send(GateMsg::Wait).unwrap();
    open.wait();
}

#[test]
fn a_full_mailbox_hands_the_message_back() {
    within(30, || {
        let rt = runtime();
        let (process, open, seen, _) = gate(2);
        let pid = rt.spawn(process).unwrap();
        hold(&pid, &open);
        pid.send(GateMsg::Item(1)).unwrap();
        pid.send(GateMsg::Item(2)).unwrap();
        let full = pid.send(GateMsg::Item(3)).unwrap_err();
        assert!(full.is_full());
        assert!(matches!(full.into_inner(), GateMsg::Item(3)));
        assert_eq!(pid.mailbox_len(), 2);
        open.wait();
        // Room again once the process takes messages out.
        let answer = pid.call(GateMsg::Ask, Duration::from_secs(5)).unwrap();
        assert_eq!(answer, 2);
        pid.send(GateMsg::Item(3)).unwrap();
        assert_eq!(pid.call(GateMsg::Ask, Duration::from_secs(5)), Ok(3));
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    });
}

/// Many senders, processes and threads, `send_wait` flat out into a mailbox of
/// four: nothing is lost, each sender's order holds, and the mailbox never holds
/// more than its capacity.
#[test]
fn send_wait_delivers_everything_without_passing_the_bound() {
    within(60, || {
        const EACH: u32 = 50_000;
        let rt = runtime();
        let (process, _open, seen, most) = gate(4);
        let pid = rt.spawn(process).unwrap();
        let mut threads = Vec::new();
        let mut processes = Vec::new();
        for sender in 0..4u32 {
            let pid = pid.clone();
            let work = move || {
                for n in 0..EACH {
                    pid.send_wait(GateMsg::Item(sender * EACH + n)).unwrap();
                }
            };
            if sender % 2 == 0 {
                threads.push(thread::spawn(work));
            } else {
                processes.push(rt.spawn_fn(move |_: &mut FnContext<()>| work()).unwrap());
            }
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        processes.into_iter().for_each(|p| p.join().unwrap());
        assert_eq!(
            pid.call(GateMsg::Ask, Duration::from_secs(10)),
            Ok(4 * EACH as usize)
        );
        let seen = seen.lock().unwrap();
        for sender in 0..4u32 {
            let mine: Vec<u32> = seen
                .iter()
                .copied()
                .filter(|n| n / EACH == sender)
                .collect();
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "sender {sender} out of order"
            );
            assert_eq!(mine.len(), EACH as usize);
        }
        assert!(
            most.load(Ordering::SeqCst) <= 4,
            "{} queued",
            most.load(Ordering::SeqCst)
        );
    });
}

#[test]
fn send_timeout_gives_up_with_the_message() {
    within(30, || {
        let rt = runtime();
        let (process, open, _, _) = gate(1);
        let pid = rt.spawn(process).unwrap();
        hold(&pid, &open);
        pid.send(GateMsg::Item(1)).unwrap();
        let started = Instant::now();
        let back = pid
            .send_timeout(GateMsg::Item(2), Duration::from_millis(30))
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(back.is_full());
        // From inside a process too.
        let pid2 = pid.clone();
        let from_process = rt
            .spawn_fn(move |_: &mut FnContext<()>| {
                pid2.send_timeout(GateMsg::Item(3), Duration::from_millis(30))
                    .map_err(|e| e.is_full())
            })
            .unwrap();
        assert_eq!(from_process.join().unwrap(), Err(true));
        open.wait();
    });
}

/// A call to a process whose mailbox stays full times out; one that gets room
/// in time goes through.
#[test]
fn a_call_waits_for_room_within_its_timeout() {
    within(30, || {
        let rt = runtime();
        let (process, open, _, _) = gate(1);
        let pid = rt.spawn(process).unwrap();
        hold(&pid, &open);
        pid.send(GateMsg::Item(1)).unwrap();
        let started = Instant::now();
        assert_eq!(
            pid.call(GateMsg::Ask, Duration::from_millis(30)),
            Err(CallError::Timeout)
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
        let opener = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            open.wait();
        });
        assert_eq!(pid.call(GateMsg::Ask, Duration::from_secs(5)), Ok(1));
        opener.join().unwrap();
    });
}

/// Senders waiting for room get their messages back when the process ends,
/// and the kill that ends it does not wait behind the full mailbox.
#[test]
fn waiting_senders_get_their_message_back_when_the_process_ends() {
    within(30, || {
        let rt = runtime();
        let (process, open, _, _) = gate(1);
        let pid = rt.spawn(process).unwrap();
        hold(&pid, &open);
        pid.send(GateMsg::Item(1)).unwrap();
        let waiters: Vec<_> = (0..3)
            .map(|n| {
                let pid = pid.clone();
                thread::spawn(move || {
                    pid.send_wait(GateMsg::Item(10 + n))
                        .map_err(|e| e.is_exited())
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(30));
        // The kill ends the gate before its next message, once it is out of
        // its barrier.
        pid.any().kill();
        open.wait();
        for waiter in waiters {
            assert_eq!(waiter.join().unwrap(), Err(true));
        }
        assert!(pid.send(GateMsg::Item(0)).unwrap_err().is_exited());
    });
}

/// A free-running process bounds itself; a down still reaches it while its
/// mailbox is full, and lifting the bound lets a waiting sender go on.
#[test]
fn signals_do_not_wait_for_room_and_a_bound_can_be_lifted() {
    within(30, || {
        let rt = runtime();
        rt.block_on(|cx| {
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (release_tx, release_rx) = fibra::channel::oneshot::channel::<()>();
            let child = cx.spawn_fn(move |cx: &mut FnContext<u32>| {
                cx.set_mailbox_capacity(Some(1));
                // A process that ends when the test says so, watched.
                let watched = cx.spawn_fn(move |_: &mut FnContext<()>| {
                    let _ = release_rx.recv();
                });
                cx.monitor(watched.pid().any());
                ready_tx.send(()).unwrap();
                let notice = cx.receive_notice();
                assert!(matches!(notice, Notice::Down(_)), "{notice:?}");
                cx.set_mailbox_capacity(None);
                let mut got = Vec::new();
                while got.len() < 2 {
                    got.push(cx.receive());
                }
                got
            });
            ready_rx.recv().unwrap();
            child.pid().send(1).unwrap();
            assert!(child.pid().send(2).unwrap_err().is_full());
            let waiter = {
                let pid = child.pid();
                cx.spawn_fn(move |_: &mut FnContext<()>| pid.send_wait(2).is_ok())
            };
            // The down comes through the full mailbox's process at once.
            release_tx.send(()).unwrap();
            assert!(waiter.join().unwrap());
            assert_eq!(child.join().unwrap(), [1, 2]);
        });
    });
}

/// A process that waits to send to its own full mailbox fails at once.
#[test]
fn send_wait_to_ones_own_full_mailbox_fails_at_once() {
    within(30, || {
        let rt = runtime();
        let child = rt
            .spawn_fn(|cx: &mut FnContext<u8>| {
                cx.set_mailbox_capacity(Some(1));
                let me = cx.pid();
                me.send(1).unwrap();
                me.send_wait(2).map_err(|e| e.is_full())
            })
            .unwrap();
        assert_eq!(child.join().unwrap(), Err(true));
    });
}

struct NoRoom;
impl Process for NoRoom {
    type Message = ();
    fn mailbox_capacity(&self) -> Option<usize> {
        Some(0)
    }
    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {}
}

#[test]
#[should_panic(expected = "room for at least one message")]
fn a_capacity_of_zero_is_refused() {
    let rt = runtime();
    let _ = rt.spawn(NoRoom);
}
