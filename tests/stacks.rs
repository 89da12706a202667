//! Stacks: idle handler processes hold none, and an overflow is reported.

mod common;

use std::process::Command;

use common::within;
use fibra::prelude::*;
use fibra::Builder;

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .count()
}

struct Echo;

impl Process for Echo {
    type Message = Pid<u32>;
    fn handle(&mut self, reply: Pid<u32>, _cx: &mut Context<Self>) {
        let _ = reply.send(1);
    }
}

#[test]
fn idle_handler_processes_hold_no_stack() {
    // More processes than the kernel's default vm.max_map_count (65530) would allow
    // stacks for (two mappings each): every one has run a handler on a stack, and
    // all stay alive.
    let n: usize = 40_000;
    within(120, move || {
        let rt = Builder::default().workers(2).build().unwrap();
        let before = mappings();
        let answered = rt.spawn_fn(move |cx: &mut FnContext<u32>| {
            let pids: Vec<_> = (0..n).map(|_| cx.spawn(Echo)).collect();
            for pid in &pids {
                pid.send(cx.pid()).unwrap();
            }
            let answered: u32 = (0..n).map(|_| cx.receive()).sum();
            // Keep the processes referenced until here.
            drop(pids);
            answered
        });
        let answered = answered.unwrap().join().unwrap();
        assert_eq!(answered as usize, n);
        assert_eq!(rt.processes(), n, "idle handler processes stay alive");
        let added = mappings().saturating_sub(before);
        assert!(
            added < 2_000,
            "{n} idle processes added {added} memory mappings: they kept their stacks"
        );
    });
}

#[test]
fn stack_overflow_names_the_process_and_aborts() {
    if std::env::var_os("FIBRA_OVERFLOW_CHILD").is_some() {
        let rt = Builder::default()
            .workers(1)
            .stack_size(64 * 1024)
            .build()
            .unwrap();
        #[inline(never)]
        fn deep(n: u64) -> u64 {
            let pad = std::hint::black_box([n; 64]);
            if n == 0 {
                0
            } else {
                deep(n - 1) + pad[3]
            }
        }
        rt.block_on(|cx| {
            let child = cx.spawn_fn(|_: &mut FnContext<()>| deep(u64::MAX));
            child.join().ok()
        });
        unreachable!("the overflow must abort the program");
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stack_overflow_names_the_process_and_aborts",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FIBRA_OVERFLOW_CHILD", "1")
        .output()
        .expect("run the child test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child should have aborted");
    assert!(
        stderr.contains("fibra: process <0.2> overflowed its stack of 65536 bytes"),
        "stderr was: {stderr}"
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(libc_sigabrt()),
        "status {:?}",
        out.status
    );
}

fn libc_sigabrt() -> i32 {
    6
}
