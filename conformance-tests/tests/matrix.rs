//! The conformance matrix: every adapter passes its trait checks (`engine::yrs::…`,
//! `store::lmdb::…`, `transport::folder::…`), and every engine × store × transport compiled
//! into this build runs every scenario (`yrs::sqlite::folder::…`). The adapters are listed
//! once, in the conformance crate's `__axes!`; nothing here names one.

/// Trait contracts, per engine.
mod engine {
    onefolder_conformance::for_each_engine!(onefolder_conformance::engine_conformance);
}
/// Trait contracts, per store.
mod store {
    onefolder_conformance::for_each_store!(onefolder_conformance::store_conformance);
}
/// Trait contracts, per transport.
mod transport {
    onefolder_conformance::for_each_transport!(onefolder_conformance::transport_conformance);
}
onefolder_conformance::for_each_combination!(onefolder_conformance::scenario_tests);
