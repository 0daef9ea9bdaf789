//! OneFolder Sync Transport adapter on the Dropbox v2 API (dropbox-sdk).
#![warn(missing_docs)]
