//! `Parsed` -> `Plan`: ignore it (with its reason) or the named arguments of `hms_apply_event`
//! (design §5 and §6): which time is the event's own, role classes, nulls for absent values.

use crate::roles::{RoleClass, Roles};
use crate::time::Timestamp;
use crate::webhook::event::{Action, Event, IgnoreReason, Parsed};

/// The named arguments of `public.hms_apply_event`; `None` serialises as JSON `null`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ApplyArgs<'a> {
    /// Envelope id or `sha256:<hex>`.
    pub p_event_id: &'a str,
    /// The type as received.
    pub p_event_type: &'a str,
    /// The action.
    pub p_action: &'static str,
    /// 100ms room id.
    pub p_room_id: &'a str,
    /// Session id, `""` when none.
    pub p_session_id: &'a str,
    /// `data.session_started_at`.
    pub p_session_started_at: Option<String>,
    /// Peer id (peer events only).
    pub p_peer_id: Option<&'a str>,
    /// Role as received (peer events only).
    pub p_role: Option<&'a str>,
    /// Role class (peer events only).
    pub p_role_class: Option<&'static str>,
    /// The event's own time.
    pub p_event_at: String,
    /// `data.joined_at` on leaves and role changes.
    pub p_joined_at: Option<String>,
    /// `HMS_AUTO_CREATE_ROOMS`.
    pub p_auto_create: bool,
    /// When the request arrived (the boundary's clock): `last_active_at` never passes it + 120 s.
    pub p_received_at: String,
    /// The peer's `user_id` (peer events only, when sent).
    pub p_user_id: Option<&'a str>,
    /// The peer's `user_name` (peer events only, when sent).
    pub p_user_name: Option<&'a str>,
    /// The envelope `timestamp` as received (flat format: its `timestamp`): with the id, the
    /// ledger's duplicate key.
    pub p_sent_at: String,
}

/// What to do with an event.
// One short-lived value per request: boxing `ApplyArgs` would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Plan<'a> {
    /// Answer 200 `ignored`.
    Ignore(IgnoreReason),
    /// Call the RPC; `role_class` is repeated for the debug log.
    Apply(ApplyArgs<'a>, Option<RoleClass>),
}

/// The event's own time (design §5); else the envelope timestamp stands in for it, meaning the
/// end of its second when it has no fraction digits (e.g. `room.end.success`, which has no stop
/// time: every join of that session happened before the end). Flat events have no own times and
/// their millisecond timestamp stands for itself.
fn event_at(event: &Event<'_>) -> Timestamp {
    let own = match event.action {
        Action::PeerJoin => event.times.joined_at,
        Action::PeerLeave => event.times.left_at,
        Action::RoleChange => event.times.role_changed_at,
        Action::SessionOpen => event.times.session_started_at,
        Action::SessionClose => event.times.session_stopped_at,
        Action::Activity => None,
    };
    own.unwrap_or(event.stand_in_time)
}

