//! `accept` when the process has no descriptor left: the caller gets the error,
//! and the listener accepts again once descriptors are free. A test binary of
//! its own, because it lowers the descriptor limit of the whole OS process.
#![cfg(not(loom))]

mod common;

use std::fs::File;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use common::{runtime, watchdog};
use fibra_net::TcpListener;

/// Sets the soft descriptor limit, returning the old limits.
fn set_soft_fd_limit(soft: libc::rlim_t) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: getrlimit writes one rlimit through a valid pointer.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let new = libc::rlimit {
        rlim_cur: soft.min(old.rlim_max),
        rlim_max: old.rlim_max,
    };
    // Safety: setrlimit reads one rlimit through a valid pointer.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) }, 0);
    old
}

fn out_of_descriptors(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[test]
fn accept_reports_descriptor_exhaustion_and_recovers() {
    watchdog(30, || {
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Two connections wait in the listener's queue: the kernel completes
        // the handshake without an accept.
        let mut clients: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();

        let old = set_soft_fd_limit(256);
        let mut hog = Vec::new();
        let mut exhausted = false;
        for _ in 0..1_024 {
            match File::open("/dev/null") {
                Ok(file) => hog.push(file),
                Err(err) => {
                    assert!(out_of_descriptors(&err), "{err}");
                    exhausted = true;
                    break;
                }
            }
        }
        assert!(exhausted, "could not exhaust the descriptors");

        let listener = std::sync::Arc::new(listener);
        let accepting = std::sync::Arc::clone(&listener);
        let (failed, waited) = rt.block_on(move |_cx| {
            let start = Instant::now();
            let result = accepting.accept();
            (result.map(|_| ()).unwrap_err(), start.elapsed())
        });
        assert!(out_of_descriptors(&failed), "{failed}");
        assert!(waited < Duration::from_secs(5), "accept took {waited:?}");

        // Free a few descriptors: both queued connections are accepted now.
        hog.truncate(hog.len().saturating_sub(8));
        let accepting = std::sync::Arc::clone(&listener);
        let served = rt.block_on(move |_cx| {
            let mut served = 0;
            for _ in 0..2 {
                let (mut stream, _) = accepting.accept().unwrap();
                stream.write_all(b"ok").unwrap();
                served += 1;
            }
            served
        });
        assert_eq!(served, 2);
        for client in &mut clients {
            let mut reply = [0; 2];
            client.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"ok");
        }

        drop(hog);
        // Safety: setrlimit reads one rlimit through a valid pointer.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
    });
}
