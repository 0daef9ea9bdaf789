//! # onefolder-emulators
//!
//! Small HTTP servers that speak the subset of a cloud provider's API that OneFolder Sync's
//! adapters use, with the provider's real request and response shapes, for tests. Each one
//! listens on `127.0.0.1:0` inside the test that starts it and stops when dropped; fault knobs
//! (rate limits, server errors, slow or lagging responses, expiring tokens) are set at run time.
//!
//! - `gdrive` (feature `gdrive`): Google Drive v3 files, uploads, changes feed and OAuth token
//!   endpoints.
//! - `dropbox` (feature `dropbox`): Dropbox v2 files routes, longpoll and OAuth (PKCE) endpoints.
//!
//! [`server::Running`] is the shared part: bind, serve, shut down.

#![warn(missing_docs)]

pub mod server;

#[cfg(feature = "dropbox")]
pub mod dropbox;
#[cfg(feature = "gdrive")]
pub mod gdrive;
