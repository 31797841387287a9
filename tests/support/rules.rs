//! SQL behaviour of the counting rules v2 and the snapshot facts, each asserting real rows:
//! hms_apply_facts (answer, idempotence, refusals, unknown rooms), the 12-hour rule, a duplicate
//! id under auto-create, the received-time bound of last_active_at, and who may call what.

use postgres::Client;
use serde_json::{json, Value};

use super::behaviour::{expect_sqlstate, table_counts};
use super::db::{apply_all, connect, create_room_sql, read_state, simple_values, text};
use super::harness::{event, join, q, query_value, room_name, Ctx};
use super::model::{Action, Event, RoleClass};
use super::time::rfc3339;

const T0: i64 = 1_728_064_800_000_000; // 2024-10-04T18:00:00Z
const S: i64 = 1_000_000;

fn one(client: &mut Client, sql: &str) -> Result<Value, String> {
    let values = simple_values(client, sql).map_err(q)?;
    let text = values.into_iter().next().flatten().ok_or("no answer")?;
    serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))
}

fn facts_call(room: &str, observed: i64, facts: &Value) -> String {
    format!(
        "select public.hms_apply_facts({}, '{}', '{}', {}::jsonb)",
        text(room),
        rfc3339(observed),
        rfc3339(observed + 60 * S),
        text(&facts.to_string())
    )
}

/// One room's snapshot: the answer's shape, before/changed/sessions_closed, and nothing changes
/// when it is applied again; malformed batches are refused whole; unknown rooms are ignored.
pub fn facts_batch(ctx: &mut Ctx) -> Result<String, String> {
    let room = room_name(ctx, "facts");
    ctx.svc
        .batch_execute(&create_room_sql(&room, T0 - 3600 * S))
        .map_err(q)?;
    apply_all(
        &mut ctx.svc,
        &room,
        &[
            Event {
                session_started_at: Some(T0),
                ..event("facts-open", Action::SessionOpen, "s1", T0)
            },
            join("facts-j1", "s1", "p1", RoleClass::Listener, T0 + 10 * S),
            join("facts-j2", "s1", "p2", RoleClass::Listener, T0 + 20 * S),
        ],
        false,
    )?;
    let batch = json!([
        {"kind": "session", "session_id": "s1", "started_at": rfc3339(T0)},
        {"kind": "peer", "session_id": "s1", "peer_id": "p1", "role": "host", "role_class": "speaker",
         "joined_at": rfc3339(T0 + 10 * S)},
        {"kind": "peer", "session_id": "s1", "peer_id": "p3", "role": "listener", "role_class": "listener",
         "joined_at": rfc3339(T0 + 30 * S)},
        {"kind": "present_set", "session_id": "s1", "peer_ids": ["p1", "p3"]}
    ]);
    let first = one(&mut ctx.svc, &facts_call(&room, T0 + 100 * S, &batch))?;
    let want_room = json!({"hms_room_id": room, "is_live": true, "listener_count": 1,
                           "speaker_count": 1});
    for (k, v) in want_room.as_object().into_iter().flatten() {
        if first["room"][k] != *v {
            return Err(format!("answer {first}: room.{k} is not {v}"));
        }
    }
    let want = json!({"is_live": true, "listener_count": 2, "speaker_count": 0});
    if first["status"] != "applied"
        || first["before"] != want
        || first["changed"] != true
        || first["sessions_closed"] != 0
    {
        return Err(format!("first answer {first}"));
    }
    let state = read_state(&mut ctx.svc, &room)?;
    let again = one(&mut ctx.svc, &facts_call(&room, T0 + 100 * S, &batch))?;
    if again["changed"] != false || read_state(&mut ctx.svc, &room)? != state {
        return Err(format!(
            "applying the same facts again changed something: {again}"
        ));
    }
    // 100ms reports the session inactive: closed, counted in sessions_closed, for good.
    let closing = json!([{"kind": "session", "session_id": "s1", "started_at": rfc3339(T0),
                          "closed_at": rfc3339(T0 + 200 * S)}]);
    let closed = one(&mut ctx.svc, &facts_call(&room, T0 + 300 * S, &closing))?;
    if closed["sessions_closed"] != 1 || closed["room"]["is_live"] != false {
        return Err(format!("closing answer {closed}"));
    }
    let late = apply_all(
        &mut ctx.svc,
        &room,
        &[join(
            "facts-j4",
            "s1",
            "p4",
            RoleClass::Listener,
            T0 + 201 * S,
        )],
        false,
    )?;
    if late[0]["room"]["is_live"] != false || late[0]["room"]["listener_count"] != 0 {
        return Err(format!(
            "a join after the reported close counted: {}",
            late[0]
        ));
    }

    let before = table_counts(&mut ctx.admin)?;
    let unknown_call = facts_call(&room_name(ctx, "facts-unknown"), T0, &batch);
    let unknown = one(&mut ctx.svc, &unknown_call)?;
    if unknown != json!({"status": "ignored", "reason": "unknown room", "room": null}) {
        return Err(format!("unknown room answered {unknown}"));
    }
    let bad = [
        ("not an array", json!({"kind": "session"})),
        (
            "unknown kind",
            json!([{"kind": "guess", "session_id": "s1"}]),
        ),
        (
            "flat-format session",
            json!([{"kind": "session", "session_id": ""}]),
        ),
        (
            "peer without id",
            json!([{"kind": "peer", "session_id": "s1"}]),
        ),
        (
            "unknown class",
            json!([{"kind": "peer", "session_id": "s1", "peer_id": "x", "role_class": "vip"}]),
        ),
        (
            "present_set without ids",
            json!([{"kind": "present_set", "session_id": "s1"}]),
        ),
        (
            "infinite time",
            json!([{"kind": "session", "session_id": "s9", "started_at": "infinity"}]),
        ),
        // A good fact first: the whole batch is refused, nothing of it is kept.
        (
            "a bad fact after a good one",
            json!([{"kind": "present_set", "session_id": "s1", "peer_ids": []},
                                               {"kind": "guess", "session_id": "s1"}]),
        ),
    ];
    for (what, facts) in &bad {
        expect_sqlstate(
            ctx.svc
                .simple_query(&facts_call(&room, T0 + 400 * S, facts)),
            "22023",
            what,
        )?;
    }
    if table_counts(&mut ctx.admin)? != before {
        return Err("a refused or ignored batch wrote rows".into());
    }
    Ok(format!("{} malformed batches refused", bad.len()))
}

