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
    let (tx, rx) = mpsc::bounded::<u64>(CAPACITY);
    between_threads(
        producers,
        tx,
        rx,
        |tx, n| tx.send(n).is_ok(),
        |rx| rx.iter().sum(),
    )
}

/// crossbeam-channel between plain threads.
pub fn crossbeam_threads(producers: u64) -> Duration {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(CAPACITY);
    between_threads(
        producers,
        tx,
        rx,
        |tx, n| tx.send(n).is_ok(),
        |rx| rx.iter().sum(),
    )
}

/// `producers` threads send their shares through `tx` (cloned for each) with
/// `send`, while this thread adds up what `sum` takes from `rx`; the time
/// from the first spawn to the sum.
fn between_threads<S: Clone + Send + 'static, R>(
    producers: u64,
    tx: S,
    rx: R,
    send: fn(&S, u64) -> bool,
    sum: fn(&R) -> u64,
) -> Duration {
    let started = Instant::now();
    let senders: Vec<_> = (0..producers)
        .map(|index| {
            let tx = tx.clone();
            thread::spawn(move || {
                for n in share(index, producers) {
                    assert!(send(&tx, n), "consumer alive");
                }
            })
        })
        .collect();
    drop(tx);
    assert_eq!(sum(&rx), SUM);
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

/// Events published in `broadcast_ring`.
pub const BROADCAST_EVENTS: u64 = 10_000_000;
/// Subscribers in `broadcast_ring`.
pub const BROADCAST_SUBSCRIBERS: usize = 4;
/// Events per batch in `broadcast_ring`.
pub const BROADCAST_BATCH: usize = 64;
/// The ring's (tokio: the channel's) capacity in `broadcast_ring`.
pub const BROADCAST_CAPACITY: usize = 1_024;

/// What a `broadcast_ring` run measured: the time, and the fewest events any
/// subscriber got (tokio's subscribers lose the events they lag behind by).
pub struct BroadcastOutcome {
    /// From the first publish to the last subscriber's last event.
    pub elapsed: Duration,
    /// The fewest events one subscriber received.
    pub delivered: u64,
}

/// The output line's metrics: events that reached every subscriber, per
/// second, and how many some subscriber missed.
pub fn events_per_sec(outcome: BroadcastOutcome) -> String {
    format!(
        "events_per_sec={:.0} missed={}",
        outcome.delivered as f64 / outcome.elapsed.as_secs_f64(),
        BROADCAST_EVENTS - outcome.delivered
    )
}

/// fibra: a publisher process fills batches of 64; four subscriber processes
/// take up to 64 at a time and add them up.
pub fn fibra_broadcast() -> BroadcastOutcome {
    let rt = Runtime::builder().build().expect("runtime");
    rt.block_on(move |cx| {
        let (mut publisher, first) = fibra::channel::broadcast::ring::<u64>(BROADCAST_CAPACITY);
        let mut subscribers = vec![first];
        while subscribers.len() < BROADCAST_SUBSCRIBERS {
            subscribers.push(publisher.subscribe());
        }
        let started = Instant::now();
        let readers: Vec<_> = subscribers
            .into_iter()
            .map(|mut subscriber| {
                cx.spawn_fn(move |_: &mut FnContext<()>| {
                    let (mut count, mut sum) = (0u64, 0u64);
                    while let Ok(events) = subscriber.recv_n(BROADCAST_BATCH) {
                        count += events.len() as u64;
                        sum += events.iter().sum::<u64>();
                    }
                    assert_eq!(sum, BROADCAST_EVENTS * (BROADCAST_EVENTS - 1) / 2);
                    count
                })
            })
            .collect();
        cx.spawn_fn(move |_: &mut FnContext<()>| {
            let mut n = 0;
            while n < BROADCAST_EVENTS {
                let mut batch = publisher.next_n(BROADCAST_BATCH);
                for _ in 0..BROADCAST_BATCH {
                    batch.push(n);
                    n += 1;
                }
            }
        });
        let delivered = readers
            .into_iter()
            .map(|r| r.join().expect("subscriber"))
            .min()
            .expect("subscribers");
        BroadcastOutcome {
            elapsed: started.elapsed(),
            delivered,
        }
    })
}

/// tokio: `tokio::sync::broadcast`, a publisher task yielding after every 64
/// sends; four subscriber tasks, which count what they get and skip what they
/// lagged behind by.
pub fn tokio_broadcast() -> BroadcastOutcome {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        tokio::spawn(async move {
            let (tx, _) = tokio::sync::broadcast::channel::<u64>(BROADCAST_CAPACITY);
            let started = Instant::now();
            let readers: Vec<_> = (0..BROADCAST_SUBSCRIBERS)
                .map(|_| {
                    let mut rx = tx.subscribe();
                    tokio::spawn(async move {
                        let mut count = 0u64;
                        loop {
                            match rx.recv().await {
                                Ok(_) => count += 1,
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                    return count
                                }
                            }
                        }
                    })
                })
                .collect();
            for n in 0..BROADCAST_EVENTS {
                let _ = tx.send(n);
                if (n + 1) % BROADCAST_BATCH as u64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            drop(tx);
            let mut delivered = u64::MAX;
            for reader in readers {
                delivered = delivered.min(reader.await.expect("subscriber"));
            }
            BroadcastOutcome {
                elapsed: started.elapsed(),
                delivered,
            }
        })
        .await
        .expect("driver")
    })
}

