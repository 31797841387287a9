//! The PostgREST side of reconcile (the snapshot facts, docs/design.md §6.1): the rooms to
//! check, `hms_close_expired_sessions`, and one `hms_apply_facts` call per room with the facts
//! 100ms reported; plus strict reading of their answers.

use crate::config::RestTarget;
use crate::document;
use crate::http::{encode_component, Method, Outcome, Request};
use crate::time::Timestamp;
use crate::webhook::rest::{self, Room};
use serde::{Deserialize, Serialize};

/// Most live rooms one pass reads; the rest are counted in the answer and read first by the
/// next pass (the cursor).
pub const MAX_ROOMS: usize = 2000;

/// One snapshot fact, written as `hms_apply_facts` takes it: `{"kind": …, …}`, absent times
/// left out rather than `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fact {
    /// A session 100ms knows; `closed_at` means 100ms reports it inactive.
    Session {
        /// Session id.
        session_id: String,
        /// Reported start.
        started_at: String,
        /// A close at this time (only when 100ms reports the session inactive).
        #[serde(skip_serializing_if = "Option::is_none")]
        closed_at: Option<String>,
    },
    /// A peer of a session: a join, maybe a leave, and its role as observed.
    Peer {
        /// Session id.
        session_id: String,
        /// Peer id.
        peer_id: String,
        /// Role name.
        role: String,
        /// `listener`, `speaker` or `ignored`.
        role_class: &'static str,
        /// Join time.
        joined_at: String,
        /// Leave time, once it left.
        #[serde(skip_serializing_if = "Option::is_none")]
        left_at: Option<String>,
        /// The app's id for the user, when 100ms reports one.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
        /// The user's name as 100ms reports it.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_name: Option<String>,
    },
    /// Exactly these peers were in the session at `p_observed_at`.
    PresentSet {
        /// Session id.
        session_id: String,
        /// The peers present.
        peer_ids: Vec<String>,
    },
}

/// The counts a room shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// `is_live`.
    pub is_live: bool,
    /// `listener_count`.
    pub listener_count: u64,
    /// `speaker_count`.
    pub speaker_count: u64,
}

impl From<&Room> for Counts {
    fn from(room: &Room) -> Self {
        Counts {
            is_live: room.is_live,
            listener_count: room.listener_count,
            speaker_count: room.speaker_count,
        }
    }
}

/// A room the database holds live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbRoom {
    /// 100ms room id.
    pub room_id: String,
    /// The current session (`""` for the legacy flat format), if any.
    pub current_session_id: Option<String>,
    /// Its counts now.
    pub counts: Counts,
}

/// A room whose counts a database call changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Correction {
    /// 100ms room id.
    pub room_id: String,
    /// Before the call.
    pub before: Counts,
    /// After it.
    pub after: Counts,
}

/// What `hms_apply_facts` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Applied (changed or not).
    Applied {
        /// Counts before and after.
        correction: Correction,
        /// Whether anything changed.
        changed: bool,
        /// Sessions the facts closed.
        sessions_closed: u64,
    },
    /// Nothing written (e.g. unknown room).
    Ignored(String),
}

/// What `hms_close_expired_sessions` answered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expired {
    /// Sessions closed by the 12-hour rule.
    pub sessions_closed: u64,
    /// Rooms whose counts changed.
    pub corrections: Vec<Correction>,
}

/// Why a database call gave nothing usable (for the summary; no body, no SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbError {
    /// HTTP status, if an answer arrived.
    pub status: Option<u16>,
    /// What was wrong.
    pub problem: &'static str,
}

fn rpc(target: &RestTarget, name: &str, body: String) -> Request {
    Request {
        method: Method::Post,
        url: format!("{}/rest/v1/rpc/{name}", target.base_url),
        headers: rest::headers(target),
        body: Some(body),
    }
}

