//! An in-process shared medium, for tests and examples. It has what an HTTP provider has:
//! a version per file and a change feed ([`Transport::changes_since`] costs one call).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc};

use crate::ids::DeviceId;
use crate::transport::{
    Capabilities, ChangeCursor, ChangeHint, ChangeSet, ChangeStream, FileEntry, Transport, TransportError, WriteMode,
    check_name,
};

/// One stored file: its bytes and the version it got when written.
#[derive(Clone)]
struct Stored {
    bytes: Arc<Vec<u8>>,
    version: u64,
}

#[derive(Default)]
struct Medium {
    /// Tells this medium's cursors from another's.
    id: u64,
    manifest: Option<Vec<u8>>,
    files: BTreeMap<String, BTreeMap<String, Stored>>,
    /// Every write, in order: (device folder, file name). A cursor is a position in it.
    feed: Vec<(String, String)>,
}

impl Medium {
    fn put(&mut self, folder: &str, name: &str, bytes: &[u8]) {
        let version = self.feed.len() as u64 + 1;
        self.files
            .entry(folder.to_owned())
            .or_default()
            .insert(name.to_owned(), Stored { bytes: Arc::new(bytes.to_vec()), version });
        self.feed.push((folder.to_owned(), name.to_owned()));
    }

    fn entry(name: &str, stored: &Stored) -> FileEntry {
        FileEntry::new(name, stored.bytes.len() as u64).with_version(format!("v{}", stored.version))
    }
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
        let medium = Medium { id: uuid::Uuid::new_v4().as_u128() as u64, ..Medium::default() };
        Self { medium: Arc::new(Mutex::new(medium)), hints }
    }

    /// Puts raw bytes into any device folder, bypassing every check: tests use it to plant
    /// hostile or damaged files.
    pub fn plant(&self, device_folder: &str, name: &str, bytes: &[u8]) {
        self.medium.lock().expect("memory medium poisoned").put(device_folder, name, bytes);
        let _ = self.hints.send(ChangeHint { device: device_folder.parse().ok() });
    }

    /// Total bytes stored in all device folders (for measurements).
    pub fn total_bytes(&self) -> u64 {
        let m = self.medium.lock().expect("memory medium poisoned");
        m.files.values().flat_map(|f| f.values()).map(|s| s.bytes.len() as u64).sum()
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities { watch: true, changes_feed: true, versions: true, concurrent_reads: 4, ..Capabilities::default() }
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
            .map(|f| f.iter().map(|(name, stored)| Medium::entry(name, stored)).collect())
            .unwrap_or_default())
    }

    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        check_name(name)?;
        let m = self.medium.lock().expect("memory medium poisoned");
        let bytes = &m
            .files
            .get(&device.to_string())
            .and_then(|f| f.get(name))
            .ok_or_else(|| TransportError::NotFound(format!("{device}/{name}")))?
            .bytes;
        if bytes.len() as u64 > cap {
            return Err(TransportError::TooLarge { name: name.to_owned(), size: bytes.len() as u64, cap });
        }
        Ok(bytes.as_ref().clone())
    }

    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        check_name(name)?;
        let mut m = self.medium.lock().expect("memory medium poisoned");
        let folder = device.to_string();
        if mode == WriteMode::CreateNew && m.files.get(&folder).is_some_and(|f| f.contains_key(name)) {
            return Err(TransportError::AlreadyExists(format!("{device}/{name}")));
        }
        m.put(&folder, name, bytes);
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
        Ok(Some(ChangeStream::from_task(rx, task)))
    }

    /// The feed: every file written since the cursor (once, as it is now), in one call. A
    /// cursor this medium did not hand out gives a full listing.
    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        skip: Option<&DeviceId>,
    ) -> Result<ChangeSet, TransportError> {
        let m = self.medium.lock().expect("memory medium poisoned");
        let end = m.feed.len();
        let from = cursor
            .and_then(|c| c.0.split_once(':'))
            .filter(|(id, _)| *id == m.id.to_string())
            .and_then(|(_, pos)| pos.parse::<usize>().ok())
            .filter(|&from| from <= end);
        let skip = skip.map(DeviceId::to_string);
        let mut set = ChangeSet { cursor: ChangeCursor(format!("{}:{end}", m.id)), ..ChangeSet::default() };
        let wanted = |folder: &String| Some(folder) != skip.as_ref();
        match from {
            Some(from) => {
                let changed: BTreeSet<&(String, String)> = m.feed[from..].iter().collect();
                for (folder, name) in changed.into_iter().filter(|(f, _)| wanted(f)) {
                    if let Some(stored) = m.files.get(folder).and_then(|f| f.get(name)) {
                        set.files.push((folder.clone(), Medium::entry(name, stored)));
                    }
                }
                set.folders = set.files.iter().map(|(f, _)| f.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            }
            None => {
                set.complete = true;
                set.folders = m.files.keys().cloned().collect();
                for (folder, files) in m.files.iter().filter(|(f, _)| wanted(f)) {
                    set.files.extend(files.iter().map(|(name, stored)| (folder.clone(), Medium::entry(name, stored))));
                }
            }
        }
        Ok(set)
    }
}
