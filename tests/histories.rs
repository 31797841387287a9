//! Database tests of the counting model (harness = false, feature `db-tests`, needs DATABASE_URL):
//! 1. ≥10,000 generated histories — webhook events, snapshot fact batches (`hms_apply_facts`) and
//!    runs of the 12-hour rule (`hms_close_expired_sessions`), shuffled and duplicated — through
//!    the real database functions, each room compared with the model (and replayed once more:
//!    nothing may change); every event is first sent through the function's own parsing and plan
//!    as the webhook body a sender posts, and bodies that must be refused are checked to be; a
//!    mismatch is shrunk and printed;
//! 2. trending parity: SQL `hms_trending_score` / `hms_trending_rank` against Rust `trending`;
//! 3. SQL behaviour: idempotent migrations, unknown rooms, auto-create, duplicates, featured,
//!    refresh, prune, permissions, the feed's index plan, concurrency and a 5,000-peer room.

#[allow(dead_code)]
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::behaviour::{
    auto_create, duplicate, featured_update, invalid_arguments, migrations_reapply, permissions,
    prune, refresh, settings_row_missing, settings_weights, trending_defaults, unknown_room,
};
use support::db::{
    self, connect, describe, read_state, text, DbState, Driver, HistoryArgs, ROOM_PREFIX,
};
use support::existing_rooms::existing_rooms_kept;
use support::generate::{history, Rng, Shape};
use support::harness::{compare, Ctx, Tally};
use support::load::{concurrent_one_room, concurrent_twenty_rooms, feed_plan, hot_room};
use support::model::{expected_after, Delivery, Event, Initial, Micros, RoomState};
use support::parity::phase_parity;
use support::rules::{
    duplicate_writes_no_room, facts_batch, received_bound, rules_permissions, twelve_hour_rule,
};
use support::shrink::minimize;
use support::time::rfc3339;
use support::wire;

const DEFAULT_SEED: u64 = 0x100D_5EED;
const APPLY_SIGNATURE: &str = "public.hms_apply_event(text,text,text,text,text,timestamptz,text,text,text,timestamptz,timestamptz,boolean,timestamptz,text,text,timestamptz)";

fn main() {
    let code = match run() {
        Ok(tally) => {
            println!("{} passed, {} failed", tally.passed, tally.failed);
            i32::from(tally.failed > 0)
        }
        Err(e) => {
            eprintln!("histories: {e}");
            println!("0 passed, 1 failed");
            1
        }
    };
    std::process::exit(code);
}

fn env_u64(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.map_err(|e| format!("{name}={v:?} is not a number: {e}"))
        }
    }
}

fn run() -> Result<Tally, String> {
    let url = db::database_url()?;
    let histories = env_u64("HMS_HISTORIES", 10_000)?;
    let seed = env_u64("HMS_SEED", DEFAULT_SEED)?;
    println!(
        "histories: seed {seed:#x} (set HMS_SEED to change), {histories} histories (HMS_HISTORIES)"
    );

    let mut admin = connect(&url, None)?;
    let installed: bool = admin
        .query_one(
            "select to_regprocedure($1) is not null",
            &[&APPLY_SIGNATURE],
        )
        .map_err(|e| describe(&e))?
        .get(0);
    if !installed {
        return Err(format!(
            "{APPLY_SIGNATURE} is missing: apply scripts/stack/supabase_roles.sql and supabase/migrations/*.sql first"
        ));
    }
    let removed = remove_test_rooms(&mut admin)?;
    if removed > 0 {
        println!("histories: removed {removed} rooms left by an earlier run");
    }
    let mut svc = connect(&url, Some("service_role"))?;
    let driver = Driver::install(&mut svc)?;
    // The weights the database uses (its `hms_settings` row), not a copy of them.
    let weights = settings_weights(&mut admin)?;
    let mut ctx = Ctx {
        url,
        admin,
        svc,
        seed,
        weights,
        driver,
        spent: [Duration::ZERO; 2],
    };
    let mut tally = Tally::default();

    phase_histories(&mut ctx, histories, &mut tally)?;
    if tally.failed > 0 {
        return Ok(tally);
    }
    phase_parity(&mut ctx, &mut tally)?;
    phase_behaviour(&mut ctx, &mut tally);

    if tally.failed == 0 {
        remove_test_rooms(&mut ctx.admin)?;
    }
    Ok(tally)
}

