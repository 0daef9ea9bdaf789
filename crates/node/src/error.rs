//! Errors as JavaScript sees them: an `Error` whose string `code` a caller can switch on.
//!
//! napi-rs turns the `status` of a `napi::Error<S>` into the JS error's `code` (it passes it to
//! `napi_create_error`), but an `async fn` or a future it spawns must fail with the fixed
//! `napi::Status` codes. So every future here resolves to `Result<T, Failure>` and the callback
//! that runs on the JS thread builds the JS error itself, with our code, and rejects with it.

use napi::bindgen_prelude::{Env, JsError, Unknown};
use onefolder_core::{EngineError, Error as CoreError, SegmentError, StoreError, TransportError};
use onefolder_model::ModelError;

/// The `code` of a JS error thrown or rejected by the binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// The local state (the state directory) is held by another open library or process.
    Locked,
    /// The folder holds no library (`onefolder_tags/library.json`).
    NotALibrary,
    /// The library uses another engine than the one asked for.
    WrongEngine,
    /// Stored data (local state, `library.json`, a segment, engine bytes) is damaged.
    Corrupt,
    /// No tag, file, location or saved search with this id.
    NotFound,
    /// An argument or an edit was rejected (a name, a path, an option, a move into itself).
    Invalid,
    /// The file system or the shared medium failed.
    Io,
    /// Anything else.
    Other,
}

impl Code {
    /// The string JavaScript sees in `error.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Locked => "LOCKED",
            Code::NotALibrary => "NOT_A_LIBRARY",
            Code::WrongEngine => "WRONG_ENGINE",
            Code::Corrupt => "CORRUPT",
            Code::NotFound => "NOT_FOUND",
            Code::Invalid => "INVALID",
            Code::Io => "IO",
            Code::Other => "OTHER",
        }
    }
}

/// A failed call: a code and a message (the Rust error's own words).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub code: Code,
    /// The message.
    pub message: String,
}

impl Failure {
    /// A failure of `code` with `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }

    /// The JS error object for this failure (`message`, `code`), wrapped as a `napi::Error`
    /// that refers to it: rejecting or throwing with it hands JS this very object.
    pub fn into_napi(self, env: &Env) -> napi::Error {
        let error = napi::Error::new(self.code.as_str(), self.message);
        // SAFETY: `env` is the live environment of the JS thread this runs on; the value is
        // created in it and immediately referenced by the returned error.
        unsafe {
            let value = JsError::from(error).into_value(env.raw());
            napi::Error::from(Unknown::from_raw_unchecked(env.raw(), value))
        }
    }
}

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        let code = match &e {
            CoreError::Engine(e) => engine_code(e),
            CoreError::Store(e) => store_code(e),
            CoreError::Transport(e) => transport_code(e),
            CoreError::Segment(e) => segment_code(e),
            CoreError::NoLibrary(_) => Code::NotALibrary,
            CoreError::BadManifest(_) => Code::Corrupt,
            CoreError::WrongEngine { .. } => Code::WrongEngine,
            CoreError::WrongLibrary { .. } | CoreError::Invalid(_) => Code::Invalid,
            _ => Code::Other,
        };
        Failure::new(code, e.to_string())
    }
}

impl From<ModelError> for Failure {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::Sync(e) => e.into(),
            e => {
                let code = match &e {
                    ModelError::UnknownTag(_)
                    | ModelError::UnknownFile(_)
                    | ModelError::UnknownLocation(_)
                    | ModelError::UnknownSearch(_) => Code::NotFound,
                    ModelError::InvalidName(_)
                    | ModelError::InvalidPath(_)
                    | ModelError::Cycle(_)
                    | ModelError::NameTaken { .. }
                    | ModelError::IdTaken(_) => Code::Invalid,
                    ModelError::Engine(e) => engine_code(e),
                    _ => Code::Other,
                };
                Failure::new(code, e.to_string())
            }
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::new(store_code(&e), e.to_string())
    }
}

impl From<TransportError> for Failure {
    fn from(e: TransportError) -> Self {
        Failure::new(transport_code(&e), e.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::new(Code::Io, e.to_string())
    }
}

impl From<tokio::task::JoinError> for Failure {
    fn from(e: tokio::task::JoinError) -> Self {
        Failure::new(Code::Other, format!("the call stopped: {e}"))
    }
}

fn engine_code(e: &EngineError) -> Code {
    match e {
        EngineError::Corrupt(_) => Code::Corrupt,
        EngineError::InvalidOp(_) => Code::Invalid,
        _ => Code::Other,
    }
}

fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::Locked { .. } => Code::Locked,
        StoreError::Corrupt(_) => Code::Corrupt,
        StoreError::Invalid(_) => Code::Invalid,
        StoreError::Io { .. } => Code::Io,
        _ => Code::Other,
    }
}

fn transport_code(e: &TransportError) -> Code {
    match e {
        TransportError::InvalidName { .. } => Code::Invalid,
        TransportError::Unsupported { .. } => Code::Other,
        _ => Code::Io,
    }
}

fn segment_code(_: &SegmentError) -> Code {
    Code::Corrupt
}
