//! The one place an answer is written (design §4). A [`Log`] collects what the core learns about
//! a request (ids, decisions, the upstream answer); [`Log::reply`] turns it and an [`Outcome`]
//! into the response (status, headers, JSON body) and the request's one structured log line.
//! The log carries ids and decisions, never the body, a secret or a header value.
//!
//! To add a route or an outcome: add an [`Outcome`] variant holding what its body needs and one
//! arm in [`Log::reply`] (status, the log's `outcome`, the body). A route's step function fills a
//! `Log` as `handler::begin` does and ends with `log.reply(Outcome::…)`.

use crate::document;
use crate::error::Error;
use crate::webhook::rest::{ApplyStatus, Room};
use serde::Serialize;
use std::borrow::Cow;

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

/// How a request ends.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'r> {
    /// The error's status, code and message (log outcome `rejected`, or `error` for 5xx).
    Refused(&'r Error),
    /// 200 `ignored`, with why (decided by the core or by the database).
    Ignored(&'r str),
    /// 200 `applied` / `duplicate` with the room after the event.
    Applied(ApplyStatus, Option<&'r Room>),
    /// 204 for `OPTIONS`: tells a probing client what is allowed.
    Options,
}

/// What an answered RPC said about itself: logged at the top level when it failed (operators
/// need it), in the debug details otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstream {
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// PostgREST / SQLSTATE code of a failed RPC.
    pub code: Option<String>,
}

/// What the log line says about one request, filled in as the request is decided. Owned
/// (`Log<'static>`) it is what travels from `begin` to `finish` across the RPC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Log<'a> {
    /// `SUPABASE_DEBUG`: add the decision details.
    pub(crate) debug: bool,
    /// Event id, once parsed.
    pub(crate) event_id: Option<Cow<'a, str>>,
    /// Event type, once parsed.
    pub(crate) event_type: Option<Cow<'a, str>>,
    /// Room id, once parsed.
    pub(crate) room_id: Option<Cow<'a, str>>,
    /// The boundary's clock when the request arrived (Unix ms).
    pub(crate) started_ms: i64,
    /// Whole milliseconds from arrival to the reply (0 when decided without I/O).
    pub(crate) ms: i64,
    /// Debug: `envelope` or `flat`.
    pub(crate) format: Option<&'static str>,
    /// Debug: `signature` or `header`.
    pub(crate) auth: Option<&'static str>,
    /// Debug: the planned action or `ignore`.
    pub(crate) plan: Option<&'static str>,
    /// Debug: role class of peer events.
    pub(crate) role_class: Option<&'static str>,
    /// The RPC's answer, once there is one.
    pub(crate) upstream: Option<Upstream>,
    /// Misconfigured variable.
    pub(crate) variable: Option<&'static str>,
    /// What is wrong (misconfiguration, upstream failure, boundary fault), never a value.
    pub(crate) problem: Option<Cow<'a, str>>,
}

// The wire shapes (design §4): members in this order; `skip_serializing_if` ones are left out
// when absent.
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
    code: Option<&'static str>,
    ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    variable: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    debug: Option<DebugLine<'a>>,
}

#[derive(Serialize)]
struct DebugLine<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role_class: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_code: Option<&'a str>,
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
    event_id: Option<&'a str>,
    #[serde(rename = "type")]
    event_type: Option<&'a str>,
    /// `None`: no `room` member (ignored); `Some(None)`: `"room":null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<Option<&'a Room>>,
}

fn json_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("cache-control".into(), "no-store".into()),
    ]
}

