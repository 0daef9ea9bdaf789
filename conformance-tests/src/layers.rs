//! Transport layers used by the scenarios: wrappers that change what one device sees of the
//! shared medium, never special cases inside adapters.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use onefolder_core::{
    Capabilities, ChangeCursor, ChangeSet, ChangeStream, DeviceId, FileEntry, Transport, TransportError, WriteMode,
};

/// Holds back files from the device that reads through it, as a sync client that has not
/// downloaded them yet would: held files are neither listed nor readable until released.
pub struct HoldBack {
    inner: Arc<dyn Transport>,
    held: Mutex<BTreeSet<(DeviceId, String)>>,
}

impl HoldBack {
    /// Wraps a transport; nothing is held at first.
    pub fn new(inner: Arc<dyn Transport>) -> Arc<Self> {
        Arc::new(Self { inner, held: Mutex::default() })
    }

    /// Holds one file.
    pub fn hold(&self, device: DeviceId, name: &str) {
        self.held.lock().unwrap().insert((device, name.to_owned()));
    }

    /// Releases one file.
    pub fn release(&self, device: DeviceId, name: &str) {
        self.held.lock().unwrap().remove(&(device, name.to_owned()));
    }

    /// Releases every held file.
    pub fn release_all(&self) {
        self.held.lock().unwrap().clear();
    }

    fn is_held(&self, device: &DeviceId, name: &str) -> bool {
        self.held.lock().unwrap().contains(&(*device, name.to_owned()))
    }
}

#[async_trait]
impl Transport for HoldBack {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    /// The inner transport's, but changes are found by listing through this layer.
    fn capabilities(&self) -> Capabilities {
        Capabilities { changes_feed: false, ..self.inner.capabilities() }
    }
    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        self.inner.read_manifest().await
    }
    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        self.inner.create_manifest(bytes).await
    }
    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        self.inner.list_devices().await
    }
    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        let files = self.inner.list(device).await?;
        Ok(files.into_iter().filter(|f| !self.is_held(device, &f.name)).collect())
    }
    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        if self.is_held(device, name) {
            return Err(TransportError::NotFound(format!("{device}/{name} (not delivered yet)")));
        }
        self.inner.read(device, name, cap).await
    }
    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        self.inner.write(device, name, bytes, mode).await
    }
    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        self.inner.delete(device, name).await
    }
    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        self.inner.changes().await
    }
}

/// A computer cut off from the others (offline, or its sync client paused): while offline,
/// every listing and read of device folders fails with [`TransportError::Transient`], as a cloud file provider
/// that is not running does. Its own writes still land in its local copy of the folder (they
/// reach the others later, which the readers' [`HoldBack`] layers model).
pub struct Offline {
    inner: Arc<dyn Transport>,
    offline: AtomicBool,
}

impl Offline {
    /// Wraps a transport; online at first.
    pub fn new(inner: Arc<dyn Transport>) -> Arc<Self> {
        Arc::new(Self { inner, offline: AtomicBool::new(false) })
    }

    /// Takes the device offline (`true`) or back online (`false`).
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }

    /// Whether the device is offline.
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), TransportError> {
        if self.is_offline() {
            return Err(TransportError::Transient("offline (injected partition)".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Transport for Offline {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    /// The inner transport's, but changes are found by listing through this layer.
    fn capabilities(&self) -> Capabilities {
        Capabilities { changes_feed: false, ..self.inner.capabilities() }
    }
    // The manifest was synced long before: it stays readable, so a restart works offline.
    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        self.inner.read_manifest().await
    }
    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        self.inner.create_manifest(bytes).await
    }
    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        self.check()?;
        self.inner.list_devices().await
    }
    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        self.check()?;
        self.inner.list(device).await
    }
    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        self.check()?;
        self.inner.read(device, name, cap).await
    }
    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        self.inner.write(device, name, bytes, mode).await
    }
    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        self.inner.delete(device, name).await
    }
    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        self.inner.changes().await
    }
}

/// Counts the requests one device makes of the medium: listings, feed queries, reads, writes.
/// A feed query goes to the inner transport's feed; without one, the full listing is made
/// through this layer so that every folder listing is counted. Optionally the first read of
/// every file fails (a provider hiccup): a device reading through it must retry files the feed
/// will not mention again.
pub struct Counting {
    inner: Arc<dyn Transport>,
    /// Requests so far, by kind: `list_devices`, `list`, `changes_since`, `read`, `write`.
    pub counts: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    /// Files read once already, when first reads fail.
    failed_once: Option<Mutex<BTreeSet<(DeviceId, String)>>>,
}

