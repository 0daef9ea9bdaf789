//! A new cloud provider in one file: the guide for adding OneDrive, an S3 bucket, a WebDAV
//! server — anything that stores named blobs.
//!
//! ```sh
//! cargo run -p onefolder-examples --example custom_transport     # two devices converge through it
//! cargo test -p onefolder-examples --example custom_transport    # the whole conformance suite on it
//! ```
//!
//! The provider here is a toy: [`BlobStore`], an in-process key → bytes map with the three
//! operations every object store offers (put-if-absent, put, get, head, list by prefix,
//! delete).
//! [`BlobTransport`] maps OneFolder Sync's layout onto its keys:
//!
//! ```text
//! <prefix>/onefolder_tags/library.json
//! <prefix>/onefolder_tags/database/<deviceId>/<seq>.seg
//! ```
//!
//! What a real adapter adds is only the provider's client: replace each `BlobStore` call with
//! the provider's request, map its errors to [`TransportError`] kinds (a rate limit to
//! `RateLimited { retry_after }`, a dropped connection to `Transient`, a name taken to
//! `AlreadyExists`), and wrap it in [`onefolder_core::RetryLayer`] when you open it. The
//! `# Behavior` list on [`Transport`] is the contract; the tests at the bottom run every check
//! of it and every end-to-end scenario of the conformance suite against this transport — one
//! factory and two macro lines. In the repository, an adapter crate joins the full matrix
//! (every engine × store, also under faults) with one line in `conformance-tests`' `__axes!`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use async_trait::async_trait;
use onefolder_core::names::MANIFEST_FILE;
use onefolder_core::transport::check_name;
use onefolder_core::{
    Capabilities, ChangeStream, DeviceId, FileEntry, OpenMode, Replica, ReplicaConfig, Transport, TransportError,
    WriteMode,
};
use onefolder_model::{FileMeta, Library};

/// Blob contents and versions by key.
type Blobs = BTreeMap<String, (Vec<u8>, u64)>;

/// The toy provider: named blobs in memory, shared by every handle cloned from it (as two
/// computers share one cloud account). Each blob has a version that changes with its content.
#[derive(Clone, Default)]
pub struct BlobStore {
    blobs: Arc<Mutex<Blobs>>,
    next_version: Arc<Mutex<u64>>,
}

impl BlobStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Blobs> {
        self.blobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn version(&self) -> u64 {
        let mut next = self.next_version.lock().unwrap_or_else(|e| e.into_inner());
        *next += 1;
        *next
    }

    /// Stores `bytes` under `key` unless the key exists; whether it stored them.
    pub fn put_if_absent(&self, key: &str, bytes: &[u8]) -> bool {
        let version = self.version();
        let mut blobs = self.lock();
        if blobs.contains_key(key) {
            return false;
        }
        blobs.insert(key.to_owned(), (bytes.to_vec(), version));
        true
    }

    /// Stores `bytes` under `key`, replacing what was there.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let version = self.version();
        self.lock().insert(key.to_owned(), (bytes.to_vec(), version));
    }

    /// The blob under `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.lock().get(key).map(|(bytes, _)| bytes.clone())
    }

    /// Size and version of the blob under `key`.
    pub fn head(&self, key: &str) -> Option<(u64, u64)> {
        self.lock().get(key).map(|(bytes, v)| (bytes.len() as u64, *v))
    }

    /// Every key starting with `prefix`, with its size and version.
    pub fn list(&self, prefix: &str) -> Vec<(String, u64, u64)> {
        self.lock()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (bytes, v))| (k.clone(), bytes.len() as u64, *v))
            .collect()
    }

    /// Removes the blob under `key` (nothing when there is none).
    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// OneFolder Sync's [`Transport`] on a [`BlobStore`], under `<prefix>/onefolder_tags/`.
#[derive(Clone)]
pub struct BlobTransport {
    store: BlobStore,
    root: String,
}

impl BlobTransport {
    /// The library whose folder is `prefix` in `store`.
    pub fn new(store: BlobStore, prefix: &str) -> Self {
        Self { store, root: format!("{}/onefolder_tags", prefix.trim_end_matches('/')) }
    }

    fn database(&self) -> String {
        format!("{}/database/", self.root)
    }

    fn key(&self, device: &DeviceId, name: &str) -> Result<String, TransportError> {
        check_name(name)?;
        Ok(format!("{}{device}/{name}", self.database()))
    }
}

