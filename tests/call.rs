//! Request and reply as a user sees it: `Pid::call` from processes and threads, its
//! timeout, and the ways a call can fail (no reply, a callee that ends), including
//! replies that come too late.

mod common;

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::{within, DropCounter, Tracked};
use fibra::prelude::*;
use fibra::Builder;

const MS: Duration = Duration::from_millis(1);
/// A timeout no test should reach: a call that fails must fail long before it.
const LONG: Duration = Duration::from_secs(10);
/// How soon a call must fail when it fails for any reason but its timeout.
const PROMPTLY: Duration = Duration::from_secs(1);

#[global_allocator]
static ALLOCATOR: common::CountingAllocator = common::CountingAllocator;

fn runtime() -> Runtime {
    Builder::default().workers(2).build().expect("runtime")
}

/// What the test server is asked.
enum Req {
    /// Reply with the number plus one.
    Echo(u64, ReplyTo<u64>),
    /// The same, after letting the worker run others a few times, so that a caller
    /// on the same worker has to wait for the reply.
    Later(u64, ReplyTo<u64>),
    /// Keep the handle and do not reply.
    Hold(ReplyTo<u64>),
    /// Reply to every held handle with the number; say which replies were taken.
    Release(u64, ReplyTo<Vec<bool>>),
    /// How many handles are held.
    Held(ReplyTo<usize>),
    /// Drop the handle without replying.
    Ignore(ReplyTo<u64>),
    /// Stop the server without replying: the handle is dropped as `handle` returns.
    Quit(#[allow(dead_code)] ReplyTo<u64>),
    /// Panic with the handle in hand.
    Crash(ReplyTo<u64>),
    /// Hand the handle to another process, which replies.
    Forward(ReplyTo<u64>, Pid<ReplyTo<u64>>),
}

/// A handler process that answers [`Req`]s.
#[derive(Default)]
struct Server {
    /// Handles kept by `Hold`.
    held: Vec<ReplyTo<u64>>,
}

impl Process for Server {
    type Message = Req;

