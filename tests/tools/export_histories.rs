//! Prints generated room histories (the counting tests' generator, tests/support/generate.rs) as
//! JSON lines, for the end-to-end reconcile test to deliver through the function and to feed the
//! 100ms API stand-in with: `cargo run --example export_histories -- <seed> <count>`.
//! Only envelope histories (100ms's API knows nothing of the legacy flat format); activity
//! events are left out (they never change counts).

#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;

use serde_json::json;
use support::generate::{history, Rng, Shape};
use support::model::Action;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let count: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let mut printed = 0;
    let mut index = 0;
    while printed < count {
        let mut rng = Rng::for_item(seed, index);
        index += 1;
        let h = history(&mut rng, Shape::default());
        if h.events.iter().any(|e| e.session_id.is_empty()) {
            continue;
        }
        let events: Vec<_> = h
            .events
            .iter()
            .filter(|e| e.action != Action::Activity)
            .map(|e| {
                json!({
                    "event_id": e.event_id,
                    "action": e.action.as_str(),
                    "session_id": e.session_id,
                    "session_started_at": e.session_started_at,
                    "peer_id": e.peer_id,
                    "role": e.role,
                    "role_class": e.role_class.map(|c| c.as_str()),
                    "event_at": e.event_at,
                    "joined_at": e.joined_at,
                })
            })
            .collect();
        println!("{}", json!({ "index": index - 1, "events": events }));
        printed += 1;
    }
}