/// Deletes every room this test made (their names start with `ROOM_PREFIX`).
fn remove_test_rooms(admin: &mut postgres::Client) -> Result<u64, String> {
    let sql = format!(
        "delete from public.rooms where hms_room_id like {}",
        text(&format!("{ROOM_PREFIX}%"))
    );
    admin.execute(&sql, &[]).map_err(|e| describe(&e))
}

// ---------------------------------------------------------------------------------------------
// Phase 1: generated histories
// ---------------------------------------------------------------------------------------------

/// A history ready to send: its delivery, the room the model expects, and the driver's arguments.
struct Prepared {
    room: String,
    before: Micros,
    delivery: Vec<Delivery>,
    want: RoomState,
    args: HistoryArgs,
}

fn prepare(room: String, before: Micros, delivery: Vec<Delivery>) -> Prepared {
    let want = expected_after(
        Initial {
            is_live: false,
            last_active_at: before,
        },
        &delivery,
    );
    let args = HistoryArgs::new(&delivery);
    Prepared {
        room,
        before,
        delivery,
        want,
        args,
    }
}

/// Applies a delivery to a fresh room, checks statuses, the row against the model, the RPC's
/// answer against the row, then re-delivers everything and checks that nothing moved.
fn check_history(ctx: &mut Ctx, p: &Prepared) -> Result<(), String> {
    let clock = Instant::now();
    let first = ctx
        .driver
        .run(&mut ctx.svc, &p.room, Some(p.before), &p.args)?;
    ctx.spent[0] += clock.elapsed();
    let mut seen = HashSet::new();
    check_statuses(&p.delivery, &first.statuses, "", |d| match d {
        Delivery::Event(e) if seen.insert(e.event_id.as_str()) => "applied",
        Delivery::Event(_) => "duplicate",
        Delivery::Facts(_) => "applied",
        Delivery::Expire(_) => "expired",
    })?;
    let got = read_state(&mut ctx.svc, &p.room)?;
    let diffs = compare(&got, &p.want, &ctx.weights);
    if !diffs.is_empty() {
        return Err(diffs.join("; "));
    }
    // The last call's answer describes the room (the 12-hour rule answers for every room).
    if let (Some(last), Some(Delivery::Event(_) | Delivery::Facts(_))) =
        (&first.last, p.delivery.last())
    {
        check_answer_room(last, &p.room, &got)?;
    }
    let clock = Instant::now();
    let replay = ctx.driver.run(&mut ctx.svc, &p.room, None, &p.args)?;
    ctx.spent[1] += clock.elapsed();
    check_statuses(
        &p.delivery,
        &replay.statuses,
        "second delivery: ",
        |d| match d {
            Delivery::Event(_) => "duplicate",
            Delivery::Facts(_) => "applied",
            Delivery::Expire(_) => "expired",
        },
    )?;
    let again = read_state(&mut ctx.svc, &p.room)?;
    if again != got {
        return Err(format!(
            "second delivery changed the room: {got:?} -> {again:?}"
        ));
    }
    Ok(())
}

/// Each delivery's answer must be the status `want` gives it; `when` prefixes the complaint.
fn check_statuses<'a>(
    delivery: &'a [Delivery],
    statuses: &[String],
    when: &str,
    mut want: impl FnMut(&'a Delivery) -> &'static str,
) -> Result<(), String> {
    for (d, status) in delivery.iter().zip(statuses) {
        let want_status = want(d);
        if status != want_status {
            return Err(format!(
                "{when}{} answered {status}, expected {want_status}",
                describe_delivery(d)
            ));
        }
    }
    Ok(())
}

/// The `room` object of an RPC answer must describe the row (design §4/§6).
fn check_answer_room(answer: &serde_json::Value, room: &str, got: &DbState) -> Result<(), String> {
    let r = &answer["room"];
    let ok = r["hms_room_id"] == room
        && r["listener_count"] == got.listener_count
        && r["speaker_count"] == got.speaker_count
        && r["is_live"] == got.is_live
        && r["last_active_at"] == rfc3339(got.last_active_at)
        && r["trending_score"].is_number()
        && (answer["reason"].is_null() || answer["status"] == "applied");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "RPC answer {answer} does not match the row {got:?}"
        ))
    }
}

