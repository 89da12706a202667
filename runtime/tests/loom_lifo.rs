//! Loom model of the LIFO slot's owner/thief handshake (`lifo.rs`): every value put
//! in the slot comes out exactly once, by the owner or by a thief, and no two
//! threads ever touch the slot at once (loom's tracked cell fails the model on an
//! overlapping access).
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p fibra-runtime --release --test loom_lifo`
#![cfg(loom)]

use fibra_runtime::lifo::LifoSlot;
use loom::sync::Arc;
use loom::thread;

/// The owner swaps values in and out while a thief steals whatever it finds.
#[test]
fn the_owner_and_a_thief_never_both_take_a_value() {
    loom::model(|| {
        let slot = Arc::new(LifoSlot::new());
        let thief = {
            let slot = slot.clone();
            thread::spawn(move || slot.steal_if(|_: &u32| true))
        };
        let mut out = Vec::new();
        out.extend(slot.replace(Some(1)));
        out.extend(slot.replace(Some(2)));
        out.extend(slot.take());
        out.extend(thief.join().unwrap());
        out.sort_unstable();
        assert_eq!(out, [1, 2], "a value was lost or taken twice");
    });
}

/// A thief that does not want the value leaves it; the owner still has it.
#[test]
fn a_value_the_thief_declines_stays_with_the_owner() {
    loom::model(|| {
        let slot = Arc::new(LifoSlot::new());
        assert_eq!(slot.replace(Some(7u32)), None);
        let thief = {
            let slot = slot.clone();
            thread::spawn(move || slot.steal_if(|v| *v != 7))
        };
        assert_eq!(slot.take(), Some(7));
        assert_eq!(thief.join().unwrap(), None);
    });
}

/// Two thieves and the owner: still each value exactly once.
#[test]
fn two_thieves_and_the_owner() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let slot = Arc::new(LifoSlot::new());
        slot.replace(Some(1u32));
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let slot = slot.clone();
                thread::spawn(move || slot.steal_if(|_| true))
            })
            .collect();
        let mut out: Vec<u32> = slot.replace(Some(2)).into_iter().collect();
        for thief in thieves {
            out.extend(thief.join().unwrap());
        }
        out.extend(slot.take());
        out.sort_unstable();
        assert_eq!(out, [1, 2], "a value was lost or taken twice");
    });
}
