//! Response bodies (always JSON) and the one structured log line per request (design §4).
//! The log carries ids and decisions, never the body, a secret or a header value.

use crate::error::Error;
use crate::rest::{ApplyStatus, Room};
use serde::Serialize;

/// What the boundary sends back, plus the line it logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Response body (empty for 204).
    pub body: String,
    /// One JSON log line (no trailing newline).
    pub log: String,
}

/// Request facts known when the reply is decided.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// Event id, once parsed.
    pub event_id: Option<&'a str>,
    /// Event type, once parsed.
    pub event_type: Option<&'a str>,
    /// Room id, once parsed.
    pub room_id: Option<&'a str>,
    /// Milliseconds from `begin` to the reply (0 when decided without I/O).
    pub ms: i64,
}

/// Decision details added to the log when `SUPABASE_DEBUG` is on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Details {
    /// `envelope` or `flat`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    /// `signature` or `header`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<&'static str>,
    /// The planned action or `ignore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<&'static str>,
    /// Role class of peer events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_class: Option<&'static str>,
    /// HTTP status of the RPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// PostgREST error code of the RPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_code: Option<String>,
}

/// Extra log fields for specific refusals (always logged: operators need them).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Notes<'a> {
    /// Ignore reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Misconfigured variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variable: Option<&'a str>,
    /// What is wrong (misconfiguration or upstream failure), never a value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<&'a str>,
    /// HTTP status of a failed RPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// PostgREST / SQLSTATE code of a failed RPC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_code: Option<&'a str>,
}

#[derive(Serialize)]
struct LogLine<'a> {
    level: &'static str,
    msg: &'static str,
    event_id: Option<&'a str>,
    #[serde(rename = "type")]
    event_type: Option<&'a str>,
    room_id: Option<&'a str>,
    outcome: &'static str,
    status: u16,
    code: Option<&'a str>,
    ms: i64,
    #[serde(flatten)]
    notes: &'a Notes<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    debug: Option<&'a Details>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    code: &'static str,
    message: &'a str,
}

#[derive(Serialize)]
struct SuccessBody<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    event_id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<Option<&'a Room>>,
}

/// Used if serialisation ever fails (it cannot for these types; this keeps the core total).
const FALLBACK_BODY: &str = r#"{"status":"error","code":"internal","message":"internal error"}"#;

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| FALLBACK_BODY.to_owned())
}

fn json_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("cache-control".into(), "no-store".into()),
    ]
}

fn log_line(
    status: u16,
    outcome: &'static str,
    code: Option<&str>,
    facts: &Facts<'_>,
    notes: &Notes<'_>,
    debug: Option<&Details>,
) -> String {
    let level = match status {
        500.. => "error",
        400.. => "warn",
        _ => "info",
    };
    to_json(&LogLine {
        level,
        msg: "webhook",
        event_id: facts.event_id,
        event_type: facts.event_type,
        room_id: facts.room_id,
        outcome,
        status,
        code,
        ms: facts.ms,
        notes,
        debug,
    })
}

/// An error reply: `{"status":"error","code":…,"message":…}`.
pub fn error(err: &Error, facts: &Facts<'_>, notes: &Notes<'_>, debug: Option<&Details>) -> Reply {
    let status = err.status();
    let mut headers = json_headers();
    if matches!(err, Error::MethodNotAllowed) {
        headers.push(("allow".into(), "POST".into()));
    }
    let outcome = if status >= 500 { "error" } else { "rejected" };
    Reply {
        status,
        headers,
        body: to_json(&ErrorBody {
            status: "error",
            code: err.code(),
            message: &err.message(),
        }),
        log: log_line(status, outcome, Some(err.code()), facts, notes, debug),
    }
}

/// 204 for `OPTIONS`: tells a probing client what is allowed.
pub fn options(debug: Option<&Details>) -> Reply {
    Reply {
        status: 204,
        headers: vec![("allow".into(), "POST, OPTIONS".into())],
        body: String::new(),
        log: log_line(
            204,
            "rejected",
            None,
            &Facts::default(),
            &Notes::default(),
            debug,
        ),
    }
}

/// 200 `ignored` decided by the core (failure events, unhandled types) or by the database.
pub fn ignored(
    reason: &str,
    event_id: &str,
    event_type: &str,
    facts: &Facts<'_>,
    debug: Option<&Details>,
) -> Reply {
    let body = to_json(&SuccessBody {
        status: ApplyStatus::Ignored.as_str(),
        reason: Some(reason),
        event_id,
        event_type,
        room: None,
    });
    let notes = Notes {
        reason: Some(reason),
        ..Notes::default()
    };
    Reply {
        status: 200,
        headers: json_headers(),
        body,
        log: log_line(200, "ignored", None, facts, &notes, debug),
    }
}