/// Decides what to do with a parsed event received at `received_at`.
pub fn plan<'a>(
    parsed: &'a Parsed<'a>,
    roles: &Roles,
    auto_create: bool,
    received_at: Timestamp,
) -> Plan<'a> {
    let event = match parsed {
        Parsed::Ignored(ignored) => return Plan::Ignore(ignored.reason),
        Parsed::Handled(event) => event,
    };
    let (peer_id, role, role_class) = match &event.peer {
        Some(peer) => {
            let role = peer.role.as_deref();
            // A join without a role counts like an unknown role: as a listener.
            let class = roles.classify(role.unwrap_or(""));
            (Some(&*peer.id), role, Some(class))
        }
        None => (None, None, None),
    };
    let user_id = event.peer.as_ref().and_then(|p| p.user_id.as_deref());
    let user_name = event.peer.as_ref().and_then(|p| p.user_name.as_deref());
    let joined_at = match event.action {
        Action::PeerLeave | Action::RoleChange => event.times.joined_at,
        _ => None,
    };
    Plan::Apply(
        ApplyArgs {
            p_event_id: &event.head.id,
            p_event_type: &event.head.event_type,
            p_action: event.action.as_str(),
            p_room_id: &event.room_id,
            p_session_id: &event.session_id,
            p_session_started_at: event.times.session_started_at.map(Timestamp::to_rfc3339),
            p_peer_id: peer_id,
            p_role: role,
            p_role_class: role_class.map(RoleClass::as_str),
            p_event_at: event_at(event).to_rfc3339(),
            p_joined_at: joined_at.map(Timestamp::to_rfc3339),
            p_auto_create: auto_create,
            p_received_at: received_at.to_rfc3339(),
            p_user_id: user_id,
            p_user_name: user_name,
            p_sent_at: event.head.timestamp.to_rfc3339(),
        },
        role_class,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::event::parse;
    use serde_json::{json, Value};

    /// 2024-10-04T18:03:11Z, when the tests' requests arrive.
    const RECEIVED: Timestamp = Timestamp::from_micros(1_728_064_991_000_000);

    fn args(body: &str) -> Value {
        let event = parse(body.as_bytes()).unwrap();
        match plan(&event, &Roles::default(), false, RECEIVED) {
            Plan::Apply(args, _) => serde_json::to_value(&args).unwrap(),
            other => panic!("expected apply, got {other:?}"),
        }
    }

    fn envelope(event_type: &str, timestamp: &str, data: Value) -> String {
        json!({"version":"2.0","id":"ev-1","type":event_type,"timestamp":timestamp,"data":data})
            .to_string()
    }

    #[test]
    fn join_uses_joined_at_and_classifies() {
        let body = envelope(
            "peer.join.success",
            "2024-10-04T18:03:10Z",
            json!({"room_id":"r","session_id":"s","peer_id":"p","role":"Host",
                   "user_id":"u-7","user_name":"Ada",
                   "joined_at":"2024-10-04T18:03:10.55810264Z",
                   "session_started_at":"2024-10-04T18:00:02.183742915Z"}),
        );
        assert_eq!(
            args(&body),
            json!({
                "p_event_id":"ev-1","p_event_type":"peer.join.success","p_action":"peer_join",
                "p_room_id":"r","p_session_id":"s",
                "p_session_started_at":"2024-10-04T18:00:02.183742Z",
                "p_peer_id":"p","p_role":"Host","p_role_class":"speaker",
                "p_event_at":"2024-10-04T18:03:10.558102Z","p_joined_at":null,
                "p_auto_create":false,"p_received_at":"2024-10-04T18:03:11.000000Z",
                "p_user_id":"u-7","p_user_name":"Ada","p_sent_at":"2024-10-04T18:03:10.000000Z"
            })
        );
    }

    /// Plans `data` sent as `event_type` at the envelope `timestamp` and checks every argument
    /// `want` names (the others are not this case's business).
    fn assert_args(event_type: &str, timestamp: &str, data: Value, want: Value) {
        let got = args(&envelope(event_type, timestamp, data));
        for (name, value) in want.as_object().unwrap() {
            assert_eq!(&got[name], value, "{event_type} at {timestamp}: {name}");
        }
    }

    #[test]
    fn leave_and_role_change_send_joined_at() {
        assert_args(
            "peer.leave.success",
            "2024-10-04T18:40:31Z",
            json!({"room_id":"r","session_id":"s","peer_id":"p","role":"speaker",
                   "joined_at":"2024-10-04T18:03:10.55810264Z",
                   "left_at":"2024-10-04T18:40:31.904117326Z"}),
            json!({"p_action":"peer_leave","p_event_at":"2024-10-04T18:40:31.904117Z",
                   "p_joined_at":"2024-10-04T18:03:10.558102Z","p_session_started_at":null}),
        );
        assert_args(
            "role.change.success",
            "2024-10-04T18:12:45Z",
            json!({"room_id":"r","session_id":"s","peer_id":"p","role":"speaker",
                   "previous_role":"listener",
                   "joined_at":"2024-10-04T18:03:10.55810264Z",
                   "role_changed_at":"2024-10-04T18:12:45.661207830Z"}),
            json!({"p_action":"role_change","p_role":"speaker","p_role_class":"speaker",
                   "p_event_at":"2024-10-04T18:12:45.661207Z",
                   "p_joined_at":"2024-10-04T18:03:10.558102Z"}),
        );
    }

    #[test]
    fn session_events() {
        assert_args(
            "session.open.success",
            "2024-10-04T18:00:02Z",
            json!({"room_id":"r","session_id":"s",
                   "session_started_at":"2024-10-04T18:00:02.183742915Z"}),
            json!({"p_action":"session_open","p_event_at":"2024-10-04T18:00:02.183742Z",
                   "p_peer_id":null,"p_role_class":null}),
        );
        assert_args(
            "session.close.success",
            "2024-10-04T19:02:00Z",
            json!({"room_id":"r","session_id":"s",
                   "session_stopped_at":"2024-10-04T19:01:59.512880041Z"}),
            json!({"p_action":"session_close","p_event_at":"2024-10-04T19:01:59.512880Z"}),
        );
        // The ender is not a presence change: no peer id.
        assert_args(
            "room.end.success",
            "2024-10-04T19:01:58Z",
            json!({"room_id":"r","session_id":"s","peer_id":"host-peer","role":"host"}),
            json!({"p_action":"session_close","p_event_at":"2024-10-04T19:01:58.999999Z",
                   "p_peer_id":null}),
        );
    }

    #[test]
    fn fallbacks_to_the_envelope_timestamp() {
        // One sub-second rule: an envelope timestamp without fraction digits stands for the end
        // of its second, for every type; with a fraction it is taken as it is.
        for (event_type, data) in [
            ("peer.join.success", json!({"room_id":"r","peer_id":"p"})),
            (
                "peer.leave.success",
                json!({"room_id":"r","peer_id":"p","left_at":"0001-01-01T00:00:00Z"}),
            ),
            (
                "role.change.success",
                json!({"room_id":"r","peer_id":"p","role":"x"}),
            ),
            ("session.open.success", json!({"room_id":"r"})),
            ("session.close.success", json!({"room_id":"r"})),
            (
                "track.update.success",
                json!({"room_id":"r","peer_id":"p","started_at":"2024-10-04T18:00:00Z"}),
            ),
        ] {
            let mut data = data;
            data["session_id"] = json!("s");
            assert_args(
                event_type,
                "2024-10-04T18:05:00+02:00",
                data.clone(),
                json!({"p_event_at":"2024-10-04T16:05:00.999999Z"}),
            );
            assert_args(
                event_type,
                "2024-10-04T18:05:00.25+02:00",
                data,
                json!({"p_event_at":"2024-10-04T16:05:00.250000Z"}),
            );
        }
    }

    #[test]
    fn a_role_change_without_its_time_beats_a_join_earlier_in_its_second() {
        assert_args(
            "role.change.success",
            "2024-10-04T18:12:45Z",
            json!({"room_id":"r","session_id":"s","peer_id":"p","role":"speaker"}),
            json!({"p_event_at":"2024-10-04T18:12:45.999999Z"}),
        );
        assert_args(
            "session.close.success",
            "2024-10-04T18:12:45Z",
            json!({"room_id":"r","session_id":"s"}),
            json!({"p_event_at":"2024-10-04T18:12:45.999999Z"}),
        );
    }

    #[test]
    fn join_without_role_is_a_listener_and_ignored_roles_pass_through() {
        assert_args(
            "peer.join.success",
            "2024-10-04T18:05:00Z",
            json!({"room_id":"r","session_id":"s","peer_id":"p"}),
            json!({"p_role":null,"p_role_class":"listener"}),
        );
        assert_args(
            "peer.join.success",
            "2024-10-04T18:05:00Z",
            json!({"room_id":"r","session_id":"s","peer_id":"p","role":"__internal_recorder"}),
            json!({"p_role_class":"ignored"}),
        );
    }

    #[test]
    fn flat_format_uses_its_timestamp() {
        let a = args(
            r#"{"event":"peer.left","room_id":"r","peer":{"id":"p","role":"speaker"},"timestamp":1728064990558}"#,
        );
        assert_eq!(a["p_action"], "peer_leave");
        assert_eq!(a["p_event_at"], "2024-10-04T18:03:10.558000Z");
        assert_eq!(a["p_session_id"], "");
        assert_eq!(a["p_role_class"], "speaker");
        assert!(a["p_event_id"].as_str().unwrap().starts_with("sha256:"));
        let a = args(r#"{"event":"room.ended","room_id":"r","timestamp":1728064990558}"#);
        assert_eq!(a["p_event_at"], "2024-10-04T18:03:10.558000Z");
    }

    #[test]
    fn ignores_failures_and_unknown_types() {
        let body = envelope(
            "peer.join.failure",
            "2024-10-04T18:05:00Z",
            json!({"room_id":"r"}),
        );
        let failure = parse(body.as_bytes()).unwrap();
        assert_eq!(
            plan(&failure, &Roles::default(), false, RECEIVED),
            Plan::Ignore(IgnoreReason::FailureEvent)
        );
        let body = envelope("recording.success", "2024-10-04T18:05:00Z", json!({}));
        let other = parse(body.as_bytes()).unwrap();
        assert_eq!(
            plan(&other, &Roles::default(), false, RECEIVED),
            Plan::Ignore(IgnoreReason::EventTypeNotHandled)
        );
        assert_eq!(IgnoreReason::FailureEvent.as_str(), "failure event");
        assert_eq!(
            IgnoreReason::EventTypeNotHandled.as_str(),
            "event type not handled"
        );
    }

    #[test]
    fn auto_create_is_passed_through() {
        let body = envelope(
            "session.open.success",
            "2024-10-04T18:05:00Z",
            json!({"room_id":"r","session_id":"s"}),
        );
        let event = parse(body.as_bytes()).unwrap();
        let Plan::Apply(a, _) = plan(&event, &Roles::default(), true, RECEIVED) else {
            panic!("expected apply");
        };
        assert!(a.p_auto_create);
    }
}