    fn handle(&mut self, msg: Req, cx: &mut Context<Self>) {
        match msg {
            Req::Echo(n, reply_to) => {
                reply_to.reply(n + 1);
            }
            Req::Later(n, reply_to) => {
                for _ in 0..3 {
                    cx.yield_now();
                }
                reply_to.reply(n + 1);
            }
            Req::Hold(reply_to) => self.held.push(reply_to),
            Req::Release(n, reply_to) => {
                let taken = self.held.drain(..).map(|held| held.reply(n)).collect();
                reply_to.reply(taken);
            }
            Req::Held(reply_to) => {
                reply_to.reply(self.held.len());
            }
            Req::Ignore(reply_to) => drop(reply_to),
            Req::Quit(_reply_to) => cx.stop(),
            Req::Crash(_reply_to) => panic!("boom while handling a call"),
            Req::Forward(reply_to, helper) => {
                if let Err(undelivered) = helper.send(reply_to) {
                    drop(undelivered.into_inner());
                }
            }
        }
    }
}

/// A request for `n + 1`: answered at once for even numbers, after a few yields of
/// the server for odd ones, so that callers meet both a reply that is there when
/// they first look and one they have to wait for.
fn echo(n: u64) -> impl FnOnce(ReplyTo<u64>) -> Req {
    move |reply_to| match n % 2 {
        0 => Req::Echo(n, reply_to),
        _ => Req::Later(n, reply_to),
    }
}

#[test]
fn a_process_calls_a_handler_and_gets_each_reply() {
    let _serial = common::one_at_a_time();
    within(30, || {
        let rt = runtime();
        let replies = rt.block_on(|cx| {
            let server = cx.spawn(Server::default());
            (0..100)
                .map(|n| server.call(echo(n), LONG))
                .collect::<Vec<_>>()
        });
        assert_eq!(replies, (1..=100).map(Ok).collect::<Vec<_>>());
    });
}

#[test]
fn a_plain_thread_calls_and_blocks_until_the_reply() {
    let _serial = common::one_at_a_time();
    within(30, || {
        let rt = runtime();
        let server = rt.spawn(Server::default()).unwrap();
        for n in 0..100 {
            assert_eq!(server.call(echo(n), LONG), Ok(n + 1));
        }
        // Several threads at once, each with its own replies.
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let server = server.clone();
                thread::spawn(move || {
                    for n in 0..1_000 {
                        let n = t << 32 | n;
                        assert_eq!(server.call(echo(n), LONG), Ok(n + 1));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    });
}

#[test]
fn a_reply_may_come_from_another_process_than_the_callee() {
    let _serial = common::one_at_a_time();
    within(30, || {
        let rt = runtime();
        let got = rt.block_on(|cx| {
            let server = cx.spawn(Server::default());
            let helper = cx.spawn_fn(|cx: &mut FnContext<ReplyTo<u64>>| cx.receive().reply(5));
            let got = server.call(|r| Req::Forward(r, helper.pid()), LONG);
            (got, helper.join().unwrap())
        });
        assert_eq!(got, (Ok(5), true));
    });
}

#[test]
fn a_callee_that_keeps_the_handle_times_out_after_the_timeout_and_not_before() {
    let _serial = common::one_at_a_time();
    within(30, || {
        let rt = runtime();
        let server = rt.spawn(Server::default()).unwrap();
        let timeout = 100 * MS;

        let in_process = rt.block_on({
            let server = server.clone();
            move |_cx| {
                let start = Instant::now();
                (server.call(Req::Hold, timeout), start.elapsed())
            }
        });
        let start = Instant::now();
        let on_thread = (server.call(Req::Hold, timeout), start.elapsed());

        for (got, waited) in [in_process, on_thread] {
            assert_eq!(got, Err(CallError::Timeout));
            assert!(waited >= timeout, "gave up early, after {waited:?}");
            assert!(
                waited < timeout + 2_000 * MS,
                "gave up late, after {waited:?}"
            );
        }
        // Both handles are still held: the timeouts did not come from their drop.
        assert_eq!(server.call(Req::Held, LONG), Ok(2));
    });
}

#[test]
fn a_dropped_reply_handle_fails_the_call_at_once_with_no_reply() {
    let _serial = common::one_at_a_time();
    within(30, || {
        let rt = runtime();
        let server = rt.spawn(Server::default()).unwrap();
        let in_process = rt.block_on({
            let server = server.clone();
            move |_cx| {
                let start = Instant::now();
                (server.call(Req::Ignore, LONG), start.elapsed())
            }
        });
        let start = Instant::now();
        let on_thread = (server.call(Req::Ignore, LONG), start.elapsed());
        for (got, waited) in [in_process, on_thread] {
            assert_eq!(got, Err(CallError::NoReply));
            assert!(waited < PROMPTLY, "took {waited:?}");
        }
        // The server lives on.
        assert_eq!(server.call(|r| Req::Echo(1, r), LONG), Ok(2));
    });
}

#[test]
fn calling_a_process_that_has_ended_fails_at_once_without_building_the_request() {
    let _serial = common::one_at_a_time();
    within(30, || {
        let rt = runtime();
        let never_built = |_: ReplyTo<u64>| -> Req { panic!("built a request for a dead process") };
        // Repeated: `join` returns a moment before the process has told its links and
        // hooks that it ended, and it counts as ended all the same.
        for _ in 0..50 {
            let ended = rt.spawn_fn(|_cx: &mut FnContext<Req>| {}).unwrap();
            let dead = ended.pid();
            ended.join().unwrap();
            let start = Instant::now();
            let got = dead.call(never_built, LONG);
            assert_eq!(got, Err(CallError::Exited(Exit::NoProc)));
            assert!(start.elapsed() < PROMPTLY, "took {:?}", start.elapsed());
        }
        let ended = rt.spawn_fn(|_cx: &mut FnContext<Req>| {}).unwrap();
        let dead = ended.pid();
        ended.join().unwrap();

        let (got, waited) = rt.block_on(move |_cx| {
            let start = Instant::now();
            (dead.call(Req::Hold, LONG), start.elapsed())
        });
        assert_eq!(got, Err(CallError::Exited(Exit::NoProc)));
        assert!(waited < PROMPTLY, "took {waited:?}");
    });
}

#[test]
fn a_callee_that_ends_while_handling_the_request_fails_the_call_with_its_reason() {
    let _serial = common::one_at_a_time();
    within(30, || {
        let rt = runtime();
        let check = |got: Result<u64, CallError>, waited: Duration| {
            match got {
                Err(CallError::Exited(Exit::Panicked(message))) => {
                    assert!(message.contains("boom"), "{message}")
                }
                other => panic!("expected the panic, got {other:?}"),
            }
            assert!(waited < PROMPTLY, "took {waited:?}");
        };

        // Repeated: the handle is dropped while the callee unwinds, a moment before
        // it is seen to have ended, and that moment must not pass for "no reply".
        for _ in 0..20 {
            let server = rt.spawn(Server::default()).unwrap();
            let start = Instant::now();
            check(server.call(Req::Crash, LONG), start.elapsed());

            let (got, waited) = rt.block_on(|cx| {
                let server = cx.spawn(Server::default());
                let start = Instant::now();
                (server.call(Req::Crash, LONG), start.elapsed())
            });
            check(got, waited);
        }

        // The same for a process that ends on purpose with the handle in hand.
        let (got, waited) = rt.block_on(|cx| {
            let callee = cx.spawn_fn(|cx: &mut FnContext<ReplyTo<u64>>| {
                let _reply_to = cx.receive();
                cx.exit(Exit::Stopped)
            });
            let start = Instant::now();
            (callee.pid().call(|r| r, LONG), start.elapsed())
        });
        assert_eq!(got, Err(CallError::Exited(Exit::Stopped)));
        assert!(waited < PROMPTLY, "took {waited:?}");
    });
}

/// What the callee of the ending-callee test receives.
enum Gate {
    /// End now, with whatever is still queued.
    Quit,
    /// A call that is never answered: the handle is dropped with the mailbox.
    Ask(#[allow(dead_code)] ReplyTo<u64>),
}

#[test]
fn a_callee_that_ends_with_the_request_unread_fails_the_call_with_its_exit_reason() {
    let _serial = common::one_at_a_time();
    within(60, || {
        let rt = runtime();
        // The callee ends as soon as it sees `Quit`, which is sent just before the
        // request: the request either waits unread in the mailbox when the callee ends
        // (and is dropped with it) or finds the mailbox closed. Both must report the
        // exit, never "no reply".
        let quitter = || {
            |cx: &mut FnContext<Gate>| {
                cx.receive_matching(|m| matches!(m, Gate::Quit));
            }
        };
        let ask = |callee: &Pid<Gate>| {
            let start = Instant::now();
            let got = callee.call(
                |r| {
                    callee.send(Gate::Quit).ok();
                    Gate::Ask(r)
                },
                LONG,
            );
            assert_eq!(got, Err(CallError::Exited(Exit::Normal)));
            assert!(start.elapsed() < PROMPTLY, "took {:?}", start.elapsed());
        };
        for _ in 0..200 {
            ask(&rt.spawn_fn(quitter()).unwrap().pid());
        }
        rt.block_on(move |cx| {
            for _ in 0..200 {
                ask(&cx.spawn_fn(quitter()).pid());
            }
        });
    });
}

#[test]
fn a_server_that_stops_without_replying_fails_the_call_with_its_exit_reason() {
    let _serial = common::one_at_a_time();
    within(120, || {
        const ROUNDS: usize = 300;
        let rt = runtime();
        let expect_exit = |got: Result<u64, CallError>, waited: Duration, round: usize| {
            // The handle is dropped while the server is still alive, a moment before
            // it exits: that moment must not pass for "no reply".
            assert_eq!(got, Err(CallError::Exited(Exit::Normal)), "round {round}");
            assert!(waited < PROMPTLY, "round {round} took {waited:?}");
        };
        for round in 0..ROUNDS {
            let server = rt.spawn(Server::default()).unwrap();
            let start = Instant::now();
            expect_exit(server.call(Req::Quit, LONG), start.elapsed(), round);
        }
        rt.block_on(move |cx| {
            for round in 0..ROUNDS {
                let server = cx.spawn(Server::default());
                let start = Instant::now();
                expect_exit(server.call(Req::Quit, LONG), start.elapsed(), round);
                // A free-running server that returns with the request in hand.
                let server = cx.spawn_fn(|cx: &mut FnContext<Req>| {
                    let _request = cx.receive();
                });
                let start = Instant::now();
                let got = server.pid().call(Req::Hold, LONG);
                expect_exit(got, start.elapsed(), round);
            }
        });
        // A server that drops the handle and goes on still fails the call at once,
        // with no reply.
        let server = rt.spawn(Server::default()).unwrap();
        for _ in 0..ROUNDS {
            assert_eq!(server.call(Req::Ignore, LONG), Err(CallError::NoReply));
        }
    });
}

/// What the callee of the late-reply test receives.
enum Late {
    /// A call to answer once told to.
    Ask(ReplyTo<Tracked>),
    /// Answer now.
    Go,
}

#[test]
fn a_reply_after_the_timeout_is_dropped_and_never_reaches_the_caller() {
    let _serial = common::one_at_a_time();
    within(30, || {
        let rt = runtime();
        let drops = DropCounter::default();
        let (taken, dropped_at_reply, mailbox, after) = rt.block_on({
            let drops = drops.clone();
            move |cx| {
                // The caller's messages are of the reply's type, so a late reply would
                // have somewhere to land.
                let caller = cx.spawn_fn(move |cx: &mut FnContext<Tracked>| {
                    let callee = cx.spawn_fn(move |cx: &mut FnContext<Late>| {
                        let Late::Ask(reply_to) = cx.receive() else {
                            panic!("asked out of order");
                        };
                        cx.receive_matching(|m| matches!(m, Late::Go));
                        let taken = reply_to.reply(drops.token());
                        (taken, drops.get())
                    });
                    let got = callee.pid().call(Late::Ask, 20 * MS);
                    assert!(matches!(got, Err(CallError::Timeout)));
                    callee.pid().send(Late::Go).ok();
                    let (taken, dropped_at_reply) = callee.join().unwrap();
                    let mailbox = (cx.pid().mailbox_len(), cx.try_receive().is_some());
                    (taken, dropped_at_reply, mailbox)
                });
                let (taken, dropped_at_reply, mailbox) = caller.join().unwrap();
                // The caller's next calls are not disturbed either.
                let server = cx.spawn(Server::default());
                let after = server.call(|r| Req::Echo(41, r), LONG);
                (taken, dropped_at_reply, mailbox, after)
            }
        });
        assert!(!taken, "reply() said the caller took a late reply");
        assert_eq!(
            dropped_at_reply, 1,
            "the late reply was not dropped at once"
        );
        assert_eq!(
            mailbox,
            (0, false),
            "the late reply reached the caller's mailbox"
        );
        assert_eq!(after, Ok(42));

        // The same from a thread, with replies held by a handler process.
        let server = rt.spawn(Server::default()).unwrap();
        assert_eq!(server.call(Req::Hold, 20 * MS), Err(CallError::Timeout));
        assert_eq!(server.call(|r| Req::Release(7, r), LONG), Ok(vec![false]));
        assert_eq!(server.call(|r| Req::Echo(1, r), LONG), Ok(2));
    });
}

#[test]
fn a_caller_killed_while_it_waits_ends_and_its_reply_is_refused() {
    let _serial = common::one_at_a_time();
    within(30, || {
        let rt = runtime();
        let (down, taken, after) = rt.block_on(|cx| {
            let server = cx.spawn(Server::default());
            let caller = cx.spawn_fn({
                let server = server.clone();
                move |_cx: &mut FnContext<()>| server.call(Req::Hold, LONG)
            });
            let monitor = cx.monitor(&caller.pid());
            // Wait until the server holds the caller's handle: the caller is in its call.
            while server.call(Req::Held, LONG) != Ok(1) {
                cx.yield_now();
            }
            caller.pid().any().kill();
            let down = match cx.receive_notice() {
                Notice::Down(down) if down.monitor == monitor => down.reason,
                other => panic!("unexpected {other:?}"),
            };
            let taken = server.call(|r| Req::Release(3, r), LONG);
            let after = server.call(|r| Req::Echo(9, r), LONG);
            (down, taken, after)
        });
        assert_eq!(down, Exit::Killed);
        assert_eq!(taken, Ok(vec![false]));
        assert_eq!(after, Ok(10));
    });
}

#[test]
fn ten_thousand_calls_leave_nothing_behind_on_the_callee() {
    let _serial = common::one_at_a_time();
    within(60, || {
        const CALLS: u64 = 10_000;
        // Every exit hook left on the callee would keep its slot (and itself) alive:
        // over 100 bytes a call. What may move meanwhile is bounded and reached in the
        // warm-up (the timer queue and heap, the allocator's own caches).
        let limit = (CALLS * 24) as isize;
        let rt = runtime();
        let server = rt.spawn(Server::default()).unwrap();
        let calls = |server: &Pid<Req>, n: u64| {
            for i in 0..n {
                assert_eq!(server.call(echo(i), LONG), Ok(i + 1));
            }
        };

        calls(&server, 1_000);
        let before = common::LIVE_BYTES.load(Ordering::SeqCst);
        calls(&server, CALLS);
        let grown = common::LIVE_BYTES.load(Ordering::SeqCst) - before;
        assert!(grown < limit, "calls from a thread kept {grown} bytes");

        let grown = rt.block_on({
            let server = server.clone();
            move |_cx| {
                calls(&server, 1_000);
                let before = common::LIVE_BYTES.load(Ordering::SeqCst);
                calls(&server, CALLS);
                common::LIVE_BYTES.load(Ordering::SeqCst) - before
            }
        });
        assert!(grown < limit, "calls from a process kept {grown} bytes");

        // Calls that fail keep nothing either.
        let before = common::LIVE_BYTES.load(Ordering::SeqCst);
        for _ in 0..CALLS {
            assert_eq!(server.call(Req::Ignore, LONG), Err(CallError::NoReply));
        }
        let grown = common::LIVE_BYTES.load(Ordering::SeqCst) - before;
        assert!(grown < limit, "failed calls kept {grown} bytes");
    });
}

#[test]
fn concurrent_callers_each_get_their_own_replies() {
    let _serial = common::one_at_a_time();
    within(120, || {
        const CALLERS: u64 = 4;
        const CALLS: u64 = 10_000;
        let rt = runtime();
        let totals = rt.block_on(|cx| {
            let server = cx.spawn(Server::default());
            let callers: Vec<_> = (0..CALLERS)
                .map(|c| {
                    let server = server.clone();
                    cx.spawn_fn(move |_cx: &mut FnContext<()>| {
                        let mut total = 0;
                        for i in 0..CALLS {
                            let n = c << 32 | i;
                            match server.call(echo(n), LONG) {
                                Ok(reply) if reply == n + 1 => total += 1,
                                other => panic!("caller {c} call {i}: got {other:?}"),
                            }
                        }
                        total
                    })
                })
                .collect();
            callers
                .into_iter()
                .map(|caller| caller.join().unwrap())
                .collect::<Vec<_>>()
        });
        assert_eq!(totals, vec![CALLS; CALLERS as usize]);
    });
}

#[test]
fn call_errors_say_what_happened() {
    let _serial = common::one_at_a_time();
    let error: Box<dyn std::error::Error> = Box::new(CallError::Exited(Exit::Killed));
    assert_eq!(
        error.to_string(),
        "the called process ended before replying: killed"
    );
    assert!(CallError::Timeout.to_string().contains("timed out"));
    assert!(CallError::NoReply.to_string().contains("without replying"));
}

/// Calls itself when asked, and reports what the call returned.
struct SelfCaller {
    report: std::sync::mpsc::Sender<Result<u64, CallError>>,
}

impl Process for SelfCaller {
    type Message = Req;
    fn handle(&mut self, req: Req, cx: &mut Context<Self>) {
        match req {
            Req::Echo(n, reply) | Req::Later(n, reply) => {
                // Far longer than the test may take: the call must fail at once.
                let got = cx.pid().call(echo(n), Duration::from_secs(3_600));
                let _ = self.report.send(got);
                reply.reply(n + 1);
            }
            _ => unreachable!("the test sends only echoes"),
        }
    }
}

#[test]
fn a_process_that_calls_itself_fails_at_once() {
    within(20, || {
        let rt = runtime();
        let (report, got) = std::sync::mpsc::channel();
        let caller = rt.spawn(SelfCaller { report }).unwrap();
        assert_eq!(caller.call(echo(1), LONG), Ok(2));
        let err = got.recv().unwrap().unwrap_err();
        assert_eq!(err, CallError::CallingSelf);
        assert!(err.to_string().contains("called itself"), "{err}");
        // A free-running process too.
        let got = rt.block_on(|cx| {
            cx.spawn_fn(|cx: &mut FnContext<Req>| {
                cx.pid().call(echo(5), Duration::from_secs(3_600))
            })
            .join()
            .unwrap()
        });
        assert_eq!(got, Err(CallError::CallingSelf));
    });
}
