//! Channels as users use them: between processes (only the process waits),
//! between plain threads, and across the two; each flavour's end types; the
//! full, empty, timeout and disconnection errors; ends travelling inside
//! messages; `select`; and waiters that are killed.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{within, DropCounter};
use fibra::channel::{
    mpmc, mpsc, oneshot, spsc, RecvError, RecvTimeoutError, Select, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use fibra::prelude::*;
use fibra::Builder;

fn runtime(workers: usize) -> Runtime {
    Builder::default()
        .workers(workers)
        .build()
        .expect("runtime")
}

/// `spsc::bounded(2)`: the third push waits until the consumer pops, and only
/// the pushing process waits: the consumer runs on the same, single worker.
#[test]
fn a_full_channel_suspends_only_the_sending_process() {
    within(30, || {
        let rt = runtime(1);
        rt.block_on(|cx| {
            let (tx, rx) = spsc::bounded::<u32>(2);
            let pushed = Arc::new(AtomicUsize::new(0));
            let producer = {
                let pushed = pushed.clone();
                cx.spawn_fn(move |_: &mut FnContext<()>| {
                    for n in 0..3 {
                        tx.send(n).unwrap();
                        pushed.fetch_add(1, Ordering::SeqCst);
                    }
                })
            };
            // Let the producer run until it waits on the full queue.
            while pushed.load(Ordering::SeqCst) < 2 {
                cx.yield_now();
            }
            for _ in 0..10 {
                cx.yield_now();
            }
            assert_eq!(pushed.load(Ordering::SeqCst), 2, "the third push waits");
            assert_eq!(rx.len(), 2);
            assert_eq!(rx.recv(), Ok(0));
            producer.join().unwrap();
            assert_eq!(pushed.load(Ordering::SeqCst), 3);
            assert_eq!(rx.try_iter().collect::<Vec<_>>(), [1, 2]);
            assert_eq!(rx.recv(), Err(RecvError), "the sender is gone");
        });
    });
}

/// Many producing processes into one receiver: every message arrives once, in
/// each producer's order.
#[test]
fn mpsc_between_processes_keeps_each_producers_order() {
    within(60, || {
        let rt = runtime(2);
        rt.block_on(|cx| {
            const PRODUCERS: u64 = 4;
            const EACH: u64 = 20_000;
            let (tx, rx) = mpsc::bounded::<(u64, u64)>(16);
            for id in 0..PRODUCERS {
                let tx = tx.clone();
                cx.spawn_fn(move |_: &mut FnContext<()>| {
                    for seq in 0..EACH {
                        tx.send((id, seq)).unwrap();
                    }
                });
            }
            drop(tx);
            let mut next = [0u64; PRODUCERS as usize];
            for (id, seq) in rx.iter() {
                assert_eq!(seq, next[id as usize], "producer {id} out of order");
                next[id as usize] += 1;
            }
            assert_eq!(next, [EACH; PRODUCERS as usize]);
        });
    });
}

/// Many receivers, processes and threads mixed: each message goes to exactly
/// one of them.
#[test]
fn mpmc_delivers_each_message_to_exactly_one_receiver() {
    within(60, || {
        const MESSAGES: usize = 50_000;
        let rt = runtime(2);
        let (tx, rx) = mpmc::bounded::<usize>(8);
        let seen: Arc<Vec<AtomicUsize>> = Arc::new((0..MESSAGES).map(|_| 0.into()).collect());
        let count = |rx: fibra::channel::Receiver<usize, fibra::channel::Many>,
                     seen: Arc<Vec<AtomicUsize>>| {
            move || {
                for n in rx.iter() {
                    seen[n].fetch_add(1, Ordering::SeqCst);
                }
            }
        };
        let processes: Vec<_> = (0..2)
            .map(|_| {
                let work = count(rx.clone(), seen.clone());
                rt.handle()
                    .spawn_fn(move |_: &mut FnContext<()>| work())
                    .unwrap()
            })
            .collect();
        let threads: Vec<_> = (0..2)
            .map(|_| thread::spawn(count(rx.clone(), seen.clone())))
            .collect();
        drop(rx);
        let producer = thread::spawn(move || (0..MESSAGES).for_each(|n| tx.send(n).unwrap()));
        producer.join().unwrap();
        for p in processes {
            p.join().unwrap();
        }
        for t in threads {
            t.join().unwrap();
        }
        assert!(seen.iter().all(|n| n.load(Ordering::SeqCst) == 1));
    });
}

/// Plain threads on both ends of a bounded and an unbounded channel.
#[test]
fn channels_work_between_plain_threads() {
    within(30, || {
        for (tx, rx) in [mpsc::bounded::<u64>(4), mpsc::unbounded::<u64>()] {
            let producer = thread::spawn(move || (1..=10_000).for_each(|n| tx.send(n).unwrap()));
            let sum: u64 = rx.iter().sum();
            producer.join().unwrap();
            assert_eq!(sum, 10_000 * 10_001 / 2);
        }
    });
}

#[test]
fn full_empty_and_timeouts_hand_the_message_back() {
    let (tx, rx) = mpsc::bounded::<&str>(1);
    assert_eq!(tx.capacity(), Some(1));
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    tx.try_send("a").unwrap();
    let full = tx.try_send("b").unwrap_err();
    assert!(full.is_full());
    assert_eq!(full.into_inner(), "b");
    let started = Instant::now();
    assert_eq!(
        tx.send_timeout("c", Duration::from_millis(30)),
        Err(SendTimeoutError::Timeout("c"))
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(rx.recv(), Ok("a"));
    let started = Instant::now();
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(30)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(mpsc::unbounded::<u8>().0.capacity(), None);
}

#[test]
fn timeouts_inside_a_process_wait_only_that_long() {
    within(30, || {
        let rt = runtime(1);
        rt.block_on(|_cx| {
            let (tx, rx) = spsc::bounded::<u8>(1);
            let started = Instant::now();
            assert_eq!(
                rx.recv_timeout(Duration::from_millis(20)),
                Err(RecvTimeoutError::Timeout)
            );
            tx.send(1).unwrap();
            assert_eq!(
                tx.send_timeout(2, Duration::from_millis(20)),
                Err(SendTimeoutError::Timeout(2))
            );
            assert!(started.elapsed() >= Duration::from_millis(40));
        });
    });
}

#[test]
#[should_panic(expected = "capacity of at least 1")]
fn a_bounded_channel_of_no_capacity_is_refused() {
    let _ = mpsc::bounded::<u8>(0);
}

/// The receiver keeps getting what was queued after the last sender went, then
/// `Disconnected`; a waiting receiver is woken by the last sender's drop.
#[test]
fn the_last_sender_going_disconnects_after_the_queue_drains() {
    within(30, || {
        let (tx, rx) = mpmc::unbounded::<u8>();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        drop(tx);
        assert_eq!(rx.recv(), Ok(1));
        let waiter = {
            let rx = rx.clone();
            thread::spawn(move || rx.recv())
        };
        thread::sleep(Duration::from_millis(20));
        drop(tx2);
        assert_eq!(waiter.join().unwrap(), Err(RecvError));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(1)),
            Err(RecvTimeoutError::Disconnected)
        );
    });
}

