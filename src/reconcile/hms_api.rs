//! 100ms's server API as reconcile uses it (the Sessions and Active Rooms APIs,
//! <https://www.100ms.live/docs/server-side/v2/api-reference/Sessions/object>,
//! <https://www.100ms.live/docs/server-side/v2/api-reference/active-rooms/retrieve-active-room>):
//! request building and strict parsing of the documented answers. A field the docs promise that
//! is missing or mistyped makes the whole answer `Malformed` (nothing is concluded from half a
//! document), naming the field's path and what was expected, never its value; fields the docs
//! do not mention are ignored, so 100ms may add some. serde derives read each answer; the
//! rules serde cannot state (non-empty ids, a keyed entry's id equal to its key, times) follow.
//! A peer's `user_id` and `name` are labels, not counting facts: one that does not fit the
//! webhook's string bound (`event::fits_field`) is read as not reported, so the peer's counts
//! still heal and the database keeps whatever label it had.

use crate::document::{self, Entries};
use crate::http::{encode_component, Method, Outcome, Request};
use crate::time::Timestamp;
use crate::webhook::event::fits_field;
use serde::Deserialize;
use std::borrow::Cow;

/// `limit` of one sessions page: the documented maximum.
pub const PAGE_LIMIT: u32 = 100;

/// Why an API call gave nothing usable. Never carries a body, a header or a value of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 429: stop the pass (100ms asks to retry after 45 s, §4).
    RateLimited,
    /// 401/403: the token was refused (wrong keys?).
    Unauthorized(u16),
    /// 404 (for an active room: "not active"; for a session: unknown to 100ms).
    NotFound,
    /// 5xx.
    Server(u16),
    /// Any other status.
    Status(u16),
    /// No answer within the boundary's timeout.
    TimedOut,
    /// No connection.
    Unreachable,
    /// A 200 whose body is not the documented shape; the text names the field that was wrong
    /// (its path, e.g. `data[0].active`) and what was expected there, never its value.
    Malformed(Cow<'static, str>),
}

impl ApiError {
    /// Stable name for the summary and the log.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::RateLimited => "rate_limited",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound => "not_found",
            ApiError::Server(_) => "server_error",
            ApiError::Status(_) => "unexpected_status",
            ApiError::TimedOut => "timeout",
            ApiError::Unreachable => "unreachable",
            ApiError::Malformed(_) => "malformed",
        }
    }

    /// The HTTP status, when one arrived.
    pub fn status(&self) -> Option<u16> {
        match *self {
            ApiError::RateLimited => Some(429),
            ApiError::NotFound => Some(404),
            ApiError::Unauthorized(s) | ApiError::Server(s) | ApiError::Status(s) => Some(s),
            ApiError::Malformed(_) => Some(200),
            ApiError::TimedOut | ApiError::Unreachable => None,
        }
    }
}

/// Whether an id is a URL dot segment (`.` or `..`). Such an id cannot name a resource in a
/// path: URL parsing (WHATWG URL, which `fetch` applies) removes it and its percent-encoded
/// forms `%2e`/`%2E` alike, so `/v2/active-rooms/..` would ask for `/v2/`, and a 404 there says
/// nothing about the room. Webhooks carrying such a room or session id are refused, and
/// reconcile never puts one in a path.
pub fn is_dot_segment(id: &str) -> bool {
    matches!(id, "." | "..")
}

/// Builds the requests, all with the management token as bearer.
#[derive(Clone, Copy)]
pub struct Api<'a> {
    /// `HMS_API_URL` without trailing slash.
    pub base_url: &'a str,
    /// The management token (never logged).
    pub token: &'a str,
}

