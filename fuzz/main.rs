//! Deterministic mutation fuzzer for the request core ("every forged or malformed request is
//! refused cleanly"): drives `preflight`/`begin`/`finish` with mutated 100ms payloads, headers
//! and RPC answers, and fails on any panic or broken invariant.
//!
//! Usage: `cargo run --release --example fuzz -- --iters N --seed S`
//! (`cargo test` runs 20,000 iterations through the test at the bottom.)

use hmac::{Hmac, Mac};
use hms_webhook::{
    begin, finish, preflight, Config, Incoming, Outcome, Reply, Step, EVENT_ACTIONS,
};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;

const SECRET: &str = "fuzz-current-secret-7d1c";
const PREVIOUS: &str = "fuzz-previous-secret-42ab";
const API_KEY: &str = "sb_secret_fuzz_service_key_91f0";
const MAX_BODY: usize = 4096;
/// 2024-10-04T18:30:00Z: close to the seeds' timestamps.
const BASE_NOW_MS: i64 = 1_728_066_600_000;

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn seeds() -> Vec<String> {
    let room = json!("6501c1d2e3f4a5b6c7d8e9f0");
    let session = json!("6702a7b8c9d0e1f2a3b4c5d6");
    let started = json!("2024-10-04T18:00:02.183742915Z");
    let envelope = |id: &str, ts: &str, ty: &str, data: Value| {
        json!({"version":"2.0","id":id,"account_id":"64f1a2b3c4d5e6f708192a3b",
               "app_id":"64f1a2b3c4d5e6f708192a3d","timestamp":ts,"type":ty,"data":data})
        .to_string()
    };
    vec![
        envelope(
            "0b6f3c1e-5a2d-4c8e-9f71-2d4e6a8b0c13",
            "2024-10-04T18:00:02Z",
            "session.open.success",
            json!({"room_id":room,"room_name":"friday-night-jazz","session_id":session,
                   "template_id":"6501c0ffee0123456789abcd","session_started_at":started}),
        ),
        envelope(
            "7c2e9a44-1f0b-4d3a-b8e6-5a9c0d2f7e81",
            "2024-10-04T18:03:10Z",
            "peer.join.success",
            json!({"room_id":room,"room_name":"friday-night-jazz","session_id":session,
                   "peer_id":"a71c4e02-58b3-4f6d-9e1a-c3d2b7f6e845","user_id":"usr_1907",
                   "user_name":"Ravi","user_data":"{\"avatar\":\"r7.png\"}","role":"listener",
                   "type":"regular","joined_at":"2024-10-04T18:03:10.55810264Z",
                   "session_started_at":started}),
        ),
        envelope(
            "d41f0e6b-8c27-4a95-a3b1-6e0f2c9d8a57",
            "2024-10-04T18:12:45Z",
            "role.change.success",
            json!({"room_id":room,"session_id":session,"peer_id":"a71c4e02-58b3-4f6d-9e1a-c3d2b7f6e845",
                   "previous_role":"listener","role":"speaker",
                   "role_change_requested_by":"3f2b8c1e-9d4a-4e7b-a6c2-1b5e8f0d7a93",
                   "joined_at":"2024-10-04T18:03:10.55810264Z","session_started_at":started,
                   "role_changed_at":"2024-10-04T18:12:45.661207830Z"}),
        ),
        envelope(
            "5e8d2b70-3c1a-4f6e-9b04-7a2c8e1d6f39",
            "2024-10-04T18:40:31Z",
            "peer.leave.success",
            json!({"room_id":room,"session_id":session,"peer_id":"a71c4e02-58b3-4f6d-9e1a-c3d2b7f6e845",
                   "role":"speaker","type":"regular","reason":"client request","message":"",
                   "duration":2241,"joined_at":"2024-10-04T18:03:10.55810264Z",
                   "left_at":"2024-10-04T18:40:31.904117326Z","session_started_at":started}),
        ),
        envelope(
            "9a0c6e13-7b4f-4e2d-8d95-1f3b5c7e9a20",
            "2024-10-04T19:01:58Z",
            "room.end.success",
            json!({"room_id":room,"session_id":session,"peer_id":"3f2b8c1e-9d4a-4e7b-a6c2-1b5e8f0d7a93",
                   "user_name":"Maya","role":"host","lock_room":false,"reason":"Show is over",
                   "source":"peer","session_started_at":started}),
        ),
        envelope(
            "e2b7d5a9-0c3f-4a18-b6e4-8d1f9c2a7b65",
            "2024-10-04T19:02:00Z",
            "session.close.success",
            json!({"room_id":room,"session_id":session,"session_duration":3717,
                   "session_started_at":started,"session_stopped_at":"2024-10-04T19:01:59.512880041Z"}),
        ),
        envelope(
            "f00d",
            "2024-10-04T18:20:00Z",
            "peer.join.failure",
            json!({"room_id":room,"peer_id":"p","role":"host","joined_at":"0001-01-01T00:00:00Z",
                   "error_message":"role not allowed"}),
        ),
        envelope(
            "beef",
            "2024-10-04T18:21:00Z",
            "track.update.success",
            json!({"room_id":room,"session_id":session,"peer_id":"p","mute":true}),
        ),
        envelope(
            "cafe",
            "2024-10-04T18:22:00Z",
            "recording.success",
            json!({"room_id":room,"size":"1234","duration":12}),
        ),
        json!({"event":"peer.joined","room_id":"legacy-room","peer":{"id":"lp1","role":"Speaker"},
               "timestamp":1_728_066_000_000u64})
        .to_string(),
        json!({"event":"room.ended","room_id":"legacy-room","timestamp":1_728_066_500_000u64})
            .to_string(),
    ]
}