/// Dropping the receiver fails sends (handing the message back), wakes a sender
/// waiting for room, and drops what was queued at once.
#[test]
fn the_receiver_going_fails_sends_and_drops_the_queue() {
    within(30, || {
        let rt = runtime(1);
        let drops = DropCounter::default();
        let (tx, rx) = mpsc::bounded(1);
        tx.send(drops.token()).unwrap();
        let waiting = {
            let (tx, drops) = (tx.clone(), drops.clone());
            rt.handle()
                .spawn_fn(move |_: &mut FnContext<()>| tx.send(drops.token()).map_err(|e| e.0))
                .unwrap()
        };
        // Give the process time to find the queue full and wait.
        thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert_eq!(
            drops.get(),
            1,
            "the queued message is dropped with the receiver"
        );
        let back = waiting.join().unwrap().expect_err("the waiting send fails");
        drop(back);
        assert_eq!(drops.get(), 2);
        assert!(tx.is_closed());
        let SendError(back) = tx.send(drops.token()).unwrap_err();
        drop(back);
        assert_eq!(drops.get(), 3);
    });
}

/// `close` stops sends but lets the receiver drain.
#[test]
fn close_stops_sends_and_keeps_the_queue() {
    let (tx, rx) = mpsc::unbounded();
    tx.send(1).unwrap();
    rx.close();
    assert!(tx.is_closed());
    assert_eq!(tx.try_send(2), Err(TrySendError::Disconnected(2)));
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv(), Err(RecvError));
}

