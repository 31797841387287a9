//! The PostgREST side of one webhook: build the `hms_apply_event` RPC request and interpret the
//! answer. Only a 200 with the RPC's own JSON result counts; everything else means "retry".

use crate::config::RestTarget;
use crate::json::{self, Hundredths, Integer, Object, ObjectWriter, ToJson, Value};
use crate::plan::ApplyArgs;

/// An HTTP request for the boundary to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcRequest {
    /// Full URL.
    pub url: String,
    /// Request headers (including the service key; never log them).
    pub headers: Vec<(String, String)>,
    /// JSON body with the named arguments.
    pub body: String,
}

/// What the boundary got back from the RPC call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcOutcome {
    /// An HTTP response arrived.
    Response {
        /// HTTP status.
        status: u16,
        /// Raw body.
        body: Vec<u8>,
    },
    /// No response: DNS, connection, TLS or timeout failure.
    Unreachable,
}

/// The RPC's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The room row as the RPC returns it (design §4).
#[derive(Debug, Clone, PartialEq)]
// serde_json, the oracle of its writer in tests.
#[cfg_attr(test, derive(serde::Serialize))]
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

impl ToJson for Room {
    fn write_json(&self, out: &mut String) {
        // The score was read exactly as hundredths (see `room`), and ×100 rounds back to them
        // exactly (|n| < 2^50), so it is written from them: serde_json's digits without its
        // float formatter.
        let score = Hundredths((self.trending_score * 100.0).round() as i64);
        ObjectWriter::new(out)
            .member("hms_room_id", &self.hms_room_id)
            .member("is_live", &self.is_live)
            .member("listener_count", &self.listener_count)
            .member("speaker_count", &self.speaker_count)
            .member("trending_score", &score)
            .member("last_active_at", &self.last_active_at)
            .end();
    }
}

/// A successful RPC result.
#[derive(Debug, Clone, PartialEq)]
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
pub fn request(target: &RestTarget, args: &ApplyArgs<'_>) -> RpcRequest {
    RpcRequest {
        url: target.rpc_url.clone(),
        headers: headers(target),
        body: json::to_string(args),
    }
}

// The named arguments as `hms_apply_event` takes them (`None` is `null`).
json::impl_to_json!(ApplyArgs<'_> {
    p_event_id,
    p_event_type,
    p_action,
    p_room_id,
    p_session_id,
    p_session_started_at,
    p_peer_id,
    p_role,
    p_role_class,
    p_event_at,
    p_joined_at,
    p_auto_create,
    p_received_at,
    p_user_id,
    p_user_name,
    p_sent_at,
});

/// Longest reason passed on from the database.
const MAX_REASON_CHARS: usize = 200;

fn object_of(body: &[u8]) -> Option<Object<'_>> {
    match json::parse(std::str::from_utf8(body).ok()?).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// Keeps an error code only if it looks like one, so the log cannot be stuffed via it.
fn error_code(body: &[u8]) -> Option<String> {
    let Value::String(code) = object_of(body)?.take("code").ok()?? else {
        return None;
    };
    let plausible = !code.is_empty()
        && code.len() <= 16
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    plausible.then(|| code.into_owned())
}

pub(crate) fn count(value: Value<'_>) -> Option<u64> {
    match value {
        Value::Number(number) => match json::integer(number) {
            Integer::Unsigned(n) => Some(n),
            _ => None,
        },
        _ => None,
    }
}

/// The `room` object; `None` if any documented field is missing or mistyped.
pub(crate) fn room(mut object: Object<'_>) -> Option<Room> {
    let Value::String(hms_room_id) = object.take("hms_room_id").ok()?? else {
        return None;
    };
    let Value::Bool(is_live) = object.take("is_live").ok()?? else {
        return None;
    };
    let listener_count = count(object.take("listener_count").ok()??)?;
    let speaker_count = count(object.take("speaker_count").ok()??)?;
    let Value::Number(score) = object.take("trending_score").ok()?? else {
        return None;
    };
    // Hundredths are exact in i64 and the division is correctly rounded, so 14.25 stays 14.25.
    let trending_score = json::hundredths(score)? as f64 / 100.0;
    let last_active_at = match object.take("last_active_at").ok()? {
        None | Some(Value::Null) => None,
        Some(Value::String(at)) => Some(at.into_owned()),
        Some(_) => return None,
    };
    Some(Room {
        hms_room_id: hms_room_id.into_owned(),
        is_live,
        listener_count,
        speaker_count,
        trending_score,
        last_active_at,
    })
}

/// Interprets the RPC answer.
pub fn interpret(outcome: &RpcOutcome) -> Result<RpcResult, UpstreamFailure> {
    let (status, body) = match outcome {
        RpcOutcome::Unreachable => {
            return Err(UpstreamFailure {
                http_status: None,
                code: None,
                problem: "unreachable",
            })
        }
        RpcOutcome::Response { status, body } => (*status, body),
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
    let mut result = object_of(body).ok_or_else(shape_error)?;
    let status = match result.take("status") {
        Ok(Some(Value::String(s))) => match s.as_ref() {
            "applied" => ApplyStatus::Applied,
            "duplicate" => ApplyStatus::Duplicate,
            "ignored" => ApplyStatus::Ignored,
            _ => return Err(shape_error()),
        },
        _ => return Err(shape_error()),
    };
    let reason = match result.take("reason") {
        Ok(None | Some(Value::Null)) => None,
        Ok(Some(Value::String(r))) => Some(r.chars().take(MAX_REASON_CHARS).collect()),
        _ => return Err(shape_error()),
    };
    let room = match result.take("room") {
        Ok(None | Some(Value::Null)) => None,
        Ok(Some(Value::Object(object))) => Some(room(object).ok_or_else(shape_error)?),
        _ => return Err(shape_error()),
    };
    Ok(RpcResult {
        status,
        reason,
        room,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::parse;
    use crate::plan::{plan, Plan};
    use crate::roles::Roles;
    use crate::time::Timestamp;

    fn target() -> RestTarget {
        let config = Config::from_env([
            ("HMS_WEBHOOK_SECRET", "s"),
            ("SUPABASE_URL", "https://abc.supabase.co/"),
            ("SUPABASE_SECRET_KEYS", r#"{"default":"sb_secret_k"}"#),
        ]);
        config.unwrap().settings().rest.clone()
    }

    fn response(status: u16, body: &str) -> RpcOutcome {
        RpcOutcome::Response {
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
        let body: serde_json::Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(body["p_action"], "session_open");
        assert_eq!(body["p_event_at"], "2024-10-04T18:00:02.999999Z");
        assert_eq!(body["p_received_at"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            body.as_object().unwrap().len(),
            16,
            "all sixteen named arguments"
        );
        // Byte for byte what serde_json writes for the same record.
        assert_eq!(req.body, serde_json::to_string(&args).unwrap());
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
        let text = json::to_string(&room);
        assert_eq!(text, serde_json::to_string(&room).unwrap());
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
            (RpcOutcome::Unreachable, None, None),
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
                RpcOutcome::Response {
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
