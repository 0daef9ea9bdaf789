//! Device identity on the shared medium: clone detection, a new device id, `device.json`.

use super::state::{META_CREATED, META_DEVICE_ID};
use super::{Replica, StatusEvent};
use crate::Result;
use crate::ids::DeviceId;
use crate::manifest::DeviceInfo;
use crate::names::{DEVICE_FILE, SegmentName};
use crate::transport::WriteMode;

impl Replica {
    /// A segment in our own folder that this store never wrote means the local state was
    /// copied (a restored disk image on a second computer). Both copies would write the same
    /// seqs with different content, so this copy takes a new device id; the old folder then
    /// becomes an ordinary peer and nothing is lost.
    pub(super) async fn detect_clone(&self) -> Result<()> {
        let device = self.device();
        let files = match self.transport.list(&device).await {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(error = %e, "could not list own folder to check for a cloned device");
                return Ok(());
            }
        };
        let next_seq = self.lock().next_seq;
        let foreign = files.iter().filter_map(|f| SegmentName::parse(&f.name)).any(|n| n.seq >= next_seq);
        if !foreign {
            return Ok(());
        }
        self.take_new_device_id("its folder holds segments this device did not write")?;
        Ok(())
    }

    /// Takes a fresh device id: this local state was copied (a restored disk image, a cloned
    /// virtual machine), and both copies would otherwise write different segments under the
    /// same names. The old folder becomes an ordinary peer, so nothing written there is lost;
    /// unflushed edits go out under the new id.
    pub(super) fn take_new_device_id(&self, why: &str) -> Result<()> {
        let new = DeviceId::random();
        let old = {
            let mut st = self.lock();
            // The seq keeps counting: seqs only need to be unique per folder, and the flush
            // history in the store stays keyed by seq.
            st.store.set_meta(META_DEVICE_ID, Some(new.to_string().as_bytes()))?;
            // A segment prepared under the old id must not be written under it.
            st.discard_prepared()?;
            std::mem::replace(&mut st.device, new)
        };
        tracing::warn!(%old, %new, "this device's local state was copied ({why}); taking a new device id");
        let _ = self.events.send(StatusEvent::NewDeviceId { old, new });
        Ok(())
    }

    pub(super) async fn write_device_info(&self) {
        let device = self.device();
        let created_ms = self
            .lock()
            .store
            .get_meta(META_CREATED)
            .ok()
            .flatten()
            .and_then(|b| String::from_utf8_lossy(&b).parse().ok())
            .unwrap_or_else(|| self.config.clock.now_ms());
        let info = DeviceInfo {
            device_id: device,
            name: self.config.device_name.clone(),
            created_ms,
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            last_seen_ms: self.config.clock.now_ms(),
        };
        let bytes = serde_json::to_vec_pretty(&info).expect("device info serializes");
        if let Err(e) = self.transport.write(&device, DEVICE_FILE, &bytes, WriteMode::Replace).await {
            tracing::warn!(error = %e, "could not write {DEVICE_FILE}");
        }
    }
}