/// Event type names worth swapping in: every type the function acts on, then some it must not.
fn types() -> Vec<&'static str> {
    let handled = EVENT_ACTIONS.iter().map(|(name, _)| *name);
    let others = [
        "peer.leave.failure",
        "recording.failed",
        "",
        "PEER.JOIN.SUCCESS",
    ];
    handled.chain(others).collect()
}

/// Raw snippets that JSON values cannot express (or that are simply nasty).
const RAW: &[&[u8]] = &[
    b"\\ud800",
    b"\\udc00\\ud800",
    b"1e400",
    b"-0",
    b"01",
    b"\"\\u0000\"",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\x00",
    b"\r\n",
    b"{\"id\":1,\"id\":2}",
    b",",
    b"}",
    b"]",
    b"\"",
    b"\\",
    b"null",
    b"[[[[[[[[[[[[[[[[",
    b"\"0001-01-01T00:00:00Z\"",
    b"\"2024-02-30T00:00:00Z\"",
    b"\"2024-10-04T18:03:10.1234567890Z\"",
    b"\"9999-12-31T23:59:59-01:00\"",
];

fn random_timestamp(rng: &mut Rng) -> String {
    let parts = [
        format!("{:04}", rng.below(10_001)),
        format!("{:02}", rng.below(14)),
        format!("{:02}", rng.below(33)),
        format!("{:02}", rng.below(26)),
        format!("{:02}", rng.below(62)),
        format!("{:02}", rng.below(62)),
    ];
    let fraction = match rng.below(4) {
        0 => String::new(),
        1 => ".".to_string(),
        _ => format!(".{}", "7".repeat(rng.below(12))),
    };
    let zone = rng
        .pick(&["Z", "z", "+02:00", "-23:59", "+24:00", "", "+0200", " Z"])
        .to_string();
    let t = if rng.chance(90) { "T" } else { " " };
    format!(
        "{}-{}-{}{t}{}:{}:{}{fraction}{zone}",
        parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]
    )
}

