//! Operating-system signals as messages: a process gets SIGHUP and SIGTERM, raised
//! in this test program, as messages, in order. (One test: signals are
//! process-wide, and this file is a program of its own.)

mod common;

use std::time::Duration;

use common::within;
use fibra::prelude::*;
use fibra::Builder;
use signal_hook::consts::signal::{SIGHUP, SIGTERM};

#[test]
fn signals_arrive_as_messages_while_the_forwarding_lives() {
    within(30, || {
        let rt = Builder::default().workers(2).build().expect("runtime");
        let listener = rt
            .spawn_fn(|cx: &mut FnContext<(OsSignal, u32)>| {
                let mut got = Vec::new();
                while got.len() < 2 {
                    match cx.receive_timeout(Duration::from_secs(10)) {
                        Some(msg) => got.push(msg),
                        None => break,
                    }
                }
                got
            })
            .unwrap();
        let signals = rt
            .handle()
            .forward_os_signals(
                &[OsSignal::Hangup, OsSignal::Terminate],
                &listener.pid(),
                |signal| (signal, 7),
            )
            .unwrap();
        assert_eq!(signals.signals(), [OsSignal::Hangup, OsSignal::Terminate]);
        signal_hook::low_level::raise(SIGHUP).unwrap();
        signal_hook::low_level::raise(SIGTERM).unwrap();
        let got = listener.join().unwrap();
        assert_eq!(got, [(OsSignal::Hangup, 7), (OsSignal::Terminate, 7)]);
        // Kept to the end: a signal raised after it is dropped would end this
        // program, as if never caught.
        drop(signals);
    });
}
