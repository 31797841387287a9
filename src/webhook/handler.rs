//! The sans-IO request core: `preflight` (before the body is read), `begin` (limits, auth,
//! parse, freshness, plan) and `finish` (interpret the RPC answer). Clock and config are inputs.
//!
//! Every answer is written by [`Log::reply`]; a new route is one more step function like
//! [`begin`] that fills a [`Log`] and returns a [`Step`] (see `reply.rs` for new outcomes).

use crate::config::{Config, Misconfig};
use crate::error::Error;
use crate::http::{Outcome as HttpOutcome, Request};
use crate::reply::{Log, Outcome, Reply, Upstream};
use crate::time::Timestamp;
use crate::webhook::event;
use crate::webhook::plan::{self, Plan};
use crate::webhook::rest::{self, ApplyStatus};

/// Events further ahead than this are refused whatever the tolerance (also when it is 0).
pub const MAX_FUTURE_SECONDS: i64 = 120;
/// Age bound of a delivery marked `is_replay`: 100ms replays deliveries of the last 30 days
/// (<https://www.100ms.live/docs/server-side/v2/api-reference/analytics/replay-webhook-events>).
/// Re-applying an old fact is harmless (ledger, monotone rules; docs/reconcile.md).
pub const REPLAY_WINDOW_SECONDS: u64 = 30 * 86_400;

/// One incoming request as the boundary sees it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Headers with lower-cased names.
    pub headers: &'a [(String, String)],
    /// Raw body (at most `max_body_bytes + 1` bytes were read).
    pub body: &'a [u8],
    /// Unix ms, from the boundary's clock.
    pub now_ms: i64,
}

/// What `begin` decided.
// One short-lived value per request: boxing the call would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Answer now.
    Respond(Reply),
    /// Send the RPC, then call [`finish`].
    Call(Call),
}

/// An RPC to send and the request's log so far, which [`finish`] completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The HTTP request.
    pub request: Request,
    /// The log of the request, owned: the body is gone by the time the RPC answers.
    pub context: CallContext,
}

/// What travels from `begin` to `finish`.
pub type CallContext = Log<'static>;

/// The answer to every request of an isolate whose environment is unusable: 500 `misconfigured`,
/// with the variable and the problem (never a value) in the log.
pub fn misconfigured(problem: &Misconfig) -> Reply {
    let log = Log {
        variable: Some(problem.variable),
        problem: Some(problem.reason.as_str().into()),
        ..Log::default()
    };
    log.reply(Outcome::Refused(&problem.into()))
}

/// Answers what can be answered before reading the body: method (405, or 204 for OPTIONS) and a
/// declared `content-length` over the limit (413).
pub fn preflight(config: &Config, method: &str, content_length: Option<u64>) -> Option<Reply> {
    let log = Log::new(config.debug(), 0);
    let limit = config.settings().max_body_bytes;
    if method.eq_ignore_ascii_case("OPTIONS") {
        Some(log.reply(Outcome::Options))
    } else if !method.eq_ignore_ascii_case("POST") {
        Some(log.reply(Outcome::Refused(&Error::MethodNotAllowed)))
    } else if content_length.is_some_and(|length| length > limit) {
        Some(log.reply(Outcome::Refused(&Error::PayloadTooLarge { limit })))
    } else {
        None
    }
}

/// Refuses events more than two minutes ahead, and older than the tolerance (0: no age bound).
pub(crate) fn check_freshness(
    timestamp: Timestamp,
    now_ms: i64,
    tolerance_seconds: u64,
) -> Result<(), Error> {
    let age_us = now_ms
        .saturating_mul(1000)
        .saturating_sub(timestamp.micros());
    if age_us < -MAX_FUTURE_SECONDS * 1_000_000 {
        return Err(Error::StaleTimestamp { future: true });
    }
    let tolerance_us = i64::try_from(tolerance_seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000);
    if tolerance_seconds > 0 && age_us > tolerance_us {
        return Err(Error::StaleTimestamp { future: false });
    }
    Ok(())
}