impl Api<'_> {
    fn get(&self, path: String) -> Request {
        Request {
            method: Method::Get,
            url: format!("{}{path}", self.base_url),
            headers: vec![
                ("authorization".into(), format!("Bearer {}", self.token)),
                ("accept".into(), "application/json".into()),
            ],
            body: None,
        }
    }

    /// `GET /v2/sessions?active=…&limit=100[&room_id=…][&start=…]` (list-sessions.mdx).
    pub fn list_sessions(
        &self,
        active: bool,
        room_id: Option<&str>,
        start: Option<&str>,
    ) -> Request {
        let mut path = format!("/v2/sessions?active={active}&limit={PAGE_LIMIT}");
        if let Some(room) = room_id {
            path.push_str(&format!("&room_id={}", encode_component(room)));
        }
        if let Some(start) = start {
            path.push_str(&format!("&start={}", encode_component(start)));
        }
        self.get(path)
    }

    /// `GET /v2/sessions/<id>` (retrieve-a-session.mdx).
    pub fn retrieve_session(&self, session_id: &str) -> Request {
        self.get(format!("/v2/sessions/{}", encode_component(session_id)))
    }

    /// `GET /v2/active-rooms/<room_id>` (retrieve-active-room.mdx).
    pub fn active_room(&self, room_id: &str) -> Request {
        self.get(format!("/v2/active-rooms/{}", encode_component(room_id)))
    }

    /// `GET /v2/active-rooms/<room_id>/peers` (list-peers.mdx).
    pub fn active_room_peers(&self, room_id: &str) -> Request {
        self.get(format!(
            "/v2/active-rooms/{}/peers",
            encode_component(room_id)
        ))
    }
}

/// A peer in a session object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPeer {
    /// Peer id.
    pub id: String,
    /// Role name (the docs do not say whether it is the latest role).
    pub role: String,
    /// `user_id`: the app's id for the user, when reported and fitting.
    pub user_id: Option<String>,
    /// `name`: the user's name as 100ms holds it, when reported and fitting.
    pub name: Option<String>,
    /// `joined_at`.
    pub joined_at: Timestamp,
    /// `left_at`, once the peer left.
    pub left_at: Option<Timestamp>,
}

/// A session object (Sessions/object.mdx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Session id.
    pub id: String,
    /// Room id.
    pub room_id: String,
    /// Whether the session is still running.
    pub active: bool,
    /// `created_at`: the session's start.
    pub created_at: Timestamp,
    /// `updated_at`, if reported.
    pub updated_at: Option<Timestamp>,
    /// Every peer of the session, in document order.
    pub peers: Vec<SessionPeer>,
}

/// One page of `GET /v2/sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    /// The sessions of the page.
    pub sessions: Vec<Session>,
    /// `last`: the cursor for the next page (absent or empty on the last one).
    pub last: Option<String>,
}

/// `GET /v2/active-rooms/<room>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveRoom {
    /// The running session's id.
    pub session_id: String,
    /// Its `created_at`.
    pub session_created_at: Option<Timestamp>,
    /// Ids of the peers in the room now.
    pub peer_ids: Vec<String>,
}

/// One entry of `GET /v2/active-rooms/<room>/peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePeer {
    /// Peer id.
    pub id: String,
    /// Current role.
    pub role: String,
    /// `user_id`, when reported and fitting.
    pub user_id: Option<String>,
    /// `name`, when reported and fitting.
    pub name: Option<String>,
    /// `joined_at`.
    pub joined_at: Option<Timestamp>,
}

/// The body of a 200, or the error the status means.
pub fn body_of(outcome: &Outcome) -> Result<&[u8], ApiError> {
    match outcome {
        Outcome::TimedOut => Err(ApiError::TimedOut),
        Outcome::Unreachable => Err(ApiError::Unreachable),
        Outcome::Response { status, body } => match *status {
            200 => Ok(body),
            404 => Err(ApiError::NotFound),
            429 => Err(ApiError::RateLimited),
            401 | 403 => Err(ApiError::Unauthorized(*status)),
            s @ 500..=599 => Err(ApiError::Server(s)),
            s => Err(ApiError::Status(s)),
        },
    }
}

type Parsed<T> = Result<T, ApiError>;

