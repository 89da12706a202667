//! Loom models of the reschedule protocol (DESIGN §3, invariants 1, 2, 4, 5 and 6),
//! checking the real `state` module and mailbox under every interleaving.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p fibra-runtime --release --test loom_state`
#![cfg(loom)]

use fibra_mailbox::Mailbox;
use fibra_runtime::state::{Deadline, Rights, StateWord, Suspension, Wait};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

struct Process {
    state: StateWord,
    mailbox: Mailbox<u32>,
    /// How many parties acquired the right to schedule the process.
    scheduled: AtomicUsize,
}

fn process() -> Arc<Process> {
    Arc::new(Process {
        state: StateWord::new_running(),
        mailbox: Mailbox::new(),
        scheduled: AtomicUsize::new(0),
    })
}

fn send(p: &Process, msg: u32) {
    p.mailbox.push(msg).unwrap();
    if p.state.wake_for_message() == Rights::Acquired {
        p.scheduled.fetch_add(1, Ordering::SeqCst);
    }
}

fn suspend(p: &Process) {
    if p.state
        .suspend(Wait::Message, Deadline::None, || p.mailbox.has_new())
        == Suspension::Resumed
    {
        p.scheduled.fetch_add(1, Ordering::SeqCst);
    }
}

/// A thread that sends an event notification, scheduling the process if it wins.
fn spawn_notifier(p: &Arc<Process>) -> thread::JoinHandle<()> {
    let p = p.clone();
    thread::spawn(move || {
        if p.state.notify() == Rights::Acquired {
            p.scheduled.fetch_add(1, Ordering::SeqCst);
        }
    })
}

fn suspend_for_event(p: &Process) {
    if p.state.suspend(Wait::Event, Deadline::None, || false) == Suspension::Resumed {
        p.scheduled.fetch_add(1, Ordering::SeqCst);
    }
}

/// Invariants 1 and 2: a receiver suspending while one message arrives is
/// scheduled exactly once, by the sender or by its own re-check.
#[test]
fn one_sender_against_a_suspending_receiver() {
    loom::model(|| {
        let p = process();
        let sender = {
            let p = p.clone();
            thread::spawn(move || send(&p, 1))
        };
        suspend(&p);
        sender.join().unwrap();
        assert_eq!(
            p.scheduled.load(Ordering::SeqCst),
            1,
            "lost or doubled wake-up"
        );
    });
}

/// Invariant 2 with two senders: still exactly one winner, and the winner finds
/// both messages between it and the next suspension (invariant 4: nothing is given
/// back, the winner always schedules).
#[test]
fn two_senders_against_a_suspending_receiver() {
    loom::model(|| {
        let p = process();
        let senders: Vec<_> = (0..2)
            .map(|i| {
                let p = p.clone();
                thread::spawn(move || send(&p, i))
            })
            .collect();
        suspend(&p);
        for s in senders {
            s.join().unwrap();
        }
        assert_eq!(p.scheduled.load(Ordering::SeqCst), 1);
        // The scheduled process drains its mailbox.
        // Safety: the model is the only consumer.
        let mut got = 0;
        while unsafe { p.mailbox.pop() }.is_some() {
            got += 1;
        }
        assert_eq!(got, 2);
    });
}

/// An event notification racing the suspension of an event wait: exactly one
/// resume, whether the notification comes before (a permit) or after.
#[test]
fn notify_against_an_event_wait() {
    loom::model(|| {
        let p = process();
        let notifier = spawn_notifier(&p);
        suspend_for_event(&p);
        notifier.join().unwrap();
        assert_eq!(p.scheduled.load(Ordering::SeqCst), 1);
    });
}

/// A message never wakes an event wait, and a notification never takes a message
/// wait's rights: the two kinds of waker cannot both win.
#[test]
fn a_message_and_a_notification_against_an_event_wait() {
    loom::model(|| {
        let p = process();
        let sender = {
            let p = p.clone();
            thread::spawn(move || send(&p, 7))
        };
        let notifier = spawn_notifier(&p);
        suspend_for_event(&p);
        sender.join().unwrap();
        notifier.join().unwrap();
        assert_eq!(p.scheduled.load(Ordering::SeqCst), 1);
    });
}

