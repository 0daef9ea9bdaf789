//! The yrs adapter's apply path on bytes that passed our segment checks (so: anything): no
//! panic, no unbounded allocation, and the engine stays usable whatever it was fed. (A payload
//! that decodes but fails to integrate may leave part of itself behind; the Replica rebuilds
//! the engine from its store after every rejection.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use onefolder_core::{Engine, Op};
use onefolder_engine_yrs::YrsEngine;

fuzz_target!(|data: &[u8]| {
    let mut engine = YrsEngine::new();
    engine.write(&[Op::create("tags", "t"), Op::put("tags", "t", "name", "seed")]).unwrap();
    engine.take_local_changes().unwrap();
    let _ = engine.apply_remote(data);
    let _ = engine.collection("tags").unwrap();
    let snapshot = engine.snapshot().unwrap();
    let mut copy = YrsEngine::new();
    copy.load_snapshot(&snapshot).unwrap();
});
