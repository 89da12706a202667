//! `channel_spsc` and `channel_mpsc`: 10,000,000 `u64`s through a bounded channel of
//! capacity 1,024, from one producer (spsc) or four (mpsc, 2,500,000 each) to one
//! consumer. fibra's `fibra::channel` between processes (`ends=processes`) and
//! between plain threads (`ends=threads`), against crossbeam-channel between threads
//! and tokio's bounded `mpsc` between tasks. The consumer checks the sum of what it
//! got, so a lost or doubled message fails the run.

use std::thread;
use std::time::{Duration, Instant};

use fibra::channel::{mpsc, spsc};
use fibra::{FnContext, Runtime};

/// Messages through the channel in each run.
pub const MESSAGES: u64 = 10_000_000;
/// The channel's capacity.
pub const CAPACITY: usize = 1_024;
/// Producers in `channel_mpsc`.
pub const MPSC_PRODUCERS: u64 = 4;

/// What the consumer must add up to.
const SUM: u64 = MESSAGES * (MESSAGES - 1) / 2;

/// The numbers producer `index` of `producers` sends: an equal share of 0..MESSAGES.
fn share(index: u64, producers: u64) -> std::ops::Range<u64> {
    let each = MESSAGES / producers;
    index * each..(index + 1) * each
}

/// The output line's metric.
pub fn msgs_per_sec(elapsed: Duration) -> String {
    format!(
        "msgs_per_sec={:.0}",
        MESSAGES as f64 / elapsed.as_secs_f64()
    )
}

/// fibra, processes on both ends, on a default runtime.
pub fn fibra_processes(producers: u64) -> Duration {
    let rt = Runtime::builder().build().expect("runtime");
    rt.block_on(move |cx| {
        let started = Instant::now();
        let (tx, rx) = mpsc::bounded::<u64>(CAPACITY);
        let consumer = cx.spawn_fn(move |_: &mut FnContext<()>| rx.iter().sum::<u64>());
        for index in 0..producers {
            let tx = tx.clone();
            cx.spawn_fn(move |_: &mut FnContext<()>| {
                for n in share(index, producers) {
                    tx.send(n).expect("consumer alive");
                }
            });
        }
        drop(tx);
        assert_eq!(consumer.join().expect("consumer"), SUM);
        started.elapsed()
    })
}

/// fibra, one process on each end of a `spsc` channel.
pub fn fibra_spsc_processes() -> Duration {
    let rt = Runtime::builder().build().expect("runtime");
    rt.block_on(move |cx| {
        let started = Instant::now();
        let (tx, rx) = spsc::bounded::<u64>(CAPACITY);
        let consumer = cx.spawn_fn(move |_: &mut FnContext<()>| rx.iter().sum::<u64>());
        cx.spawn_fn(move |_: &mut FnContext<()>| {
            for n in 0..MESSAGES {
                tx.send(n).expect("consumer alive");
            }
        });
        assert_eq!(consumer.join().expect("consumer"), SUM);
        started.elapsed()
    })
}

/// fibra's channels between plain threads.
pub fn fibra_threads(producers: u64) -> Duration {
    let started = Instant::now();
    let (tx, rx) = mpsc::bounded::<u64>(CAPACITY);
    let senders: Vec<_> = (0..producers)
        .map(|index| {
            let tx = tx.clone();
            thread::spawn(move || {
                for n in share(index, producers) {
                    tx.send(n).expect("consumer alive");
                }
            })
        })
        .collect();
    drop(tx);
    assert_eq!(rx.iter().sum::<u64>(), SUM);
    for sender in senders {
        sender.join().expect("producer");
    }
    started.elapsed()
}

/// crossbeam-channel between plain threads.
pub fn crossbeam_threads(producers: u64) -> Duration {
    let started = Instant::now();
    let (tx, rx) = crossbeam_channel::bounded::<u64>(CAPACITY);
    let senders: Vec<_> = (0..producers)
        .map(|index| {
            let tx = tx.clone();
            thread::spawn(move || {
                for n in share(index, producers) {
                    tx.send(n).expect("consumer alive");
                }
            })
        })
        .collect();
    drop(tx);
    assert_eq!(rx.iter().sum::<u64>(), SUM);
    for sender in senders {
        sender.join().expect("producer");
    }
    started.elapsed()
}

/// tokio's bounded `mpsc` between tasks, on a default multi-thread runtime.
pub fn tokio_tasks(producers: u64) -> Duration {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        tokio::spawn(async move {
            let started = Instant::now();
            let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAPACITY);
            let consumer = tokio::spawn(async move {
                let mut sum = 0;
                while let Some(n) = rx.recv().await {
                    sum += n;
                }
                sum
            });
            for index in 0..producers {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for n in share(index, producers) {
                        tx.send(n).await.expect("consumer alive");
                    }
                });
            }
            drop(tx);
            assert_eq!(consumer.await.expect("consumer"), SUM);
            started.elapsed()
        })
        .await
        .expect("driver")
    })
}
