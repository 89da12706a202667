//! Asynchronous requests as a user sees them: `Pid::send_request`, `Request::wait`
//! and `check`, and `Requests` collections that yield each outcome as it comes;
//! a callee's exit fails its requests at once, and a reply to a request given up
//! is dropped.

mod common;

use std::time::{Duration, Instant};

use common::within;
use fibra::prelude::*;
use fibra::{Builder, Request, Requests};

const MS: Duration = Duration::from_millis(1);
/// A timeout no test should reach.
const LONG: Duration = Duration::from_secs(10);
/// How soon a request must fail when its callee ends.
const PROMPTLY: Duration = Duration::from_secs(1);

fn runtime() -> Runtime {
    common::quiet_panics_on_purpose();
    Builder::default().workers(2).build().expect("runtime")
}

/// What the test server is asked.
enum Req {
    /// Reply with the number plus one.
    Echo(u64, ReplyTo<u64>),
    /// Keep the handle, unanswered.
    Hold(ReplyTo<u64>),
    /// Reply to every held handle with the number; say which replies were taken.
    Release(u64, ReplyTo<Vec<bool>>),
    /// Panic, with the held handles in hand.
    Crash,
}

#[derive(Default)]
struct Server {
    held: Vec<ReplyTo<u64>>,
}

impl Process for Server {
    type Message = Req;

    fn handle(&mut self, msg: Req, _cx: &mut Context<Self>) {
        match msg {
            Req::Echo(n, reply_to) => {
                reply_to.reply(n + 1);
            }
            Req::Hold(reply_to) => self.held.push(reply_to),
            Req::Release(n, reply_to) => {
                let taken = self.held.drain(..).map(|held| held.reply(n)).collect();
                reply_to.reply(taken);
            }
            Req::Crash => panic!("boom with requests held"),
        }
    }
}

#[test]
fn requests_sent_together_are_answered_and_collected_as_they_come() {
    within(30, || {
        let rt = runtime();
        // From a plain thread: held replies come in the order they are released.
        let servers: Vec<_> = (0..3)
            .map(|_| rt.spawn(Server::default()).unwrap())
            .collect();
        let mut requests = Requests::new();
        for (k, server) in servers.iter().enumerate() {
            requests.add(k, server.send_request(Req::Hold));
        }
        assert_eq!(requests.len(), 3);
        for k in [2, 0, 1] {
            let taken = servers[k].call(|r| Req::Release(k as u64 * 10, r), LONG);
            assert_eq!(taken, Ok(vec![true]));
            assert_eq!(requests.wait_any(LONG), Some((k, Ok(k as u64 * 10))));
        }
        assert!(requests.is_empty());
        assert_eq!(requests.wait_any(LONG), None);

        // From a process, many at once.
        let total = rt.block_on(|cx| {
            let server = cx.spawn(Server::default());
            let requests: Vec<Request<u64>> = (0..100)
                .map(|n| server.send_request(move |r| Req::Echo(n, r)))
                .collect();
            requests
                .into_iter()
                .map(|r| r.wait(LONG).unwrap())
                .sum::<u64>()
        });
        assert_eq!(total, (1..=100).sum::<u64>());
    });
}

#[test]
fn a_callee_that_ends_fails_its_requests_at_once_with_its_reason() {
    within(30, || {
        let rt = runtime();
        let server = rt.spawn(Server::default()).unwrap();
        let mut requests = Requests::new();
        requests.add("first", server.send_request(Req::Hold));
        requests.add("second", server.send_request(Req::Hold));
        let held = server.send_request(Req::Hold);
        server.send(Req::Crash).ok();
        let started = Instant::now();
        let failed = |outcome: Option<(&str, Result<u64, CallError>)>| match outcome {
            Some((_, Err(CallError::Exited(Exit::Panicked(message))))) => {
                assert!(message.contains("boom"), "{message}");
            }
            other => panic!("not failed with the panic: {other:?}"),
        };
        failed(requests.wait_any(LONG));
        failed(requests.wait_any(LONG));
        assert!(matches!(
            held.wait(LONG),
            Err(CallError::Exited(Exit::Panicked(_)))
        ));
        assert!(started.elapsed() < PROMPTLY, "failed only at the timeout");

        // To a process that has ended: at once, without a request built.
        let request = server.send_request(|r| Req::Echo(1, r));
        assert_eq!(request.wait(LONG), Err(CallError::Exited(Exit::NoProc)));
    });
}

#[test]
fn a_wait_that_times_out_keeps_a_collection_but_gives_up_a_single_request() {
    within(30, || {
        let rt = runtime();
        let server = rt.spawn(Server::default()).unwrap();
        let mut requests = Requests::new();
        requests.add((), server.send_request(Req::Hold));
        assert_eq!(requests.wait_any(10 * MS), None);
        assert_eq!(requests.check_any(), None);
        assert_eq!(requests.len(), 1, "a timed-out wait lost the request");
        assert_eq!(server.call(|r| Req::Release(5, r), LONG), Ok(vec![true]));
        assert_eq!(requests.wait_any(LONG), Some(((), Ok(5))));

        // A single request waited on past its timeout is given up: its reply is
        // refused, and lands nowhere.
        let request = server.send_request(Req::Hold);
        assert_eq!(request.wait(10 * MS), Err(CallError::Timeout));
        // So is one dropped, and one checked too early is still pending.
        drop(server.send_request(Req::Hold));
        let pending = server.send_request(Req::Hold).check().unwrap_err();
        assert_eq!(
            server.call(|r| Req::Release(6, r), LONG),
            Ok(vec![false, false, true])
        );
        assert_eq!(pending.check().ok(), Some(Ok(6)));
    });
}

#[test]
fn a_process_can_answer_its_own_request() {
    within(30, || {
        let rt = runtime();
        let got = rt.block_on(|cx: &mut FnContext<()>| {
            let me = cx.spawn_fn(|cx: &mut FnContext<ReplyTo<&'static str>>| {
                let request = cx.pid().send_request(|reply| reply);
                cx.receive().reply("to myself");
                request.wait(Duration::ZERO)
            });
            me.join().unwrap()
        });
        assert_eq!(got, Ok("to myself"));
    });
}