/// Runs the pure part of a request: method -> size -> auth -> parse -> freshness -> plan.
pub fn begin(config: &Config, incoming: &Incoming<'_>) -> Step {
    let body_len = u64::try_from(incoming.body.len()).unwrap_or(u64::MAX);
    if let Some(reply) = preflight(config, incoming.method, Some(body_len)) {
        return Step::Respond(reply);
    }
    let mut log = Log::new(config.debug(), incoming.now_ms);
    match decide(config, incoming, &mut log) {
        Ok(step) => step,
        Err(err) => Step::Respond(log.reply(Outcome::Refused(&err))),
    }
}

fn decide<'a>(config: &Config, incoming: &Incoming<'a>, log: &mut Log<'a>) -> Result<Step, Error> {
    let settings = config.settings();
    // Authenticate the exact raw bytes before parsing anything: unauthenticated input never
    // reaches the JSON parser, and its ids never reach the log.
    log.auth = Some(
        settings
            .verifier
            .check(incoming.headers, incoming.body)?
            .as_str(),
    );
    let parsed = event::parse(incoming.body)?;
    let head = parsed.head();
    log.format = Some(head.format.as_str());
    log.event_id = Some(head.id.clone());
    log.event_type = Some(head.event_type.clone());
    log.room_id = parsed.room_id().cloned();
    let tolerance = match settings.tolerance_seconds {
        0 => 0,
        t if head.replay => t.max(REPLAY_WINDOW_SECONDS),
        t => t,
    };
    check_freshness(head.timestamp, incoming.now_ms, tolerance)?;

    let received_at = Timestamp::from_unix_ms(incoming.now_ms);
    match plan::plan(
        &parsed,
        &settings.roles,
        settings.auto_create_rooms,
        received_at,
    ) {
        Plan::Ignore(reason) => {
            log.plan = Some("ignore");
            Ok(Step::Respond(log.reply(Outcome::Ignored(reason.as_str()))))
        }
        Plan::Apply(args, role_class) => {
            log.plan = Some(args.p_action);
            log.role_class = role_class.map(|c| c.as_str());
            let request = rest::request(&settings.rest, &args);
            Ok(Step::Call(Call {
                request,
                context: std::mem::take(log).into_owned(),
            }))
        }
    }
}