/// A wait for a message or an event (a `select` over the mailbox and
/// channels), raced by a sender and a notifier: whichever comes first wakes it,
/// exactly once, and neither is lost: the process, scheduled, finds the message
/// or had the notification.
#[test]
fn a_message_and_a_notification_against_a_wait_for_either() {
    loom::model(|| {
        let p = process();
        let sender = {
            let p = p.clone();
            thread::spawn(move || send(&p, 7))
        };
        let notifier = spawn_notifier(&p);
        if p.state
            .suspend(Wait::Any, Deadline::None, || p.mailbox.has_new())
            == Suspension::Resumed
        {
            p.scheduled.fetch_add(1, Ordering::SeqCst);
        }
        sender.join().unwrap();
        notifier.join().unwrap();
        assert_eq!(p.scheduled.load(Ordering::SeqCst), 1);
    });
}

/// A wait for either kind with only a message coming: the message wakes it,
/// whether it lands before the wait is published (the re-check) or after.
#[test]
fn a_message_against_a_wait_for_either() {
    loom::model(|| {
        let p = process();
        let sender = {
            let p = p.clone();
            thread::spawn(move || send(&p, 7))
        };
        if p.state
            .suspend(Wait::Any, Deadline::None, || p.mailbox.has_new())
            == Suspension::Resumed
        {
            p.scheduled.fetch_add(1, Ordering::SeqCst);
        }
        sender.join().unwrap();
        assert_eq!(p.scheduled.load(Ordering::SeqCst), 1);
    });
}

