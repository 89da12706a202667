//! A small supervision tree. Three workers take jobs and report them to a store;
//! now and then a worker hits bad input and crashes, and its supervisor starts a
//! fresh one after a short backoff. The store and the workers are reached by name,
//! so nobody needs to know which incarnation they talk to.
//!
//! ```text
//! root (rest-for-one)
//! ├── store      handler, named "store"
//! ├── workers    supervisor (one-for-one, exponential backoff)
//! │   ├── worker-1
//! │   ├── worker-2
//! │   └── worker-3
//! └── reporter   prints progress twice a second
//! ```
//!
//! Run it with `cargo run --release --example supervised`; it stops itself after
//! three seconds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fibra::prelude::*;
use fibra::ChildInfo;

/// How long the tree runs.
const RUN_FOR: Duration = Duration::from_secs(3);

/// One job in this many is bad input that crashes the worker.
const BAD_INPUT_EVERY: u64 = 30;

/// What the store takes.
enum StoreMsg {
    /// A worker finished a job.
    Done(&'static str),
    /// Reply with the jobs done so far, by worker.
    Tally(ReplyTo<BTreeMap<&'static str, u64>>),
}

/// Counts finished jobs.
#[derive(Default)]
struct Store {
    done: BTreeMap<&'static str, u64>,
}

impl Process for Store {
    type Message = StoreMsg;

    fn handle(&mut self, msg: StoreMsg, _cx: &mut Context<Self>) {
        match msg {
            StoreMsg::Done(worker) => *self.done.entry(worker).or_default() += 1,
            StoreMsg::Tally(reply_to) => {
                reply_to.reply(self.done.clone());
            }
        }
    }
}

/// A worker incarnation: takes a job every few milliseconds, crashes on bad input.
fn worker(name: &'static str) -> impl FnOnce(&mut FnContext<()>) {
    let mut rng = Rng::seeded();
    move |cx: &mut FnContext<()>| {
        let store = cx.runtime();
        for job in 1.. {
            cx.sleep(Duration::from_millis(5 + rng.below(20)));
            if rng.below(BAD_INPUT_EVERY) == 0 {
                panic!("{name} choked on job {job}");
            }
            // The store is between incarnations only if it crashed; the job is lost
            // then, as work in flight is in any crash.
            let _ = store.send_named("store", StoreMsg::Done(name));
        }
    }
}

/// Prints the tally twice a second.
fn reporter(cx: &mut FnContext<()>) {
    let handle = cx.runtime();
    loop {
        cx.sleep(Duration::from_millis(500));
        let Some(store) = handle.whereis::<StoreMsg>("store") else {
            continue;
        };
        if let Ok(done) = store.call(StoreMsg::Tally, Duration::from_secs(1)) {
            let total: u64 = done.values().sum();
            println!("progress: {total} jobs done {done:?}");
        }
    }
}

/// A small xorshift generator, seeded from the clock.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        Rng(u64::from(nanos) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Prints a supervisor's children, and theirs.
fn print_tree(children: &[ChildInfo], depth: usize) {
    for child in children {
        let pid = child
            .pid()
            .map_or("down".to_owned(), |p| p.id().to_string());
        println!(
            "{:indent$}{} {pid}, restarted {} times",
            "",
            child.id(),
            child.restarts(),
            indent = 2 * depth + 2
        );
        if let Some(sup) = child.supervisor() {
            if let Ok(grandchildren) = sup.children(Duration::from_secs(1)) {
                print_tree(&grandchildren, depth + 1);
            }
        }
    }
}

fn main() {
    // Restarts and crashes are reported through `tracing`; print those reports
    // instead of the default panic hook's messages for the crashes we cause.
    tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter("fibra_runtime::supervisor=info")
        .init();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.contains("-worker-"))
        {
            return;
        }
        default_hook(info);
    }));

    let workers = Supervisor::new(Strategy::OneForOne)
        // A worker that keeps going for half a second has its backoff reset.
        .intensity(10, Duration::from_millis(500))
        .backoff(Backoff::Exponential {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(200),
        })
        .children(
            ["worker-1", "worker-2", "worker-3"]
                .map(|name| ChildSpec::free(name, move || worker(name)).name(name)),
        );
    let root = Supervisor::new(Strategy::RestForOne)
        .child(ChildSpec::handler("store", Store::default).name("store"))
        .child(ChildSpec::supervisor("workers", workers))
        .child(ChildSpec::free("reporter", || reporter));

    let rt = Runtime::new().expect("start the runtime");
    let started = Instant::now();
    let root = rt.spawn_supervisor(root).expect("spawn the tree");
    std::thread::sleep(RUN_FOR);

    println!("after {:?}, the tree is:", started.elapsed());
    if let Ok(children) = root.children(Duration::from_secs(1)) {
        print_tree(&children, 0);
    }
    let tally = rt
        .handle()
        .whereis::<StoreMsg>("store")
        .and_then(|store| store.call(StoreMsg::Tally, Duration::from_secs(1)).ok())
        .unwrap_or_default();

    let reason = rt.block_on(move |cx| {
        let monitor = cx.monitor(&root);
        root.stop();
        loop {
            if let Notice::Down(down) = cx.receive_notice() {
                if down.monitor == monitor {
                    return down.reason;
                }
            }
        }
    });
    println!(
        "the tree shut down ({reason}); {} jobs done in all",
        tally.values().sum::<u64>()
    );
}
