//! What the database test phases share: the run context (connections, seed, weights), the
//! pass/fail tally, the model-versus-row comparison and small event builders.

use std::time::{Duration, Instant};

use super::trending::{rank_key, Weights};
use postgres::types::{FromSqlOwned, ToSql};
use postgres::{Client, GenericClient};

use super::db::{create_room_sql, describe, DbState, Driver, ROOM_PREFIX};
use super::model::{Action, Event, Micros, RoleClass, RoomState};
use super::time::rfc3339;

/// Checks passed and failed; each behaviour test prints one `ok`/`FAILED` line.
#[derive(Default)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
}

impl Tally {
    pub fn record(&mut self, name: &str, started: Instant, result: Result<String, String>) {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(note) => {
                self.passed += 1;
                println!(
                    "ok     {name} ({ms:.0} ms){}",
                    if note.is_empty() {
                        String::new()
                    } else {
                        format!(": {note}")
                    }
                );
            }
            Err(e) => {
                self.failed += 1;
                println!("FAILED {name} ({ms:.0} ms): {e}");
            }
        }
    }
}

/// Connections and settings of one run.
pub struct Ctx {
    pub url: String,
    /// The login role (a superuser): setup, DDL, and writes an app would make.
    pub admin: Client,
    /// `service_role`, the role PostgREST uses for the webhook's RPC.
    pub svc: Client,
    pub seed: u64,
    pub weights: Weights,
    /// Applies whole histories on `svc`.
    pub driver: Driver,
    /// Time spent in the first and the second delivery of the histories.
    pub spent: [Duration; 2],
}

/// Differences between the database row and the model, empty when they agree.
pub fn compare(got: &DbState, want: &RoomState, w: &Weights) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut field = |name: &str, g: String, e: String| {
        if g != e {
            diffs.push(format!("{name}: database {g}, model {e}"));
        }
    };
    field(
        "listener_count",
        got.listener_count.to_string(),
        want.listener_count.to_string(),
    );
    field(
        "speaker_count",
        got.speaker_count.to_string(),
        want.speaker_count.to_string(),
    );
    field("is_live", got.is_live.to_string(), want.is_live.to_string());
    field(
        "last_active_at",
        rfc3339(got.last_active_at),
        rfc3339(want.last_active_at),
    );
    field(
        "current_session",
        format!("{:?}", got.current_session),
        format!("{:?}", want.current_session),
    );
    if got.recap != want.recap {
        diffs.push(format!(
            "recap (unique participants, participant µs) of closed sessions: database {:?}, model {:?}",
            got.recap, want.recap
        ));
    }
    if got.present != want.present {
        diffs.push(format!(
            "present peers: database {:?}, model {:?}",
            got.present, want.present
        ));
    }
    let key = rank_key(
        want.listener_count,
        want.speaker_count,
        got.featured,
        want.last_active_at as f64 / 1e6,
        w,
    );
    if !close_rel(got.trending_rank, key, 1e-9) {
        diffs.push(format!(
            "trending_rank: database {:?}, rank_key {:?}",
            got.trending_rank, key
        ));
    }
    diffs
}

/// Both absent, or equal within `rel` relative error.
pub fn close_rel(a: Option<f64>, b: Option<f64>, rel: f64) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x == y || (x - y).abs() <= rel * x.abs().max(y.abs()),
        _ => false,
    }
}

/// `map_err` shorthand: a database error as readable text.
pub fn q(e: postgres::Error) -> String {
    describe(&e)
}

/// A room id unique to this run and test (removed by the next run if left behind).
pub fn room_name(ctx: &Ctx, what: &str) -> String {
    format!("{ROOM_PREFIX}{what}:{:x}", ctx.seed)
}

/// A fresh room named after `what`, created as the app would, last active at `at`.
pub fn new_room(ctx: &mut Ctx, what: &str, at: Micros) -> Result<String, String> {
    let room = room_name(ctx, what);
    ctx.svc
        .batch_execute(&create_room_sql(&room, at))
        .map_err(q)?;
    Ok(room)
}

/// An event without peer fields.
pub fn event(id: &str, action: Action, session: &str, at: Micros) -> Event {
    Event::new(id, action, session, at)
}

/// A peer join with the role named after its class.
pub fn join(id: &str, session: &str, peer: &str, class: RoleClass, at: Micros) -> Event {
    Event {
        peer_id: Some(peer.to_string()),
        role: Some(class.as_str().to_string()),
        role_class: Some(class),
        ..event(id, Action::PeerJoin, session, at)
    }
}

/// The one value a query answers (its first row's first column).
pub fn query_value<T: FromSqlOwned>(
    client: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<T, String> {
    Ok(client.query_one(sql, params).map_err(q)?.get(0))
}

/// The database clock, in microseconds since the epoch.
pub fn db_now(client: &mut Client) -> Result<Micros, String> {
    query_value(
        client,
        "select (extract(epoch from clock_timestamp()) * 1000000)::bigint",
        &[],
    )
}
