//! With `Builder::trace_processes`, the events a process emits carry its pid, in
//! every activation, and events outside processes carry none. Its own test
//! binary, because it installs the global subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use fibra::prelude::*;
use fibra::Builder;

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Logs each message it handles.
struct Talker;

impl Process for Talker {
    type Message = u32;
    fn handle(&mut self, n: u32, _cx: &mut Context<Self>) {
        tracing::info!("handling message {n}");
    }
}

#[test]
fn events_in_a_process_carry_its_pid_in_every_activation() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_target(false)
        .init();
    let rt = Builder::default()
        .workers(2)
        .trace_processes(true)
        .build()
        .unwrap();
    let talker = rt.spawn(Talker).unwrap();
    let id = talker.id();
    // Two activations, with an idle wait between them.
    talker.send(1).unwrap();
    rt.block_on(|cx| cx.sleep(std::time::Duration::from_millis(20)));
    talker.send(2).unwrap();
    rt.block_on(|cx| cx.sleep(std::time::Duration::from_millis(20)));
    tracing::info!("outside any process");
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for n in [1, 2] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("handling message {n}")))
            .unwrap_or_else(|| panic!("no event for message {n}: {text}"));
        assert!(line.contains(&format!("process{{pid={id}}}")), "{line}");
    }
    let outside = text
        .lines()
        .find(|l| l.contains("outside any process"))
        .unwrap();
    assert!(!outside.contains("process{"), "{outside}");
}
