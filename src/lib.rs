//! hms-webhook: 100ms webhooks -> exact live-room counts and trending in Supabase Postgres.
//!
//! The crate is a sans-IO core (everything but `wasm`) plus a thin `wasm-bindgen` boundary.
//! One request flows [`preflight`] -> [`begin`] -> (one RPC) -> [`finish`];
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

// Private modules behind one flat API (the boundary, the fuzzer, the bench and the tests need
// no more than this); a new route adds its step function to `handler` and re-exports it here.
// `event`, `plan`, `roles` and `time` are public too: the histories test sends each generated
// event through the function's own parsing and plan (tests/support/wire.rs).
mod config;
mod error;
pub mod event;
mod handler;
mod json;
pub mod plan;
mod reply;
mod rest;
pub mod roles;
mod signature;
pub mod time;
pub mod trending;
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use config::{Config, Misconfig, VARIABLES};
pub use error::Error;
pub use handler::{
    begin, finish, misconfigured, preflight, Call, CallContext, Incoming, Step, MAX_FUTURE_SECONDS,
};
pub use reply::Reply;
pub use rest::{RpcOutcome, RpcRequest};
pub use signature::sign_hex;