/// hms_close_expired_sessions closes envelope sessions started more than 12 h before p_now at
/// start + 12 h, says which rooms moved, and finds nothing the second time.
pub fn twelve_hour_rule(ctx: &mut Ctx) -> Result<String, String> {
    let room = room_name(ctx, "expire");
    ctx.svc
        .batch_execute(&create_room_sql(&room, T0 - 3600 * S))
        .map_err(q)?;
    // Far in the past, so that no other test's session is older.
    let t = T0 - 400 * 86_400 * S;
    apply_all(
        &mut ctx.svc,
        &room,
        &[
            Event {
                session_started_at: Some(t),
                ..event("exp-open", Action::SessionOpen, "old", t)
            },
            join("exp-j1", "old", "p1", RoleClass::Speaker, t + S),
        ],
        false,
    )?;
    let early = one(
        &mut ctx.svc,
        &format!(
            "select public.hms_close_expired_sessions('{}')",
            rfc3339(t + 12 * 3600 * S)
        ),
    )?;
    if early["rooms"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["hms_room_id"] == room.as_str()))
    {
        return Err(format!("closed at exactly 12 h: {early}"));
    }
    let now = t + 12 * 3600 * S + 1;
    let answer = one(
        &mut ctx.svc,
        &format!(
            "select public.hms_close_expired_sessions('{}')",
            rfc3339(now)
        ),
    )?;
    let entry = answer["rooms"]
        .as_array()
        .and_then(|rooms| rooms.iter().find(|r| r["hms_room_id"] == room.as_str()))
        .cloned()
        .ok_or_else(|| format!("room not in the answer {answer}"))?;
    if entry["before"] != json!({"is_live": true, "listener_count": 0, "speaker_count": 1})
        || entry["room"]["is_live"] != false
        || entry["room"]["speaker_count"] != 0
    {
        return Err(format!("answer for the room: {entry}"));
    }
    let closed_at: String = query_value(
        &mut ctx.admin,
        "select to_char(s.closed_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
             from hms_private.sessions s join public.rooms r on r.id = s.room_id \
             where r.hms_room_id = $1 and s.session_id = 'old'",
        &[&room],
    )?;
    if closed_at != rfc3339(t + 12 * 3600 * S) {
        return Err(format!("closed at {closed_at}, expected start + 12 h"));
    }
    let again = one(
        &mut ctx.svc,
        &format!(
            "select public.hms_close_expired_sessions('{}')",
            rfc3339(now)
        ),
    )?;
    if again["rooms"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["hms_room_id"] == room.as_str()))
    {
        return Err(format!("the second run touched the room again: {again}"));
    }
    Ok(String::new())
}