/// Which live rooms a read asks for, in `hms_room_id` order (the database's collation, the
/// same one the cursor is compared in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRange<'a> {
    /// From the first.
    All,
    /// Those after the cursor.
    After(&'a str),
    /// Those up to and including the cursor (the wrap-around).
    Through(&'a str),
}

/// `GET /rest/v1/rooms?…&is_live=eq.true`: at most `limit` rooms the database holds live.
pub fn live_rooms(target: &RestTarget, range: RoomRange<'_>, limit: usize) -> Request {
    let filter = match range {
        RoomRange::All => String::new(),
        RoomRange::After(cursor) => format!("&hms_room_id=gt.{}", encode_component(cursor)),
        RoomRange::Through(cursor) => format!("&hms_room_id=lte.{}", encode_component(cursor)),
    };
    Request {
        method: Method::Get,
        url: format!(
            "{}/rest/v1/rooms?select=hms_room_id,current_session_id,is_live,listener_count,speaker_count&is_live=eq.true{filter}&order=hms_room_id&limit={limit}",
            target.base_url,
        ),
        headers: rest::headers(target),
        body: None,
    }
}

/// `hms_reconcile_begin`: take the turn (one pass at a time, `min_interval_ms` apart).
pub fn reconcile_begin(target: &RestTarget, min_interval_ms: i64, lease_ms: i64) -> Request {
    #[derive(Serialize)]
    struct Args {
        p_min_interval_ms: i64,
        p_lease_ms: i64,
    }
    let body = document::write(&Args {
        p_min_interval_ms: min_interval_ms,
        p_lease_ms: lease_ms,
    });
    rpc(target, "hms_reconcile_begin", body)
}

/// `hms_reconcile_end`: give the turn back, keeping where the next pass starts.
pub fn reconcile_end(target: &RestTarget, pass_id: &str, cursor: Option<&str>) -> Request {
    #[derive(Serialize)]
    struct Args<'a> {
        p_pass_id: &'a str,
        p_cursor: Option<&'a str>,
    }
    let body = document::write(&Args {
        p_pass_id: pass_id,
        p_cursor: cursor,
    });
    rpc(target, "hms_reconcile_end", body)
}

/// What `hms_reconcile_begin` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// This pass runs.
    Granted {
        /// Names the pass for `hms_reconcile_end`.
        pass_id: String,
        /// The last live room the previous pass reached (`None`: start at the first).
        cursor: Option<String>,
        /// Live rooms in the database now.
        live_rooms: u64,
    },
    /// Another pass runs (`running`) or the last one started too recently (`too_soon`).
    Refused {
        /// `running` or `too_soon`.
        reason: &'static str,
        /// When to ask again.
        retry_after_ms: u64,
    },
}

/// `{"granted": true, "pass_id", "cursor", "live_rooms"}` or
/// `{"granted": false, "reason", "retry_after_ms"}`.
pub fn parse_turn(outcome: &Outcome) -> Result<Turn, DbError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Reason {
        Running,
        TooSoon,
    }
    #[derive(Deserialize)]
    struct Answer {
        granted: bool,
        pass_id: Option<String>,
        cursor: Option<String>,
        live_rooms: Option<u64>,
        reason: Option<Reason>,
        retry_after_ms: Option<u64>,
    }
    let answer: Answer = answer(outcome)?;
    if answer.granted {
        Ok(Turn::Granted {
            pass_id: answer.pass_id.ok_or(SHAPE)?,
            cursor: answer.cursor,
            live_rooms: answer.live_rooms.ok_or(SHAPE)?,
        })
    } else {
        Ok(Turn::Refused {
            reason: match answer.reason.ok_or(SHAPE)? {
                Reason::Running => "running",
                Reason::TooSoon => "too_soon",
            },
            retry_after_ms: answer.retry_after_ms.ok_or(SHAPE)?,
        })
    }
}

/// `hms_reconcile_end`'s `true`/`false` (whether the pass still held the turn).
pub fn parse_end(outcome: &Outcome) -> Result<bool, DbError> {
    answer(outcome)
}

/// `hms_close_expired_sessions(p_now)`.
pub fn close_expired(target: &RestTarget, now: Timestamp) -> Request {
    #[derive(Serialize)]
    struct Args {
        p_now: String,
    }
    let body = document::write(&Args {
        p_now: now.to_rfc3339(),
    });
    rpc(target, "hms_close_expired_sessions", body)
}

/// `hms_apply_facts` for one room.
pub fn apply_facts(
    target: &RestTarget,
    room_id: &str,
    observed_at: Timestamp,
    received_at: Timestamp,
    facts: &[Fact],
) -> Request {
    #[derive(Serialize)]
    struct Args<'a> {
        p_room_id: &'a str,
        p_observed_at: String,
        p_received_at: String,
        p_facts: &'a [Fact],
    }
    let body = document::write(&Args {
        p_room_id: room_id,
        p_observed_at: observed_at.to_rfc3339(),
        p_received_at: received_at.to_rfc3339(),
        p_facts: facts,
    });
    rpc(target, "hms_apply_facts", body)
}

fn ok_body(outcome: &Outcome) -> Result<&[u8], DbError> {
    match outcome {
        Outcome::Response { status: 200, body } => Ok(body),
        Outcome::Response { status, .. } => Err(DbError {
            status: Some(*status),
            problem: "error status",
        }),
        Outcome::TimedOut => Err(DbError {
            status: None,
            problem: "timeout",
        }),
        Outcome::Unreachable => Err(DbError {
            status: None,
            problem: "unreachable",
        }),
    }
}

