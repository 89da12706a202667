//! The reschedule protocol under load, with real threads: 10,000 processes (half
//! handler, half free-running) forward 5,000,000 messages in total across all
//! workers, with work stealing and senders outside the runtime. Every message must
//! be delivered exactly once and no process may be stranded (a lost wake-up shows
//! as a token that never arrives, and the watchdog fails the test).

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::within;
use fibra::prelude::*;
use fibra::Builder;

const PROCESSES: usize = 10_000;
const TOKENS: u32 = 50_000;
const HOPS: u32 = 100;

#[derive(Debug)]
enum Msg {
    /// The addresses of every forwarder, sent once before any token.
    Init(Arc<Vec<Pid<Msg>>>, Pid<u32>),
    /// A token with the hops it still has to travel.
    Token { id: u32, hops_left: u32 },
    /// Ends a free-running forwarder.
    Stop,
}

/// Where a forwarder sends a token next: a cheap hash of the token and its hop.
fn next_hop(id: u32, hops_left: u32) -> usize {
    let x = (u64::from(id) << 32 | u64::from(hops_left)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 33) as usize % PROCESSES
}

/// Forwards one hop; returns the message count to add.
fn forward(all: &[Pid<Msg>], done: &Pid<u32>, id: u32, hops_left: u32, sent: &AtomicU64) {
    sent.fetch_add(1, Ordering::Relaxed);
    if hops_left == 0 {
        done.send(id).expect("collector alive");
    } else {
        all[next_hop(id, hops_left)]
            .send(Msg::Token {
                id,
                hops_left: hops_left - 1,
            })
            .expect("forwarder alive");
    }
}

/// Every forwarder's address, and the collector's.
type Routes = (Arc<Vec<Pid<Msg>>>, Pid<u32>);

struct Forwarder {
    routes: Option<Routes>,
    sent: Arc<AtomicU64>,
}

impl Process for Forwarder {
    type Message = Msg;
    fn handle(&mut self, msg: Msg, _cx: &mut Context<Self>) {
        match msg {
            Msg::Init(all, done) => self.routes = Some((all, done)),
            Msg::Token { id, hops_left } => {
                let (all, done) = self.routes.as_ref().expect("init comes first");
                forward(all, done, id, hops_left, &self.sent);
            }
            Msg::Stop => {}
        }
    }
}

#[test]
fn every_message_is_delivered_exactly_once_and_no_process_is_stranded() {
    within(600, || {
        // More workers than cores, so workers are preempted mid-protocol too.
        let rt = Builder::default().workers(4).build().unwrap();
        let sent = Arc::new(AtomicU64::new(0));

        let collector = rt
            .spawn_fn(|cx: &mut FnContext<u32>| {
                let mut seen = vec![false; TOKENS as usize];
                for _ in 0..TOKENS {
                    let id = cx.receive() as usize;
                    assert!(!seen[id], "token {id} arrived twice");
                    seen[id] = true;
                }
                seen.iter().all(|&s| s)
            })
            .unwrap();

        let mut free_running = Vec::new();
        let mut all = Vec::with_capacity(PROCESSES);
        for i in 0..PROCESSES {
            if i % 2 == 0 {
                all.push(
                    rt.spawn(Forwarder {
                        routes: None,
                        sent: sent.clone(),
                    })
                    .unwrap(),
                );
            } else {
                let sent = sent.clone();
                let handle = rt
                    .spawn_fn(move |cx: &mut FnContext<Msg>| {
                        let Msg::Init(all, done) = cx.receive() else {
                            panic!("init comes first")
                        };
                        loop {
                            match cx.receive() {
                                Msg::Token { id, hops_left } => {
                                    forward(&all, &done, id, hops_left, &sent)
                                }
                                Msg::Stop => return,
                                Msg::Init(..) => panic!("init twice"),
                            }
                        }
                    })
                    .unwrap();
                all.push(handle.pid());
                free_running.push(handle);
            }
        }
        let all = Arc::new(all);
        for pid in all.iter() {
            pid.send(Msg::Init(all.clone(), collector.pid())).unwrap();
        }

        // Two plain threads inject the tokens from outside the runtime.
        let injectors: Vec<_> = (0..2u32)
            .map(|t| {
                let all = all.clone();
                std::thread::spawn(move || {
                    for id in (t..TOKENS).step_by(2) {
                        all[next_hop(id, HOPS + 1)]
                            .send(Msg::Token {
                                id,
                                hops_left: HOPS - 1,
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for injector in injectors {
            injector.join().unwrap();
        }

        assert!(collector.join().unwrap(), "every token arrived");
        assert_eq!(
            sent.load(Ordering::Relaxed),
            u64::from(TOKENS) * u64::from(HOPS),
            "every hop handled exactly once"
        );
        for pid in all.iter() {
            let _ = pid.send(Msg::Stop);
        }
        for handle in free_running {
            handle.join().unwrap();
        }
    });
}

/// 100,000 timed waits raced against messages sent to land near their deadlines:
/// every wait ends exactly once (a double wake-up would resume one stack on two
/// workers), every message is received exactly once whether it beat its deadline
/// or not, and both outcomes happen often.
#[test]
fn timed_waits_race_messages_near_their_deadlines() {
    const PAIRS: u32 = 500;
    const ROUNDS: u32 = 200;
    let wait = std::time::Duration::from_micros(400);
    let (in_time, timed_out) = within(600, move || {
        let rt = Builder::default().workers(4).build().unwrap();
        let results: Vec<_> = (0..PAIRS)
            .map(|pair| {
                let waiter = rt
                    .spawn_fn(move |cx: &mut FnContext<u32>| {
                        let mut seen = vec![0u8; ROUNDS as usize];
                        let (mut in_time, mut timed_out) = (0u64, 0u64);
                        for _ in 0..ROUNDS {
                            match cx.receive_timeout(wait) {
                                Some(tag) => {
                                    seen[tag as usize] += 1;
                                    in_time += 1;
                                }
                                None => timed_out += 1,
                            }
                        }
                        // Late messages are still in the mailbox: none may be lost.
                        let mut late = 0;
                        while seen.contains(&0) {
                            let tag = cx
                                .receive_timeout(std::time::Duration::from_secs(30))
                                .expect("a message was lost");
                            seen[tag as usize] += 1;
                            late += 1;
                        }
                        assert!(seen.iter().all(|&n| n == 1), "a message arrived twice");
                        assert_eq!(cx.try_receive(), None, "more messages than were sent");
                        assert_eq!(in_time + late, u64::from(ROUNDS));
                        (in_time, timed_out)
                    })
                    .unwrap();
                let to = waiter.pid();
                rt.spawn_fn(move |cx: &mut FnContext<()>| {
                    // Land each message within +-25% of the waiter's deadline.
                    let mut x = u64::from(pair) * 2_654_435_761 + 1;
                    for tag in 0..ROUNDS {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let jitter = (x % 200) as u32; // 0..200 µs
                        cx.sleep(std::time::Duration::from_micros(300 + u64::from(jitter)));
                        to.send(tag).unwrap();
                    }
                })
                .unwrap();
                waiter
            })
            .collect();
        results
            .into_iter()
            .map(|w| w.join().unwrap())
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    });
    assert_eq!(in_time + timed_out, u64::from(PAIRS * ROUNDS));
    assert!(in_time > 1_000, "only {in_time} waits ended with a message");
    assert!(timed_out > 1_000, "only {timed_out} waits timed out");
}
