//! # onefolder-conformance
//!
//! One suite, written once, that every combination of engine × store × transport must pass.
//!
//! - [`EngineFactory`], [`StoreFactory`] and [`TransportFactory`] make one adapter each; the
//!   adapters available in this build implement them in [`factories`].
//! - [`Cluster`] runs N devices of one combination on one shared medium.
//! - [`engine_checks`], [`store_checks`] and [`transport_checks`] check each adapter's trait
//!   contract, one function per `# Behavior` bullet, instantiated per adapter by
//!   [`engine_conformance!`], [`store_conformance!`] and [`transport_conformance!`].
//! - [`scenarios`] holds the end-to-end checks, plain `async fn`s generic over a combination.
//! - [`for_each_engine!`], [`for_each_store!`], [`for_each_transport!`] and
//!   [`for_each_combination!`] expand a test macro once per adapter (or engine × store ×
//!   transport) compiled into this build, in modules named after each, so test names carry
//!   the combination (`yrs::sqlite::folder::concurrent_tag_move_makes_no_cycle`). The adapters
//!   of each axis are listed once, in `__axes!`: **a new adapter is one line there** (plus its
//!   factory in [`factories`]).

#![warn(missing_docs)]

pub mod engine_checks;
pub mod factories;
pub mod layers;
pub mod scenarios;
pub mod store_checks;
pub mod transport_checks;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use onefolder_core::fault::{FaultConfig, FaultLayer};
use onefolder_core::{Engine, OpenMode, Replica, ReplicaConfig, Store, StoreError, Transport};
use onefolder_model::Library;

/// Makes empty engines of one kind.
pub trait EngineFactory: 'static {
    /// A new, empty engine.
    fn engine() -> Box<dyn Engine>;
}

/// Opens stores of one kind.
pub trait StoreFactory: 'static {
    /// Opens (or reopens) the store kept in `dir`, or says why it cannot.
    fn try_open(dir: &Path) -> Result<Box<dyn Store>, StoreError>;

    /// Opens (or reopens) the store kept in `dir`; panics when it cannot.
    fn open(dir: &Path) -> Box<dyn Store> {
        Self::try_open(dir).unwrap_or_else(|e| panic!("open store at {}: {e}", dir.display()))
    }
}

/// One shared medium, set up for one test: a folder, a bucket, an emulated cloud account.
/// Dropping it tears it down (an emulator or server it started stops).
#[async_trait::async_trait]
pub trait Medium: Send + Sync {
    /// One device's view of the medium; every device of a cluster gets its own.
    fn open(&self) -> Arc<dyn Transport>;

    /// Puts `bytes` under `name` in the device folder named `folder` directly on the medium,
    /// bypassing every check a transport makes — what a sync client, a user or an attacker
    /// can do. Returns `false` when this medium cannot hold such a folder name at all (a
    /// folder named `..` on a file system).
    async fn plant(&self, folder: &str, name: &str, bytes: &[u8]) -> bool;

    /// The library folder on the local disk that holds this same medium, when there is one
    /// (the folder medium; an emulator that serves a directory): a device on the folder
    /// transport there shares the library with devices on this medium.
    fn library_dir(&self) -> Option<PathBuf> {
        None
    }

    /// Turns the medium's own faults on (`Some(seed)`) or off (`None`): an emulator's rate
    /// limits, server errors, slow responses and lagging listings. A medium without faults of
    /// its own ignores it. [`Cluster`] turns them on with [`Env::faulty`] and off to settle.
    fn set_faults(&self, seed: Option<u64>) {
        let _ = seed;
    }
}

/// Sets up media of one transport kind.
#[async_trait::async_trait]
pub trait TransportFactory: 'static {
    /// A new, empty medium; `dir` is a temporary directory it may use, alive as long as the
    /// medium. Setup may be asynchronous (start a server and wait until it answers).
    async fn medium(dir: &Path) -> Box<dyn Medium>;
}

/// One combination of engine, store and transport.
pub struct Combo<E, S, T>(std::marker::PhantomData<(E, S, T)>);

/// The three factories of one combination, as one type parameter.
pub trait Backend: 'static {
    /// The engine factory.
    type E: EngineFactory;
    /// The store factory.
    type S: StoreFactory;
    /// The transport factory.
    type T: TransportFactory;
}

impl<E: EngineFactory, S: StoreFactory, T: TransportFactory> Backend for Combo<E, S, T> {
    type E = E;
    type S = S;
    type T = T;
}