/// 200 `applied` / `duplicate` with the room after the event.
pub fn applied(
    status: ApplyStatus,
    room: Option<&Room>,
    event_id: &str,
    event_type: &str,
    facts: &Facts<'_>,
    debug: Option<&Details>,
) -> Reply {
    let body = to_json(&SuccessBody {
        status: status.as_str(),
        reason: None,
        event_id,
        event_type,
        room: Some(room),
    });
    Reply {
        status: 200,
        headers: json_headers(),
        body,
        log: log_line(200, status.as_str(), None, facts, &Notes::default(), debug),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn error_reply_shape() {
        let reply = error(
            &Error::MissingField("data.room_id"),
            &Facts::default(),
            &Notes::default(),
            None,
        );
        assert_eq!(reply.status, 400);
        assert_eq!(
            parse(&reply.body),
            json!({"status":"error","code":"missing_field","message":"missing required field `data.room_id`"})
        );
        assert!(reply
            .headers
            .contains(&("content-type".into(), "application/json".into())));
        let log = parse(&reply.log);
        assert_eq!(log["level"], "warn");
        assert_eq!(log["msg"], "webhook");
        assert_eq!(log["outcome"], "rejected");
        assert_eq!(log["status"], 400);
        assert_eq!(log["code"], "missing_field");
        assert_eq!(log["event_id"], Value::Null);
        assert!(log.get("debug").is_none());
    }

    #[test]
    fn method_not_allowed_has_allow() {
        let reply = error(
            &Error::MethodNotAllowed,
            &Facts::default(),
            &Notes::default(),
            None,
        );
        assert_eq!(reply.status, 405);
        assert!(reply.headers.contains(&("allow".into(), "POST".into())));
        let opt = options(None);
        assert_eq!(opt.status, 204);
        assert!(opt.body.is_empty());
        assert!(opt
            .headers
            .contains(&("allow".into(), "POST, OPTIONS".into())));
    }

    #[test]
    fn applied_and_ignored_bodies() {
        let room = Room {
            hms_room_id: "r".into(),
            is_live: true,
            listener_count: 3,
            speaker_count: 1,
            trending_score: 6.0,
            last_active_at: Some("2024-10-04T18:03:10.558102Z".into()),
        };
        let facts = Facts {
            event_id: Some("e"),
            event_type: Some("peer.join.success"),
            room_id: Some("r"),
            ms: 7,
        };
        let reply = applied(
            ApplyStatus::Applied,
            Some(&room),
            "e",
            "peer.join.success",
            &facts,
            None,
        );
        assert_eq!(
            parse(&reply.body),
            json!({"status":"applied","event_id":"e","type":"peer.join.success",
                   "room":{"hms_room_id":"r","is_live":true,"listener_count":3,"speaker_count":1,
                           "trending_score":6.0,"last_active_at":"2024-10-04T18:03:10.558102Z"}})
        );
        let log = parse(&reply.log);
        assert_eq!(log["outcome"], "applied");
        assert_eq!(log["level"], "info");
        assert_eq!(log["room_id"], "r");
        assert_eq!(log["ms"], 7);
        let dup = applied(ApplyStatus::Duplicate, None, "e", "t", &facts, None);
        assert_eq!(parse(&dup.body)["room"], Value::Null);
        assert_eq!(parse(&dup.body)["status"], "duplicate");

        let ign = ignored("failure event", "e", "peer.join.failure", &facts, None);
        assert_eq!(
            parse(&ign.body),
            json!({"status":"ignored","reason":"failure event","event_id":"e","type":"peer.join.failure"})
        );
        assert_eq!(parse(&ign.log)["reason"], "failure event");
    }

    #[test]
    fn debug_details_and_notes_are_logged() {
        let details = Details {
            format: Some("envelope"),
            upstream_status: Some(404),
            ..Details::default()
        };
        let notes = Notes {
            problem: Some("error status"),
            upstream_status: Some(404),
            upstream_code: Some("PGRST202"),
            ..Notes::default()
        };
        let reply = error(
            &Error::UpstreamUnavailable,
            &Facts::default(),
            &notes,
            Some(&details),
        );
        let log = parse(&reply.log);
        assert_eq!(log["level"], "error");
        assert_eq!(log["outcome"], "error");
        assert_eq!(log["upstream_code"], "PGRST202");
        assert_eq!(
            log["debug"],
            json!({"format":"envelope","upstream_status":404})
        );
        assert!(!reply.log.contains('\n'));
    }
}