/// Ends travel inside process messages and inside other channels.
#[test]
fn channel_ends_travel_inside_messages_and_channels() {
    within(30, || {
        let rt = runtime(2);
        rt.block_on(|cx| {
            // A process that answers on whatever sender it is handed.
            let server = cx.spawn_fn(|cx: &mut FnContext<fibra::channel::Sender<u32>>| {
                let reply = cx.receive();
                reply.send(42).unwrap();
            });
            let (tx, rx) = mpsc::unbounded();
            server.pid().send(tx).unwrap();
            assert_eq!(rx.recv(), Ok(42));

            // A channel of channels.
            let (outer_tx, outer_rx) = mpsc::unbounded::<oneshot::Sender<&str>>();
            let answerer = cx.spawn_fn(move |_: &mut FnContext<()>| {
                for reply in outer_rx.iter() {
                    reply.send("pong").unwrap();
                }
            });
            for _ in 0..3 {
                let (tx, rx) = oneshot::channel();
                outer_tx.send(tx).unwrap();
                assert_eq!(rx.recv(), Ok("pong"));
            }
            drop(outer_tx);
            answerer.join().unwrap();
        });
    });
}

#[test]
fn oneshot_reports_a_sender_or_receiver_that_went() {
    let (tx, rx) = oneshot::channel::<u8>();
    drop(tx);
    assert_eq!(rx.recv(), Err(RecvError));

    let (tx, rx) = oneshot::channel::<u8>();
    drop(rx);
    assert!(tx.is_closed());
    assert_eq!(tx.send(5).unwrap_err().into_inner(), 5);

    let (tx, mut rx) = oneshot::channel::<u8>();
    assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(10)),
        Err(RecvTimeoutError::Timeout)
    );
    tx.send(9).unwrap();
    assert_eq!(rx.try_recv(), Ok(9));
}

