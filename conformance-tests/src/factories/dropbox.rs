//! The dropbox media of the conformance suite: a Dropbox API emulator serving the medium's
//! directory (so a folder-transport device can share the library), and one
//! [`DropboxTransport`](onefolder_transport_dropbox::DropboxTransport) per device, signed in
//! with a token file (access tokens refreshed; they expire every 2 s under the emulator's
//! chaos) and under a [`RetryLayer`](onefolder_core::RetryLayer), as an application runs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use onefolder_core::{RetryLayer, RetryPolicy, Transport};
use onefolder_emulators::dropbox::{CLIENT_ID, DropboxEmulator, Faults};
use onefolder_transport_dropbox::auth::{self, OAuthApp, Tokens};
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
    /// The app registered with the emulator.
    pub app: OAuthApp,
    /// The token file every device signs in with.
    pub token_file: PathBuf,
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
        let tokens = Tokens::from_file(&self.app, &self.token_file).expect("the medium's token file");
        let transport = DropboxTransport::new(options, tokens).expect("dropbox transport");
        // Its HTTP off the test's clock (write_faults runs on a paused one).
        RetryLayer::new(crate::layers::RealTime::new(Arc::new(transport)), Self::policy())
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
        let app = OAuthApp {
            auth_url: emulator.authorize_url(),
            token_url: emulator.token_url(),
            ..OAuthApp::new(CLIENT_ID)
        };
        let token_file = dir.join("dropbox-token.json");
        auth::save_refresh_token(&app, &token_file, &emulator.issue_refresh_token(CLIENT_ID)).expect("token file");
        Box::new(DropboxMedium { emulator, app, token_file })
    }
}
