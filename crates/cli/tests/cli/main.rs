//! End-to-end tests of the `onefolder-sync` binary: two simulated computers (two copies of
//! the library folder, two `--state` directories, a sync client copying files between them).

mod backup;
mod common;
mod defaults;
mod engines;
mod errors;
mod hosted;
mod prototype;
mod remote;
mod scenario;
mod verify;
mod watch;
