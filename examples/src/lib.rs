//! Runnable examples of OneFolder Sync; this library is empty. Run them with
//! `cargo run -p onefolder-examples --example choose_backend` (or `bench_engines`):
//!
//! - `choose_backend.rs`: open a library with the engine, store and transport picked at run
//!   time by name, as an app's settings screen would;
//! - `bench_engines.rs`: the engine comparison of `cargo xtask bench`, on a small workload, to
//!   adapt to your own data;
//! - `yjs_interop.rs`: the Rust half of `cargo xtask interop` — the yrs engine's delta and
//!   snapshot segments for JavaScript Yjs, and JavaScript Yjs's segments through the engine.
