//! The opendal media of the conformance suite.
