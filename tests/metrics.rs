//! Runtime metrics as a user sees them: a snapshot whose counters follow what the
//! runtime did, and its Prometheus text.

mod common;

use std::time::Duration;

use common::within;
use fibra::prelude::*;
use fibra::Builder;

#[test]
fn the_snapshot_counts_spawns_exits_activations_and_timers() {
    within(30, || {
        common::quiet_panics_on_purpose();
        let rt = Builder::default().workers(2).build().expect("runtime");
        let before = rt.handle().metrics();
        let normal: Vec<_> = (0..10)
            .map(|_| rt.spawn_fn(|_: &mut FnContext<()>| ()).unwrap())
            .collect();
        for child in normal {
            child.join().unwrap();
        }
        let panicking = rt
            .spawn_fn(|_: &mut FnContext<()>| -> () { panic!("on purpose") })
            .unwrap();
        assert!(panicking.join().is_err());
        let sleeper = rt.spawn_fn(|cx: &mut FnContext<()>| cx.receive()).unwrap();
        sleeper.pid().any().kill();
        assert_eq!(sleeper.join(), Err(Exit::Killed));
        rt.block_on(|cx| cx.sleep(Duration::from_millis(5)));

        let after = rt.handle().metrics();
        assert_eq!(
            after.spawned - before.spawned,
            13,
            "10 + the panicking one + the sleeper + block_on's"
        );
        assert_eq!(after.exited.normal - before.exited.normal, 11);
        assert_eq!(after.exited.panicked - before.exited.panicked, 1);
        assert_eq!(after.exited.killed - before.exited.killed, 1);
        let activations: u64 = after.workers.iter().map(|w| w.activations).sum();
        assert!(activations >= 13, "{activations}");
        assert!(
            after.timers_fired > before.timers_fired,
            "the sleep's timer fired"
        );
        assert_eq!(after.processes, before.processes);

        let text = after.to_prometheus();
        assert!(text.contains("# TYPE fibra_processes gauge"), "{text}");
        assert!(
            text.contains("fibra_processes_exited_total{reason=\"panicked\"}"),
            "{text}"
        );
        assert!(
            text.contains("fibra_worker_activations_total{worker=\"1\"}"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    });
}
