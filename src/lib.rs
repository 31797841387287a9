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
// `wire` re-exports the parse and the plan for the histories test, which sends each generated
// event through the function's own steps (tests/support/wire.rs).
mod config;
mod document;
mod error;
mod event;
mod facts;
mod handler;
mod hms_api;
mod http;
mod plan;
mod reconcile;
mod reply;
mod rest;
mod roles;
mod signature;
mod time;
mod token;
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use config::{Config, Misconfig, VARIABLES};
pub use error::Error;
pub use event::{Action, EVENT_ACTIONS};
pub use handler::{
    begin, finish, misconfigured, preflight, Call, CallContext, Incoming, Step, MAX_FUTURE_SECONDS,
};
pub use http::{Method, Outcome, Request};
pub use reply::Reply;
pub use roles::{DEFAULT_IGNORED_ROLES, DEFAULT_SPEAKER_ROLES};
pub use time::Timestamp;

/// What tests/support/wire.rs checks generated bodies with: a webhook's parse, plan and RPC body.
#[doc(hidden)]
pub mod wire {
    pub use crate::event::parse;
    pub use crate::plan::{plan, Plan};
    pub use crate::roles::Roles;
    pub use crate::time::Timestamp;

    /// The RPC body the function sends for a plan's arguments.
    pub fn rpc_body(args: &crate::plan::ApplyArgs<'_>) -> String {
        crate::document::write(args)
    }
}

/// Reconcile: the pass, its I/O seam and its answer (the boundary runs it on `fetch`).
pub mod reconciliation {
    pub use crate::facts::{Correction, Counts, Fact};
    pub use crate::hms_api::Api;
    pub use crate::http::Http;
    pub use crate::reconcile::{admit, build_facts, is_route, reply, run, Pass, Summary};
    pub use crate::token::{mint, TokenCache};
}
