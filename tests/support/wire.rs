//! Model events as the webhook bodies 100ms (or a legacy flat-format sender) posts, and the check
//! that the function's own parsing and plan (`hms_webhook::wire::parse`, `wire::plan`) turn each
//! body into exactly that event's `hms_apply_event` arguments; plus bodies that must be refused
//! (data times far from the envelope timestamp, missing session ids).
//!
//! How a body carries the event time (docs/design.md §5): in its data field (`joined_at`,
//! `left_at`, `role_changed_at`, `session_started_at`, `session_stopped_at`) under a whole-second
//! envelope timestamp, as 100ms sends them; an event whose time is the end of a second is sent
//! without it, so the whole-second envelope timestamp stands in (that is the rule); activity, and
//! an open that reports no start, carry the time in a fractional envelope timestamp.

use hms_webhook::wire::{parse, plan, rpc_body, Plan, Roles, Timestamp};
use serde_json::{json, Map, Value};

use super::generate::{end_of_second, Rng};
use super::model::{Action, Event, Micros};
use super::time::rfc3339;

const SECOND: Micros = 1_000_000;

/// `2024-10-04T18:03:10Z`: the whole second `t` falls in.
fn whole_second(t: Micros) -> String {
    let text = rfc3339(t);
    format!("{}Z", &text[..19])
}

/// The `user_id` and `user_name` a sender sends with peer `peer` (the model has no users: they
/// follow from the peer id).
fn user_of(peer: &str) -> (String, String) {
    (format!("user-{peer}"), format!("Name {peer}"))
}

/// The body a sender posts for `e` to `room`.
pub fn body(room: &str, e: &Event) -> Value {
    let peer = || {
        let mut p = Map::new();
        p.insert("id".into(), json!(e.peer_id));
        if let Some(role) = &e.role {
            p.insert("role".into(), json!(role));
        }
        if let Some((id, name)) = e.peer_id.as_deref().map(user_of) {
            p.insert("user_id".into(), json!(id));
            p.insert("user_name".into(), json!(name));
        }
        Value::Object(p)
    };
    if e.session_id.is_empty() {
        let name = match e.action {
            Action::SessionOpen => "room.started",
            Action::SessionClose => "room.ended",
            Action::PeerJoin => "peer.joined",
            Action::PeerLeave => "peer.left",
            Action::RoleChange => "role.change.success",
            Action::Activity => "track.updated",
        };
        let mut b = json!({"event": name, "room_id": room, "timestamp": e.event_at / 1000});
        if e.peer_id.is_some() {
            b["peer"] = peer();
        }
        return b;
    }
    let stands_in = e.event_at == end_of_second(e.event_at);
    let event_type = match e.action {
        Action::SessionOpen => "session.open.success",
        Action::SessionClose if stands_in => "room.end.success",
        Action::SessionClose => "session.close.success",
        Action::PeerJoin => "peer.join.success",
        Action::PeerLeave => "peer.leave.success",
        Action::RoleChange => "role.change.success",
        Action::Activity => "track.add.success",
    };
    let mut data = json!({"room_id": room, "session_id": e.session_id});
    if let Some(p) = &e.peer_id {
        data["peer_id"] = json!(p);
        if let Some(role) = &e.role {
            data["role"] = json!(role);
        }
        let (id, name) = user_of(p);
        data["user_id"] = json!(id);
        data["user_name"] = json!(name);
    }
    if let Some(s) = e.session_started_at {
        data["session_started_at"] = json!(rfc3339(s));
    }
    if let Some(j) = e.joined_at {
        data["joined_at"] = json!(rfc3339(j));
    }
    let own_field = match e.action {
        Action::PeerJoin => Some("joined_at"),
        Action::PeerLeave => Some("left_at"),
        Action::RoleChange => Some("role_changed_at"),
        Action::SessionClose => Some("session_stopped_at"),
        Action::SessionOpen if e.session_started_at == Some(e.event_at) => None,
        Action::SessionOpen | Action::Activity => None,
    };
    let timestamp = match own_field {
        _ if stands_in => whole_second(e.event_at),
        Some(field) => {
            data[field] = json!(rfc3339(e.event_at));
            whole_second(e.event_at)
        }
        None if e.session_started_at == Some(e.event_at) => whole_second(e.event_at),
        None => rfc3339(e.event_at),
    };
    json!({"version": "2.0", "id": e.event_id, "type": event_type, "timestamp": timestamp,
           "data": data})
}

/// Parses and plans `body` as the function does; Ok(arguments) or Err(error code and message).
pub fn plan_args(body: &[u8], received_at: Micros) -> Result<Value, (String, String)> {
    let event = parse(body).map_err(|e| {
        let (_, code, message) = e.describe();
        (code.to_string(), message.into_owned())
    })?;
    match plan(
        &event,
        &Roles::default(),
        false,
        Timestamp::from_micros(received_at),
    ) {
        Plan::Apply(args, _) => Ok(serde_json::from_str(&rpc_body(&args)).unwrap_or_default()),
        Plan::Ignore(reason) => Err(("ignored".into(), reason.as_str().into())),
    }
}