#[derive(Debug, PartialEq)]
enum Event {
    Number(u64),
    Word(&'static str),
    Closed(&'static str),
}

/// A process waits on two channels at once, woken by whichever gets a message.
#[test]
fn select_waits_on_several_channels_in_a_process() {
    within(30, || {
        let rt = runtime(1);
        rt.block_on(|cx| {
            let (numbers_tx, numbers) = mpsc::unbounded::<u64>();
            let (words_tx, words) = mpsc::bounded::<&'static str>(1);
            let feeder = cx.spawn_fn(move |cx: &mut FnContext<()>| {
                cx.sleep(Duration::from_millis(10));
                words_tx.send("hello").unwrap();
                cx.sleep(Duration::from_millis(10));
                numbers_tx.send(7).unwrap();
            });
            // A disconnected channel fires at once, so drop it from later selects.
            let (mut numbers, mut words) = (Some(numbers), Some(words));
            let mut seen = Vec::new();
            while numbers.is_some() || words.is_some() {
                let mut select = Select::new();
                if let Some(numbers) = &numbers {
                    select = select.recv(numbers, |r| {
                        r.map_or(Event::Closed("numbers"), Event::Number)
                    });
                }
                if let Some(words) = &words {
                    select = select.recv(words, |r| r.map_or(Event::Closed("words"), Event::Word));
                }
                let event = select.wait();
                match event {
                    Event::Closed("numbers") => numbers = None,
                    Event::Closed(_) => words = None,
                    _ => {}
                }
                seen.push(event);
            }
            assert_eq!(feeder.join(), Ok(()));
            assert_eq!(seen[0], Event::Word("hello"));
            assert!(seen.contains(&Event::Number(7)), "{seen:?}");
            assert_eq!(seen.len(), 4, "{seen:?}");
        });
    });
}

#[test]
fn select_times_out_and_polls() {
    let (_tx, rx) = mpsc::unbounded::<u8>();
    let started = Instant::now();
    let got = Select::new()
        .recv(&rx, |r| r.ok())
        .wait_timeout(Duration::from_millis(30));
    assert_eq!(got, None);
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(Select::new().recv(&rx, |r| r.ok()).try_select(), None);
    _tx.send(3).unwrap();
    assert_eq!(
        Select::new().recv(&rx, |r| r.ok()).try_select(),
        Some(Some(3))
    );
}

/// A busy channel does not starve another in a select loop.
#[test]
fn select_does_not_starve_a_branch() {
    let (a_tx, a) = mpsc::unbounded::<u8>();
    let (b_tx, b) = mpsc::unbounded::<u8>();
    for _ in 0..100 {
        a_tx.send(0).unwrap();
        b_tx.send(1).unwrap();
    }
    let mut from_b = 0;
    for _ in 0..100 {
        let got = Select::new()
            .recv(&a, |r| r.unwrap())
            .recv(&b, |r| r.unwrap())
            .wait();
        from_b += usize::from(got);
    }
    assert!((20..=80).contains(&from_b), "{from_b} of 100 from b");
}

#[test]
#[should_panic(expected = "no branch")]
fn select_with_no_branch_refuses_to_wait_for_ever() {
    Select::<()>::new().wait();
}

/// A receiver killed while it waits leaves the channel as it found it: the next
/// message goes to the receiver still waiting.
#[test]
fn a_killed_waiter_does_not_take_a_message_with_it() {
    within(30, || {
        let rt = runtime(2);
        let (tx, rx) = mpmc::unbounded::<u32>();
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let rx = rx.clone();
                rt.handle()
                    .spawn_fn(move |_: &mut FnContext<()>| rx.recv())
                    .unwrap()
            })
            .collect();
        // Both wait (the process count includes nothing else).
        thread::sleep(Duration::from_millis(50));
        receivers[0].pid().any().kill();
        let mut receivers = receivers.into_iter();
        let killed = receivers.next().unwrap();
        assert_eq!(killed.join().unwrap_err(), Exit::Killed);
        tx.send(11).unwrap();
        assert_eq!(receivers.next().unwrap().join().unwrap(), Ok(11));
        drop(rx);
    });
}