fn phase_histories(ctx: &mut Ctx, count: u64, tally: &mut Tally) -> Result<(), String> {
    let started = Instant::now();
    let (mut events, mut largest, mut batches, mut expiries, mut refused) = (0, 0, 0, 0, 0);
    let mut failure = None;
    let seed = ctx.seed;
    // Generating, modelling, the function's parsing and plan, and writing SQL happen on a second
    // thread while the database works.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Prepared, Result<usize, String>)>(64);
        scope.spawn(move || {
            for i in 0..count {
                let mut rng = Rng::for_item(seed, i);
                let h = history(&mut rng, Shape::default());
                let room = format!("{ROOM_PREFIX}h:{seed:x}:{i}");
                let through_the_function = check_wire(&mut rng, &room, &h.events);
                let p = prepare(room, h.before, h.delivery);
                if tx.send((i, p, through_the_function)).is_err() {
                    break; // the checker stopped at a failure
                }
            }
        });
        for (i, p, through_the_function) in &rx {
            let result = through_the_function.and_then(|n| {
                refused += n;
                check_history(ctx, &p)
            });
            if let Err(e) = result {
                failure = Some((i, p, e));
                break;
            }
            events += p.delivery.len();
            largest = largest.max(p.delivery.len());
            batches += p
                .delivery
                .iter()
                .filter(|d| matches!(d, Delivery::Facts(_)))
                .count();
            expiries += p
                .delivery
                .iter()
                .filter(|d| matches!(d, Delivery::Expire(_)))
                .count();
        }
        drop(rx);
    });
    if let Some((i, p, first)) = failure {
        tally.record(&format!("history {i}"), started, Err(first.clone()));
        report_shrunk(ctx, i, &p, &first);
        return Ok(());
    }
    let secs = started.elapsed().as_secs_f64();
    tally.passed += count as usize;
    println!("histories: {count} checked, {events} deliveries ({batches} snapshot fact batches, {expiries} runs of the 12-hour rule), largest history {largest}, {refused} bodies refused by the function as they must be, {secs:.1} s");
    println!(
        "histories: first delivery {:.1} s, second delivery {:.1} s (all answered duplicate, no row changed), reads and checks {:.1} s",
        ctx.spent[0].as_secs_f64(),
        ctx.spent[1].as_secs_f64(),
        secs - ctx.spent[0].as_secs_f64() - ctx.spent[1].as_secs_f64()
    );
    Ok(())
}

/// Shrinks a failing delivery (ddmin, each try in a fresh room) and prints the minimal one.
fn report_shrunk(ctx: &mut Ctx, index: u64, failing: &Prepared, first: &str) {
    println!(
        "history {index} (seed {:#x}) failed with {} events: {first}",
        ctx.seed,
        failing.delivery.len()
    );
    let before = failing.before;
    let mut attempt = 0u64;
    // Each try gets its own room and its own event ids (the ledger remembers ids across rooms);
    // events that shared an id still share one.
    let retagged = |deliveries: &[Delivery], tag: &str| -> Vec<Delivery> {
        deliveries
            .iter()
            .map(|d| match d {
                Delivery::Event(e) => Delivery::Event(Event {
                    event_id: format!("{}#{tag}", e.event_id),
                    ..e.clone()
                }),
                other => other.clone(),
            })
            .collect()
    };
    let minimal = minimize(&failing.delivery, 5000, |candidate| {
        attempt += 1;
        let room = format!("{ROOM_PREFIX}shrink:{:x}:{index}:{attempt}", ctx.seed);
        check_history(
            ctx,
            &prepare(room, before, retagged(candidate, &attempt.to_string())),
        )
        .is_err()
    });
    let room = format!("{ROOM_PREFIX}shrink:{:x}:{index}:min", ctx.seed);
    let minimal = retagged(&minimal, "min");
    let outcome = check_history(ctx, &prepare(room.clone(), before, minimal.clone()));
    println!(
        "minimal failing delivery ({} events, {attempt} tries), in delivery order:",
        minimal.len()
    );
    for d in &minimal {
        println!("  {}", describe_delivery(d));
    }
    println!(
        "  room before: last_active_at {}, not live",
        rfc3339(before)
    );
    println!(
        "model:    {:?}",
        expected_after(
            Initial {
                is_live: false,
                last_active_at: before
            },
            &minimal
        )
    );
    match read_state(&mut ctx.svc, &room) {
        Ok(state) => println!("database: {state:?}"),
        Err(e) => println!("database: {e}"),
    }
    println!("check:    {outcome:?}");
}

