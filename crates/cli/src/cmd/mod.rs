//! One module per group of commands.

pub mod auth;
pub mod backup;
pub mod data;
pub mod devices;
pub mod index;
pub mod inspect;
pub mod location;
pub mod prototype;
pub mod search;
pub mod setup;
pub mod sync;
pub mod tags;
