//! A process panic is reported through `tracing`, naming the process and carrying
//! the panic message; so is a process that holds its worker far too long, and a
//! supervisor's reports name it. Its own
//! test binary, because it installs the global subscriber that the worker threads
//! report to.

use std::fmt::Write as _;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::time::Duration;

use fibra::prelude::*;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::Layer;

/// Forwards every error and warning event, formatted as `LEVEL field=value ...`,
/// to a channel.
struct Errors(Mutex<Sender<String>>);

impl<S: tracing::Subscriber> Layer<S> for Errors {
    fn on_event(&self, event: &tracing::Event<'_>, _cx: LayerContext<'_, S>) {
        let level = *event.metadata().level();
        if level != tracing::Level::ERROR && level != tracing::Level::WARN {
            return;
        }
        struct Fields(String);
        impl Visit for Fields {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                let _ = write!(self.0, "{}={:?} ", field.name(), value);
            }
        }
        let mut fields = Fields(format!("{level} "));
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

/// Panics that reached the hook installed before the runtime.
static STD_REPORTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn a_panic_is_reported_with_the_process_and_the_message() {
    let errors = capture_errors();
    // Stands in for std's hook: counts what it is asked to report.
    std::panic::set_hook(Box::new(|_| {
        STD_REPORTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let parser = rt.spawn(Parser).unwrap();
    parser.send("12".to_string()).unwrap();
    parser.send("twelve".to_string()).unwrap();
    let report = next(&errors, "ERROR");
    assert!(
        report.contains("process panicked: bad input \"twelve\""),
        "report: {report}"
    );
    assert!(
        report.contains(&format!("pid={}", parser.id())),
        "report names the process: {report}"
    );
    assert!(
        report.contains("location=\"tests/tracing_reports.rs:"),
        "report says where: {report}"
    );
    // The report comes after the process has ended: sends now fail.
    assert!(parser.send("13".to_string()).is_err());
    // The free-running kind reports the same way.
    let crashing = rt
        .spawn_fn(|_: &mut FnContext<()>| -> () { panic!("free-running failure") })
        .unwrap();
    let id = crashing.id();
    assert!(matches!(crashing.join(), Err(Exit::Panicked(m)) if m == "free-running failure"));
    let report = next(&errors, "ERROR");
    assert!(report.contains("free-running failure"), "report: {report}");
    assert!(report.contains(&format!("pid={id}")), "report: {report}");
    // One report per panic: the previous hook heard of neither, but still hears
    // of a panic outside any process.
    assert_eq!(STD_REPORTS.load(std::sync::atomic::Ordering::SeqCst), 0);
    let _ = std::thread::spawn(|| panic!("outside any process")).join();
    assert_eq!(STD_REPORTS.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A process that blocks its worker (a blocking call made by mistake) is
    // reported once, by name, while it blocks.
    let (done, finished) = mpsc::channel();
    let sleepy = rt.handle().spawn_named("sleepy", Sleepy { done }).unwrap();
    sleepy.send(()).unwrap();
    // (A debug build's panic reports above may have held a worker long enough
    // to be reported too: those are skipped.)
    let report = loop {
        let report = next(&errors, "WARN");
        if report.contains("name=\"sleepy\"") {
            break report;
        }
    };
    assert!(
        report.contains(&format!("pid={}", sleepy.id())),
        "report: {report}"
    );
    // While it still blocks: it has not finished.
    assert!(
        finished.try_recv().is_err(),
        "reported only after it was done"
    );
    finished.recv_timeout(Duration::from_secs(20)).unwrap();
    // A supervisor's reports name it by its registered name.
    let sup = Supervisor::new(Strategy::OneForOne)
        .name("top")
        .child(ChildSpec::handler("parser", || Parser))
        .spawn(&rt.handle())
        .unwrap();
    let child = sup
        .which_child("parser", Duration::from_secs(20))
        .unwrap()
        .address::<String>()
        .unwrap();
    child.send("not a number".to_string()).unwrap();
    let report = loop {
        let report = next(&errors, "WARN");
        if report.contains("child failed") {
            break report;
        }
    };
    assert!(
        report.contains(&format!("supervisor=top {}", sup.id())),
        "report: {report}"
    );
    let again = errors.recv_timeout(Duration::from_millis(100));
    assert!(
        !again.as_deref().is_ok_and(|r| r.contains("sleepy")),
        "reported twice: {again:?}"
    );
}

/// The next event of `level`, skipping others; fails after 20 s.
fn next(events: &Receiver<String>, level: &str) -> String {
    loop {
        let event = events
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no {level} event"));
        if event.starts_with(level) {
            return event;
        }
    }
}

/// Blocks its worker's thread for 300 ms on its first message.
struct Sleepy {
    done: Sender<()>,
}

impl Process for Sleepy {
    type Message = ();
    fn handle(&mut self, _: (), _cx: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.done.send(());
    }
}
