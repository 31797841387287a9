//! The webhook route: one 100ms event from its raw bytes to one `hms_apply_event` RPC and the
//! answer (`handler`: preflight, begin, finish), through its body (`event`), its plan (`plan`)
//! and the RPC's request and answer (`rest`).

pub mod event;
pub mod handler;
pub mod plan;
pub mod rest;