/// How a scenario's cluster sees the shared medium.
#[derive(Clone, Copy, Debug, Default)]
pub struct Env {
    /// `Some(seed)`: every device reads through a [`FaultLayer`] with
    /// [`FaultConfig::chaos`], and the medium's own faults are on ([`Medium::set_faults`]);
    /// [`Cluster::sync_all`] syncs under faults, then turns them off and settles, so
    /// scenarios check that devices converge once the faults stop.
    pub faults: Option<u64>,
}

impl Env {
    /// The plain medium.
    pub const PLAIN: Env = Env { faults: None };
    /// The medium under the fault layer, seeded.
    pub fn faulty(seed: u64) -> Env {
        Env { faults: Some(seed) }
    }
}

/// Replica settings for tests: short debounce and poll so background loops react quickly.
pub fn test_config(name: &str) -> ReplicaConfig {
    ReplicaConfig {
        device_name: name.to_owned(),
        mode: OpenMode::CreateOrJoin,
        debounce: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        poll_interval: Duration::from_millis(500),
        compact_every: 50,
        ..ReplicaConfig::default()
    }
}

/// One device of a [`Cluster`].
pub struct Device {
    /// Its replica.
    pub replica: Arc<Replica>,
    /// The OneFolder library on it.
    pub lib: Library<Arc<Replica>>,
    /// Its local state directory.
    pub state_dir: PathBuf,
    /// Its transport (possibly wrapped in a layer).
    pub transport: Arc<dyn Transport>,
}

/// N devices of one combination sharing one medium.
pub struct Cluster<B: Backend> {
    /// The shared medium (dropped before `tmp`).
    pub medium: Box<dyn Medium>,
    /// The temporary directory holding the medium and every device's state.
    pub tmp: tempfile::TempDir,
    /// The devices; device 0 created the library.
    pub devices: Vec<Device>,
    config: Arc<dyn Fn(&str) -> ReplicaConfig + Send + Sync>,
    env: Env,
    faults: Vec<Arc<FaultLayer>>,
    _b: std::marker::PhantomData<B>,
}

impl<B: Backend> Cluster<B> {
    /// A cluster of `n` devices seeing the medium as `env` says.
    pub async fn start(env: Env, n: usize) -> Self {
        Self::with_layers(env, n, |_, t| t).await
    }

    /// A cluster whose device `i` sees the medium through `layer(i, transport)` (under the
    /// fault layer when `env` asks for it).
    pub async fn with_layers(
        env: Env,
        n: usize,
        layer: impl Fn(usize, Arc<dyn Transport>) -> Arc<dyn Transport>,
    ) -> Self {
        Self::build(env, n, test_config, layer).await
    }