impl Log<'_> {
    /// An empty log for a request that arrived at `started_ms`.
    pub fn new(debug: bool, started_ms: i64) -> Self {
        Log {
            debug,
            started_ms,
            ..Log::default()
        }
    }

    /// Owns every borrowed text, so the log can wait for the RPC.
    pub fn into_owned(self) -> Log<'static> {
        let own = |text: Option<Cow<'_, str>>| text.map(|t| Cow::Owned(t.into_owned()));
        Log {
            debug: self.debug,
            event_id: own(self.event_id),
            event_type: own(self.event_type),
            room_id: own(self.room_id),
            started_ms: self.started_ms,
            ms: self.ms,
            format: self.format,
            auth: self.auth,
            plan: self.plan,
            role_class: self.role_class,
            upstream: self.upstream,
            variable: self.variable,
            problem: own(self.problem),
        }
    }

    /// The response and its log line.
    pub fn reply(&self, outcome: Outcome<'_>) -> Reply {
        let mut headers = json_headers();
        let mut reason = None;
        let (status, log_outcome, code, body) = match outcome {
            Outcome::Refused(err) => {
                let (status, code, message) = err.describe();
                if matches!(err, Error::MethodNotAllowed) {
                    headers.push(("allow".into(), "POST".into()));
                }
                let body = document::write(&ErrorBody {
                    status: "error",
                    code,
                    message: &message,
                });
                let log_outcome = if status >= 500 { "error" } else { "rejected" };
                (status, log_outcome, Some(code), body)
            }
            Outcome::Ignored(why) => {
                reason = Some(why);
                (
                    200,
                    "ignored",
                    None,
                    self.success_body("ignored", reason, None),
                )
            }
            Outcome::Applied(apply, room) => {
                let body = self.success_body(apply.as_str(), None, Some(room));
                (200, apply.as_str(), None, body)
            }
            Outcome::Options => {
                headers = vec![("allow".into(), "POST, OPTIONS".into())];
                (204, "rejected", None, String::new())
            }
        };
        // Each upstream fact is logged once: at the top when the request failed, else in debug.
        let (status_of, code_of) = match &self.upstream {
            Some(upstream) => (upstream.status, upstream.code.as_deref()),
            None => (None, None),
        };
        let failed = matches!(outcome, Outcome::Refused(_));
        let debug = self.debug.then_some(DebugLine {
            format: self.format,
            auth: self.auth,
            plan: self.plan,
            role_class: self.role_class,
            upstream_status: status_of.filter(|_| !failed),
            upstream_code: code_of.filter(|_| !failed),
        });
        let level = match status {
            500.. => "error",
            400.. => "warn",
            _ => "info",
        };
        let log = document::write(&LogLine {
            level,
            msg: "webhook",
            event_id: self.event_id.as_deref(),
            event_type: self.event_type.as_deref(),
            room_id: self.room_id.as_deref(),
            outcome: log_outcome,
            status,
            code,
            ms: self.ms,
            reason,
            variable: self.variable,
            problem: self.problem.as_deref(),
            upstream_status: status_of.filter(|_| failed),
            upstream_code: code_of.filter(|_| failed),
            debug,
        });
        Reply {
            status,
            headers,
            body,
            log,
        }
    }

    fn success_body(
        &self,
        status: &'static str,
        reason: Option<&str>,
        room: Option<Option<&Room>>,
    ) -> String {
        document::write(&SuccessBody {
            status,
            reason,
            event_id: self.event_id.as_deref(),
            event_type: self.event_type.as_deref(),
            room,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn event_log() -> Log<'static> {
        Log {
            event_id: Some("e".into()),
            event_type: Some("peer.join.success".into()),
            room_id: Some("r".into()),
            ms: 7,
            ..Log::default()
        }
    }

    #[test]
    fn error_reply_shape() {
        let reply = Log::default().reply(Outcome::Refused(&Error::MissingField("data.room_id")));
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
        let reply = Log::default().reply(Outcome::Refused(&Error::MethodNotAllowed));
        assert_eq!(reply.status, 405);
        assert!(reply.headers.contains(&("allow".into(), "POST".into())));
        let opt = Log::default().reply(Outcome::Options);
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
        let reply = event_log().reply(Outcome::Applied(ApplyStatus::Applied, Some(&room)));
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
        let dup = event_log().reply(Outcome::Applied(ApplyStatus::Duplicate, None));
        assert_eq!(parse(&dup.body)["room"], Value::Null);
        assert_eq!(parse(&dup.body)["status"], "duplicate");

        let failure = Log {
            event_type: Some("peer.join.failure".into()),
            ..event_log()
        };
        let ign = failure.reply(Outcome::Ignored("failure event"));
        assert_eq!(
            parse(&ign.body),
            json!({"status":"ignored","reason":"failure event","event_id":"e","type":"peer.join.failure"})
        );
        assert_eq!(parse(&ign.log)["reason"], "failure event");
    }

    #[test]
    fn debug_details_and_upstream_are_logged_once() {
        let log = Log {
            debug: true,
            format: Some("envelope"),
            upstream: Some(Upstream {
                status: Some(404),
                code: Some("PGRST202".into()),
            }),
            problem: Some("error status".into()),
            ..Log::default()
        };
        let reply = log.reply(Outcome::Refused(&Error::UpstreamUnavailable));
        let line = parse(&reply.log);
        assert_eq!(line["level"], "error");
        assert_eq!(line["outcome"], "error");
        assert_eq!(line["upstream_code"], "PGRST202");
        assert_eq!(line["upstream_status"], 404);
        assert_eq!(line["debug"], json!({"format":"envelope"}));
        assert!(!reply.log.contains('\n'));

        let answered = Log {
            upstream: Some(Upstream {
                status: Some(200),
                code: None,
            }),
            problem: None,
            ..log
        };
        let line = parse(&answered.reply(Outcome::Ignored("unknown room")).log);
        assert!(line.get("upstream_status").is_none());
        assert_eq!(
            line["debug"],
            json!({"format":"envelope","upstream_status":200})
        );
    }

    #[test]
    fn the_shims_500_is_the_cores() {
        // The shim answers without the core when the Wasm cannot boot or throws; its body and
        // headers must be exactly the ones the core writes for `Error::Internal`.
        let core = Log::default().reply(Outcome::Refused(&Error::Internal));
        assert_eq!(core.status, 500);
        let shim = include_str!("../supabase/functions/hms-webhook/index.ts");
        let literal = shim
            .split_once("const INTERNAL_BODY =")
            .and_then(|(_, rest)| rest.split('`').nth(1));
        assert_eq!(
            literal,
            Some(core.body.as_str()),
            "the shim's INTERNAL_BODY drifted from the core's 500 body"
        );
        // The header object of `internalError()`, as `"name": "value"` entries.
        let headers = shim
            .split_once("function internalError()")
            .and_then(|(_, rest)| rest.split_once("headers: {"))
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(object, _)| {
                let mut entries: Vec<String> = object
                    .split(',')
                    .map(|entry| entry.split_whitespace().collect::<Vec<_>>().join(" "))
                    .filter(|entry| !entry.is_empty())
                    .collect();
                entries.sort();
                entries
            });
        let mut expected: Vec<String> = core
            .headers
            .iter()
            .map(|(name, value)| format!("\"{name}\": \"{value}\""))
            .collect();
        expected.sort();
        assert_eq!(
            headers,
            Some(expected),
            "the shim's 500 headers drifted from the core's"
        );
    }
}
