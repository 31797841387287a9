//! The reconcile route (`POST …/reconcile`): one pass (`pass`) that compares the rooms the
//! database holds live with what 100ms's API reports (`hms_api`, with a management token from
//! `token`) and applies the difference as facts (`facts`).

pub mod facts;
pub mod hms_api;
pub mod pass;
pub mod token;

pub use pass::{admit, is_route, reply, run, Pass};