    /// A cluster whose device `k` sees the medium through the layer `make` builds; returns
    /// the layer too, to steer or inspect it.
    pub async fn with_layer_on<L: Transport + 'static>(
        env: Env,
        n: usize,
        k: usize,
        config: fn(&str) -> ReplicaConfig,
        make: impl Fn(Arc<dyn Transport>) -> Arc<L>,
    ) -> (Self, Arc<L>) {
        let made: std::sync::Mutex<Option<Arc<L>>> = std::sync::Mutex::new(None);
        let cluster = Self::build(env, n, config, |i, t| {
            if i != k {
                return t;
            }
            let layer = make(t);
            *made.lock().unwrap_or_else(|e| e.into_inner()) = Some(layer.clone());
            layer
        })
        .await;
        let layer = made.into_inner().unwrap_or_else(|e| e.into_inner()).expect("device k exists");
        (cluster, layer)
    }

    /// A cluster with per-device replica settings (by device name) and transport layers.
    pub async fn build(
        env: Env,
        n: usize,
        config: impl Fn(&str) -> ReplicaConfig + Send + Sync + 'static,
        layer: impl Fn(usize, Arc<dyn Transport>) -> Arc<dyn Transport>,
    ) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("medium");
        std::fs::create_dir_all(&dir).expect("medium dir");
        let medium = B::T::medium(&dir).await;
        medium.set_faults(env.faults);
        let config = Arc::new(config);
        let mut cluster =
            Cluster { medium, tmp, config, env, devices: Vec::new(), faults: Vec::new(), _b: std::marker::PhantomData };
        for i in 0..n {
            let mut transport = cluster.medium.open();
            if let Some(seed) = env.faults {
                let faulty = FaultLayer::new(transport, FaultConfig::chaos(seed.wrapping_add(i as u64)));
                cluster.faults.push(faulty.clone());
                transport = faulty;
            }
            let transport = layer(i, transport);
            let dev = cluster.open_device(i, transport).await;
            cluster.devices.push(dev);
        }
        cluster
    }

    fn state_dir(&self, i: usize) -> PathBuf {
        self.tmp.path().join(format!("state-{i}"))
    }

    async fn open_device(&self, i: usize, transport: Arc<dyn Transport>) -> Device {
        let state_dir = self.state_dir(i);
        let replica = Replica::open(
            B::E::engine(),
            B::S::open(&state_dir),
            transport.clone(),
            (self.config)(&format!("device-{i}")),
        )
        .await
        .expect("open replica");
        let replica = Arc::new(replica);
        Device { lib: Library::new(replica.clone()), replica, state_dir, transport }
    }

    /// Opens one more device on `transport` (another view of the same library: the folder
    /// transport on [`Medium::library_dir`], say); returns its index.
    pub async fn add_device(&mut self, transport: Arc<dyn Transport>) -> usize {
        let i = self.devices.len();
        let dev = self.open_device(i, transport).await;
        self.devices.push(dev);
        i
    }

    /// Device `i`.
    pub fn dev(&self, i: usize) -> &Device {
        &self.devices[i]
    }

    /// Library of device `i`.
    pub fn lib(&self, i: usize) -> &Library<Arc<Replica>> {
        &self.devices[i].lib
    }

    /// Closes device `i` without flushing (as a crash would) and opens it again from its store,
    /// with the same transport.
    pub async fn restart(&mut self, i: usize) {
        let old = self.devices.remove(i);
        let transport = old.transport.clone();
        // Every handle on the replica must be gone so the store's lock is released.
        drop(old);
        let dev = self.open_device(i, transport).await;
        self.devices.insert(i, dev);
    }

    /// Turns the injected faults (the fault layers and the medium's own) on or off, to set up
    /// a situation exactly before faults meet it. No-op on a plain medium.
    pub fn set_faults(&self, on: bool) {
        if self.env.faults.is_none() {
            return;
        }
        self.faults.iter().for_each(|f| f.set_active(on));
        self.medium.set_faults(if on { self.env.faults } else { None });
    }

    /// Closes device `i` (as a crash would) and opens it again from its store with a fresh
    /// view of the medium — a new process, as the next `onefolder-sync` command is: nothing the
    /// old transport remembered (its own writes, listing caches) carries over.
    pub async fn restart_process(&mut self, i: usize) {
        let old = self.devices.remove(i);
        drop(old);
        let mut transport = self.medium.open();
        if let Some(seed) = self.env.faults {
            let faulty = FaultLayer::new(transport, FaultConfig::chaos(seed.wrapping_add(100 + i as u64)));
            self.faults.push(faulty.clone());
            transport = faulty;
        }
        let dev = self.open_device(i, transport).await;
        self.devices.insert(i, dev);
    }

    /// Copies device `i`'s local state aside (a disk image), closing the device while copying
    /// and reopening it afterwards. Open the copy with [`Cluster::open_copy`].
    pub async fn copy_state(&mut self, i: usize) -> PathBuf {
        let old = self.devices.remove(i);
        let transport = old.transport.clone();
        let source = old.state_dir.clone();
        drop(old);
        let target = self.tmp.path().join(format!("copy-{}", crate::unique_suffix()));
        copy_dir(&source, &target);
        let dev = self.open_device(i, transport).await;
        self.devices.insert(i, dev);
        target
    }

    /// Opens a copied local state as a new device (the restored image on another computer);
    /// returns its index.
    pub async fn open_copy(&mut self, state: PathBuf) -> usize {
        let transport = self.medium.open();
        let replica = Replica::open(B::E::engine(), B::S::open(&state), transport.clone(), (self.config)("copy"))
            .await
            .expect("open copied state");
        let replica = Arc::new(replica);
        self.devices.push(Device { lib: Library::new(replica.clone()), replica, state_dir: state, transport });
        self.devices.len() - 1
    }

    /// Flushes every device, then lets every device ingest, twice (so that everything written
    /// in the first round is seen by all in the second). Under faults: three rounds with faults
    /// (errors expected and ignored), then the faults stop and two clean rounds settle.
    pub async fn sync_all(&self) {
        let all: Vec<usize> = (0..self.devices.len()).collect();
        self.sync_some(&all).await;
    }

    /// Syncs only the listed devices with each other (the rest are offline).
    pub async fn sync_some(&self, which: &[usize]) {
        if !self.faults.is_empty() {
            for _ in 0..3 {
                for &i in which {
                    // A medium with faults of its own may refuse a write: the prepared
                    // segment stays and the next flush writes the same bytes.
                    let _ = self.devices[i].replica.flush().await;
                }
                for &i in which {
                    // Listing errors are injected: the pass fails and is retried, as in `run`.
                    let _ = self.devices[i].replica.ingest().await;
                }
            }
            self.faults.iter().for_each(|f| f.set_active(false));
            self.medium.set_faults(None);
        }
        for _ in 0..2 {
            for &i in which {
                self.devices[i].replica.flush().await.expect("flush");
            }
            for &i in which {
                self.devices[i].replica.ingest().await.expect("ingest");
            }
        }
        self.faults.iter().for_each(|f| f.set_active(true));
        if let Some(seed) = self.env.faults {
            self.medium.set_faults(Some(seed));
        }
    }

    /// One ingest pass on device `i` (failures are expected under faults and ignored there).
    pub async fn ingest(&self, i: usize) {
        let result = self.devices[i].replica.ingest().await;
        if self.faults.is_empty() {
            result.expect("ingest");
        }
    }

    /// Canonical exports of every device.
    pub fn exports(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.lib.export().expect("export").to_json()).collect()
    }

    /// Asserts that every device has the same canonical export; returns it.
    pub fn assert_converged(&self) -> String {
        let exports = self.exports();
        for (i, e) in exports.iter().enumerate().skip(1) {
            assert_eq!(&exports[0], e, "device {i} differs from device 0");
        }
        exports.into_iter().next().expect("at least one device")
    }
}