fn random_string(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => String::new(),
        1 => "a".repeat(*rng.pick(&[255, 256, 257, 300, 5000])),
        2 => "é".repeat(*rng.pick(&[127, 128, 129])),
        3 => "😀\u{202e}\u{0}\u{7f}\u{feff}".repeat(1 + rng.below(4)),
        4 => random_timestamp(rng),
        5 => rng.pick(&types()).to_string(),
        6 => rng
            .pick(&[
                "host",
                "HOST",
                " speaker ",
                "beam",
                "__internal_recorder",
                "listener",
            ])
            .to_string(),
        7 => SECRET.chars().rev().collect(), // near-miss of the secret, reversed
        _ => format!("x{}", rng.next()),
    }
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 3 { 8 } else { 11 }) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.next() as i64),
        3 => json!(*rng.pick(&[0u64, 1, u64::MAX, 1_728_066_000_000, 253_402_300_800_000])),
        4 => json!(*rng.pick(&[1.5f64, -0.0, 1e308, 1e-7, 1_728_066_000_000.5])),
        5..=7 => Value::String(random_string(rng)),
        8 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        9 => {
            let mut nested = random_value(rng, depth + 1);
            for _ in 0..rng.below(160) {
                nested = json!([nested]);
            }
            nested
        }
        _ => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.below(4) {
                map.insert(random_string(rng), random_value(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

/// Replaces, removes or adds one member somewhere in the document.
fn mutate_json(rng: &mut Rng, doc: &mut Value) {
    // Choose a path to a nested object first, then borrow it mutably through a JSON pointer.
    let mut pointer = String::new();
    let mut cursor: &Value = doc;
    for _ in 0..rng.below(3) {
        let Value::Object(map) = cursor else { break };
        let objects: Vec<&String> = map
            .iter()
            .filter(|(_, v)| v.is_object())
            .map(|(k, _)| k)
            .collect();
        if objects.is_empty() {
            break;
        }
        let key = *rng.pick(&objects);
        pointer.push('/');
        pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
        cursor = &map[key];
    }
    let Some(target) = doc.pointer_mut(&pointer) else {
        return;
    };
    let Value::Object(map) = target else { return };
    let keys: Vec<String> = map.keys().cloned().collect();
    match rng.below(5) {
        0 if !keys.is_empty() => {
            map.remove(rng.pick(&keys));
        }
        1 => {
            map.insert(random_string(rng), random_value(rng, 0));
        }
        2 if !keys.is_empty() => {
            map.insert(
                rng.pick(&keys).clone(),
                Value::String(rng.pick(&types()).to_string()),
            );
        }
        _ if !keys.is_empty() => {
            map.insert(rng.pick(&keys).clone(), random_value(rng, 0));
        }
        _ => {}
    }
}

fn mutate_bytes(rng: &mut Rng, body: &mut Vec<u8>, other: &[u8]) {
    let len = body.len();
    match rng.below(7) {
        0 if len > 0 => {
            let i = rng.below(len);
            body[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            body[i] = rng.next() as u8;
        }
        2 => body.truncate(rng.below(len + 1)),
        3 => {
            let at = rng.below(len + 1);
            let start = rng.below(other.len() + 1);
            let end = (start + rng.below(64)).min(other.len());
            let tail = body.split_off(at);
            body.extend_from_slice(&other[start..end]);
            body.extend_from_slice(&tail);
        }
        4 => {
            let at = rng.below(len + 1);
            let snippet = rng.pick(RAW);
            let tail = body.split_off(at);
            body.extend_from_slice(snippet);
            body.extend_from_slice(&tail);
        }
        5 if len > 0 => {
            let start = rng.below(len);
            let end = (start + rng.below(32)).min(len);
            let copy = body[start..end].to_vec();
            let at = rng.below(len + 1);
            let tail = body.split_off(at);
            body.extend_from_slice(&copy);
            body.extend_from_slice(&tail);
        }
        // Oversized bodies are cheap to refuse; keep them rare so most inputs go deeper.
        6 if rng.chance(15) => body.resize(MAX_BODY + rng.below(3), b' '),
        _ if len > 0 => {
            let i = rng.below(len);
            body.remove(i);
        }
        _ => {}
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The fuzzer's own view of "authentic", written independently of `signature.rs`.
fn authentic(mode: &str, header_name: &str, headers: &[(String, String)], body: &[u8]) -> bool {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let by_signature = get("x-100ms-signature").is_some_and(|value| {
        let value = value.trim();
        let hex_part = value
            .strip_prefix("sha256=")
            .unwrap_or(value)
            .to_ascii_lowercase();
        [SECRET, PREVIOUS].iter().any(|s| sign(s, body) == hex_part)
    });
    let by_header = get(header_name).is_some_and(|v| v == SECRET || v == PREVIOUS);
    match mode {
        "signature" => by_signature,
        "header" => by_header,
        _ => by_signature || by_header,
    }
}

fn headers_for(
    rng: &mut Rng,
    mode: &str,
    header_name: &str,
    body: &[u8],
    original: &[u8],
) -> Vec<(String, String)> {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    let secret = if rng.chance(80) { SECRET } else { PREVIOUS };
    match rng.below(10) {
        // Mostly the credential the configured mode accepts, so inputs get past auth.
        0..=2 if mode == "header" => headers.push((header_name.to_string(), secret.to_string())),
        0..=2 => headers.push(("x-100ms-signature".into(), sign(secret, body))),
        3 => headers.push((
            "x-100ms-signature".into(),
            format!("sha256={}", sign(secret, body).to_uppercase()),
        )),
        4 => headers.push((header_name.to_string(), secret.to_string())),
        5 => headers.push(("x-100ms-signature".into(), sign(secret, original))),
        6 => {
            let mut sig = sign(secret, body);
            sig.truncate(rng.below(65));
            headers.push(("x-100ms-signature".into(), sig));
        }
        7 => headers.push((
            header_name.to_string(),
            format!("{secret}{}", rng.pick(&["", " ", "\n", "x"])),
        )),
        8 => headers.push(("x-100ms-signature".into(), random_string(rng))),
        _ => {}
    }
    if rng.chance(10) {
        headers.push((header_name.to_string(), random_string(rng)));
    }
    headers
}

fn rpc_outcome(rng: &mut Rng) -> (Outcome, bool) {
    let room = json!({"hms_room_id":"r","is_live":true,"listener_count":rng.below(1000),
                      "speaker_count":rng.below(10),"trending_score":14.25,
                      "last_active_at":"2024-10-04T18:03:10.558102+00:00"});
    let good = match rng.below(3) {
        0 => json!({"status":"applied","reason":null,"room":room}),
        1 => json!({"status":"duplicate","reason":null,"room":room}),
        _ => json!({"status":"ignored","reason":"unknown room","room":null}),
    };
    match rng.below(6) {
        0 => (Outcome::Unreachable, false),
        1 | 2 => (
            Outcome::Response {
                status: 200,
                body: good.to_string().into_bytes(),
            },
            true,
        ),
        3 => {
            let mut doc = good;
            mutate_json(rng, &mut doc);
            (
                Outcome::Response {
                    status: 200,
                    body: doc.to_string().into_bytes(),
                },
                false,
            )
        }
        4 => {
            let status = *rng.pick(&[201u16, 204, 300, 400, 401, 403, 404, 409, 500, 502, 503]);
            let body =
                json!({"code":rng.pick(&["PGRST202","42501","P0001","x\ny",""]),"message":"m"});
            (
                Outcome::Response {
                    status,
                    body: body.to_string().into_bytes(),
                },
                false,
            )
        }
        _ => {
            let mut body = good.to_string().into_bytes();
            mutate_bytes(rng, &mut body, b"{\"status\":\"applied\"}");
            (Outcome::Response { status: 200, body }, false)
        }
    }
}

const STATUSES: &[u16] = &[200, 204, 400, 401, 405, 413, 500, 503];

fn expected_code_status(code: &str) -> Option<u16> {
    Some(match code {
        "empty_body" | "invalid_json" | "invalid_utf8" | "not_an_object" | "missing_field"
        | "invalid_field" | "invalid_timestamp" | "field_too_long" => 400,
        "unauthorized" | "stale_timestamp" => 401,
        "method_not_allowed" => 405,
        "payload_too_large" => 413,
        "misconfigured" | "internal" => 500,
        "upstream_unavailable" => 503,
        _ => return None,
    })
}

/// Checks one reply; returns its outcome class (e.g. `400 invalid_json`).
fn check_reply(reply: &Reply) -> Result<String, String> {
    if !STATUSES.contains(&reply.status) {
        return Err(format!("status {} not allowed", reply.status));
    }
    for secret in [SECRET, PREVIOUS, API_KEY] {
        if reply.body.contains(secret) || reply.log.contains(secret) {
            return Err("a secret leaked into the body or log".into());
        }
    }
    if reply.log.contains('\n') {
        return Err("log is more than one line".into());
    }
    let log: Value = serde_json::from_str(&reply.log).map_err(|e| format!("log not JSON: {e}"))?;
    if log["msg"] != "webhook" || log["status"] != reply.status || !log["outcome"].is_string() {
        return Err(format!("log line inconsistent: {}", reply.log));
    }
    if reply.status == 204 {
        return if reply.body.is_empty() {
            Ok("204".into())
        } else {
            Err("204 with a body".into())
        };
    }
    if !reply
        .headers
        .iter()
        .any(|(n, v)| n == "content-type" && v == "application/json")
    {
        return Err("missing content-type: application/json".into());
    }
    let body: Value =
        serde_json::from_str(&reply.body).map_err(|e| format!("body not JSON: {e}"))?;
    let status = body["status"].as_str().ok_or("body without status")?;
    if reply.status == 200 {
        if !["applied", "duplicate", "ignored"].contains(&status) || !body["event_id"].is_string() {
            return Err(format!("bad 200 body {}", reply.body));
        }
        return Ok(format!("200 {status}"));
    }
    let code = body["code"].as_str().ok_or("error without code")?;
    if status != "error" || expected_code_status(code) != Some(reply.status) {
        return Err(format!(
            "code {code} does not match status {}",
            reply.status
        ));
    }
    if !body["message"].is_string() {
        return Err("error without message".into());
    }
    Ok(format!("{} {code}", reply.status))
}

struct Setup {
    config: Config,
    mode: &'static str,
    header_name: &'static str,
}

fn setups() -> Vec<Setup> {
    let base = [
        ("HMS_WEBHOOK_SECRET", SECRET),
        ("HMS_WEBHOOK_SECRET_PREVIOUS", PREVIOUS),
        ("SUPABASE_URL", "http://127.0.0.1:54321"),
        (
            "SUPABASE_SECRET_KEYS",
            r#"{"default":"sb_secret_fuzz_service_key_91f0"}"#,
        ),
        ("HMS_MAX_BODY_BYTES", "4096"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        Config::from_env(base.iter().chain(extra.iter()).copied()).expect("a valid setup")
    };
    vec![
        Setup {
            config: with(&[]),
            mode: "either",
            header_name: "x-webhook-secret",
        },
        Setup {
            config: with(&[
                ("HMS_WEBHOOK_AUTH", "signature"),
                ("SUPABASE_DEBUG", "true"),
            ]),
            mode: "signature",
            header_name: "x-webhook-secret",
        },
        Setup {
            config: with(&[
                ("HMS_WEBHOOK_AUTH", "header"),
                ("HMS_WEBHOOK_SECRET_HEADER", "X-HMS-Secret"),
            ]),
            mode: "header",
            header_name: "x-hms-secret",
        },
    ]
}

/// Summary of a run.
#[derive(Default)]
struct Report {
    inputs: u64,
    panics: u64,
    violations: Vec<String>,
    outcomes: BTreeMap<String, u64>,
}

/// One fuzz case; `Err` is an invariant violation.
fn one_case(rng: &mut Rng, seeds: &[String], setups: &[Setup]) -> Result<String, String> {
    let setup = rng.pick(setups);
    let seed = rng.pick(seeds).as_bytes();
    let mut body = seed.to_vec();
    if rng.chance(40) {
        if let Ok(mut doc) = serde_json::from_slice::<Value>(&body) {
            for _ in 0..1 + rng.below(3) {
                mutate_json(rng, &mut doc);
            }
            body = doc.to_string().into_bytes();
        }
    }
    if rng.chance(60) {
        let other = rng.pick(seeds).as_bytes();
        for _ in 0..1 + rng.below(4) {
            mutate_bytes(rng, &mut body, other);
        }
    }
    let method = if rng.chance(95) {
        "POST"
    } else {
        *rng.pick(&["GET", "PUT", "OPTIONS", "post", "HEAD", ""])
    };
    let headers = headers_for(rng, setup.mode, setup.header_name, &body, seed);
    let now_ms = BASE_NOW_MS
        + match rng.below(10) {
            0 => rng.next() as i64 % 10_000_000_000,
            1 => -(rng.below(200_000) as i64),
            _ => rng.below(1_200_000) as i64 - 600_000,
        };

    let declared = match rng.below(10) {
        0 | 1 => None,
        2 => Some(rng.next() % (2 * MAX_BODY as u64)),
        _ => Some(body.len() as u64),
    };
    if let Some(reply) = preflight(&setup.config, method, declared) {
        return check_reply(&reply);
    }
    let incoming = Incoming {
        method,
        headers: &headers,
        body: &body,
        now_ms,
    };
    let is_authentic = authentic(setup.mode, setup.header_name, &headers, &body);
    match begin(&setup.config, &incoming) {
        Step::Respond(reply) => {
            let class = check_reply(&reply)?;
            if reply.status == 200 && !is_authentic {
                return Err("an unauthenticated request got 200".into());
            }
            if reply.status == 401 && class.ends_with("unauthorized") && is_authentic {
                return Err("an authentic request was refused as unauthorized".into());
            }
            Ok(class)
        }
        Step::Call(call) => {
            if !is_authentic || !method.eq_ignore_ascii_case("POST") || body.len() > MAX_BODY {
                return Err("a request that must be refused reached the RPC".into());
            }
            if call.request.url != "http://127.0.0.1:54321/rest/v1/rpc/hms_apply_event" {
                return Err(format!("unexpected RPC URL {}", call.request.url));
            }
            let body = call.request.body.as_deref().unwrap_or("");
            let args: Value =
                serde_json::from_str(body).map_err(|e| format!("RPC body not JSON: {e}"))?;
            let action = args["p_action"].as_str().unwrap_or("");
            let known = EVENT_ACTIONS.iter().any(|(_, a)| a.as_str() == action);
            if args.as_object().map(|o| o.len()) != Some(16) || !known {
                return Err(format!("bad RPC arguments {body}"));
            }
            if body.contains(SECRET) || body.contains(API_KEY) {
                return Err("a secret leaked into the RPC body".into());
            }
            let (outcome, valid) = rpc_outcome(rng);
            let reply = finish(call.context, outcome, now_ms + 5);
            let class = check_reply(&reply)?;
            match (valid, reply.status) {
                (true, 200) | (false, 200 | 503) => Ok(format!("call -> {class}")),
                _ => Err(format!(
                    "RPC answer mapped to {} (valid answer: {valid})",
                    reply.status
                )),
            }
        }
    }
}

fn run(iters: u64, seed: u64) -> Report {
    let seeds = seeds();
    let setups = setups();
    let mut rng = Rng::new(seed);
    let mut report = Report::default();
    for i in 0..iters {
        // Each case gets its own generator so a failure is reproducible from (seed, i).
        let mut case_rng = Rng::new(rng.next());
        report.inputs += 1;
        match catch_unwind(AssertUnwindSafe(|| {
            one_case(&mut case_rng, &seeds, &setups)
        })) {
            Ok(Ok(class)) => *report.outcomes.entry(class).or_default() += 1,
            Ok(Err(violation)) => {
                if report.violations.len() < 20 {
                    report
                        .violations
                        .push(format!("seed {seed} input {i}: {violation}"));
                }
                *report.outcomes.entry("VIOLATION".into()).or_default() += 1;
            }
            Err(_) => {
                report.panics += 1;
                if report.violations.len() < 20 {
                    report
                        .violations
                        .push(format!("seed {seed} input {i}: panic"));
                }
            }
        }
    }
    report
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let iters = flag("--iters", 100_000);
    let seed = flag("--seed", 1);
    let started = std::time::Instant::now();
    let report = run(iters, seed);
    let outcomes: Vec<String> = report
        .outcomes
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    println!(
        "fuzz: {} inputs, {} panics, outcomes {{{}}} in {:.1}s",
        report.inputs,
        report.panics,
        outcomes.join(", "),
        started.elapsed().as_secs_f64()
    );
    for violation in &report.violations {
        eprintln!("fuzz: {violation}");
    }
    if report.panics == 0 && report.violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_thousand_inputs_are_refused_or_handled_cleanly() {
        let report = run(20_000, 7);
        assert_eq!(report.panics, 0, "{:?}", report.violations);
        assert!(report.violations.is_empty(), "{:?}", report.violations);
        // The fuzzer must reach every layer, or it proves nothing.
        for class in [
            "call -> 200 applied",
            "call -> 503 upstream_unavailable",
            "200 ignored",
            "400 invalid_json",
            "400 invalid_utf8",
            "400 missing_field",
            "400 invalid_field",
            "400 invalid_timestamp",
            "400 field_too_long",
            "401 unauthorized",
            "401 stale_timestamp",
            "405 method_not_allowed",
            "413 payload_too_large",
        ] {
            assert!(
                report.outcomes.get(class).copied().unwrap_or(0) > 0,
                "never reached {class}: {:?}",
                report.outcomes
            );
        }
    }

    #[test]
    fn the_oracle_agrees_with_known_answers() {
        let body = b"{}";
        let good = vec![("x-100ms-signature".to_string(), sign(SECRET, body))];
        assert!(authentic("either", "x-webhook-secret", &good, body));
        assert!(!authentic("header", "x-webhook-secret", &good, body));
        assert!(!authentic("either", "x-webhook-secret", &good, b"{ }"));
    }
}