#[async_trait]
impl Transport for BlobTransport {
    fn name(&self) -> &'static str {
        "blob"
    }

    fn capabilities(&self) -> Capabilities {
        // No watch and no change feed: the replica polls with full listings (the default
        // `changes_since`). Versions come with every listing; reads may run in parallel.
        Capabilities { versions: true, concurrent_reads: 4, ..Capabilities::default() }
    }

    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        Ok(self.store.get(&format!("{}/{MANIFEST_FILE}", self.root)))
    }

    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        Ok(self.store.put_if_absent(&format!("{}/{MANIFEST_FILE}", self.root), bytes))
    }

    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        let database = self.database();
        let mut folders: Vec<String> = self
            .store
            .list(&database)
            .into_iter()
            .filter_map(|(key, _, _)| key[database.len()..].split_once('/').map(|(folder, _)| folder.to_owned()))
            .collect();
        folders.dedup();
        Ok(folders)
    }

    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        let folder = format!("{}{device}/", self.database());
        Ok(self
            .store
            .list(&folder)
            .into_iter()
            // Only the folder's own files: a key with a further `/` is not one of them.
            .filter(|(key, _, _)| !key[folder.len()..].contains('/'))
            .map(|(key, size, version)| FileEntry::new(&key[folder.len()..], size).with_version(version.to_string()))
            .collect())
    }

    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        let key = self.key(device, name)?;
        // Check the size first: a hostile file is never downloaded whole.
        match self.store.head(&key) {
            None => Err(TransportError::NotFound(format!("{device}/{name}"))),
            Some((size, _)) if size > cap => {
                Err(TransportError::TooLarge { name: format!("{device}/{name}"), size, cap })
            }
            Some(_) => self.store.get(&key).ok_or_else(|| TransportError::NotFound(format!("{device}/{name}"))),
        }
    }

    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        let key = self.key(device, name)?;
        match mode {
            // Segments are immutable: the provider's conditional create keeps the first one.
            WriteMode::CreateNew if !self.store.put_if_absent(&key, bytes) => {
                Err(TransportError::AlreadyExists(format!("{device}/{name}")))
            }
            WriteMode::CreateNew => Ok(()),
            WriteMode::Replace => {
                self.store.put(&key, bytes);
                Ok(())
            }
        }
    }

    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        self.store.delete(&self.key(device, name)?);
        Ok(())
    }

    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        Ok(None)
    }
}

fn meta(size: i64) -> FileMeta {
    FileMeta { size, date_modified: 1_764_000_000_000, date_created: 1_764_000_000_000, ..FileMeta::default() }
}

async fn open(store: &BlobStore, state: &std::path::Path, name: &str, mode: OpenMode) -> Result<Library<Arc<Replica>>> {
    let transport: Arc<dyn Transport> = Arc::new(BlobTransport::new(store.clone(), "Pictures"));
    let config = ReplicaConfig { device_name: name.into(), mode, ..ReplicaConfig::default() };
    let replica = Replica::open(
        Box::new(onefolder_engine_yrs::YrsEngine::new()),
        Box::new(onefolder_store_sqlite::SqliteStore::open(state, Default::default())?),
        transport,
        config,
    )
    .await?;
    Ok(Library::new(Arc::new(replica)))
}

#[tokio::main]
async fn main() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let cloud = BlobStore::default();
    let laptop = open(&cloud, &tmp.path().join("laptop"), "laptop", OpenMode::Create).await?;
    let desktop = open(&cloud, &tmp.path().join("desktop"), "desktop", OpenMode::Join).await?;

    let loc = laptop.add_location("Pictures", Some(""))?;
    let cats = laptop.create_tag_path("Animals/Cats", Some("orange"))?;
    let tom = laptop.upsert_file(&loc, "2026/tom.jpg", &meta(2_400_000))?;
    laptop.assign(&tom, &cats)?;
    for _ in 0..2 {
        laptop.doc().sync_once().await?;
        desktop.doc().sync_once().await?;
    }
    desktop.rename_tag(&cats, "Cats & kittens")?;
    for _ in 0..2 {
        desktop.doc().sync_once().await?;
        laptop.doc().sync_once().await?;
    }

    println!("blobs in the store:");
    for (key, size, _) in cloud.list("") {
        println!("  {key} ({size} bytes)");
    }
    let (a, b) = (laptop.export()?.to_json(), desktop.export()?.to_json());
    println!("laptop sees the tag as {:?}", laptop.tags()?[&cats].name);
    println!("{}", if a == b { "converged" } else { "NOT converged" });
    anyhow::ensure!(a == b, "the two devices differ");
    Ok(())
}

/// The conformance suite on [`BlobTransport`]: its trait contract, and every scenario with
/// the yrs engine and the SQLite store (plain and under the fault layer).
#[cfg(test)]
mod conformance {
    use super::*;
    use onefolder_conformance::factories::{Sqlite, Yrs};
    use onefolder_conformance::{Combo, Medium, TransportFactory};

    /// One empty cloud account per test.
    pub struct Blob;

    struct BlobMedium(BlobStore);

    #[async_trait]
    impl Medium for BlobMedium {
        fn open(&self) -> Arc<dyn Transport> {
            Arc::new(BlobTransport::new(self.0.clone(), "Pictures"))
        }

        async fn plant(&self, folder: &str, name: &str, bytes: &[u8]) -> bool {
            // A key cannot hold a folder name with a `/` in it; anything else goes in raw.
            if folder.contains('/') || name.contains('/') {
                return false;
            }
            self.0.put(&format!("Pictures/onefolder_tags/database/{folder}/{name}"), bytes);
            true
        }
    }

    #[async_trait]
    impl TransportFactory for Blob {
        async fn medium(_dir: &std::path::Path) -> Box<dyn Medium> {
            Box::new(BlobMedium(BlobStore::default()))
        }
    }

    /// Every `# Behavior` bullet of [`Transport`].
    mod contract {
        #[allow(unused_imports)]
        use super::*;
        type T = Blob;
        onefolder_conformance::transport_conformance!();
    }

    /// Every end-to-end scenario.
    mod yrs_sqlite {
        #[allow(unused_imports)]
        use super::*;
        type B = Combo<Yrs, Sqlite, Blob>;
        onefolder_conformance::scenario_tests!();
    }
}