fn unique_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read state dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy state file");
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `deadline` passes; returns whether it held.
pub async fn wait_for(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every scenario of [`scenarios`] as `#[tokio::test]`s for the combination `B` in scope,
/// and again under the fault layer in a module `faults`. Expand it once per combination with
/// [`for_each_combination!`]:
///
/// ```ignore
/// onefolder_conformance::for_each_combination!(onefolder_conformance::scenario_tests);
/// ```
#[macro_export]
macro_rules! scenario_tests {
    () => {
            $crate::scenario_tests!(@tests B, $crate::Env::PLAIN;

                two_devices_converge,
                five_devices_converge,
                same_file_indexed_twice_is_one_record,
                location_matched_on_second_device,
                moved_file_keeps_tags,
                same_tag_created_offline_twice_is_one_tag,
                rename_and_recolor_both_survive,
                concurrent_renames_pick_one_name,
                tag_add_wins_over_concurrent_remove,
                deleted_tag_leaves_no_dangling_id,
                concurrent_tag_move_makes_no_cycle,
                concurrent_siblings_order_the_same,
                restore_replace_propagates,
                restore_after_a_raced_delete_equals_the_backup,
                restore_merges_edits_made_offline_concurrently,
                offline_device_catches_up,
                duplicated_delivery_is_harmless,
                out_of_order_delivery_converges,
                restarted_device_loses_nothing,
                a_batch_is_one_durable_edit_and_a_failed_one_leaves_nothing,
                restart_while_a_peer_segment_waits,
                failed_read_is_retried_without_a_new_change,
                vanished_file_is_forgotten,
                requests_per_pass,
                restart_after_ingesting_conflict_copies,
                restart_after_compaction_with_pending_changes,
                restart_after_restore,
                corrupt_segment_is_skipped,
                truncated_segment_is_skipped,
                empty_segment_is_skipped,
                foreign_library_segment_is_skipped,
                wrong_engine_segment_is_skipped,
                impostor_segment_is_skipped,
                rejected_payload_is_quarantined,
                junk_in_shared_folder_is_ignored,
                background_loop_applies_without_sync_call,
                one_tag_assignment_is_small,
                idle_pass_reads_nothing,
                nothing_written_while_nothing_changes,
                cloned_device_takes_new_id,
                clone_race_conflict_copy_is_ingested,
                damaged_own_segments_are_published_again,
                unusable_manifest_is_refused,
                huge_length_claim_is_skipped,
                hostile_folder_names_are_ignored,
                clock_skew_does_not_matter,
                folder_stays_bounded_and_an_offline_device_converges,
            );
            /// The same scenarios with every device reading through the fault layer; each
            /// checks convergence and no lost edit once the faults stop. (Scenarios that
            /// count exact deliveries or warnings run on the plain medium only.)
            mod faults {
                #[allow(unused_imports)]
                use super::*;
                $crate::scenario_tests!(@tests B, $crate::Env::faulty(0x5eed);
                    two_devices_converge,
                    five_devices_converge,
                    same_file_indexed_twice_is_one_record,
                    location_matched_on_second_device,
                    moved_file_keeps_tags,
                    same_tag_created_offline_twice_is_one_tag,
                    rename_and_recolor_both_survive,
                    concurrent_renames_pick_one_name,
                    tag_add_wins_over_concurrent_remove,
                    deleted_tag_leaves_no_dangling_id,
                    concurrent_tag_move_makes_no_cycle,
                    concurrent_siblings_order_the_same,
                    restore_replace_propagates,
                    restore_after_a_raced_delete_equals_the_backup,
                    offline_device_catches_up,
                    restarted_device_loses_nothing,
                    restart_after_restore,
                    one_tag_assignment_is_small,
                    clock_skew_does_not_matter,
                    hostile_folder_names_are_ignored,
                    clone_race_conflict_copy_is_ingested,
                    damaged_own_segments_are_published_again,
                );
            }
    };
    (@tests $b:ty, $env:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                $crate::scenarios::$test::<$b>($env).await;
            }
        )*
    };
}

