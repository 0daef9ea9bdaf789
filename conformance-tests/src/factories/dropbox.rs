//! The dropbox media of the conformance suite: a Dropbox API emulator serving the medium's
//! directory (so a folder-transport device can share the library), and one
//! [`DropboxTransport`](onefolder_transport_dropbox::DropboxTransport) per device, under a
//! [`RetryLayer`](onefolder_core::RetryLayer) as an application runs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use onefolder_core::{RetryLayer, RetryPolicy, Transport};
use onefolder_emulators::dropbox::{ACCESS_TOKEN, DropboxEmulator, Faults};
use onefolder_transport_dropbox::{DropboxOptions, DropboxTransport, TAGS_DIR};

use crate::{Medium, TransportFactory};

/// The library folder in the emulated Dropbox.
const LIBRARY: &str = "/Library";

/// The Dropbox transport on the emulator.
pub struct Dropbox;

/// An emulated Dropbox account whose root is a directory of the test.
pub struct DropboxMedium {
    /// The emulator (stops when the medium is dropped).
    pub emulator: DropboxEmulator,
}

impl DropboxMedium {
    /// A retry policy that absorbs the emulator's chaos (Retry-After: 1 s) quickly.
    pub fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
            max_total: Duration::from_secs(5),
            jitter: 0.25,
        }
    }
}

#[async_trait::async_trait]
impl Medium for DropboxMedium {
    fn open(&self) -> Arc<dyn Transport> {
        let options = DropboxOptions::new(LIBRARY).with_base_url(&self.emulator.url());
        let transport = DropboxTransport::with_access_token(options, ACCESS_TOKEN).expect("dropbox transport");
        RetryLayer::new(Arc::new(transport), Self::policy())
    }

    async fn plant(&self, folder: &str, name: &str, bytes: &[u8]) -> bool {
        let impossible = |n: &str| n.is_empty() || n == "." || n == ".." || n.contains(['/', '\\', '\0']);
        if impossible(folder) || impossible(name) {
            return false;
        }
        self.emulator.plant(&format!("{LIBRARY}/{TAGS_DIR}/database/{folder}/{name}"), bytes).is_ok()
    }

    fn library_dir(&self) -> Option<PathBuf> {
        Some(self.emulator.root().join(LIBRARY.trim_start_matches('/')))
    }

    fn set_faults(&self, seed: Option<u64>) {
        self.emulator.set_faults(seed.map_or_else(Faults::none, Faults::chaos));
    }
}

#[async_trait::async_trait]
impl TransportFactory for Dropbox {
    async fn medium(dir: &Path) -> Box<dyn Medium> {
        let emulator = DropboxEmulator::start(dir.join("dropbox")).expect("start the Dropbox emulator");
        Box::new(DropboxMedium { emulator })
    }
}
