//! Device identity on the shared medium: clone detection, a new device id, `device.json`.

use tokio::time::Instant;

use super::backoff::Failure;
use super::state::{META_CREATED, META_DEVICE_FIRST_SEQ, META_DEVICE_ID, META_DEVICE_INFO, META_DEVICE_INFO_AT};
use super::{Replica, StatusEvent};
use crate::Result;
use crate::ids::DeviceId;
use crate::manifest::DeviceInfo;
use crate::names::DEVICE_FILE;
use crate::transport::WriteMode;

impl Replica {
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
            // The flush records before this seq are of the old folder (a peer from now on).
            let first_seq = st.next_seq.to_le_bytes();
            st.store.set_meta(META_DEVICE_FIRST_SEQ, Some(&first_seq))?;
            // A segment prepared under the old id must not be written under it.
            st.discard_prepared()?;
            // The new folder starts with the whole document: peers may skip segments of the
            // old folder as covered by a snapshot the other copy wrote there, and the edits
            // this copy made under the old id must still reach them.
            st.own_deltas = (0, 0);
            st.own_snapshot_bytes = 0;
            st.republish_due = true;
            std::mem::replace(&mut st.device, new)
        };
        tracing::warn!(%old, %new, "this device's local state was copied ({why}); taking a new device id");
        let _ = self.events.send(StatusEvent::NewDeviceId { old, new });
        Ok(())
    }

    /// Writes `device.json` when what it says changed (device id, name, app version) or its
    /// last-seen time is older than [`ReplicaConfig::device_info_every`]; otherwise writes
    /// nothing, so opening, reading and idle syncs cause no upload and wake no peer.
    ///
    /// [`ReplicaConfig::device_info_every`]: super::ReplicaConfig::device_info_every
    pub(super) async fn write_device_info(&self) {
        let now = self.config.clock.now_ms();
        let (device, created_ms, written, written_at) = {
            let st = self.lock();
            if st.device_info_failure.as_ref().is_some_and(|f| f.retry_at > Instant::now()) {
                return;
            }
            let meta = |key: &str| st.store.get_meta(key).ok().flatten();
            let number = |key: &str| meta(key).and_then(|b| String::from_utf8_lossy(&b).parse::<i64>().ok());
            (st.device, number(META_CREATED).unwrap_or(now), meta(META_DEVICE_INFO), number(META_DEVICE_INFO_AT))
        };
        let mut info = DeviceInfo {
            device_id: device,
            name: self.config.device_name.clone(),
            created_ms,
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
            last_seen_ms: 0,
        };
        let identity = serde_json::to_vec(&info).expect("device info serializes");
        let every = i64::try_from(self.config.device_info_every.as_millis()).unwrap_or(i64::MAX);
        let fresh = written_at.is_some_and(|at| (0..every).contains(&now.saturating_sub(at)));
        if written.as_deref() == Some(identity.as_slice()) && fresh {
            return;
        }
        info.last_seen_ms = now;
        let bytes = serde_json::to_vec_pretty(&info).expect("device info serializes");
        if let Err(e) = self.transport.write(&device, DEVICE_FILE, &bytes, WriteMode::Replace).await {
            tracing::warn!(error = %e, "could not write {DEVICE_FILE}; will retry");
            let mut st = self.lock();
            st.device_info_failure = Some(Failure::next(st.device_info_failure.as_ref(), &e.into(), now));
            return;
        }
        let mut st = self.lock();
        st.device_info_failure = None;
        let recorded = st
            .store
            .set_meta(META_DEVICE_INFO, Some(&identity))
            .and_then(|()| st.store.set_meta(META_DEVICE_INFO_AT, Some(now.to_string().as_bytes())));
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not record that {DEVICE_FILE} was written");
        }
    }
}