const SHAPE: DbError = DbError {
    status: Some(200),
    problem: "unexpected result shape",
};

/// Reads a 200's body as `T`; anything else serde refuses is `SHAPE`.
fn answer<'a, T: Deserialize<'a>>(outcome: &'a Outcome) -> Result<T, DbError> {
    document::read_bytes(ok_body(outcome)?).ok_or(SHAPE)
}

/// The rooms read: a JSON array of row objects. `is_live` and the counts may be null in an old
/// row (not live, zero).
pub fn parse_live_rooms(outcome: &Outcome) -> Result<Vec<DbRoom>, DbError> {
    #[derive(Deserialize)]
    struct Row {
        hms_room_id: String,
        current_session_id: Option<String>,
        is_live: Option<bool>,
        listener_count: Option<u64>,
        speaker_count: Option<u64>,
    }
    let rows: Vec<Row> = answer(outcome)?;
    Ok(rows
        .into_iter()
        .map(|row| DbRoom {
            room_id: row.hms_room_id,
            current_session_id: row.current_session_id,
            counts: Counts {
                is_live: row.is_live.unwrap_or(false),
                listener_count: row.listener_count.unwrap_or(0),
                speaker_count: row.speaker_count.unwrap_or(0),
            },
        })
        .collect())
}

/// `{"sessions_closed": n, "rooms": [{"hms_room_id", "before", "room"}…]}`; only changed
/// rooms become corrections.
pub fn parse_expired(outcome: &Outcome) -> Result<Expired, DbError> {
    #[derive(Deserialize)]
    struct Answer {
        sessions_closed: u64,
        rooms: Option<Vec<Entry>>,
    }
    #[derive(Deserialize)]
    struct Entry {
        before: Counts,
        room: Room,
    }
    let answer: Answer = answer(outcome)?;
    let corrections = answer
        .rooms
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| {
            let after = Counts::from(&entry.room);
            (entry.before != after).then_some(Correction {
                room_id: entry.room.hms_room_id,
                before: entry.before,
                after,
            })
        })
        .collect();
    Ok(Expired {
        sessions_closed: answer.sessions_closed,
        corrections,
    })
}

/// The answer of `hms_apply_facts`, told apart by its `status`.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum AppliedAnswer {
    Ignored {
        reason: Option<String>,
    },
    Applied {
        room: Room,
        before: Counts,
        changed: bool,
        sessions_closed: Option<u64>,
    },
}

