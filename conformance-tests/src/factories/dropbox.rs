//! The dropbox media of the conformance suite.
