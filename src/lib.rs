//! hms-webhook: 100ms webhooks -> exact live-room counts and trending in Supabase Postgres.
//!
//! One webhook, start to end (`docs/design.md` §1 draws it; §2 lists the modules):
//!
//! 1. The Deno shim builds one `WebhookHandler` (`src/wasm.rs`) per isolate from the variables
//!    [`Config::from_env`] reads, checked once; a bad value makes every answer 500.
//! 2. The boundary asks [`preflight`] about the method and declared size (405 / 413 before any
//!    body is read), reads at most the size limit, the credential headers and the clock into an
//!    [`Incoming`].
//! 3. [`begin`] checks the signature or secret header over the raw bytes, reads the body with
//!    serde (100ms envelope or legacy flat format), bounds its timestamp, classifies the role and
//!    plans: [`Step::Respond`] (refused or ignored) or [`Step::Call`], the one
//!    `hms_apply_event` RPC as an HTTP request.
//! 4. The boundary sends it with `fetch`; [`finish`] turns the [`Outcome`] into the [`Reply`]:
//!    200 for the RPC's own verdicts, 503 (100ms retries) for anything else.
//! 5. The boundary writes `Reply::log`, the request's one JSON log line, and answers.
//!
//! `POST …/reconcile` is the other route: admitted like a webhook, then one pass compares the
//! live rooms with 100ms's API over the same HTTP model ([`reconciliation`]).
//!
//! Deploying and configuring the function: `README.md`. What the database makes of each event
//! (the counting rules): `docs/counting.md`; reconcile: `docs/reconcile.md`.
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

// Private modules behind one flat API: what the fuzzer, the bench and the tests call, and what
// the boundary calls that the native build would otherwise see as unused (src/wasm.rs is
// wasm32-only). A new route adds its step function and re-exports it here.
// `wire` re-exports the parse and the plan for the histories test, which sends each generated
// event through the function's own steps (tests/support/wire.rs).
mod config;
mod document;
mod error;
mod http;
mod reconcile;
mod reply;
mod roles;
mod signature;
mod time;
#[cfg(target_arch = "wasm32")]
mod wasm;
mod webhook;

pub use config::Config;
pub use http::Outcome;
pub use reply::Reply;
pub use time::Timestamp;
pub use webhook::event::{Action, EVENT_ACTIONS};
pub use webhook::handler::{begin, finish, misconfigured, preflight, Incoming, Step};

/// What tests/support/wire.rs checks generated bodies with: a webhook's parse, plan and RPC body.
#[doc(hidden)]
pub mod wire {
    pub use crate::roles::Roles;
    pub use crate::time::Timestamp;
    pub use crate::webhook::event::parse;
    pub use crate::webhook::plan::{plan, Plan};

    /// The RPC body the function sends for a plan's arguments.
    pub fn rpc_body(args: &crate::webhook::plan::ApplyArgs<'_>) -> String {
        crate::document::write(args)
    }
}

/// Reconcile as the boundary runs it on `POST …/reconcile`: admission, the pass over its I/O
/// seam, the answer.
pub mod reconciliation {
    pub use crate::http::Http;
    pub use crate::reconcile::hms_api::Api;
    pub use crate::reconcile::token::TokenCache;
    pub use crate::reconcile::{admit, is_route, reply, run, Pass};
}
