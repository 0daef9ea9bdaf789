//! # onefolder-core
//!
//! The adapter-independent heart of OneFolder Sync:
//! - the three boundaries: [`Engine`] (a CRDT document), [`Store`] (the device's durable local
//!   state) and [`Transport`] (the shared medium, one folder per device);
//! - the [`segment`] codec, the only file format devices exchange;
//! - [`Replica`], the sync loop that wires one of each together;
//! - [`MemoryTransport`], an in-process shared medium for tests.
//!
//! This crate depends on no adapter.

#![warn(missing_docs)]

pub mod engine;
pub mod fault;
pub mod ids;
pub mod index;
pub mod manifest;
pub mod memory;
pub mod names;
pub mod replica;
pub mod retry;
pub mod segment;
pub mod store;
pub mod transport;
pub mod value;

pub use engine::{Changed, Engine, EngineError};
pub use ids::{DeviceId, LibraryId};
pub use index::Indexed;
pub use manifest::{DeviceInfo, LibraryManifest};
pub use memory::MemoryTransport;
pub use replica::{
    Clock, Document, FailureInfo, FlushInfo, FolderCompaction, Group, GroupRun, IngestReport, OpenMode, OwnFolderCheck,
    PeerStatus, Replica, ReplicaConfig, Status, StatusEvent, SyncReport, TidyReport, Warning, group_on_engine,
};
pub use retry::{RetryLayer, RetryPolicy};
pub use segment::{SegmentError, SegmentHeader, SegmentKind};
pub use store::{AppliedSegment, FlushRecord, LoadFn, LogEntry, LogKind, Store, StoreError, StoredState};
pub use transport::{
    Capabilities, ChangeCursor, ChangeHint, ChangeSet, ChangeStream, FileEntry, Transport, TransportError,
    TransportExt, WriteMode,
};
pub use value::{Collection, Op, Record, Value};

/// Errors of the [`Replica`] and of everything built on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CRDT engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The shared medium failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A segment could not be encoded.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// There is no `library.json` and the replica was asked to join, not create.
    #[error("no OneFolder library here: {0} has no library.json (create one first)")]
    NoLibrary(String),
    /// `library.json` is unreadable or written by a newer version.
    #[error("library.json is not usable: {0}")]
    BadManifest(String),
    /// The library was written in an older format than this build reads.
    #[error(
        "this library is in format {library}; this version of OneFolder Sync reads format {supported} only. \
         To move it: with the version that wrote it, run `onefolder-sync export --output FILE` on one computer after every \
         computer has synced; then, with this version, create a new library (`onefolder-sync init` in a new folder, \
         or after moving the old `onefolder_tags` folder away) and run `onefolder-sync import FILE`: the import \
         recomputes the old ids"
    )]
    OldFormat {
        /// Format version in `library.json`.
        library: u32,
        /// The format this build reads.
        supported: u32,
    },
    /// The library uses another engine than the one supplied.
    #[error("this library uses the {library:?} engine, not {given:?}")]
    WrongEngine {
        /// Engine named in `library.json`.
        library: String,
        /// Engine given to the replica.
        given: String,
    },
    /// The local state belongs to another library.
    #[error("this local state belongs to library {state}, not {library}")]
    WrongLibrary {
        /// Library recorded in the store.
        state: LibraryId,
        /// Library of the shared folder.
        library: LibraryId,
    },
    /// A model-level rule was violated (unknown tag, invalid name, …).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias for [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