/// The waiting protocol under load with real threads: producers and consumers,
/// half processes and half plain threads, on two small channels, the consumers
/// switching between `recv_timeout`, `select` over both channels and `recv`,
/// so that waiters time out, leave through another branch and get woken all the
/// time. Every message must arrive exactly once; a lost wake-up shows as a
/// consumer that never finishes, which the watchdog fails.
#[test]
fn stress_mixed_waiters_lose_and_duplicate_nothing() {
    within(120, || {
        const PER_PRODUCER: usize = 250_000;
        const PRODUCERS: usize = 8;
        let rt = runtime(2);
        let (a_tx, a_rx) = mpmc::bounded::<usize>(2);
        let (b_tx, b_rx) = mpmc::bounded::<usize>(3);
        let seen: Arc<Vec<AtomicUsize>> =
            Arc::new((0..PER_PRODUCER * PRODUCERS).map(|_| 0.into()).collect());

        let consume = move |a: fibra::channel::Receiver<usize, fibra::channel::Many>,
                            b: fibra::channel::Receiver<usize, fibra::channel::Many>,
                            seen: Arc<Vec<AtomicUsize>>| {
            move || {
                let (mut a, mut b) = (Some(a), Some(b));
                let mut turn = 0u32;
                while a.is_some() || b.is_some() {
                    turn = turn.wrapping_add(1);
                    // Which channel fired, and what it gave.
                    let got: (bool, Result<usize, RecvError>) = match (&a, &b, turn % 3) {
                        (Some(a), Some(b), 0) => Select::new()
                            .recv(a, |r| (true, r))
                            .recv(b, |r| (false, r))
                            .wait_timeout(Duration::from_millis(1))
                            .unwrap_or((true, Ok(usize::MAX))),
                        (Some(a), _, 1) => match a.recv_timeout(Duration::from_micros(200)) {
                            Ok(n) => (true, Ok(n)),
                            Err(RecvTimeoutError::Timeout) => (true, Ok(usize::MAX)),
                            Err(RecvTimeoutError::Disconnected) => (true, Err(RecvError)),
                        },
                        (Some(a), None, _) => (true, a.recv()),
                        (_, Some(b), _) => (false, b.recv()),
                        (None, None, _) => unreachable!(),
                    };
                    match got {
                        (_, Ok(usize::MAX)) => {}
                        (_, Ok(n)) => {
                            seen[n].fetch_add(1, Ordering::Relaxed);
                        }
                        (true, Err(_)) => a = None,
                        (false, Err(_)) => b = None,
                    }
                }
            }
        };
        let produce =
            |index: usize, a: fibra::channel::Sender<usize>, b: fibra::channel::Sender<usize>| {
                move || {
                    for k in 0..PER_PRODUCER {
                        let n = index * PER_PRODUCER + k;
                        if k % 2 == 0 {
                            a.send(n).unwrap();
                        } else {
                            b.send(n).unwrap();
                        }
                    }
                }
            };

        let mut processes = Vec::new();
        let mut threads = Vec::new();
        for i in 0..4 {
            let work = consume(a_rx.clone(), b_rx.clone(), seen.clone());
            if i % 2 == 0 {
                processes.push(
                    rt.handle()
                        .spawn_fn(move |_: &mut FnContext<()>| work())
                        .unwrap(),
                );
            } else {
                threads.push(thread::spawn(work));
            }
        }
        drop((a_rx, b_rx));
        for index in 0..PRODUCERS {
            let work = produce(index, a_tx.clone(), b_tx.clone());
            if index % 2 == 0 {
                processes.push(
                    rt.handle()
                        .spawn_fn(move |_: &mut FnContext<()>| work())
                        .unwrap(),
                );
            } else {
                threads.push(thread::spawn(work));
            }
        }
        drop((a_tx, b_tx));
        for p in processes {
            p.join().unwrap();
        }
        for t in threads {
            t.join().unwrap();
        }
        let counts: Vec<usize> = seen.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        let wrong = counts.iter().filter(|&&n| n != 1).count();
        assert_eq!(wrong, 0, "{wrong} messages not received exactly once");
    });
}

/// A free-running process waits on its mailbox and a channel at once, on a
/// single worker: a message wakes it, a channel send wakes it, and the timeout
/// ends the wait when neither comes; while it waits, introspection says it
/// waits for either.
#[test]
fn select_waits_on_the_mailbox_and_channels_at_once() {
    within(30, || {
        #[derive(Debug, PartialEq)]
        enum Got {
            Message(&'static str),
            Number(u64),
            Quiet,
        }
        let rt = runtime(1);
        let (tx, numbers) = mpsc::unbounded::<u64>();
        let (ready_tx, ready) = std::sync::mpsc::channel::<()>();
        let worker = rt
            .handle()
            .spawn_fn(move |cx: &mut FnContext<&'static str>| {
                let mut got = Vec::new();
                for _ in 0..3 {
                    ready_tx.send(()).unwrap();
                    let event = Select::new()
                        .receive(cx, Got::Message)
                        .recv(&numbers, |n| n.map_or(Got::Quiet, Got::Number))
                        .wait_timeout(Duration::from_millis(300))
                        .unwrap_or(Got::Quiet);
                    got.push(event);
                }
                got
            })
            .unwrap();
        ready.recv().unwrap();
        // Wait until it is parked in the select, then wake it with a message.
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiting = |pid: &fibra::AnyPid| {
            matches!(
                pid.info().map(|i| i.state),
                Some(fibra::ProcessState::Waiting {
                    on: fibra::WaitingOn::MessageOrEvent,
                    ..
                })
            )
        };
        while !waiting(&worker.pid().any()) {
            assert!(Instant::now() < deadline, "never waited in the select");
            thread::yield_now();
        }
        worker.pid().send("hello").unwrap();
        ready.recv().unwrap();
        while !waiting(&worker.pid().any()) {
            assert!(Instant::now() < deadline, "never waited in the select");
            thread::yield_now();
        }
        tx.send(7).unwrap();
        ready.recv().unwrap();
        let started = Instant::now();
        let got = worker.join().unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(got, [Got::Message("hello"), Got::Number(7), Got::Quiet]);
    });
}