/// How long `shared_read` reads.
pub const SHARED_READ_FOR: Duration = Duration::from_secs(1);
/// Reading threads in `shared_read`.
pub const SHARED_READERS: usize = 2;
/// Writes per second the owner applies meanwhile.
pub const SHARED_WRITES_PER_SEC: u64 = 10_000;

/// The `shared_read` line's metrics.
pub fn reads_per_sec((reads, writes): (u64, u64)) -> String {
    format!(
        "reads_per_sec={:.0} writes_applied={writes}",
        reads as f64 / SHARED_READ_FOR.as_secs_f64()
    )
}

/// A handler process owns a published `(u64, u64)`; a thread asks it for
/// 10,000 writes a second (each bumps both halves) while two threads read the
/// value as fast as they can for a second, checking that the halves agree.
/// Returns the reads and the writes applied.
pub fn fibra_shared_read() -> (u64, u64) {
    use fibra::{Context, Process, Published, ReplyTo, Shared};

    struct Owner(Option<Published<(u64, u64)>>);
    impl Process for Owner {
        type Message = ReplyTo<Shared<(u64, u64)>>;
        fn started(&mut self, cx: &mut Context<Self>) {
            self.0 = Some(cx.publish((0, 0)));
        }
        fn handle(&mut self, reply: ReplyTo<Shared<(u64, u64)>>, _cx: &mut Context<Self>) {
            let _ = reply.reply(self.0.as_ref().expect("published").reader());
        }
    }

    let rt = Runtime::builder().build().expect("runtime");
    let owner = rt.spawn(Owner(None)).expect("owner");
    let shared = owner
        .call(|r| r, Duration::from_secs(5))
        .expect("the owner's reader");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..SHARED_READERS)
        .map(|_| {
            let (shared, stop) = (shared.clone(), stop.clone());
            thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for _ in 0..64 {
                        let (a, b) = shared.read(|v| *v);
                        assert_eq!(a, b, "a torn value");
                    }
                    reads += 64;
                }
                reads
            })
        })
        .collect();
    let started = Instant::now();
    let interval = Duration::from_secs(1) / SHARED_WRITES_PER_SEC as u32;
    let mut last = None;
    let mut sent = 0u64;
    while started.elapsed() < SHARED_READ_FOR {
        last = Some(shared.write(|&(a, b)| (a + 1, b + 1)));
        sent += 1;
        let next = started + interval * sent as u32;
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    last.expect("writes")
        .wait()
        .expect("the owner applies writes");
    let (applied, _) = *shared.load();
    assert_eq!(applied, sent);
    (reads, applied)
}