/// Turns the RPC outcome into the reply: 200 for the RPC's own verdicts, 503 otherwise.
pub fn finish(mut log: CallContext, outcome: HttpOutcome, now_ms: i64) -> Reply {
    log.ms = now_ms.saturating_sub(log.started_ms).max(0);
    match rest::interpret(&outcome) {
        Ok(result) => {
            log.upstream = Some(Upstream {
                status: Some(200),
                code: None,
            });
            match result.status {
                ApplyStatus::Ignored => log.reply(Outcome::Ignored(
                    result
                        .reason
                        .as_deref()
                        .unwrap_or("ignored by the database"),
                )),
                status => log.reply(Outcome::Applied(status, result.room.as_ref())),
            }
        }
        Err(failure) => {
            log.upstream = Some(Upstream {
                status: failure.http_status,
                code: failure.code,
            });
            log.problem = Some(failure.problem.into());
            log.reply(Outcome::Refused(&Error::UpstreamUnavailable))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::sign_hex;
    use serde_json::{json, Value};

    const SECRET: &str = "hms_test_secret_0123456789";
    const KEY: &str = "sb_secret_service_key";
    /// 2024-10-04T18:03:10Z
    const EVENT_MS: i64 = 1_728_064_990_000;

    fn env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("HMS_WEBHOOK_SECRET", SECRET),
            ("SUPABASE_URL", "http://127.0.0.1:54321"),
            (
                "SUPABASE_SECRET_KEYS",
                r#"{"default":"sb_secret_service_key"}"#,
            ),
        ]
    }

    fn config_with(extra: &[(&'static str, &'static str)]) -> Config {
        let mut e = env();
        e.extend_from_slice(extra);
        Config::from_env(e).unwrap()
    }

    fn join_body() -> Vec<u8> {
        json!({"version":"2.0","id":"ev-join-1","type":"peer.join.success",
               "timestamp":"2024-10-04T18:03:10Z",
               "data":{"room_id":"room-1","session_id":"s1","peer_id":"p1","role":"listener",
                       "joined_at":"2024-10-04T18:03:10.55810264Z"}})
        .to_string()
        .into_bytes()
    }

    fn signed(body: &[u8]) -> Vec<(String, String)> {
        vec![
            ("content-type".into(), "application/json".into()),
            ("x-100ms-signature".into(), sign_hex(SECRET, body)),
        ]
    }

    fn run(
        config: &Config,
        method: &str,
        headers: &[(String, String)],
        body: &[u8],
        now_ms: i64,
    ) -> Step {
        begin(
            config,
            &Incoming {
                method,
                headers,
                body,
                now_ms,
            },
        )
    }

    fn respond(step: Step) -> Reply {
        match step {
            Step::Respond(reply) => reply,
            Step::Call(call) => panic!("expected a reply, got a call to {}", call.request.url),
        }
    }

    fn call(step: Step) -> Call {
        match step {
            Step::Call(call) => call,
            Step::Respond(reply) => panic!("expected a call, got {} {}", reply.status, reply.body),
        }
    }

    fn body_json(reply: &Reply) -> Value {
        serde_json::from_str(&reply.body).unwrap()
    }

    fn log_json(reply: &Reply) -> Value {
        serde_json::from_str(&reply.log).unwrap()
    }

    fn assert_clean(reply: &Reply) {
        for text in [&reply.body, &reply.log] {
            assert!(!text.contains(SECRET), "secret leaked: {text}");
            assert!(!text.contains(KEY), "key leaked: {text}");
        }
    }

    #[test]
    fn signed_join_becomes_one_rpc_call() {
        let config = config_with(&[]);
        let body = join_body();
        let call = call(run(&config, "POST", &signed(&body), &body, EVENT_MS + 500));
        assert_eq!(
            call.request.url,
            "http://127.0.0.1:54321/rest/v1/rpc/hms_apply_event"
        );
        let args: Value = serde_json::from_str(call.request.body.as_deref().unwrap()).unwrap();
        assert_eq!(args["p_event_id"], "ev-join-1");
        assert_eq!(args["p_action"], "peer_join");
        assert_eq!(args["p_role_class"], "listener");
        assert_eq!(args["p_event_at"], "2024-10-04T18:03:10.558102Z");
        assert_eq!(call.context.room_id.as_deref(), Some("room-1"));
        assert_eq!(call.context.started_ms, EVENT_MS + 500);
    }

    #[test]
    fn static_header_also_authenticates() {
        let config = config_with(&[]);
        let body = join_body();
        let headers = vec![("x-webhook-secret".to_string(), SECRET.to_string())];
        call(run(&config, "POST", &headers, &body, EVENT_MS));
        let config = config_with(&[("HMS_WEBHOOK_AUTH", "signature")]);
        let reply = respond(run(&config, "POST", &headers, &body, EVENT_MS));
        assert_eq!(reply.status, 401);
    }

    #[test]
    fn unauthenticated_requests_are_refused_without_parsing() {
        let config = config_with(&[]);
        let body = join_body();
        let missing = respond(run(&config, "POST", &[], &body, EVENT_MS));
        assert_eq!(missing.status, 401);
        assert_eq!(body_json(&missing)["code"], "unauthorized");
        assert_eq!(
            body_json(&missing)["message"],
            "missing webhook credentials"
        );
        assert_eq!(
            log_json(&missing)["event_id"],
            Value::Null,
            "ids of forged requests are not logged"
        );

        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        let invalid = respond(run(&config, "POST", &signed(&body), &tampered, EVENT_MS));
        assert_eq!(invalid.status, 401);
        assert_eq!(
            body_json(&invalid)["message"],
            "invalid webhook credentials"
        );

        // Garbage with no credentials is 401, not 400: auth comes before parsing.
        let garbage = respond(run(&config, "POST", &[], b"{not json", EVENT_MS));
        assert_eq!(garbage.status, 401);
        assert_clean(&garbage);
    }

    #[test]
    fn malformed_signed_bodies_are_400() {
        let config = config_with(&[]);
        for (body, code) in [
            (&b""[..], "empty_body"),
            (b"\xff\xfe", "invalid_utf8"),
            (b"{\"id\":", "invalid_json"),
            (b"[1,2]", "not_an_object"),
            (b"{}", "missing_field"),
        ] {
            let reply = respond(run(&config, "POST", &signed(body), body, EVENT_MS));
            assert_eq!(reply.status, 400, "{body:?}");
            assert_eq!(body_json(&reply)["code"], code);
            assert_eq!(log_json(&reply)["outcome"], "rejected");
        }
    }

    #[test]
    fn method_and_size_come_first() {
        let config = config_with(&[("HMS_MAX_BODY_BYTES", "100")]);
        let get = respond(run(&config, "GET", &[], b"", EVENT_MS));
        assert_eq!(get.status, 405);
        assert!(get.headers.contains(&("allow".into(), "POST".into())));
        let options = respond(run(&config, "OPTIONS", &[], b"", EVENT_MS));
        assert_eq!(options.status, 204);
        assert!(options.body.is_empty());
        let big = vec![b'x'; 101];
        let too_large = respond(run(&config, "POST", &[], &big, EVENT_MS));
        assert_eq!(too_large.status, 413);
        assert_eq!(body_json(&too_large)["code"], "payload_too_large");
        assert_eq!(preflight(&config, "POST", Some(101)).unwrap().status, 413);
        assert!(preflight(&config, "POST", Some(100)).is_none());
        assert!(preflight(&config, "POST", None).is_none());
        assert_eq!(preflight(&config, "PUT", Some(1)).unwrap().status, 405);
    }

    #[test]
    fn misconfiguration_answers_everything_with_500() {
        // Decided once: the boundary answers every request (any method) with this reply.
        let problem = Config::from_env([("SUPABASE_URL", "http://x")]).unwrap_err();
        let reply = misconfigured(&problem);
        assert_eq!(reply.status, 500);
        assert_eq!(body_json(&reply)["code"], "misconfigured");
        assert!(body_json(&reply)["message"]
            .as_str()
            .unwrap()
            .contains("HMS_WEBHOOK_SECRET"));
        let log = log_json(&reply);
        assert_eq!(log["variable"], "HMS_WEBHOOK_SECRET");
        assert_eq!(log["level"], "error");
        let padded_secret = Config::from_env(env().into_iter().map(|(k, v)| {
            if k == "HMS_WEBHOOK_SECRET" {
                (k, "hms_test_secret_0123456789\n")
            } else {
                (k, v)
            }
        }));
        let reply = misconfigured(&padded_secret.unwrap_err());
        assert_eq!(reply.status, 500);
        assert!(log_json(&reply)["problem"]
            .as_str()
            .unwrap()
            .contains("whitespace"));
        assert_clean(&reply);
    }

    #[test]
    fn freshness_window() {
        let config = config_with(&[]);
        let body = join_body();
        let h = signed(&body);
        call(run(&config, "POST", &h, &body, EVENT_MS + 900_000));
        let old = respond(run(&config, "POST", &h, &body, EVENT_MS + 900_001));
        assert_eq!(old.status, 401);
        assert_eq!(body_json(&old)["code"], "stale_timestamp");
        assert_eq!(log_json(&old)["event_id"], "ev-join-1");
        call(run(&config, "POST", &h, &body, EVENT_MS - 120_000));
        let future = respond(run(&config, "POST", &h, &body, EVENT_MS - 120_001));
        assert_eq!(future.status, 401);
        assert!(body_json(&future)["message"]
            .as_str()
            .unwrap()
            .contains("future"));

        // 0 turns off the age bound only: the future bound holds whatever the tolerance.
        let off = config_with(&[("HMS_TIMESTAMP_TOLERANCE_SECONDS", "0")]);
        call(run(&off, "POST", &h, &body, EVENT_MS + 86_400_000 * 365));
        call(run(&off, "POST", &h, &body, EVENT_MS - 120_000));
        let ahead = respond(run(&off, "POST", &h, &body, EVENT_MS - 120_001));
        assert_eq!(body_json(&ahead)["code"], "stale_timestamp");
        let short = config_with(&[("HMS_TIMESTAMP_TOLERANCE_SECONDS", "5")]);
        assert_eq!(
            respond(run(&short, "POST", &h, &body, EVENT_MS + 5_001)).status,
            401
        );
    }

    #[test]
    fn replays_marked_by_100ms_may_be_old_but_not_older_than_its_window() {
        let config = config_with(&[]);
        let day = 86_400_000;
        let mut top: Value = serde_json::from_slice(&join_body()).unwrap();
        top["is_replay"] = json!(true);
        let mut inside: Value = serde_json::from_slice(&join_body()).unwrap();
        inside["data"]["is_replay"] = json!(true);
        for marked in [top, inside] {
            let body = marked.to_string().into_bytes();
            let h = signed(&body);
            call(run(&config, "POST", &h, &body, EVENT_MS + 29 * day));
            let too_old = respond(run(&config, "POST", &h, &body, EVENT_MS + 30 * day + 1));
            assert_eq!(body_json(&too_old)["code"], "stale_timestamp");
            let future = respond(run(&config, "POST", &h, &body, EVENT_MS - 120_001));
            assert_eq!(body_json(&future)["code"], "stale_timestamp");
        }
        // Unmarked (or marked false) keeps the configured tolerance.
        let mut unmarked: Value = serde_json::from_slice(&join_body()).unwrap();
        unmarked["is_replay"] = json!(false);
        let body = unmarked.to_string().into_bytes();
        let stale = respond(run(&config, "POST", &signed(&body), &body, EVENT_MS + day));
        assert_eq!(body_json(&stale)["code"], "stale_timestamp");
        let mut odd: Value = serde_json::from_slice(&join_body()).unwrap();
        odd["is_replay"] = json!("true");
        let body = odd.to_string().into_bytes();
        let reply = respond(run(&config, "POST", &signed(&body), &body, EVENT_MS));
        assert_eq!(body_json(&reply)["code"], "invalid_field");
        assert!(body_json(&reply)["message"]
            .as_str()
            .unwrap()
            .contains("is_replay"));
        // A replayed type the function ignores is answered 200 too (not 401: 100ms would count
        // it as failed again).
        let ignored =
            json!({"id":"e9","type":"recording.success","timestamp":"2024-10-04T18:03:10Z",
                             "is_replay":true,"data":{"room_id":"r"}})
            .to_string()
            .into_bytes();
        let reply = respond(run(
            &config,
            "POST",
            &signed(&ignored),
            &ignored,
            EVENT_MS + day,
        ));
        assert_eq!(reply.status, 200);
    }

    #[test]
    fn ignored_types_answer_200_without_a_call() {
        let config = config_with(&[]);
        for (event_type, reason) in [
            ("peer.leave.failure", "failure event"),
            ("recording.success", "event type not handled"),
        ] {
            let body = json!({"id":"e9","type":event_type,"timestamp":"2024-10-04T18:03:10Z","data":{"room_id":"r"}})
                .to_string()
                .into_bytes();
            let reply = respond(run(&config, "POST", &signed(&body), &body, EVENT_MS));
            assert_eq!(reply.status, 200);
            assert_eq!(
                body_json(&reply),
                json!({"status":"ignored","reason":reason,"event_id":"e9","type":event_type})
            );
            assert_eq!(log_json(&reply)["outcome"], "ignored");
        }
    }

    fn context() -> CallContext {
        let config = config_with(&[]);
        let body = join_body();
        let call = call(run(&config, "POST", &signed(&body), &body, EVENT_MS));
        call.context
    }

    #[test]
    fn finish_passes_the_rpc_verdict_through() {
        let ctx = context();
        let outcome = HttpOutcome::Response {
            status: 200,
            body: br#"{"status":"applied","reason":null,"room":{"hms_room_id":"room-1","is_live":true,"listener_count":3,"speaker_count":1,"trending_score":6.0,"last_active_at":"2024-10-04T18:03:10.558102+00:00"}}"#.to_vec(),
        };
        let reply = finish(ctx.clone(), outcome, EVENT_MS + 12);
        assert_eq!(reply.status, 200);
        let body = body_json(&reply);
        assert_eq!(body["status"], "applied");
        assert_eq!(body["event_id"], "ev-join-1");
        assert_eq!(body["type"], "peer.join.success");
        assert_eq!(body["room"]["listener_count"], 3);
        let log = log_json(&reply);
        assert_eq!(log["ms"], 12);
        assert_eq!(log["outcome"], "applied");
        assert_eq!(log["room_id"], "room-1");

        let ignored = finish(
            ctx.clone(),
            HttpOutcome::Response {
                status: 200,
                body: br#"{"status":"ignored","reason":"unknown room","room":null}"#.to_vec(),
            },
            EVENT_MS,
        );
        assert_eq!(body_json(&ignored)["reason"], "unknown room");
        assert_eq!(ignored.status, 200);
    }

    #[test]
    fn finish_maps_failures_to_503_and_logs_the_code() {
        let ctx = context();
        let down = finish(ctx.clone(), HttpOutcome::Unreachable, EVENT_MS);
        assert_eq!(down.status, 503);
        assert_eq!(body_json(&down)["code"], "upstream_unavailable");
        assert_eq!(log_json(&down)["problem"], "unreachable");
        let missing_fn = finish(
            ctx.clone(),
            HttpOutcome::Response {
                status: 404,
                body: br#"{"code":"PGRST202","message":"Could not find the function public.hms_apply_event"}"#.to_vec(),
            },
            EVENT_MS,
        );
        assert_eq!(missing_fn.status, 503);
        assert!(
            !missing_fn.body.contains("PGRST202"),
            "codes stay in the log"
        );
        let log = log_json(&missing_fn);
        assert_eq!(log["upstream_code"], "PGRST202");
        assert_eq!(log["upstream_status"], 404);
        assert_clean(&missing_fn);
    }

    #[test]
    fn debug_mode_adds_details_but_no_secrets() {
        let config = config_with(&[("SUPABASE_DEBUG", "true")]);
        let body = join_body();
        let call = call(run(&config, "POST", &signed(&body), &body, EVENT_MS));
        let reply = finish(call.context, HttpOutcome::Unreachable, EVENT_MS);
        let log = log_json(&reply);
        assert_eq!(
            log["debug"],
            json!({"format":"envelope","auth":"signature","plan":"peer_join","role_class":"listener"})
        );
        assert_clean(&reply);
        let quiet = config_with(&[]);
        let call = self::call(run(&quiet, "POST", &signed(&body), &body, EVENT_MS));
        let reply = finish(call.context, HttpOutcome::Unreachable, EVENT_MS);
        assert!(log_json(&reply).get("debug").is_none());
    }
}
