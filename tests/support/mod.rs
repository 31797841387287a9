//! Shared test support: the counting model (the spec in code), the history generator, the
//! shrinker, instant formatting, the trending reference numbers and, with the `db-tests` feature, the PostgreSQL helpers and the
//! database test phases that tests/histories.rs runs.

#[cfg(feature = "db-tests")]
pub mod behaviour;
#[cfg(feature = "db-tests")]
pub mod db;
#[cfg(feature = "db-tests")]
pub mod existing_rooms;
pub mod generate;
#[cfg(feature = "db-tests")]
pub mod harness;
#[cfg(feature = "db-tests")]
pub mod load;
pub mod model;
#[cfg(feature = "db-tests")]
pub mod parity;
#[cfg(feature = "db-tests")]
pub mod rules;
pub mod shrink;
pub mod time;
pub mod trending;
pub mod wire;