/// Checks that the function turns `e`'s body into exactly `e`'s arguments.
pub fn check(room: &str, e: &Event) -> Result<(), String> {
    let sent = body(room, e);
    // The envelope timestamp as sent, to the microsecond (flat format: milliseconds).
    let sent_at = match sent["timestamp"].as_str() {
        None => rfc3339(e.event_at / 1000 * 1000),
        Some(whole) if whole.len() == 20 => format!("{}.000000Z", &whole[..19]),
        Some(exact) => exact.to_string(),
    };
    let body = sent.to_string();
    let received = e.received_at.unwrap_or(e.event_at);
    let args = plan_args(body.as_bytes(), received)
        .map_err(|(code, m)| format!("the function refused {body}: {code} {m}"))?;
    let opt = |t: Option<Micros>| t.map_or(Value::Null, |t| json!(rfc3339(t)));
    let peer_event = e.peer_id.is_some();
    let sets_role = matches!(e.action, Action::PeerJoin | Action::RoleChange);
    let mut want = vec![
        ("p_action", json!(e.action.as_str())),
        ("p_room_id", json!(room)),
        ("p_session_id", json!(e.session_id)),
        ("p_session_started_at", opt(e.session_started_at)),
        ("p_peer_id", json!(e.peer_id)),
        ("p_event_at", json!(rfc3339(e.event_at))),
        ("p_joined_at", opt(e.joined_at)),
        ("p_received_at", json!(rfc3339(received))),
        ("p_sent_at", json!(sent_at)),
    ];
    match e.peer_id.as_deref().map(user_of) {
        Some((id, name)) => {
            want.push(("p_user_id", json!(id)));
            want.push(("p_user_name", json!(name)));
        }
        None => {
            want.push(("p_user_id", Value::Null));
            want.push(("p_user_name", Value::Null));
        }
    }
    if !e.session_id.is_empty() {
        want.push(("p_event_id", json!(e.event_id)));
    }
    if sets_role {
        want.push(("p_role", json!(e.role)));
        want.push(("p_role_class", json!(e.role_class.map(|c| c.as_str()))));
    } else if !peer_event {
        want.push(("p_role_class", Value::Null));
    }
    for (name, value) in want {
        if args[name] != value {
            return Err(format!(
                "{body}: the function passes {name} = {}, the model has {value}",
                args[name]
            ));
        }
    }
    Ok(())
}

/// A body the function must refuse, with the code and the field its message must name.
pub struct Refused {
    pub body: String,
    pub code: &'static str,
    pub field: &'static str,
}

/// Bodies of `e` (an envelope event) that must be refused: a data time a day and a bit in the
/// future or past of the envelope timestamp, or far beyond (year 9999), and the session id left
/// out or empty.
pub fn refused(rng: &mut Rng, room: &str, e: &Event) -> Vec<Refused> {
    if e.session_id.is_empty() {
        return Vec::new();
    }
    let good = body(room, e);
    let mut out = Vec::new();
    let field = match e.action {
        Action::PeerJoin => "joined_at",
        Action::PeerLeave => "left_at",
        Action::RoleChange => "role_changed_at",
        Action::SessionClose => "session_stopped_at",
        Action::SessionOpen | Action::Activity => "session_started_at",
    };
    let far = match rng.below(4) {
        0 => "9999-12-31T23:59:59.999999Z".to_string(),
        1 => rfc3339(e.event_at + 86_400 * SECOND + rng.range(1, 3600 * SECOND)),
        2 => rfc3339(e.event_at + 120 * SECOND + rng.range(SECOND + 1, 600 * SECOND)),
        _ => rfc3339(e.event_at - 25 * 3600 * SECOND - rng.range(0, 30 * 86_400 * SECOND)),
    };
    let mut bad = good.clone();
    bad["data"][field] = json!(far);
    out.push(Refused {
        body: bad.to_string(),
        code: "invalid_timestamp",
        field: match field {
            "joined_at" => "data.joined_at",
            "left_at" => "data.left_at",
            "role_changed_at" => "data.role_changed_at",
            "session_stopped_at" => "data.session_stopped_at",
            _ => "data.session_started_at",
        },
    });
    let mut missing = good.clone();
    if rng.chance(50) {
        if let Some(data) = missing["data"].as_object_mut() {
            data.remove("session_id");
        }
    } else {
        missing["data"]["session_id"] = json!("");
    }
    out.push(Refused {
        code: if missing["data"].get("session_id").is_some() {
            "invalid_field"
        } else {
            "missing_field"
        },
        body: missing.to_string(),
        field: "data.session_id",
    });
    out
}

/// Checks that the function refuses `r` as described, naming the field.
pub fn check_refused(r: &Refused) -> Result<(), String> {
    match plan_args(r.body.as_bytes(), 0) {
        Ok(args) => Err(format!("{} was accepted: {args}", r.body)),
        Err((code, message)) if code == r.code && message.contains(r.field) => Ok(()),
        Err((code, message)) => Err(format!(
            "{} was refused with {code} ({message}), expected {} naming {}",
            r.body, r.code, r.field
        )),
    }
}
