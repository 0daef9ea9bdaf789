//! OneFolder Sync Transport adapter on the Google Drive v3 API (google-drive3).
#![warn(missing_docs)]