/// Every event as the webhook body its sender posts must become exactly that event in the
/// function's parsing and plan; and its refused variants must be refused. Ok(refusals checked).
fn check_wire(rng: &mut Rng, room: &str, events: &[Event]) -> Result<usize, String> {
    let mut refused = 0;
    for e in events {
        wire::check(room, e)?;
        if rng.chance(5) {
            for r in wire::refused(rng, room, e) {
                wire::check_refused(&r)?;
                refused += 1;
            }
        }
    }
    Ok(refused)
}

fn describe_delivery(d: &Delivery) -> String {
    match d {
        Delivery::Event(e) => describe_event(e),
        Delivery::Facts(f) => format!(
            "facts         observed={} received={} {}",
            rfc3339(f.observed_at),
            rfc3339(f.received_at),
            db::facts_json(f)
        ),
        Delivery::Expire(now) => format!("12-hour rule  now={}", rfc3339(*now)),
    }
}

fn describe_event(e: &Event) -> String {
    format!(
        "{:<13} id={} session={:?} started={} peer={} role={}/{} at={} joined={} received={}",
        e.action.as_str(),
        e.event_id,
        e.session_id,
        e.session_started_at.map_or("-".into(), rfc3339),
        e.peer_id.as_deref().unwrap_or("-"),
        e.role.as_deref().unwrap_or("-"),
        e.role_class.map_or("-", |c| c.as_str()),
        rfc3339(e.event_at),
        e.joined_at.map_or("-".into(), rfc3339),
        e.received_at.map_or("-".into(), rfc3339)
    )
}

// ---------------------------------------------------------------------------------------------
// Phase 2, trending parity, is support::parity. Phase 3: SQL behaviour (support::behaviour
// and support::load), each test asserting real rows.
// ---------------------------------------------------------------------------------------------

/// One behaviour test: Ok(note to print) or Err(what went wrong).
type Test = fn(&mut Ctx) -> Result<String, String>;

fn phase_behaviour(ctx: &mut Ctx, tally: &mut Tally) {
    let tests: &[(&str, Test)] = &[
        ("migrations applied again are a no-op", migrations_reapply),
        (
            "an app's existing rooms table is kept and extended, never recreated",
            existing_rooms_kept,
        ),
        (
            "invalid arguments are refused with 22023 and write nothing",
            invalid_arguments,
        ),
        (
            "unknown room is ignored and nothing is written",
            unknown_room,
        ),
        (
            "auto-create creates the room once, even concurrently",
            auto_create,
        ),
        ("a duplicate event id changes nothing", duplicate),
        (
            "trending defaults: one place (hms_settings column defaults), every SQL copy agrees",
            trending_defaults,
        ),
        (
            "a duplicate id for an unknown room under auto-create creates no room",
            duplicate_writes_no_room,
        ),
        (
            "last_active_at never passes received + 120 s; activity makes no session",
            received_bound,
        ),
        (
            "hms_apply_facts: answer, idempotence, refusals, unknown room",
            facts_batch,
        ),
        (
            "hms_close_expired_sessions closes at start + 12 h",
            twelve_hour_rule,
        ),
        (
            "anon/authenticated cannot call the facts RPC, the 12-hour rule or a step",
            rules_permissions,
        ),
        (
            "featured set by the app updates score and rank at once",
            featured_update,
        ),
        (
            "without the settings row the rooms trigger scores with the column defaults",
            settings_row_missing,
        ),
        (
            "hms_refresh_trending decays stale scores and leaves current rows alone",
            refresh,
        ),
        ("hms_prune_events deletes only old ledger rows", prune),
        (
            "anon/authenticated cannot apply events or read internals, can read the feed",
            permissions,
        ),
        (
            "trending_rooms uses the rank index on 100,000 rooms",
            feed_plan,
        ),
        ("64 connections on one room end exact", concurrent_one_room),
        (
            "64 connections on 20 rooms end exact",
            concurrent_twenty_rooms,
        ),
        ("5,000-join hot room ends with exactly 5,000", hot_room),
    ];
    for (name, test) in tests {
        let started = Instant::now();
        let result = test(ctx);
        tally.record(name, started, result);
    }
}
