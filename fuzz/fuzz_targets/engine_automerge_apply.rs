//! The automerge adapter's apply path on bytes that passed our segment checks (so: anything): no
//! panic escapes, no unbounded allocation, whatever the adapter accepts leaves a document that
//! reads, and a snapshot is either refused or reloads. (A rejected payload may leave part of
//! itself behind; the Replica rebuilds the engine from its store after every rejection.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use onefolder_core::{Engine, Op};
use onefolder_engine_automerge::AutomergeEngine;

fuzz_target!(|data: &[u8]| {
    // The adapter catches automerge panics on purpose; only a panic escaping the adapter is a bug
    // (libfuzzer-sys aborts on those when they unwind out of this closure).
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let mut engine = AutomergeEngine::new();
    engine.write(&[Op::create("tags", "t"), Op::put("tags", "t", "name", "seed")]).unwrap();
    engine.take_local_changes().unwrap();
    if engine.apply_remote(data).is_ok() {
        let _ = engine.collection("tags").unwrap();
        // A snapshot is either refused (Corrupt) or loadable: never bytes a device cannot
        // reopen from.
        if let Ok(snapshot) = engine.snapshot() {
            let mut copy = AutomergeEngine::new();
            copy.load_snapshot(&snapshot).expect("a snapshot the adapter hands out loads");
        }
    } else {
        let _ = engine.collection("tags");
        let _ = engine.snapshot();
    }
});
