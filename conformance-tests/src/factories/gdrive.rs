//! The gdrive media of the conformance suite.