/// The answer of `hms_apply_facts`.
pub fn parse_applied(outcome: &Outcome) -> Result<Applied, DbError> {
    Ok(match answer(outcome)? {
        AppliedAnswer::Ignored { reason } => Applied::Ignored(match reason {
            Some(reason) => reason.chars().take(200).collect(),
            None => "ignored by the database".to_owned(),
        }),
        AppliedAnswer::Applied {
            room,
            before,
            changed,
            sessions_closed,
        } => Applied::Applied {
            correction: Correction {
                before,
                after: Counts::from(&room),
                room_id: room.hms_room_id,
            },
            changed,
            sessions_closed: sessions_closed.unwrap_or(0),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> RestTarget {
        RestTarget {
            rpc_url: "http://db/rest/v1/rpc/hms_apply_event".into(),
            base_url: "http://db".into(),
            api_key: "sb_secret_k".into(),
        }
    }

    fn ok(value: serde_json::Value) -> Outcome {
        Outcome::Response {
            status: 200,
            body: value.to_string().into_bytes(),
        }
    }

    const ROOM: &str = r#"{"hms_room_id":"r1","is_live":false,"listener_count":0,"speaker_count":0,"trending_score":0,"last_active_at":null}"#;

    #[test]
    fn facts_serialise_as_the_contract_says() {
        let t = Timestamp::from_micros(1_764_583_200_000_000);
        let request = apply_facts(
            &target(),
            "r1",
            t,
            t,
            &[
                Fact::Session {
                    session_id: "s1".into(),
                    started_at: t.to_rfc3339(),
                    closed_at: None,
                },
                Fact::Peer {
                    session_id: "s1".into(),
                    peer_id: "p1".into(),
                    role: "host".into(),
                    role_class: "speaker",
                    joined_at: t.to_rfc3339(),
                    left_at: Some(t.to_rfc3339()),
                    user_id: Some("u1".into()),
                    user_name: Some("Ravi".into()),
                },
                Fact::Peer {
                    session_id: "s1".into(),
                    peer_id: "p2".into(),
                    role: "listener".into(),
                    role_class: "listener",
                    joined_at: t.to_rfc3339(),
                    left_at: None,
                    user_id: None,
                    user_name: None,
                },
                Fact::PresentSet {
                    session_id: "s1".into(),
                    peer_ids: vec!["p2".into()],
                },
            ],
        );
        assert_eq!(request.url, "http://db/rest/v1/rpc/hms_apply_facts");
        let body: serde_json::Value =
            serde_json::from_str(request.body.as_deref().unwrap()).unwrap();
        let at = "2025-12-01T10:00:00.000000Z";
        assert_eq!(
            body,
            json!({"p_room_id":"r1","p_observed_at":at,"p_received_at":at,"p_facts":[
                {"kind":"session","session_id":"s1","started_at":at},
                {"kind":"peer","session_id":"s1","peer_id":"p1","role":"host","role_class":"speaker",
                 "joined_at":at,"left_at":at,"user_id":"u1","user_name":"Ravi"},
                {"kind":"peer","session_id":"s1","peer_id":"p2","role":"listener",
                 "role_class":"listener","joined_at":at},
                {"kind":"present_set","session_id":"s1","peer_ids":["p2"]}]})
        );
        assert!(request
            .headers
            .contains(&("apikey".into(), "sb_secret_k".into())));
        let read = live_rooms(&target(), RoomRange::All, 2000);
        assert_eq!(read.method, Method::Get);
        assert!(read.url.contains("is_live=eq.true"));
        assert!(read.url.ends_with("&order=hms_room_id&limit=2000"));
        assert!(!read.url.contains("hms_room_id=") || read.url.contains("select=hms_room_id"));
        let after = live_rooms(&target(), RoomRange::After("a b.c"), 5);
        assert!(
            after.url.contains("&hms_room_id=gt.a%20b.c&"),
            "{}",
            after.url
        );
        let through = live_rooms(&target(), RoomRange::Through("z"), 7);
        assert!(through.url.contains("&hms_room_id=lte.z&"));
        assert!(through.url.ends_with("&limit=7"));
    }

    #[test]
    fn answers_are_read_strictly() {
        let rooms = parse_live_rooms(&ok(json!([
            {"hms_room_id":"r1","current_session_id":"s1","is_live":true,"listener_count":2,"speaker_count":1},
            {"hms_room_id":"r2","current_session_id":null,"is_live":true,"listener_count":null,"speaker_count":0}
        ])))
        .unwrap();
        assert_eq!(rooms[0].current_session_id.as_deref(), Some("s1"));
        assert_eq!(rooms[0].counts.listener_count, 2);
        assert_eq!(rooms[1].counts.listener_count, 0);
        assert!(parse_live_rooms(&ok(json!({"x":1}))).is_err());
        assert_eq!(
            parse_live_rooms(&Outcome::Response {
                status: 503,
                body: vec![]
            })
            .unwrap_err()
            .status,
            Some(503)
        );

        let room: serde_json::Value = serde_json::from_str(ROOM).unwrap();
        let before = json!({"is_live":true,"listener_count":3,"speaker_count":0});
        let applied = parse_applied(&ok(
            json!({"status":"applied","room":room,"before":before,"changed":true,"sessions_closed":1}),
        ))
        .unwrap();
        let Applied::Applied {
            correction,
            changed,
            sessions_closed,
        } = applied
        else {
            panic!("expected applied")
        };
        assert!(changed);
        assert_eq!(sessions_closed, 1);
        assert_eq!(correction.before.listener_count, 3);
        assert!(!correction.after.is_live);
        assert_eq!(
            parse_applied(&ok(json!({"status":"ignored","reason":"unknown room"}))).unwrap(),
            Applied::Ignored("unknown room".into())
        );
        assert!(parse_applied(&ok(json!({"status":"applied","room":room}))).is_err());
        assert!(parse_applied(&ok(json!({"status":"done"}))).is_err());

        let expired = parse_expired(&ok(json!({"sessions_closed":2,"rooms":[
            {"hms_room_id":"r1","before":before,"room":room},
            {"hms_room_id":"r1","before":{"is_live":false,"listener_count":0,"speaker_count":0},"room":room}]})))
        .unwrap();
        assert_eq!(expired.sessions_closed, 2);
        assert_eq!(
            expired.corrections.len(),
            1,
            "unchanged rooms are not corrections"
        );
        assert!(parse_expired(&ok(json!({"rooms":[]}))).is_err());
    }
}
