//! fibra and async code, both ways: tokio tasks await `Pid::call_async` and a
//! `JoinHandle`, without blocking a tokio worker; a fibra process awaits a future
//! that a tokio task completes, with `block_on`.

mod common;

use std::time::{Duration, Instant};

use common::within;
use fibra::prelude::*;
use fibra::{block_on, Builder};

const LONG: Duration = Duration::from_secs(10);

fn runtime() -> Runtime {
    common::quiet_panics_on_purpose();
    Builder::default().workers(2).build().expect("runtime")
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio")
}

enum Req {
    Double(u64, ReplyTo<u64>),
    /// Keep the handle; answer it on the next `Release`.
    Hold(ReplyTo<u64>),
    /// Answer the held handle with 7; say whether the caller took it.
    Release(ReplyTo<bool>),
    Crash,
}

#[derive(Default)]
struct Server {
    held: Option<ReplyTo<u64>>,
}

impl Process for Server {
    type Message = Req;
    fn handle(&mut self, msg: Req, _cx: &mut Context<Self>) {
        match msg {
            Req::Double(n, reply) => {
                reply.reply(n * 2);
            }
            Req::Hold(reply) => self.held = Some(reply),
            Req::Release(reply) => {
                let taken = self.held.take().is_some_and(|held| held.reply(7));
                reply.reply(taken);
            }
            Req::Crash => panic!("crashed on purpose"),
        }
    }
}

#[test]
fn tokio_tasks_await_calls_to_a_fibra_process() {
    within(30, || {
        let rt = runtime();
        let server = rt.spawn(Server::default()).unwrap();
        let total = tokio_runtime().block_on(async move {
            let tasks: Vec<_> = (0..100u64)
                .map(|n| {
                    let server = server.clone();
                    tokio::spawn(async move {
                        let mut sum = 0;
                        for k in 0..100 {
                            let m = n * 100 + k;
                            let reply = server.call_async(move |r| Req::Double(m, r), LONG).await;
                            assert_eq!(reply, Ok(m * 2));
                            sum += m * 2;
                        }
                        sum
                    })
                })
                .collect();
            let mut total = 0;
            for task in tasks {
                total += task.await.unwrap();
            }
            total
        });
        assert_eq!(total, (0..10_000u64).map(|m| m * 2).sum::<u64>());
    });
}

#[test]
fn an_awaited_call_times_out_fails_with_its_callee_and_can_be_given_up() {
    within(30, || {
        let rt = runtime();
        let server = rt.spawn(Server::default()).unwrap();
        let tokio = tokio_runtime();
        // Times out at its deadline, and the reply that comes later is refused.
        let started = Instant::now();
        let timed_out = tokio.block_on(server.call_async(Req::Hold, Duration::from_millis(30)));
        assert_eq!(timed_out, Err(CallError::Timeout));
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(server.call(Req::Release, LONG), Ok(false));

        // Given up by dropping the future: the same.
        drop(server.call_async(Req::Hold, LONG));
        assert_eq!(server.call(Req::Release, LONG), Ok(false));

        // A callee that ends fails the call at once, with its reason.
        let pending = server.call_async(Req::Hold, LONG);
        server.send(Req::Crash).ok();
        let started = Instant::now();
        match tokio.block_on(pending) {
            Err(CallError::Exited(Exit::Panicked(message))) => {
                assert!(message.contains("on purpose"))
            }
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        // And one that had ended fails without waiting.
        assert_eq!(
            tokio.block_on(server.call_async(|r| Req::Double(1, r), LONG)),
            Err(CallError::Exited(Exit::NoProc))
        );
    });
}

#[test]
fn a_join_handle_is_a_future() {
    within(30, || {
        let rt = runtime();
        let child = rt
            .spawn_fn(|cx: &mut FnContext<u64>| cx.receive() * 3)
            .unwrap();
        let pid = child.pid();
        let got = tokio_runtime().block_on(async move {
            let waiting = tokio::spawn(async move { child.await });
            pid.send(14).unwrap();
            waiting.await.unwrap()
        });
        assert_eq!(got, Ok(42));
    });
}

#[test]
fn a_process_awaits_a_future_that_a_tokio_task_completes() {
    within(30, || {
        let rt = runtime();
        let tokio = tokio_runtime();
        let (tx, rx) = tokio::sync::oneshot::channel::<&'static str>();
        let waiter = rt
            .spawn_fn(move |_: &mut FnContext<()>| block_on(rx))
            .unwrap();
        tokio.spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send("from tokio").unwrap();
        });
        assert_eq!(waiter.join().unwrap(), Ok("from tokio"));
        // On a plain thread too.
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        tokio.spawn(async move { tx.send(5).unwrap() });
        assert_eq!(block_on(rx), Ok(5));
    });
}

/// Pending once, after waking its task through the waker it was lent.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = &'static str;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<&'static str> {
        if self.0 {
            return std::task::Poll::Ready("polled twice");
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[test]
fn a_future_that_wakes_through_its_borrowed_waker_or_a_clone_completes() {
    within(30, || {
        let rt = runtime();
        let got = rt.block_on(|_cx| {
            let by_ref = block_on(YieldOnce(false));
            // A clone sent to another thread, woken from there.
            let (tx, rx) = std::sync::mpsc::channel::<std::task::Waker>();
            let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let set = std::sync::Arc::clone(&flag);
            let waker_thread = std::thread::spawn(move || {
                let waker = rx.recv().unwrap();
                set.store(true, std::sync::atomic::Ordering::SeqCst);
                waker.wake();
            });
            let mut sent = Some(tx);
            let cloned = block_on(std::future::poll_fn(move |cx| {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    return std::task::Poll::Ready("woken by a clone");
                }
                if let Some(tx) = sent.take() {
                    tx.send(cx.waker().clone()).unwrap();
                }
                std::task::Poll::Pending
            }));
            waker_thread.join().unwrap();
            (by_ref, cloned)
        });
        assert_eq!(got, ("polled twice", "woken by a clone"));
    });
}