/// The adapters of each axis, listed once. **A new adapter is one line here** (plus its
/// factory in [`factories`]): `name factory-type [cfg]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __axes {
    ($mode:ident $callback:path) => {
        $crate::__expand! { $mode $callback;
            engines [
                yrs $crate::factories::Yrs [feature = "yrs"],
                automerge $crate::factories::Automerge [feature = "automerge"],
            ]
            stores [
                sqlite $crate::factories::Sqlite [feature = "sqlite"],
                lmdb $crate::factories::Lmdb [feature = "lmdb"],
            ]
            transports [
                memory $crate::factories::Memory [all()],
                folder $crate::factories::Folder [feature = "folder"],
                s3 $crate::factories::S3 [feature = "s3"],
                webdav $crate::factories::Webdav [feature = "webdav"],
                dropbox $crate::factories::Dropbox [feature = "dropbox"],
                gdrive $crate::factories::Gdrive [feature = "gdrive"],
            ]
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __expand {
    (engines $cb:path; engines [$($n:ident $t:ty [$c:meta],)*] stores $s:tt transports $tr:tt) => {
        $( #[cfg($c)] mod $n { #[allow(unused_imports)] use super::*; #[allow(dead_code)] type E = $t; $cb!(); } )*
    };
    (stores $cb:path; engines $e:tt stores [$($n:ident $t:ty [$c:meta],)*] transports $tr:tt) => {
        $( #[cfg($c)] mod $n { #[allow(unused_imports)] use super::*; #[allow(dead_code)] type S = $t; $cb!(); } )*
    };
    (transports $cb:path; engines $e:tt stores $s:tt transports [$($n:ident $t:ty [$c:meta],)*]) => {
        $( #[cfg($c)] mod $n { #[allow(unused_imports)] use super::*; #[allow(dead_code)] type T = $t; $cb!(); } )*
    };
    (combinations $cb:path; engines [$($n:ident $t:ty [$c:meta],)*] stores $s:tt transports $tr:tt) => {
        $( #[cfg($c)] mod $n { #[allow(unused_imports)] use super::*; $crate::__expand!(@stores $cb; $t; $s $tr); } )*
    };
    (@stores $cb:path; $e:ty; [$($n:ident $t:ty [$c:meta],)*] $tr:tt) => {
        $( #[cfg($c)] mod $n { #[allow(unused_imports)] use super::*; $crate::__expand!(@transports $cb; $e; $t; $tr); } )*
    };
    (@transports $cb:path; $e:ty; $s:ty; [$($n:ident $t:ty [$c:meta],)*]) => {
        $( #[cfg($c)] mod $n {
            #[allow(unused_imports)]
            use super::*;
            /// The combination this module tests.
            #[allow(dead_code)]
            type B = $crate::Combo<$e, $s, $t>;
            $cb!();
        } )*
    };
}

/// Expands `$callback!()` once per engine in this build, in a module named after it, with
/// `type E` set to its factory.
#[macro_export]
macro_rules! for_each_engine {
    ($callback:path) => {
        $crate::__axes!(engines $callback);
    };
}

/// Expands `$callback!()` once per store in this build, with `type S` set to its factory.
#[macro_export]
macro_rules! for_each_store {
    ($callback:path) => {
        $crate::__axes!(stores $callback);
    };
}

/// Expands `$callback!()` once per transport in this build, with `type T` set to its factory.
#[macro_export]
macro_rules! for_each_transport {
    ($callback:path) => {
        $crate::__axes!(transports $callback);
    };
}

/// Expands `$callback!()` once per engine × store × transport in this build, in nested
/// modules `engine::store::transport`, with `type B` set to the combination.
#[macro_export]
macro_rules! for_each_combination {
    ($callback:path) => {
        $crate::__axes!(combinations $callback);
    };
}
