//! [`Metered`]: a [`Transport`] layer that counts what goes to and comes from the shared
//! medium, and remembers when the last write became visible.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use onefolder_core::names::DEVICE_FILE;
use onefolder_core::transport::full_listing;
use onefolder_core::{
    Capabilities, ChangeCursor, ChangeSet, ChangeStream, DeviceId, FileEntry, Transport, TransportError, WriteMode,
};

/// Counters of a [`Metered`] transport.
#[derive(Debug, Default)]
pub struct Meter {
    /// Files written (any name).
    pub writes: AtomicU64,
    /// Bytes written (any name).
    pub written_bytes: AtomicU64,
    /// Bytes written to `device.json` (advisory, rewritten at open).
    pub device_json_bytes: AtomicU64,
    /// Files read (segments; the manifest is not counted).
    pub reads: AtomicU64,
    /// Bytes read.
    pub read_bytes: AtomicU64,
    /// Folder listings.
    pub lists: AtomicU64,
    last_write: std::sync::Mutex<Option<Instant>>,
}

impl Meter {
    /// Bytes written to segments (everything but `device.json`).
    pub fn segment_bytes(&self) -> u64 {
        self.written_bytes.load(Ordering::Relaxed) - self.device_json_bytes.load(Ordering::Relaxed)
    }

    /// Files read so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// When the last write returned, i.e. its file had been renamed into place.
    pub fn last_write(&self) -> Option<Instant> {
        *self.last_write.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets every counter to zero.
    pub fn reset(&self) {
        for c in
            [&self.writes, &self.written_bytes, &self.device_json_bytes, &self.reads, &self.read_bytes, &self.lists]
        {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// A transport that forwards to `inner` and counts into a shared [`Meter`].
pub struct Metered {
    inner: Arc<dyn Transport>,
    meter: Arc<Meter>,
}

impl Metered {
    /// Wraps `inner`; returns the layer and its meter.
    pub fn wrap(inner: Arc<dyn Transport>) -> (Arc<dyn Transport>, Arc<Meter>) {
        let meter = Arc::new(Meter::default());
        (Arc::new(Metered { inner, meter: meter.clone() }), meter)
    }
}

#[async_trait]
impl Transport for Metered {
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
        self.meter.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list_devices().await
    }
    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        self.meter.lists.fetch_add(1, Ordering::Relaxed);
        self.inner.list(device).await
    }
    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        let bytes = self.inner.read(device, name, cap).await?;
        self.meter.reads.fetch_add(1, Ordering::Relaxed);
        self.meter.read_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }
    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        self.inner.write(device, name, bytes, mode).await?;
        *self.meter.last_write.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.meter.writes.fetch_add(1, Ordering::Relaxed);
        self.meter.written_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if name == DEVICE_FILE {
            self.meter.device_json_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        self.inner.delete(device, name).await
    }
    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        self.inner.changes().await
    }
    /// A feed is one request (counted as a listing); without one, the full listing goes
    /// through this layer, so each folder listing is counted.
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        skip: Option<&DeviceId>,
    ) -> Result<ChangeSet, TransportError> {
        if self.inner.capabilities().changes_feed {
            self.meter.lists.fetch_add(1, Ordering::Relaxed);
            self.inner.changes_since(cursor, skip).await
        } else {
            full_listing(self, skip).await
        }
    }
}
