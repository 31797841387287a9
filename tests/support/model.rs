//! The counting model of docs/design.md §7, written as plain Rust over the *set* of delivered
//! events, independently of the SQL (which applies them one at a time). Tests compare the two.
//!
//! # The guarantee ("exact counts whatever the delivery")
//!
//! For one room, the row that `hms_apply_event` leaves behind depends only on *which* events were
//! delivered, never on their order, on how often each was repeated, or on whether a replay came
//! back under a new event id:
//!
//! - **Replays change nothing.** A repeated event id is answered `duplicate` and writes nothing;
//!   a re-sent event with a new id is applied, but every stored fact is a min, max or "or", so
//!   applying it again is a no-op.
//! - **A leave is final.** 100ms issues a new peer id per join, so a leave (even one delivered
//!   before its join) keeps that peer out of the counts for good.
//! - **Role changes are ordered by event time**, not arrival: a peer's role is the one from its
//!   latest join/role change (a role change wins a tie with the join at the same instant).
//! - **A close ends everyone who joined at or before it**, including joins delivered after the
//!   close; a session reopens only if something (an open or a join) happens after its close.
//! - **A new session starts clean.** The room shows the session with the latest start
//!   (`started_at`, then `session_id`), so stragglers of an older session never leak into it.
//! - **Failure events never reach the database** (the Rust plan ignores them), so they are not
//!   modelled here.
//!
//! `last_active_at` is the latest event time ever applied (it never moves backwards), and
//! `is_live` is whether the current session is live.

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Microseconds since the Unix epoch (UTC), the resolution PostgreSQL stores.
pub type Micros = i64;

/// The `p_action` argument of `hms_apply_event`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    SessionOpen,
    SessionClose,
    PeerJoin,
    PeerLeave,
    RoleChange,
    Activity,
}

impl Action {
    /// The SQL spelling of the action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SessionOpen => "session_open",
            Action::SessionClose => "session_close",
            Action::PeerJoin => "peer_join",
            Action::PeerLeave => "peer_leave",
            Action::RoleChange => "role_change",
            Action::Activity => "activity",
        }
    }

    /// A 100ms event type that maps to this action (kept in the ledger; not interpreted).
    pub fn event_type(self) -> &'static str {
        match self {
            Action::SessionOpen => "session.open.success",
            Action::SessionClose => "session.close.success",
            Action::PeerJoin => "peer.join.success",
            Action::PeerLeave => "peer.leave.success",
            Action::RoleChange => "role.change.success",
            Action::Activity => "track.add.success",
        }
    }
}

/// Role classes; the derived order equals SQL's text order ('ignored' < 'listener' < 'speaker'),
/// which the role tie-break relies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoleClass {
    Ignored,
    Listener,
    Speaker,
}

impl RoleClass {
    /// The SQL spelling of the class.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleClass::Ignored => "ignored",
            RoleClass::Listener => "listener",
            RoleClass::Speaker => "speaker",
        }
    }
}

/// One call of `hms_apply_event` (the room id is the test's business, so it is not here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    pub action: Action,
    pub session_id: String,
    pub session_started_at: Option<Micros>,
    pub peer_id: Option<String>,
    pub role: Option<String>,
    pub role_class: Option<RoleClass>,
    pub event_at: Micros,
    pub joined_at: Option<Micros>,
}

/// The room row before the first event (a pre-existing room).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Initial {
    pub is_live: bool,
    pub last_active_at: Micros,
}

/// What the room must look like after the delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomState {
    pub listener_count: u64,
    pub speaker_count: u64,
    pub is_live: bool,
    pub last_active_at: Micros,
    /// The current session, or None while the room has none.
    pub current_session: Option<String>,
    /// Every present peer of every session, as (session_id, peer_id).
    pub present: BTreeSet<(String, String)>,
}

#[derive(Default)]
struct SessionFacts {
    started_at: Option<Micros>,
    last_open_at: Option<Micros>,
    closed_at: Option<Micros>,
}

/// The largest (time, kind, class, role) among a peer's joins (kind 0) and role changes (kind 1).
type RoleKey = (Micros, u8, RoleClass, String);

#[derive(Default)]
struct PeerFacts {
    seen: bool,
    left: bool,
    join_reported_at: Option<Micros>,
    first_role_change_at: Option<Micros>,
    role: Option<RoleKey>,
}

