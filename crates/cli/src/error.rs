//! Exit codes: 0 success, 1 a user error (or any failure that is not corruption), 2 corruption
//! found. Every failure is reported as one line, `error: …`, never with a backtrace.

use std::error::Error as StdError;
use std::process::ExitCode;

use onefolder_core::{EngineError, SegmentError, StoreError};
use onefolder_model::ModelError;

/// Exit code of a user error.
pub const EXIT_USER: u8 = 1;
/// Exit code when corruption was found.
pub const EXIT_CORRUPT: u8 = 2;

/// What kind of failure a [`CliError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The user asked for something impossible; the message says what to do instead.
    User,
    /// Damaged data was found (a segment, the local store).
    Corrupt,
}

/// A failure with a message meant for the user.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    /// User error or corruption.
    pub kind: Kind,
    /// One line.
    pub message: String,
}

/// A user error (exit code 1).
pub fn user(message: impl Into<String>) -> anyhow::Error {
    CliError { kind: Kind::User, message: message.into() }.into()
}

/// Corruption found (exit code 2).
pub fn corrupt(message: impl Into<String>) -> anyhow::Error {
    CliError { kind: Kind::Corrupt, message: message.into() }.into()
}

fn core_is_corrupt(e: &onefolder_core::Error) -> bool {
    matches!(
        e,
        onefolder_core::Error::Store(StoreError::Corrupt(_)) | onefolder_core::Error::Engine(EngineError::Corrupt(_))
    )
}

/// Whether one error of a chain reports damaged data.
fn is_corrupt(e: &(dyn StdError + 'static)) -> bool {
    if let Some(c) = e.downcast_ref::<CliError>() {
        return c.kind == Kind::Corrupt;
    }
    if let Some(StoreError::Corrupt(_)) = e.downcast_ref::<StoreError>() {
        return true;
    }
    if e.downcast_ref::<SegmentError>().is_some() {
        return true;
    }
    if let Some(c) = e.downcast_ref::<onefolder_core::Error>() {
        return core_is_corrupt(c);
    }
    if let Some(ModelError::Sync(c)) = e.downcast_ref::<ModelError>() {
        return core_is_corrupt(c);
    }
    false
}

/// The exit code for a failure.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(is_corrupt) { EXIT_CORRUPT } else { EXIT_USER }
}

/// The one-line message for a failure: the context chain joined by `: `, with line breaks
/// (from an embedded error message) folded into spaces.
pub fn one_line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    text.split(['\n', '\r']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Prints `error: …` on stderr and returns the exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", one_line(err));
    ExitCode::from(exit_code(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn user_errors_exit_1_and_corruption_exits_2() {
        assert_eq!(exit_code(&user("no such tag")), EXIT_USER);
        assert_eq!(exit_code(&anyhow::anyhow!("disk full")), EXIT_USER);
        assert_eq!(exit_code(&corrupt("bad segment")), EXIT_CORRUPT);
        let store: anyhow::Error = onefolder_core::Error::Store(StoreError::Corrupt("x".into())).into();
        assert_eq!(exit_code(&store.context("opening")), EXIT_CORRUPT);
        let model: anyhow::Error =
            ModelError::Sync(onefolder_core::Error::Engine(EngineError::Corrupt("y".into()))).into();
        assert_eq!(exit_code(&model), EXIT_CORRUPT);
        let unknown: anyhow::Error = ModelError::UnknownTag("Cats".into()).into();
        assert_eq!(exit_code(&unknown), EXIT_USER);
    }

    #[test]
    fn messages_are_one_line() {
        let e = Err::<(), _>(anyhow::anyhow!("first\nsecond")).context("outer").unwrap_err();
        assert_eq!(one_line(&e), "outer: first second");
    }
}
