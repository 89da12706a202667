//! A process panic is reported through `tracing`, naming the process and carrying
//! the panic message. Its own test binary, because it installs the global
//! subscriber that the worker threads report to.

use std::fmt::Write as _;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

use fibra::prelude::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::Layer;

/// Forwards every error event, formatted as `field=value ...`, to a channel.
struct Errors(Mutex<Sender<String>>);

impl<S: tracing::Subscriber> Layer<S> for Errors {
    fn on_event(&self, event: &tracing::Event<'_>, _cx: LayerContext<'_, S>) {
        if *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        struct Fields(String);
        impl Visit for Fields {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                let _ = write!(self.0, "{}={:?} ", field.name(), value);
            }
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let _ = self.0.lock().unwrap().send(fields.0);
    }
}

fn capture_errors() -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let subscriber = tracing_subscriber::registry().with(Errors(Mutex::new(tx)));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    rx
}

struct Parser;

impl Process for Parser {
    type Message = String;
    fn handle(&mut self, input: String, _cx: &mut Context<Self>) {
        let n: u32 = input
            .parse()
            .unwrap_or_else(|_| panic!("bad input {input:?}"));
        std::hint::black_box(n);
    }
}

#[test]
fn a_panic_is_reported_with_the_process_and_the_message() {
    let errors = capture_errors();
    let rt = Runtime::builder().workers(2).build().unwrap();
    let parser = rt.spawn(Parser).unwrap();
    parser.send("12".to_string()).unwrap();
    parser.send("twelve".to_string()).unwrap();
    let report = errors
        .recv_timeout(Duration::from_secs(20))
        .expect("an error event for the panic");
    assert!(
        report.contains("process panicked: bad input \"twelve\""),
        "report: {report}"
    );
    assert!(
        report.contains(&format!("pid={}", parser.id())),
        "report names the process: {report}"
    );
    // The report comes after the process has ended: sends now fail.
    assert!(parser.send("13".to_string()).is_err());
    // The free-running kind reports the same way.
    let crashing = rt
        .spawn_fn(|_: &mut FnContext<()>| -> () { panic!("free-running failure") })
        .unwrap();
    let id = crashing.id();
    assert!(matches!(crashing.join(), Err(Exit::Panicked(m)) if m == "free-running failure"));
    let report = errors.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(report.contains("free-running failure"), "report: {report}");
    assert!(report.contains(&format!("pid={id}")), "report: {report}");
}
