//! The gdrive media of the conformance suite: a Google Drive emulator serving a directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use onefolder_core::{RetryLayer, RetryPolicy, Transport};
use onefolder_emulators::gdrive::{self, GdriveEmulator};
use onefolder_transport_gdrive::auth::{self as drive_auth, OAuthApp};
use onefolder_transport_gdrive::{GdriveOptions, GdriveTransport, Tokens};

use crate::{Medium, TransportFactory};

/// The Google Drive transport, against `onefolder_emulators::gdrive`.
pub struct Gdrive;

/// The library path under the emulated My Drive.
const LIBRARY: &str = "Library";

/// A Google Drive emulator whose My Drive is a directory, so that a folder-transport device
/// can share the library ([`Medium::library_dir`]).
pub struct GdriveMedium {
    /// The running emulator (its fault knobs and counters).
    pub emulator: GdriveEmulator,
    root: PathBuf,
    token_file: PathBuf,
}

impl GdriveMedium {
    /// The options a device of this medium uses (a short poll for the hint stream).
    pub fn options(&self) -> GdriveOptions {
        let mut options = GdriveOptions::with_server(LIBRARY, &self.emulator.url(), &self.emulator.url());
        options.poll_interval = Duration::from_millis(100);
        options
    }

    /// The emulator's OAuth client.
    pub fn app(&self) -> OAuthApp {
        OAuthApp {
            client_id: gdrive::CLIENT_ID.to_owned(),
            client_secret: Some(gdrive::CLIENT_SECRET.to_owned()),
            auth_url: self.emulator.auth_url(),
            token_url: self.emulator.token_url(),
            scope: drive_auth::SCOPE_DRIVE.to_owned(),
        }
    }

    /// A device's transport without the retry layer, signed in through the medium's token
    /// file (access tokens refresh, as an application's do).
    pub fn open_plain(&self) -> GdriveTransport {
        let tokens = Tokens::from_file(&self.app(), &self.token_file).expect("the medium's token file");
        GdriveTransport::new(self.options(), tokens).expect("emulator options are valid")
    }
}

#[async_trait::async_trait]
impl Medium for GdriveMedium {
    fn open(&self) -> Arc<dyn Transport> {
        let policy = RetryPolicy {
            max_attempts: 8,
            first_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(200),
            max_total: Duration::from_secs(3),
            jitter: 0.25,
        };
        // Its HTTP off the test's clock (write_faults runs on a paused one).
        RetryLayer::new(crate::layers::RealTime::new(Arc::new(self.open_plain())), policy)
    }

    async fn plant(&self, folder: &str, name: &str, bytes: &[u8]) -> bool {
        if folder.is_empty() || name.is_empty() {
            return false;
        }
        self.emulator.plant(
            &[LIBRARY, onefolder_transport_gdrive::TAGS_DIR, onefolder_transport_gdrive::DATABASE_DIR, folder],
            name,
            bytes,
        );
        true
    }

    fn library_dir(&self) -> Option<PathBuf> {
        Some(self.root.join(LIBRARY))
    }

    fn set_faults(&self, seed: Option<u64>) {
        self.emulator.set_chaos(seed);
    }
}

#[async_trait::async_trait]
impl TransportFactory for Gdrive {
    async fn medium(dir: &Path) -> Box<dyn Medium> {
        let root = dir.join("my-drive");
        let emulator = GdriveEmulator::start_on_dir(&root).expect("start the Google Drive emulator");
        let token_file = dir.join("gdrive-token.json");
        let medium = GdriveMedium { emulator, root, token_file };
        let refresh = medium.emulator.issue_refresh_token();
        drive_auth::store_refresh_token(&medium.app(), &medium.token_file, &refresh).expect("write the token file");
        Box::new(medium)
    }
}