/// A refusal the parser states itself.
fn malformed(what: &'static str) -> ApiError {
    ApiError::Malformed(Cow::Borrowed(what))
}

/// Reads a whole answer as `T`; anything serde refuses (not JSON, a documented field missing or
/// of another type, a repeated one) is `Malformed` with where and what was expected
/// ([`document::ReadError::shape`]: no value of the answer).
fn document<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Parsed<T> {
    let text = std::str::from_utf8(body).map_err(|_| malformed("body is not UTF-8"))?;
    document::read(text).map_err(|err| ApiError::Malformed(Cow::Owned(err.shape)))
}

/// `what` is malformed: it is not `expected`.
fn not(what: &str, expected: &str) -> ApiError {
    ApiError::Malformed(Cow::Owned(format!("{what}: expected {expected}")))
}

/// A non-empty id.
fn id(value: String, what: &'static str) -> Parsed<String> {
    if value.is_empty() {
        Err(not(what, "a non-empty id"))
    } else {
        Ok(value)
    }
}

const RFC_3339: &str = "an RFC 3339 time";

/// An RFC 3339 time; absent, null or `""` is `None`.
fn time(value: Option<String>, what: &'static str) -> Parsed<Option<Timestamp>> {
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => Timestamp::parse_rfc3339(text).map_err(|_| not(what, RFC_3339)),
    }
}

/// A peer's label: absent, null, or not fitting a database field is `None`.
fn label(value: Option<String>) -> Option<String> {
    value.filter(|text| fits_field(text))
}

fn required_time(value: Option<String>, what: &'static str) -> Parsed<Timestamp> {
    time(value, what)?.ok_or_else(|| not(what, RFC_3339))
}

/// What is wrong with an entry of a list keyed by id: no id, or a key that is not its id (or
/// repeats one).
struct KeyedTexts {
    id: &'static str,
    key: &'static str,
}

const SESSION_PEERS: KeyedTexts = KeyedTexts {
    id: "session.peers[].id",
    key: "session.peers key differs from its id",
};

const ACTIVE_PEERS: KeyedTexts = KeyedTexts {
    id: "peers[].id",
    key: "peers key differs from its id",
};

/// Reads an object that 100ms keys by id (its lists of peers), entry by entry in document
/// order: each entry's `id` is its key, each id once; `read` takes the id and the entry.
fn by_id<E: HasId, T>(
    list: Entries<E>,
    texts: &KeyedTexts,
    mut read: impl FnMut(String, E) -> Parsed<T>,
) -> Parsed<Vec<T>> {
    let mut keys: Vec<String> = Vec::with_capacity(list.0.len());
    let mut out = Vec::with_capacity(list.0.len());
    for (key, mut entry) in list.0 {
        let id = id(entry.take_id().unwrap_or_default(), texts.id)?;
        if id != key || keys.contains(&key) {
            return Err(malformed(texts.key));
        }
        out.push(read(id, entry)?);
        keys.push(key);
    }
    Ok(out)
}

/// An entry of a list keyed by id.
trait HasId {
    fn take_id(&mut self) -> Option<String>;
}

