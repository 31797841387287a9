//! hms-webhook: 100ms webhooks -> exact live-room counts and trending in Supabase Postgres.
//!
//! The crate is a sans-IO core (everything but `wasm`) plus a thin `wasm-bindgen` boundary.
//! One request flows `handler::preflight` -> `handler::begin` -> (one RPC) -> `handler::finish`;
//! see `docs/design.md` for the contracts between the parts.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod config;
pub mod error;
pub mod event;
pub mod facts;
pub mod handler;
pub mod hms_api;
pub mod http;
pub mod json;
pub mod plan;
pub mod reconcile;
pub mod reply;
pub mod rest;
pub mod roles;
pub mod signature;
pub mod time;
pub mod token;
pub mod trending;
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use config::Config;
pub use handler::{begin, finish, preflight, Call, CallContext, Incoming, RpcOutcome, Step};
pub use reply::Reply;
