//! The Dropbox API v2 emulator.