/// Invariants 2 and 5 with a deadline: a timed message wait raced by a sender and
/// by its own timer (which may fire before the wait is even published) ends exactly
/// once, and a timer of an older wait never ends it.
#[test]
fn a_sender_and_the_timer_against_a_timed_wait() {
    loom::model(|| {
        let p = process();
        let stale = p.state.begin_timed_wait();
        let seq = p.state.begin_timed_wait();
        let sender = {
            let p = p.clone();
            thread::spawn(move || send(&p, 1))
        };
        let timer = {
            let p = p.clone();
            thread::spawn(move || {
                assert_eq!(p.state.expire(stale), Rights::Failed, "a stale timer won");
                if p.state.expire(seq) == Rights::Acquired {
                    p.scheduled.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        if p.state
            .suspend(Wait::Message, Deadline::Timed, || p.mailbox.has_new())
            == Suspension::Resumed
        {
            p.scheduled.fetch_add(1, Ordering::SeqCst);
        }
        sender.join().unwrap();
        timer.join().unwrap();
        assert_eq!(
            p.scheduled.load(Ordering::SeqCst),
            1,
            "woken twice or never"
        );
    });
}

/// Signals end every wait: a signal pushed while the process publishes an event
/// wait (which messages cannot end) wakes it exactly once, by the signal's sender
/// or by the worker's re-check of the signal queue.
#[test]
fn a_signal_against_an_event_wait() {
    loom::model(|| {
        let p = process();
        let signals = Arc::new(Mailbox::<u8>::new());
        let sender = {
            let (p, signals) = (p.clone(), signals.clone());
            thread::spawn(move || {
                signals.push(9).unwrap();
                if p.state.interrupt() == Rights::Acquired {
                    p.scheduled.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        if p.state
            .suspend(Wait::Event, Deadline::None, || signals.has_new())
            == Suspension::Resumed
        {
            p.scheduled.fetch_add(1, Ordering::SeqCst);
        }
        sender.join().unwrap();
        assert_eq!(
            p.scheduled.load(Ordering::SeqCst),
            1,
            "lost or doubled wake-up"
        );
    });
}

/// A process whose drop is observable from outside it.
struct Freeable {
    state: StateWord,
    mailbox: Mailbox<u32>,
    /// Set by the drop; lives outside the process.
    freed: Arc<AtomicBool>,
}

impl Drop for Freeable {
    fn drop(&mut self) {
        self.freed.store(true, Ordering::SeqCst);
    }
}

/// Invariant 6: a process can be freed while it parks. The worker holds the rights
/// reference and parks the process; a sender that wins the rights adopts that
/// reference, runs the process to its end and drops the last handle. The worker's
/// re-check must never run after that drop (the first build's re-check did: a
/// use-after-free), and exactly one side ends up owning the process.
#[test]
fn a_process_freed_by_its_waker_while_it_parks() {
    loom::model(|| {
        let freed = Arc::new(AtomicBool::new(false));
        let rights = Arc::new(Freeable {
            state: StateWord::new_running(),
            mailbox: Mailbox::new(),
            freed: freed.clone(),
        });
        let pid = rights.clone();
        let sender = thread::spawn(move || {
            pid.mailbox.push(1).unwrap();
            if pid.state.wake_for_message() == Rights::Acquired {
                // The rights reference the parked process left behind.
                // Safety: the worker leaked it with `Arc::into_raw` when it parked,
                // and the CAS above made this thread its one owner.
                let adopted = unsafe { Arc::from_raw(Arc::as_ptr(&pid)) };
                // The process runs to its end: its mailbox is drained, it exits.
                // Safety: the rights make this thread the one consumer.
                while unsafe { adopted.mailbox.pop() }.is_some() {}
                adopted.state.exit();
                drop(adopted);
            }
            // The last handle goes too.
            drop(pid);
        });
        let outcome = rights.state.suspend(Wait::Message, Deadline::None, || {
            assert!(
                !freed.load(Ordering::SeqCst),
                "the worker re-checked a process its waker had freed"
            );
            rights.mailbox.has_new()
        });
        match outcome {
            // Published: the reference belongs to the waker now; not one more access.
            Suspension::Parked => {
                let _ = Arc::into_raw(rights);
            }
            // The worker kept the rights: it runs the process and drops its reference.
            Suspension::Resumed => {
                // Safety: the rights make this thread the one consumer.
                while unsafe { rights.mailbox.pop() }.is_some() {}
                drop(rights);
            }
        }
        sender.join().unwrap();
        assert!(
            freed.load(Ordering::SeqCst),
            "the process leaked or was never run"
        );
    });
}

/// A waker that finds the process still holding its rights (running, or checking
/// before it parks) cannot take them: it leaves a mark or a permit, and the park
/// then fails to publish and runs the process again. A signal and a timer race the
/// same timed event wait.
#[test]
fn wakers_that_find_the_process_running_leave_marks_the_park_sees() {
    loom::model(|| {
        let p = process();
        let seq = p.state.begin_timed_wait();
        let signals = Arc::new(Mailbox::<u8>::new());
        let timer = {
            let p = p.clone();
            thread::spawn(move || {
                if p.state.expire(seq) == Rights::Acquired {
                    p.scheduled.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let signaller = {
            let (p, signals) = (p.clone(), signals.clone());
            thread::spawn(move || {
                signals.push(1).unwrap();
                if p.state.interrupt() == Rights::Acquired {
                    p.scheduled.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        if p.state
            .suspend(Wait::Event, Deadline::Timed, || signals.has_new())
            == Suspension::Resumed
        {
            p.scheduled.fetch_add(1, Ordering::SeqCst);
        }
        timer.join().unwrap();
        signaller.join().unwrap();
        assert_eq!(
            p.scheduled.load(Ordering::SeqCst),
            1,
            "lost or doubled wake-up"
        );
    });
}

/// The mark outlives the message that set it: the receiver takes what has
/// arrived while it runs (the first sender marked it), and the second sender may
/// find the mark already set and do nothing. The park must clear the mark and
/// check again, and find the second message if the receiver did not take it.
#[test]
fn a_mark_left_for_a_message_already_taken_still_wakes_for_the_next() {
    loom::model(|| {
        let p = process();
        let sender = {
            let p = p.clone();
            thread::spawn(move || {
                send(&p, 1);
                send(&p, 2);
            })
        };
        let mut taken = 0;
        // Safety: the model's main thread is the one consumer.
        while unsafe { p.mailbox.pop() }.is_some() {
            taken += 1;
        }
        suspend(&p);
        sender.join().unwrap();
        let scheduled = p.scheduled.load(Ordering::SeqCst);
        assert!(scheduled <= 1, "woken twice");
        assert!(taken == 2 || scheduled == 1, "a message was stranded");
    });
}

/// A message that arrives during an event wait (which it cannot end) is found by
/// the next message wait, whichever thread ends the event wait and runs it.
#[test]
fn a_message_during_an_event_wait_is_found_by_the_next_message_wait() {
    loom::model(|| {
        let p = process();
        let sender = {
            let p = p.clone();
            thread::spawn(move || send(&p, 5))
        };
        let notifier = {
            let p = p.clone();
            thread::spawn(move || {
                if p.state.notify() == Rights::Acquired {
                    // This thread won the event wait: it runs the process on.
                    suspend(&p);
                }
            })
        };
        if p.state.suspend(Wait::Event, Deadline::None, || false) == Suspension::Resumed {
            suspend(&p);
        }
        sender.join().unwrap();
        notifier.join().unwrap();
        assert_eq!(
            p.scheduled.load(Ordering::SeqCst),
            1,
            "the message was stranded, or the process woken twice"
        );
    });
}