impl PeerFacts {
    fn joined_at(&self) -> Option<Micros> {
        self.join_reported_at.or(self.first_role_change_at)
    }
}

fn max_opt(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn min_opt(a: Option<Micros>, b: Option<Micros>) -> Option<Micros> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// The expected room after `delivered` (in any order, with repeats). Only the first arrival of an
/// event id counts, as in the ledger; everything else is a fold of min/max/or over the events.
pub fn expected(initial: Initial, delivered: &[Event]) -> RoomState {
    let mut ids = HashSet::new();
    let applied: Vec<&Event> = delivered
        .iter()
        .filter(|e| ids.insert(e.event_id.as_str()))
        .collect();

    let mut sessions: BTreeMap<&str, SessionFacts> = BTreeMap::new();
    let mut peers: BTreeMap<(&str, &str), PeerFacts> = BTreeMap::new();
    let mut last_active_at = initial.last_active_at;

    for e in &applied {
        last_active_at = last_active_at.max(e.event_at);
        let s = sessions.entry(e.session_id.as_str()).or_default();
        s.started_at = max_opt(s.started_at, e.session_started_at);
        match e.action {
            Action::SessionOpen => {
                s.started_at = max_opt(s.started_at, Some(e.event_at));
                s.last_open_at = max_opt(s.last_open_at, Some(e.event_at));
            }
            Action::SessionClose => s.closed_at = max_opt(s.closed_at, Some(e.event_at)),
            Action::PeerJoin | Action::PeerLeave | Action::RoleChange => {
                let peer_id = e.peer_id.as_deref().unwrap_or_default();
                let p = peers.entry((e.session_id.as_str(), peer_id)).or_default();
                p.join_reported_at = min_opt(p.join_reported_at, e.joined_at);
                match e.action {
                    Action::PeerJoin => {
                        p.join_reported_at = min_opt(p.join_reported_at, Some(e.event_at));
                    }
                    Action::RoleChange => {
                        p.first_role_change_at = min_opt(p.first_role_change_at, Some(e.event_at));
                    }
                    _ => p.left = true,
                }
                if matches!(e.action, Action::PeerJoin | Action::RoleChange) {
                    p.seen = true;
                    if let Some(class) = e.role_class {
                        let kind = u8::from(e.action == Action::RoleChange);
                        let key = (e.event_at, kind, class, e.role.clone().unwrap_or_default());
                        if p.role.as_ref().is_none_or(|old| key > *old) {
                            p.role = Some(key);
                        }
                    }
                }
            }
            Action::Activity => {}
        }
    }

    let present_peer = |session: &str, p: &PeerFacts| -> bool {
        let closed_at = sessions.get(session).and_then(|s| s.closed_at);
        p.seen && !p.left && closed_at.is_none_or(|c| p.joined_at().is_some_and(|j| j > c))
    };
    let present: BTreeSet<(String, String)> = peers
        .iter()
        .filter(|((session, _), p)| present_peer(session, p))
        .map(|((session, peer), _)| (session.to_string(), peer.to_string()))
        .collect();

    // Current session: the largest (started_at with None first, session_id by bytes).
    let current = sessions
        .iter()
        .max_by(|(a_id, a), (b_id, b)| (a.started_at, a_id).cmp(&(b.started_at, b_id)))
        .map(|(id, facts)| (*id, facts));

    let (mut listener_count, mut speaker_count) = (0, 0);
    let is_live = match current {
        None => initial.is_live,
        Some((id, facts)) => {
            for ((session, _), p) in &peers {
                if *session == id && present_peer(session, p) {
                    match p.role.as_ref().map(|r| r.2) {
                        Some(RoleClass::Listener) => listener_count += 1,
                        Some(RoleClass::Speaker) => speaker_count += 1,
                        _ => {}
                    }
                }
            }
            let last_join_at = peers
                .iter()
                .filter(|((session, _), p)| *session == id && p.seen)
                .filter_map(|(_, p)| p.joined_at())
                .max();
            match facts.closed_at {
                None => true,
                Some(closed) => {
                    max_opt(facts.last_open_at, last_join_at).is_some_and(|t| t > closed)
                }
            }
        }
    };

    RoomState {
        listener_count,
        speaker_count,
        is_live,
        last_active_at,
        current_session: current.map(|(id, _)| id.to_string()),
        present,
    }
}