/// A session object as 100ms writes it (the fields reconcile reads).
#[derive(Deserialize)]
#[serde(expecting = "a session object")]
struct SessionDoc {
    id: String,
    room_id: String,
    active: bool,
    created_at: Option<String>,
    updated_at: Option<String>,
    /// A session nobody joined may come without peers.
    peers: Option<Entries<SessionPeerDoc>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a peer object")]
struct SessionPeerDoc {
    id: Option<String>,
    session_id: Option<String>,
    role: String,
    user_id: Option<String>,
    name: Option<String>,
    joined_at: Option<String>,
    left_at: Option<String>,
}

impl HasId for SessionPeerDoc {
    fn take_id(&mut self) -> Option<String> {
        self.id.take()
    }
}

fn session_object(doc: SessionDoc) -> Parsed<Session> {
    let session_id = id(doc.id, "session.id")?;
    let peers = match doc.peers {
        None => Vec::new(),
        Some(peers) => by_id(peers, &SESSION_PEERS, |id, peer| {
            // A peer filed under another session would be a fact about the wrong session.
            if peer.session_id.as_ref().is_some_and(|s| *s != session_id) {
                return Err(malformed("session.peers[].session_id"));
            }
            Ok(SessionPeer {
                id,
                role: peer.role,
                user_id: label(peer.user_id),
                name: label(peer.name),
                joined_at: required_time(peer.joined_at, "session.peers[].joined_at")?,
                left_at: time(peer.left_at, "session.peers[].left_at")?,
            })
        })?,
    };
    Ok(Session {
        room_id: id(doc.room_id, "session.room_id")?,
        active: doc.active,
        created_at: required_time(doc.created_at, "session.created_at")?,
        updated_at: time(doc.updated_at, "session.updated_at")?,
        id: session_id,
        peers,
    })
}

/// `GET /v2/sessions/<id>`.
pub fn parse_session(body: &[u8]) -> Parsed<Session> {
    session_object(document(body)?)
}

/// `GET /v2/sessions`: `{"limit", "data": [session…], "last"}`.
pub fn parse_session_page(body: &[u8]) -> Parsed<SessionPage> {
    #[derive(Deserialize)]
    #[serde(expecting = "a sessions page object")]
    struct Page {
        /// Read only to check the shape: a page without it is not the documented answer.
        #[serde(rename = "limit")]
        _limit: u64,
        /// An empty result may come as null.
        data: Option<Vec<SessionDoc>>,
        last: Option<String>,
    }
    let page: Page = document(body)?;
    Ok(SessionPage {
        sessions: page
            .data
            .unwrap_or_default()
            .into_iter()
            .map(session_object)
            .collect::<Parsed<_>>()?,
        last: page.last.filter(|last| !last.is_empty()),
    })
}

/// `GET /v2/active-rooms/<room>`: `{"id", …, "session": {"id", "created_at", "peers": [ids]}}`.
pub fn parse_active_room(body: &[u8]) -> Parsed<ActiveRoom> {
    #[derive(Deserialize)]
    #[serde(expecting = "an active room object")]
    struct Room {
        session: RoomSession,
    }
    #[derive(Deserialize)]
    #[serde(expecting = "a session object")]
    struct RoomSession {
        id: String,
        created_at: Option<String>,
        peers: Option<Vec<String>>,
    }
    let room: Room = document(body)?;
    let session = room.session;
    let peer_ids = session.peers.unwrap_or_default();
    if peer_ids.iter().any(String::is_empty) {
        return Err(malformed("session.peers[] is not a peer id"));
    }
    Ok(ActiveRoom {
        session_id: id(session.id, "session.id")?,
        session_created_at: time(session.created_at, "session.created_at")?,
        peer_ids,
    })
}

/// `GET /v2/active-rooms/<room>/peers`: `{"peers": {"<id>": {"id", "name", "user_id", "role",
/// "joined_at", …}}}`.
pub fn parse_active_peers(body: &[u8]) -> Parsed<Vec<ActivePeer>> {
    #[derive(Deserialize)]
    #[serde(expecting = "an object of peers")]
    struct Peers {
        peers: Option<Entries<PeerDoc>>,
    }
    #[derive(Deserialize)]
    #[serde(expecting = "a peer object")]
    struct PeerDoc {
        id: Option<String>,
        role: String,
        user_id: Option<String>,
        name: Option<String>,
        joined_at: Option<String>,
    }
    impl HasId for PeerDoc {
        fn take_id(&mut self) -> Option<String> {
            self.id.take()
        }
    }
    let Some(peers) = document::<Peers>(body)?.peers else {
        return Ok(Vec::new());
    };
    by_id(peers, &ACTIVE_PEERS, |id, peer| {
        Ok(ActivePeer {
            id,
            role: peer.role,
            user_id: label(peer.user_id),
            name: label(peer.name),
            joined_at: time(peer.joined_at, "peers[].joined_at")?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::event::MAX_FIELD_BYTES;

    fn ts(text: &str) -> Timestamp {
        Timestamp::parse_rfc3339(text).unwrap().unwrap()
    }

    const API: Api<'static> = Api {
        base_url: "https://api.100ms.live",
        token: "tok",
    };

    #[test]
    fn requests_carry_the_token_and_encode_ids() {
        let r = API.list_sessions(true, Some("room 1"), Some("abc"));
        assert_eq!(r.method, Method::Get);
        assert_eq!(
            r.url,
            "https://api.100ms.live/v2/sessions?active=true&limit=100&room_id=room%201&start=abc"
        );
        assert!(r
            .headers
            .contains(&("authorization".into(), "Bearer tok".into())));
        assert_eq!(
            API.retrieve_session("s/1").url,
            "https://api.100ms.live/v2/sessions/s%2F1"
        );
        assert_eq!(
            API.active_room("r1").url,
            "https://api.100ms.live/v2/active-rooms/r1"
        );
        assert_eq!(
            API.active_room_peers("r1").url,
            "https://api.100ms.live/v2/active-rooms/r1/peers"
        );
    }

    #[test]
    fn only_whole_dot_segments_are_unfit_for_a_path() {
        assert!(is_dot_segment(".") && is_dot_segment(".."));
        for fit in ["...", ".a", "a.", "%2e", "", "r1"] {
            assert!(!is_dot_segment(fit), "{fit}");
        }
    }

    /// list-sessions.mdx's sample answer (one of its sessions).
    const PAGE: &str = r#"{
        "limit": 10,
        "data": [{
            "id": "631a0fa23e3d9fdb00832596",
            "room_id": "631a0f990e6ffae22efa610c",
            "customer_id": "627cdddff2e4e30487862ad1",
            "active": false,
            "peers": {
                "a24687bb-de68-4276-9758-e1efa5e7e4d8": {
                    "id": "a24687bb-de68-4276-9758-e1efa5e7e4d8",
                    "session_id": "631a0fa23e3d9fdb00832596",
                    "name": "asdas",
                    "role": "host",
                    "user_id": "Batch1-student1",
                    "joined_at": "2022-09-08T15:52:02.194Z",
                    "left_at": "2022-09-08T15:52:04.009Z"
                }
            },
            "created_at": "2022-09-08T15:52:02.197Z",
            "updated_at": "2022-09-08T15:52:04.015Z"
        }],
        "last": "631a0fa23e3d9fdb00832596"
    }"#;

    #[test]
    fn documented_session_page_parses() {
        let page = parse_session_page(PAGE.as_bytes()).unwrap();
        assert_eq!(page.last.as_deref(), Some("631a0fa23e3d9fdb00832596"));
        let s = &page.sessions[0];
        assert_eq!(s.id, "631a0fa23e3d9fdb00832596");
        assert_eq!(s.room_id, "631a0f990e6ffae22efa610c");
        assert!(!s.active);
        assert_eq!(s.created_at, ts("2022-09-08T15:52:02.197Z"));
        assert_eq!(s.updated_at, Some(ts("2022-09-08T15:52:04.015Z")));
        assert_eq!(
            s.peers,
            vec![SessionPeer {
                id: "a24687bb-de68-4276-9758-e1efa5e7e4d8".into(),
                role: "host".into(),
                user_id: Some("Batch1-student1".into()),
                name: Some("asdas".into()),
                joined_at: ts("2022-09-08T15:52:02.194Z"),
                left_at: Some(ts("2022-09-08T15:52:04.009Z")),
            }]
        );
        let empty = parse_session_page(br#"{"limit":10,"data":[],"last":""}"#).unwrap();
        assert!(empty.sessions.is_empty() && empty.last.is_none());
        // Nine fraction digits and a missing left_at.
        let one = parse_session(
            br#"{"id":"s","room_id":"r","active":true,"created_at":"2026-12-01T10:00:00.123456789Z",
                 "peers":{"p":{"id":"p","role":"","joined_at":"2026-12-01T10:00:01Z"}}}"#,
        )
        .unwrap();
        assert_eq!(one.peers[0].left_at, None);
        assert_eq!((&one.peers[0].user_id, &one.peers[0].name), (&None, &None));
        assert_eq!(one.created_at, ts("2026-12-01T10:00:00.123456Z"));
    }

    #[test]
    fn undocumented_shapes_are_malformed() {
        const S: &str = r#""id":"s","room_id":"r","active":true"#;
        const AT: &str = r#""created_at":"2026-12-01T10:00:00Z""#;
        let page = |session: &str| format!(r#"{{"limit":10,"data":[{{{session}}}]}}"#);
        for (bad, detail) in [
            ("".into(), "not JSON (EOF while parsing a value)"),
            ("not json".into(), "not JSON (expected ident)"),
            ("[]".into(), "expected a sessions page object"),
            (r#"{"data":[]}"#.into(), "missing field `limit`"),
            (r#"{"limit":-1,"data":[]}"#.into(), "limit: expected u64"),
            (
                r#"{"limit":10,"data":{}}"#.into(),
                "data: expected a sequence",
            ),
            (
                r#"{"limit":10,"data":[1]}"#.into(),
                "data[0]: expected a session object",
            ),
            (
                page(&format!(r#""id":"s","room_id":"r","active":"yes",{AT}"#)),
                "data[0].active: expected a boolean",
            ),
            (
                page(r#""id":"s","active":true"#),
                "data[0]: missing field `room_id`",
            ),
            (page(S), "session.created_at: expected an RFC 3339 time"),
            (
                page(&format!(r#"{S},"created_at":"yesterday""#)),
                "session.created_at: expected an RFC 3339 time",
            ),
            (
                page(&format!(
                    r#"{S},{AT},"peers":{{"p":{{"id":"q","role":"x",{AT}}}}}"#
                )),
                "session.peers key differs from its id",
            ),
            (
                page(&format!(
                    r#"{S},{AT},"peers":{{"p":{{"id":"p","role":"x"}}}}"#
                )),
                "session.peers[].joined_at: expected an RFC 3339 time",
            ),
            (
                page(&format!(
                    r#"{S},{AT},"peers":{{"p":{{"id":"p","role":7}}}}"#
                )),
                "data[0].peers.p.role: expected a string",
            ),
            (
                r#"{"limit":10,"data":[],"last":5}"#.into(),
                "last: expected a string",
            ),
            (
                r#"{"limit":10,"limit":10,"data":[]}"#.into(),
                "duplicate field `limit`",
            ),
            (
                r#"{"limit":10,"data":[],"last":"x" "y"}"#.into(),
                "not JSON (expected `,` or `}`)",
            ),
            (
                r#"{"limit": 10, "data": [{"id": "#.into(),
                "data[0].id: not JSON (EOF while parsing a value)",
            ),
        ] {
            assert_eq!(
                parse_session_page(bad.as_bytes()),
                Err(ApiError::Malformed(detail.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_malformed_detail_names_the_field_but_never_its_value() {
        let secret = "Ravi's phone 555-0100, expected nothing";
        let body =
            serde_json::json!({"limit":10,"data":[{"id":"s","room_id":"r","active":secret}]})
                .to_string();
        let Err(ApiError::Malformed(detail)) = parse_session_page(body.as_bytes()) else {
            panic!("malformed")
        };
        assert_eq!(detail, "data[0].active: expected a boolean");
        // A path through a long key is cut to a bounded detail.
        let key = "k".repeat(1000);
        let body = serde_json::json!({"peers":{key.clone():{"id":key,"role":1}}}).to_string();
        let Err(ApiError::Malformed(detail)) = parse_active_peers(body.as_bytes()) else {
            panic!("malformed")
        };
        assert_eq!(detail.chars().count(), document::MAX_SHAPE_CHARS);
        assert!(
            detail.starts_with("peers.kkk") && detail.ends_with('…'),
            "{detail}"
        );
    }

    #[test]
    fn active_room_and_peers_parse() {
        let room = parse_active_room(
            br#"{"id":"r1","name":"n","customer_id":"c","session":{"id":"s1",
                 "created_at":"2026-12-01T10:00:00Z","peers":["p1","p2"]}}"#,
        )
        .unwrap();
        assert_eq!(room.session_id, "s1");
        assert_eq!(room.peer_ids, vec!["p1", "p2"]);
        assert_eq!(room.session_created_at, Some(ts("2026-12-01T10:00:00Z")));
        assert!(parse_active_room(br#"{"id":"r1"}"#).is_err());
        assert!(parse_active_room(br#"{"session":{"id":"s","peers":[1]}}"#).is_err());
        let peers = parse_active_peers(
            br#"{"peers":{"p1":{"id":"p1","name":"a","user_id":"u","metadata":"","role":"host",
                 "joined_at":"2026-12-01T10:00:05Z"}}}"#,
        )
        .unwrap();
        assert_eq!(
            peers,
            vec![ActivePeer {
                id: "p1".into(),
                role: "host".into(),
                user_id: Some("u".into()),
                name: Some("a".into()),
                joined_at: Some(ts("2026-12-01T10:00:05Z"))
            }]
        );
        assert!(parse_active_peers(br#"{"peers":[]}"#).is_err());
    }

    #[test]
    fn labels_that_do_not_fit_a_field_are_not_reported() {
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        let widest = "x".repeat(MAX_FIELD_BYTES);
        let body = serde_json::json!({"peers":{
            "p1":{"id":"p1","name":long,"user_id":"a\u{0}b","role":"host"},
            "p2":{"id":"p2","name":widest,"user_id":null,"role":"host"}}})
        .to_string();
        let peers = parse_active_peers(body.as_bytes()).unwrap();
        assert_eq!((&peers[0].name, &peers[0].user_id), (&None, &None));
        assert_eq!(peers[1].name.as_deref(), Some(widest.as_str()));
        assert_eq!(peers[1].user_id, None);
        let session = serde_json::json!({"id":"s","room_id":"r","active":true,
            "created_at":"2026-12-01T10:00:00Z","peers":{"p":{"id":"p","role":"host",
            "name":"Ravi\u{0}","user_id":long,"joined_at":"2026-12-01T10:00:01Z"}}})
        .to_string();
        let peer = &parse_session(session.as_bytes()).unwrap().peers[0];
        assert_eq!((&peer.name, &peer.user_id), (&None, &None));
        // A mistyped label is not the documented shape.
        assert!(matches!(
            parse_active_peers(br#"{"peers":{"p1":{"id":"p1","name":7,"role":"host"}}}"#),
            Err(ApiError::Malformed(_))
        ));
    }

    #[test]
    fn statuses_map_to_errors() {
        let answer = |status: u16| Outcome::Response {
            status,
            body: b"{}".to_vec(),
        };
        assert_eq!(body_of(&answer(200)), Ok(&b"{}"[..]));
        assert_eq!(body_of(&answer(404)), Err(ApiError::NotFound));
        assert_eq!(body_of(&answer(429)), Err(ApiError::RateLimited));
        assert_eq!(body_of(&answer(401)), Err(ApiError::Unauthorized(401)));
        assert_eq!(body_of(&answer(503)), Err(ApiError::Server(503)));
        assert_eq!(body_of(&answer(302)), Err(ApiError::Status(302)));
        assert_eq!(body_of(&Outcome::TimedOut), Err(ApiError::TimedOut));
        assert_eq!(ApiError::RateLimited.code(), "rate_limited");
    }
}
