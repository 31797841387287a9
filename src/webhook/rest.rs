//! The PostgREST side of one webhook: build the `hms_apply_event` RPC request and interpret the
//! answer. Only a 200 with the RPC's own JSON result counts; everything else means "retry".

use crate::config::RestTarget;
use crate::document;
use crate::http::{Method, Outcome, Request};
use crate::webhook::plan::ApplyArgs;
use serde::{Deserialize, Serialize};

/// The RPC's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyStatus {
    /// State changed (or was confirmed) by this event.
    Applied,
    /// The event id was seen before; nothing changed.
    Duplicate,
    /// Nothing written (e.g. unknown room).
    Ignored,
}

impl ApplyStatus {
    /// The `status` value in the response body and the log `outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyStatus::Applied => "applied",
            ApplyStatus::Duplicate => "duplicate",
            ApplyStatus::Ignored => "ignored",
        }
    }
}

/// The room row as the RPC returns it (design §4), and as the answers repeat it. The score is a
/// `NUMERIC(10,2)` that serde_json (with `float_roundtrip`) reads as the nearest double, which
/// its shortest-digits writer gives back exactly (`14.25`, `6.0`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Room {
    /// 100ms room id.
    pub hms_room_id: String,
    /// Whether the room's current session is live.
    pub is_live: bool,
    /// Present listeners of the current session.
    pub listener_count: u64,
    /// Present speakers of the current session.
    pub speaker_count: u64,
    /// Stored trending score (`NUMERIC(10,2)`, read exactly to the hundredth).
    pub trending_score: f64,
    /// Last activity (RFC 3339), null if never active.
    pub last_active_at: Option<String>,
}

/// A successful RPC result (unknown members ignored, a repeated one refused).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RpcResult {
    /// applied / duplicate / ignored.
    pub status: ApplyStatus,
    /// Why it was ignored.
    pub reason: Option<String>,
    /// The room after the event.
    pub room: Option<Room>,
}

/// Why the answer was unusable (for the log; the sender only sees 503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamFailure {
    /// HTTP status, if a response arrived.
    pub http_status: Option<u16>,
    /// PostgREST / SQLSTATE code from an error body (e.g. `PGRST202`, `42501`).
    pub code: Option<String>,
    /// Short description of what was wrong.
    pub problem: &'static str,
}

/// The headers of every PostgREST call: the service key as `apikey` and bearer, JSON both ways.
pub(crate) fn headers(target: &RestTarget) -> Vec<(String, String)> {
    vec![
        ("apikey".into(), target.api_key.clone()),
        ("authorization".into(), format!("Bearer {}", target.api_key)),
        ("content-type".into(), "application/json".into()),
        ("accept".into(), "application/json".into()),
    ]
}

/// Builds the RPC request.
pub fn request(target: &RestTarget, args: &ApplyArgs<'_>) -> Request {
    Request {
        method: Method::Post,
        url: target.rpc_url.clone(),
        headers: headers(target),
        body: Some(document::write(args)),
    }
}

/// Longest reason passed on from the database.
const MAX_REASON_CHARS: usize = 200;

/// A PostgREST error body, as far as the log reads it.
#[derive(Deserialize)]
struct ErrorAnswer {
    code: Option<String>,
}

/// Keeps an error code only if it looks like one, so the log cannot be stuffed via it.
fn error_code(body: &[u8]) -> Option<String> {
    let code = document::read_bytes::<ErrorAnswer>(body)?.code?;
    let plausible = !code.is_empty()
        && code.len() <= 16
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    plausible.then_some(code)
}

