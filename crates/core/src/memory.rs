//! An in-process shared medium, for tests and examples.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};

use crate::ids::DeviceId;
use crate::transport::{
    Capabilities, ChangeHint, ChangeStream, FileEntry, Transport, TransportError, WriteMode, check_name,
};

#[derive(Default)]
struct Medium {
    manifest: Option<Vec<u8>>,
    files: BTreeMap<String, BTreeMap<String, Arc<Vec<u8>>>>,
}

/// A shared medium held in memory. Clones share the same medium, like two computers sharing
/// one synced folder; each clone can watch for the others' writes.
#[derive(Clone)]
pub struct MemoryTransport {
    medium: Arc<Mutex<Medium>>,
    hints: broadcast::Sender<ChangeHint>,
}

impl Default for MemoryTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryTransport {
    /// An empty medium.
    pub fn new() -> Self {
        let (hints, _) = broadcast::channel(1024);
        Self { medium: Arc::default(), hints }
    }

    /// Puts raw bytes into any device folder, bypassing every check: tests use it to plant
    /// hostile or damaged files.
    pub fn plant(&self, device_folder: &str, name: &str, bytes: &[u8]) {
        let mut m = self.medium.lock().expect("memory medium poisoned");
        m.files.entry(device_folder.to_owned()).or_default().insert(name.to_owned(), Arc::new(bytes.to_vec()));
        drop(m);
        let _ = self.hints.send(ChangeHint { device: device_folder.parse().ok() });
    }

    /// Total bytes stored in all device folders (for measurements).
    pub fn total_bytes(&self) -> u64 {
        let m = self.medium.lock().expect("memory medium poisoned");
        m.files.values().flat_map(|f| f.values()).map(|b| b.len() as u64).sum()
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { watch: true, case_insensitive: false, rate_limited: false, max_file_size: None }
    }

    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        Ok(self.medium.lock().expect("memory medium poisoned").manifest.clone())
    }

    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        let mut m = self.medium.lock().expect("memory medium poisoned");
        if m.manifest.is_some() {
            return Ok(false);
        }
        m.manifest = Some(bytes.to_vec());
        Ok(true)
    }

    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        Ok(self.medium.lock().expect("memory medium poisoned").files.keys().cloned().collect())
    }

    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        let m = self.medium.lock().expect("memory medium poisoned");
        Ok(m.files
            .get(&device.to_string())
            .map(|f| f.iter().map(|(name, b)| FileEntry { name: name.clone(), size: b.len() as u64 }).collect())
            .unwrap_or_default())
    }

    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        check_name(name)?;
        let m = self.medium.lock().expect("memory medium poisoned");
        let bytes = m
            .files
            .get(&device.to_string())
            .and_then(|f| f.get(name))
            .ok_or_else(|| TransportError::NotFound(format!("{device}/{name}")))?;
        if bytes.len() as u64 > cap {
            return Err(TransportError::TooLarge { name: name.to_owned(), size: bytes.len() as u64, cap });
        }
        Ok(bytes.as_ref().clone())
    }

    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        check_name(name)?;
        let mut m = self.medium.lock().expect("memory medium poisoned");
        let folder = m.files.entry(device.to_string()).or_default();
        if mode == WriteMode::CreateNew && folder.contains_key(name) {
            return Err(TransportError::AlreadyExists(format!("{device}/{name}")));
        }
        folder.insert(name.to_owned(), Arc::new(bytes.to_vec()));
        drop(m);
        let _ = self.hints.send(ChangeHint { device: Some(*device) });
        Ok(())
    }

    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        check_name(name)?;
        let mut m = self.medium.lock().expect("memory medium poisoned");
        if let Some(folder) = m.files.get_mut(&device.to_string()) {
            folder.remove(name);
        }
        Ok(())
    }

    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        let mut sub = self.hints.subscribe();
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(async move {
            loop {
                match sub.recv().await {
                    Ok(hint) => {
                        // A full channel means a wake-up is already queued: dropping is fine.
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(hint) {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(ChangeHint { device: None }) {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Ok(Some(ChangeStream::new(rx, Box::new(AbortOnDrop(task)))))
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