/// A known event id sent again for an unknown room with auto-create: `duplicate`, no room.
pub fn duplicate_writes_no_room(ctx: &mut Ctx) -> Result<String, String> {
    let room = room_name(ctx, "dup-x");
    ctx.svc
        .batch_execute(&create_room_sql(&room, T0))
        .map_err(q)?;
    let e = join("dup-auto-1", "s1", "p1", RoleClass::Listener, T0 + S);
    apply_all(&mut ctx.svc, &room, std::slice::from_ref(&e), true)?;
    let before = table_counts(&mut ctx.admin)?;
    let other = room_name(ctx, "dup-y-never-created");
    let answer = apply_all(&mut ctx.svc, &other, &[e], true)?;
    if answer[0]["status"] != "duplicate" || answer[0]["room"] != Value::Null {
        return Err(format!("answered {}", answer[0]));
    }
    if table_counts(&mut ctx.admin)? != before {
        return Err("the duplicate created a room".into());
    }

    // The same while the first delivery is still in flight: the second one creates room Z,
    // then finds the id taken once the first commits, and takes Z back.
    let e = join("dup-auto-2", "s1", "p2", RoleClass::Listener, T0 + 2 * S);
    let mut first = connect(&ctx.url, Some("service_role"))?;
    first.batch_execute("begin").map_err(q)?;
    apply_all(&mut first, &room, std::slice::from_ref(&e), true)?;
    let late = room_name(ctx, "dup-z-never-created");
    let url = ctx.url.clone();
    let (late_room, event) = (late.clone(), e.clone());
    let second = std::thread::spawn(move || -> Result<Value, String> {
        let mut c = connect(&url, Some("service_role"))?;
        Ok(apply_all(&mut c, &late_room, &[event], true)?.remove(0))
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    first.batch_execute("commit").map_err(q)?;
    let answer = second
        .join()
        .map_err(|_| "the second delivery panicked".to_string())??;
    if answer["status"] != "duplicate" || answer["room"] != Value::Null {
        return Err(format!("the in-flight duplicate answered {answer}"));
    }
    let exists: bool = query_value(
        &mut ctx.admin,
        "select exists (select 1 from public.rooms where hms_room_id = $1)",
        &[&late],
    )?;
    if exists {
        return Err("the in-flight duplicate left its auto-created room".into());
    }
    Ok(String::new())
}

/// last_active_at never passes p_received_at + 120 s; activity creates no session.
pub fn received_bound(ctx: &mut Ctx) -> Result<String, String> {
    let room = room_name(ctx, "received");
    ctx.svc
        .batch_execute(&create_room_sql(&room, T0 - 3600 * S))
        .map_err(q)?;
    let activity = Event {
        received_at: Some(T0),
        ..event("recv-t1", Action::Activity, "s1", T0 - S)
    };
    let ahead = Event {
        received_at: Some(T0),
        ..join("recv-j1", "s1", "p1", RoleClass::Listener, T0 + 86_400 * S)
    };
    let first = apply_all(&mut ctx.svc, &room, &[activity], false)?;
    let sessions: i64 = query_value(
        &mut ctx.admin,
        "select count(*) from hms_private.sessions s join public.rooms r on r.id = s.room_id \
             where r.hms_room_id = $1",
        &[&room],
    )?;
    if sessions != 0 || first[0]["room"]["is_live"] != false {
        return Err(format!(
            "activity made a session or a live room: {}",
            first[0]
        ));
    }
    apply_all(&mut ctx.svc, &room, &[ahead], false)?;
    let state = read_state(&mut ctx.svc, &room)?;
    if state.last_active_at != T0 + 120 * S {
        return Err(format!(
            "last_active_at {}, expected received + 120 s",
            rfc3339(state.last_active_at)
        ));
    }
    let score: f64 = query_value(
        &mut ctx.admin,
        "select score_now::float8 from public.trending_rooms(1000) where hms_room_id = $1",
        &[&room],
    )?;
    if score > 1.0 {
        return Err(format!("score_now {score} exceeds the base score 1"));
    }
    Ok(String::new())
}

/// The API roles cannot call the facts RPC, the 12-hour rule or any step.
pub fn rules_permissions(ctx: &mut Ctx) -> Result<String, String> {
    let calls = [
        "select public.hms_apply_facts('r', now(), now(), '[]')",
        "select public.hms_close_expired_sessions(now())",
        "select hms_private.note_session(gen_random_uuid(), 's', null, null, null, null)",
        "select hms_private.update_room(null, null, null, null, null)",
    ];
    for role in ["anon", "authenticated"] {
        let mut c = connect(&ctx.url, Some(role))?;
        for sql in calls {
            expect_sqlstate(c.simple_query(sql), "42501", &format!("{role}: {sql}"))?;
        }
    }
    Ok(String::new())
}
