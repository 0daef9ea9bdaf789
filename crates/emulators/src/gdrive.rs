//! The Google Drive API v3 emulator.
