//! OneFolder Sync Transport adapter on Apache OpenDAL: S3-compatible object stores and WebDAV.
#![warn(missing_docs)]
