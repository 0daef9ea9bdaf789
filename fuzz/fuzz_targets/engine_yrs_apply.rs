//! The yrs adapter's apply path on bytes that passed our segment checks (so: anything): no
//! panic escapes, no unbounded allocation, and whatever the adapter accepts leaves a document
//! that reads, encodes and reloads. (A rejected payload may leave part of itself behind; the
//! Replica rebuilds the engine from its store after every rejection.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use onefolder_core::{Engine, Op};
use onefolder_engine_yrs::YrsEngine;

fuzz_target!(|data: &[u8]| {
    // The adapter catches yrs panics on purpose; only a panic escaping the adapter is a bug
    // (libfuzzer-sys aborts on those when they unwind out of this closure).
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let mut engine = YrsEngine::new();
    engine.write(&[Op::create("tags", "t"), Op::put("tags", "t", "name", "seed")]).unwrap();
    engine.take_local_changes().unwrap();
    if engine.apply_remote(data).is_ok() {
        // Whatever the adapter accepts leaves a document that reads, encodes and reloads.
        let _ = engine.collection("tags").unwrap();
        let snapshot = engine.snapshot().expect("an accepted change keeps the document encodable");
        let mut copy = YrsEngine::new();
        copy.load_snapshot(&snapshot).unwrap();
    } else {
        let _ = engine.collection("tags");
        let _ = engine.snapshot();
    }
});