impl Counting {
    /// Wraps a transport.
    pub fn new(inner: Arc<dyn Transport>) -> Arc<Self> {
        Arc::new(Self { inner, counts: Mutex::default(), failed_once: None })
    }

    /// Wraps a transport; the first read of every file fails with a transient error.
    pub fn failing_first_reads(inner: Arc<dyn Transport>) -> Arc<Self> {
        Arc::new(Self { inner, counts: Mutex::default(), failed_once: Some(Mutex::default()) })
    }

    fn count(&self, kind: &'static str) {
        *self.counts.lock().unwrap().entry(kind).or_default() += 1;
    }

    /// Requests of every kind so far.
    pub fn total(&self) -> u64 {
        self.counts.lock().unwrap().values().sum()
    }
}

#[async_trait]
impl Transport for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        self.inner.read_manifest().await
    }
    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        self.inner.create_manifest(bytes).await
    }
    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        self.count("list_devices");
        self.inner.list_devices().await
    }
    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        self.count("list");
        self.inner.list(device).await
    }
    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        self.count("read");
        if let Some(failed) = &self.failed_once
            && failed.lock().unwrap().insert((*device, name.to_owned()))
        {
            return Err(TransportError::Transient("first read fails (injected)".into()));
        }
        self.inner.read(device, name, cap).await
    }
    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        self.count("write");
        self.inner.write(device, name, bytes, mode).await
    }
    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        self.count("delete");
        self.inner.delete(device, name).await
    }
    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        self.inner.changes().await
    }
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        skip: Option<&DeviceId>,
    ) -> Result<ChangeSet, TransportError> {
        if self.inner.capabilities().changes_feed {
            self.count("changes_since");
            self.inner.changes_since(cursor, skip).await
        } else {
            onefolder_core::transport::full_listing(self, skip).await
        }
    }
}

/// Runs every call of a network transport on a runtime of its own, awaited from the blocking
/// pool, so that a test on tokio's paused clock (`write_faults.rs`) sees its HTTP in real time.
/// On a paused clock, tokio jumps to the next timer whenever the test's runtime is idle — also
/// while a request is on the wire — and would fire the replica's backoff timers early; a
/// running `spawn_blocking` task holds that jump back. The retry layer goes over this one, so
/// its delays stay on the test's clock.
pub struct RealTime {
    inner: Arc<dyn Transport>,
}

impl RealTime {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Transport>) -> Arc<Self> {
        Arc::new(Self { inner })
    }

    /// Runs `call` on the inner transport, off the caller's clock.
    async fn off_clock<T, F, Fut>(&self, call: F) -> Result<T, TransportError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<dyn Transport>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, TransportError>> + Send + 'static,
    {
        static IO: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
        let io = IO.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("real-time-io")
                .enable_all()
                .build()
                .expect("the real-time I/O runtime")
        });
        let (handle, inner) = (io.handle().clone(), self.inner.clone());
        match tokio::task::spawn_blocking(move || handle.block_on(call(inner))).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(TransportError::Transient("the call was cancelled (runtime shutting down)".into())),
        }
    }
}

#[async_trait]
impl Transport for RealTime {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        self.off_clock(|t| async move { t.read_manifest().await }).await
    }
    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        let bytes = bytes.to_vec();
        self.off_clock(move |t| async move { t.create_manifest(&bytes).await }).await
    }
    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        self.off_clock(|t| async move { t.list_devices().await }).await
    }
    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        let device = *device;
        self.off_clock(move |t| async move { t.list(&device).await }).await
    }
    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        let (device, name) = (*device, name.to_owned());
        self.off_clock(move |t| async move { t.read(&device, &name, cap).await }).await
    }
    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        let (device, name, bytes) = (*device, name.to_owned(), bytes.to_vec());
        self.off_clock(move |t| async move { t.write(&device, &name, &bytes, mode).await }).await
    }
    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        let (device, name) = (*device, name.to_owned());
        self.off_clock(move |t| async move { t.delete(&device, &name).await }).await
    }
    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        self.off_clock(|t| async move { t.changes().await }).await
    }
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        skip: Option<&DeviceId>,
    ) -> Result<ChangeSet, TransportError> {
        let (cursor, skip) = (cursor.cloned(), skip.copied());
        self.off_clock(move |t| async move { t.changes_since(cursor.as_ref(), skip.as_ref()).await }).await
    }
}
