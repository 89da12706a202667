//! Helpers shared by the test binaries.
#![allow(dead_code)]

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use fibra_runtime::Runtime;

/// Runs `body` on its own thread and fails the test if it has not finished
/// within `secs` seconds, so a lost wake-up shows as a failure instead of a hang.
/// A panic in `body` fails the test with its message.
pub fn watchdog<T, F>(secs: u64, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done, finished) = mpsc::channel();
    let worker = thread::Builder::new()
        .name("test-body".to_owned())
        .spawn(move || {
            let value = body();
            let _ = done.send(());
            value
        })
        .expect("spawn the test body");
    match finished.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the test did not finish in {secs} s"),
    }
}

/// A small runtime for one test.
pub fn runtime() -> Runtime {
    Runtime::builder()
        .workers(2)
        .stack_size(128 * 1024)
        .build()
        .expect("build a runtime")
}

/// Raises the soft limit on open descriptors to at least `wanted` (as far as the
/// hard limit allows).
pub fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur >= wanted as libc::rlim_t {
        return;
    }
    limit.rlim_cur = (wanted as libc::rlim_t).min(limit.rlim_max);
    // Safety: setrlimit reads one rlimit through a valid pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
}

/// A TCP connection over loopback, as (client end, server end). Works inside a
/// process and on a plain thread alike.
pub fn connected_pair() -> (fibra_net::TcpStream, fibra_net::TcpStream) {
    let listener = fibra_net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let client =
        fibra_net::TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    (client, server)
}