/// Interprets the RPC answer.
pub fn interpret(outcome: &Outcome) -> Result<RpcResult, UpstreamFailure> {
    let no_answer = |problem| UpstreamFailure {
        http_status: None,
        code: None,
        problem,
    };
    let (status, body) = match outcome {
        Outcome::Unreachable => return Err(no_answer("unreachable")),
        Outcome::TimedOut => return Err(no_answer("timeout")),
        Outcome::Response { status, body } => (*status, body),
    };
    if status != 200 {
        return Err(UpstreamFailure {
            http_status: Some(status),
            code: error_code(body),
            problem: "error status",
        });
    }
    let shape_error = || UpstreamFailure {
        http_status: Some(status),
        code: None,
        problem: "unexpected result shape",
    };
    let mut result = document::read_bytes::<RpcResult>(body).ok_or_else(shape_error)?;
    if let Some(reason) = &mut result.reason {
        if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
            reason.truncate(cut);
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::roles::Roles;
    use crate::time::Timestamp;
    use crate::webhook::event::parse;
    use crate::webhook::plan::{plan, Plan};

    fn target() -> RestTarget {
        let config = Config::from_env([
            ("HMS_WEBHOOK_SECRET", "s"),
            ("SUPABASE_URL", "https://abc.supabase.co/"),
            ("SUPABASE_SECRET_KEYS", r#"{"default":"sb_secret_k"}"#),
        ]);
        config.unwrap().settings().rest.clone()
    }

    fn response(status: u16, body: &str) -> Outcome {
        Outcome::Response {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn builds_the_rpc_request() {
        let event = parse(
            br#"{"id":"e","type":"session.open.success","timestamp":"2024-10-04T18:00:02Z","data":{"room_id":"r","session_id":"s"}}"#,
        )
        .unwrap();
        let Plan::Apply(args, _) =
            plan(&event, &Roles::default(), false, Timestamp::from_micros(0))
        else {
            panic!("expected apply");
        };
        let req = request(&target(), &args);
        assert_eq!(
            req.url,
            "https://abc.supabase.co/rest/v1/rpc/hms_apply_event"
        );
        assert_eq!(
            req.headers,
            vec![
                ("apikey".to_string(), "sb_secret_k".to_string()),
                (
                    "authorization".to_string(),
                    "Bearer sb_secret_k".to_string()
                ),
                ("content-type".to_string(), "application/json".to_string()),
                ("accept".to_string(), "application/json".to_string()),
            ]
        );
        let body: serde_json::Value = serde_json::from_str(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["p_action"], "session_open");
        assert_eq!(body["p_event_at"], "2024-10-04T18:00:02.999999Z");
        assert_eq!(body["p_received_at"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            body.as_object().unwrap().len(),
            16,
            "all sixteen named arguments"
        );
    }

    #[test]
    fn success_answers() {
        let ok = interpret(&response(
            200,
            r#"{"status":"applied","reason":null,"room":{"hms_room_id":"r","is_live":true,"listener_count":3,"speaker_count":1,"trending_score":14.25,"last_active_at":"2024-10-04T18:03:10.558102+00:00","featured":false}}"#,
        ))
        .unwrap();
        assert_eq!(ok.status, ApplyStatus::Applied);
        let room = ok.room.unwrap();
        assert_eq!(room.listener_count, 3);
        assert_eq!(room.speaker_count, 1);
        assert!(room.is_live);
        assert_eq!(room.trending_score, 14.25);
        assert_eq!(
            room.last_active_at.as_deref(),
            Some("2024-10-04T18:03:10.558102+00:00")
        );
        let text = document::write(&room);
        assert!(text.contains(r#""trending_score":14.25"#), "{text}");
        let dup = interpret(&response(200, r#"{"status":"duplicate","room":null}"#)).unwrap();
        assert_eq!(dup.status, ApplyStatus::Duplicate);
        let ign = interpret(&response(
            200,
            r#"{"status":"ignored","reason":"unknown room","room":null}"#,
        ))
        .unwrap();
        assert_eq!(ign.status, ApplyStatus::Ignored);
        assert_eq!(ign.reason.as_deref(), Some("unknown room"));
    }

    #[test]
    fn everything_else_is_an_upstream_failure() {
        let cases = [
            (Outcome::Unreachable, None, None),
            (Outcome::TimedOut, None, None),
            (
                response(
                    404,
                    r#"{"code":"PGRST202","message":"Could not find the function","details":null,"hint":null}"#,
                ),
                Some(404),
                Some("PGRST202"),
            ),
            (
                response(
                    401,
                    r#"{"code":"42501","message":"permission denied for function hms_apply_event"}"#,
                ),
                Some(401),
                Some("42501"),
            ),
            (response(500, "<html>bad gateway</html>"), Some(500), None),
            (
                response(502, r#"{"code":"evil\ninjection"}"#),
                Some(502),
                None,
            ),
            (response(204, ""), Some(204), None),
            (response(201, r#"{"status":"applied"}"#), Some(201), None),
            (response(200, "not json"), Some(200), None),
            (response(200, "[]"), Some(200), None),
            (response(200, "3"), Some(200), None),
            (response(200, r#"{"status":"maybe"}"#), Some(200), None),
            (
                response(200, r#"{"status":"applied","room":{"hms_room_id":"r"}}"#),
                Some(200),
                None,
            ),
            (
                response(
                    200,
                    r#"{"status":"applied","room":{"hms_room_id":"r","is_live":true,"listener_count":-1,"speaker_count":0,"trending_score":0,"last_active_at":null}}"#,
                ),
                Some(200),
                None,
            ),
            (
                response(
                    200,
                    r#"{"status":"applied","room":{"hms_room_id":"r","is_live":"yes","listener_count":1,"speaker_count":0,"trending_score":0,"last_active_at":null}}"#,
                ),
                Some(200),
                None,
            ),
            (
                response(
                    200,
                    r#"{"status":"applied","room":{"hms_room_id":"r","is_live":true,"listener_count":1.5,"speaker_count":0,"trending_score":0,"last_active_at":null}}"#,
                ),
                Some(200),
                None,
            ),
            (
                response(
                    200,
                    r#"{"status":"applied","room":{"hms_room_id":"r","is_live":true,"listener_count":1,"speaker_count":0,"trending_score":"6.0","last_active_at":null}}"#,
                ),
                Some(200),
                None,
            ),
            (
                response(200, r#"{"status":"applied","status":"ignored"}"#),
                Some(200),
                None,
            ),
            (
                response(200, r#"{"status":"applied","reason":5}"#),
                Some(200),
                None,
            ),
            (
                response(200, r#"{"status":"applied","room":[]}"#),
                Some(200),
                None,
            ),
            (
                Outcome::Response {
                    status: 200,
                    body: vec![0xff, b'{', b'}'],
                },
                Some(200),
                None,
            ),
        ];
        for (outcome, status, code) in cases {
            let failure = interpret(&outcome).unwrap_err();
            assert_eq!(failure.http_status, status, "{outcome:?}");
            assert_eq!(failure.code.as_deref(), code, "{outcome:?}");
        }
    }

    #[test]
    fn long_reasons_are_truncated() {
        let long = "x".repeat(1000);
        let ok = interpret(&response(
            200,
            &format!(r#"{{"status":"ignored","reason":"{long}"}}"#),
        ))
        .unwrap();
        assert_eq!(ok.reason.unwrap().len(), MAX_REASON_CHARS);
    }
}
