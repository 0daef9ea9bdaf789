//! The OpenDAL media of the conformance suite: a bucket on a real S3 server (moto) and a
//! folder on a real WebDAV server (wsgidav), both started once per test process on
//! 127.0.0.1 by `onefolder_transport_opendal::servers` (installed by
//! `cargo xtask test-servers`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use onefolder_core::{RetryLayer, RetryPolicy, Transport};
use onefolder_transport_opendal::{OpendalTransport, S3Options, WebdavOptions, servers};

use crate::{Medium, TransportFactory};

/// A retry policy that keeps scenarios quick: what an application does, with short delays.
fn test_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_total: Duration::from_secs(2),
        jitter: 0.25,
    }
}

/// A name no file system or object store can hold as one path component.
fn impossible(n: &str) -> bool {
    n.is_empty() || n == "." || n == ".." || n.contains(['/', '\\', '\0'])
}

/// S3 on moto: a bucket per medium.
#[cfg(feature = "s3")]
pub struct S3;

/// One bucket on the shared moto server; the library under the prefix `library`.
#[cfg(feature = "s3")]
pub struct S3Medium {
    /// The bucket's options (endpoint, bucket, prefix, test credentials).
    pub options: S3Options,
    /// A transport used to plant files.
    raw: OpendalTransport,
}

#[cfg(feature = "s3")]
#[async_trait::async_trait]
impl Medium for S3Medium {
    fn open(&self) -> Arc<dyn Transport> {
        let transport = OpendalTransport::s3(self.options.clone()).expect("an S3 transport");
        RetryLayer::new(Arc::new(transport), test_policy())
    }
    async fn plant(&self, folder: &str, name: &str, bytes: &[u8]) -> bool {
        if impossible(folder) || impossible(name) {
            return false;
        }
        self.raw.operator().write(&format!("database/{folder}/{name}"), bytes.to_vec()).await.expect("plant a file");
        true
    }
}

#[cfg(feature = "s3")]
#[async_trait::async_trait]
impl TransportFactory for S3 {
    async fn medium(_dir: &Path) -> Box<dyn Medium> {
        let server = servers::s3();
        let bucket = server.new_bucket().await;
        let options = server.options(&bucket, "library");
        let raw = OpendalTransport::s3(options.clone()).expect("an S3 transport");
        Box::new(S3Medium { options, raw })
    }
}

/// WebDAV on wsgidav: a folder per medium, served from disk.
#[cfg(feature = "webdav")]
pub struct Webdav;

/// One library folder on the shared wsgidav server. The folder is on the local disk too
/// ([`Medium::library_dir`]), so a folder-transport device can share the library; dropping
/// the medium removes it.
#[cfg(feature = "webdav")]
pub struct WebdavMedium {
    /// The folder's options (endpoint, path, test account).
    pub options: WebdavOptions,
    /// The library folder on disk (`onefolder_tags/` goes inside).
    pub library: PathBuf,
}

#[cfg(feature = "webdav")]
#[async_trait::async_trait]
impl Medium for WebdavMedium {
    fn open(&self) -> Arc<dyn Transport> {
        let transport = OpendalTransport::webdav(self.options.clone()).expect("a WebDAV transport");
        RetryLayer::new(Arc::new(transport), test_policy())
    }
    async fn plant(&self, folder: &str, name: &str, bytes: &[u8]) -> bool {
        if impossible(folder) || impossible(name) {
            return false;
        }
        let dir = self.library.join(onefolder_transport_opendal::TAGS_DIR).join("database").join(folder);
        std::fs::create_dir_all(&dir).expect("create a planted folder");
        std::fs::write(dir.join(name), bytes).expect("plant a file");
        true
    }
    fn library_dir(&self) -> Option<PathBuf> {
        Some(self.library.clone())
    }
}

#[cfg(feature = "webdav")]
impl Drop for WebdavMedium {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.library);
    }
}

#[cfg(feature = "webdav")]
#[async_trait::async_trait]
impl TransportFactory for Webdav {
    async fn medium(_dir: &Path) -> Box<dyn Medium> {
        let server = servers::webdav();
        let (path, library) = server.new_folder();
        Box::new(WebdavMedium { options: server.options(&path), library })
    }
}
