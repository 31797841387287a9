//! The counting model of docs/design.md §7 (counting rules v2), written as plain Rust over what
//! was delivered, independently of the SQL (which applies one call at a time through small step
//! functions and keeps running counts). Tests compare the two.
//!
//! # The guarantee, in the words of docs/counting.md
//!
//! **100ms envelope sessions** (`session_id` ≠ ""; every 100ms event that carries a session id
//! must have one):
//! - `closed(S)`: a close was applied for S — a session close, a room end, a snapshot fact that
//!   100ms reports S inactive, or the 12-hour rule. `live(S)` = S exists and not `closed(S)`.
//! - A peer is present iff it was seen (a join, a role change, a snapshot listing or a peer fact),
//!   has not left, and `closed(S)` does not hold. **A leave is final** (100ms issues a new peer id
//!   per join). A snapshot of S at time T that does not list the peer is a leave at T for a peer
//!   that joined before T; it never ends a presence that began after T.
//! - Nothing of S can make a peer present or the room live after `closed(S)`, in any order.
//!
//! **Legacy flat format** (`session_id` = "" is reserved for it), epochs by time:
//! - `live("")` = no close yet, or the latest open/join is later than the latest close.
//! - Per peer, **the latest event by time wins**: present iff its latest join (or role change) is
//!   later than its latest leave (a tie counts as a leave) and later than the latest close (a tie
//!   counts as closed). Senders may reuse peer ids across joins and epochs.
//!
//! **Both formats:**
//! - The room shows its current session, the one with the largest (`started_at`, nulls first,
//!   then `session_id` by bytes); counts are its present peers by role class (`ignored` never
//!   counts); `is_live` is its `live(S)`, unchanged while the room has no session.
//! - A peer's role is the one with the largest (time, kind, class, role): joins (kind 0), role
//!   changes (1) and roles observed by a snapshot at its `p_observed_at` (2).
//! - Activity events (tracks) only move `last_active_at`: they create no session and never change
//!   `is_live`. `last_active_at` = max(previous, least(event time, received + 120 s)).
//! - A repeated event id changes nothing (only its first arrival counts, as in the ledger); every
//!   other fact is a min, max or "or", so replays under new ids and snapshot facts applied again
//!   change nothing either. Failure events never reach the database (the Rust plan ignores
//!   them), so they are not modelled here.
//! - The 12-hour rule (`hms_close_expired_sessions(now)`) closes every envelope session without a
//!   close whose start, as known when it runs, is more than 12 h before `now`, at start + 12 h.
//! - Recap of a closed envelope session: its participants are the peers seen with a final class
//!   other than `ignored`, each present from its join to its leave or the close (the earlier).
//! - Peaks of a session: the highest listener and speaker counts the room showed, after any
//!   delivery, while that session was its current one (0 for a session never current). Delivered
//!   in order, the room shows the true counts after each event, so these are the true peaks;
//!   reordered, they are the peaks of what the room showed (design §9.1).

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Microseconds since the Unix epoch (UTC), the resolution PostgreSQL stores.
pub type Micros = i64;

/// `last_active_at` never moves past the time received plus this.
pub const FUTURE_TOLERANCE: Micros = 120_000_000;
/// 100ms sessions last at most this long.
pub const MAX_SESSION: Micros = 12 * 3600 * 1_000_000;

/// The `p_action` argument of `hms_apply_event`, and its SQL spelling (`Action::as_str`): the
/// function's own type. The spelling is the RPC's contract, not a counting rule, so the model
/// reads it rather than restating it; the SQL refuses any other spelling, and tests/support/wire.rs
/// still maps 100ms type names to actions independently of the function's table.
pub use hms_webhook::Action;

/// A 100ms event type that maps to an action (kept in the ledger; not interpreted): the first
/// of the function's table, a 100ms name.
pub trait EventType {
    fn event_type(self) -> &'static str;
}

impl EventType for Action {
    fn event_type(self) -> &'static str {
        hms_webhook::EVENT_ACTIONS
            .iter()
            .find(|(_, action)| *action == self)
            .map(|(name, _)| *name)
            .expect("every action has a 100ms event type")
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
    /// `p_received_at`; `None` leaves it to the database clock (tests use it for past events only).
    pub received_at: Option<Micros>,
}

impl Event {
    /// An event without peer fields or reported times.
    pub fn new(id: &str, action: Action, session: &str, at: Micros) -> Self {
        Event {
            event_id: id.to_string(),
            action,
            session_id: session.to_string(),
            session_started_at: None,
            peer_id: None,
            role: None,
            role_class: None,
            event_at: at,
            joined_at: None,
            received_at: None,
        }
    }
}

/// One snapshot fact of `hms_apply_facts` (docs/design.md §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fact {
    /// A reported start; `closed_at` means 100ms reports the session inactive (a close then).
    Session {
        session_id: String,
        started_at: Option<Micros>,
        closed_at: Option<Micros>,
    },
    /// A join at `joined_at` (else a listing at the snapshot time), a leave at `left_at`, and the
    /// role observed at the snapshot time.
    Peer {
        session_id: String,
        peer_id: String,
        role: Option<String>,
        role_class: Option<RoleClass>,
        joined_at: Option<Micros>,
        left_at: Option<Micros>,
    },
    /// Exactly these peers are in the session at the snapshot time.
    PresentSet {
        session_id: String,
        peer_ids: Vec<String>,
    },
}

/// One `hms_apply_facts` call for the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub observed_at: Micros,
    pub received_at: Micros,
    pub facts: Vec<Fact>,
}

/// What reached the database, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Event(Event),
    Facts(Facts),
    /// `hms_close_expired_sessions(now)`.
    Expire(Micros),
}

/// The room row before the first delivery (a pre-existing room).
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
    /// The recap of every closed envelope session: (unique participants, participant µs).
    pub recap: BTreeMap<String, (u64, Micros)>,
    /// Every session's peaks: (listeners, speakers).
    pub peaks: BTreeMap<String, (u64, u64)>,
}

#[derive(Default)]
struct SessionFacts {
    started_at: Option<Micros>,
    last_open_at: Option<Micros>,
    closed_at: Option<Micros>,
    /// Every present_set applied: (observed_at, listed peer ids).
    snapshots: Vec<(Micros, BTreeSet<String>)>,
}

/// The largest (time, kind, class, role) among a peer's role observations.
type RoleKey = (Micros, u8, RoleClass, String);

#[derive(Default)]
struct PeerFacts {
    seen: bool,
    /// Latest leave time; `Some` means a leave was received.
    left_at: Option<Micros>,
    join_reported_at: Option<Micros>,
    first_role_change_at: Option<Micros>,
    first_listed_at: Option<Micros>,
    /// Latest join or role change time (what the flat format compares).
    last_join_at: Option<Micros>,
    role: Option<RoleKey>,
}

impl PeerFacts {
    fn joined_at(&self) -> Option<Micros> {
        self.join_reported_at
            .or(self.first_role_change_at)
            .or(self.first_listed_at)
    }

    fn take_role(&mut self, key: RoleKey) {
        if self.role.as_ref().is_none_or(|old| key > *old) {
            self.role = Some(key);
        }
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

/// `last_active_at` = max(previous, least(time, received + 120 s)).
fn active_at(previous: Micros, at: Micros, received_at: Option<Micros>) -> Micros {
    previous.max(received_at.map_or(at, |r| at.min(r + FUTURE_TOLERANCE)))
}

#[derive(Default)]
struct Room {
    sessions: BTreeMap<String, SessionFacts>,
    peers: BTreeMap<(String, String), PeerFacts>,
}

impl Room {
    fn session(&mut self, id: &str) -> &mut SessionFacts {
        self.sessions.entry(id.to_string()).or_default()
    }

    fn peer(&mut self, session: &str, peer: &str) -> &mut PeerFacts {
        self.session(session);
        self.peers
            .entry((session.to_string(), peer.to_string()))
            .or_default()
    }

    fn event(&mut self, e: &Event) {
        if e.action == Action::Activity {
            return;
        }
        let s = self.session(&e.session_id);
        s.started_at = max_opt(s.started_at, e.session_started_at);
        match e.action {
            Action::SessionOpen => {
                s.started_at = max_opt(s.started_at, Some(e.event_at));
                s.last_open_at = max_opt(s.last_open_at, Some(e.event_at));
            }
            Action::SessionClose => s.closed_at = max_opt(s.closed_at, Some(e.event_at)),
            Action::PeerJoin | Action::PeerLeave | Action::RoleChange => {
                let peer_id = e.peer_id.as_deref().unwrap_or_default();
                let p = self.peer(&e.session_id, peer_id);
                p.join_reported_at = min_opt(p.join_reported_at, e.joined_at);
                match e.action {
                    Action::PeerJoin => {
                        p.join_reported_at = min_opt(p.join_reported_at, Some(e.event_at));
                    }
                    Action::RoleChange => {
                        p.first_role_change_at = min_opt(p.first_role_change_at, Some(e.event_at));
                    }
                    _ => p.left_at = max_opt(p.left_at, Some(e.event_at)),
                }
                if e.action != Action::PeerLeave {
                    p.seen = true;
                    p.last_join_at = max_opt(p.last_join_at, Some(e.event_at));
                    if let Some(class) = e.role_class {
                        let kind = u8::from(e.action == Action::RoleChange);
                        p.take_role((e.event_at, kind, class, e.role.clone().unwrap_or_default()));
                    }
                }
            }
            Action::Activity => {}
        }
    }

    fn facts(&mut self, f: &Facts) {
        for fact in &f.facts {
            match fact {
                Fact::Session {
                    session_id,
                    started_at,
                    closed_at,
                } => {
                    let s = self.session(session_id);
                    s.started_at = max_opt(s.started_at, *started_at);
                    s.closed_at = max_opt(s.closed_at, *closed_at);
                }
                Fact::Peer {
                    session_id,
                    peer_id,
                    role,
                    role_class,
                    joined_at,
                    left_at,
                } => {
                    let p = self.peer(session_id, peer_id);
                    p.seen = true;
                    match joined_at {
                        Some(j) => p.join_reported_at = min_opt(p.join_reported_at, Some(*j)),
                        None => p.first_listed_at = min_opt(p.first_listed_at, Some(f.observed_at)),
                    }
                    p.left_at = max_opt(p.left_at, *left_at);
                    if let Some(class) = role_class {
                        p.take_role((f.observed_at, 2, *class, role.clone().unwrap_or_default()));
                    }
                }
                Fact::PresentSet {
                    session_id,
                    peer_ids,
                } => {
                    for peer in peer_ids {
                        let p = self.peer(session_id, peer);
                        p.seen = true;
                        p.first_listed_at = min_opt(p.first_listed_at, Some(f.observed_at));
                    }
                    let listed = peer_ids.iter().cloned().collect();
                    self.session(session_id)
                        .snapshots
                        .push((f.observed_at, listed));
                }
            }
        }
    }

    /// The 12-hour rule, with the starts known at this point of the delivery.
    fn expire(&mut self, now: Micros) {
        for (id, s) in &mut self.sessions {
            if let (false, None, Some(start)) = (id.is_empty(), s.closed_at, s.started_at) {
                if start < now - MAX_SESSION {
                    s.closed_at = Some(start + MAX_SESSION);
                }
            }
        }
    }

    fn live(&self, id: &str, s: &SessionFacts) -> bool {
        let Some(closed) = s.closed_at else {
            return true;
        };
        if !id.is_empty() {
            return false;
        }
        let last_join = self
            .peers
            .iter()
            .filter(|((session, _), _)| session.is_empty())
            .filter_map(|(_, p)| p.last_join_at)
            .max();
        max_opt(s.last_open_at, last_join).is_some_and(|t| t > closed)
    }

    fn present(&self, session: &str, peer: &str, p: &PeerFacts) -> bool {
        let s = &self.sessions[session];
        if session.is_empty() {
            // Flat format: the latest event by time wins.
            let Some(joined) = p.last_join_at else {
                return false;
            };
            p.seen && p.left_at.is_none_or(|l| joined > l) && s.closed_at.is_none_or(|c| joined > c)
        } else {
            let absent_at = s
                .snapshots
                .iter()
                .filter(|(_, listed)| !listed.contains(peer))
                .map(|(t, _)| *t)
                .max();
            let left_by_snapshot =
                matches!((p.joined_at(), absent_at), (Some(j), Some(a)) if j < a);
            p.seen && p.left_at.is_none() && !left_by_snapshot && s.closed_at.is_none()
        }
    }
}

/// The expected room after `delivered` events, in any order, with repeats.
pub fn expected(initial: Initial, delivered: &[Event]) -> RoomState {
    let deliveries: Vec<Delivery> = delivered.iter().cloned().map(Delivery::Event).collect();
    expected_after(initial, &deliveries)
}

/// The expected room after `deliveries`, in this order. Only the first arrival of an event id
/// counts, as in the ledger; the rest is a fold of min/max/or (the 12-hour rule reads the starts
/// known when it runs).
pub fn expected_after(initial: Initial, deliveries: &[Delivery]) -> RoomState {
    let mut ids = HashSet::new();
    let mut room = Room::default();
    let mut last_active_at = initial.last_active_at;
    let mut peaks = BTreeMap::new();
    for d in deliveries {
        match d {
            Delivery::Event(e) => {
                if !ids.insert(e.event_id.as_str()) {
                    continue;
                }
                last_active_at = active_at(last_active_at, e.event_at, e.received_at);
                room.event(e);
            }
            Delivery::Facts(f) => {
                for fact in &f.facts {
                    let times = match fact {
                        Fact::Session {
                            started_at,
                            closed_at,
                            ..
                        } => [*started_at, *closed_at],
                        Fact::Peer {
                            joined_at, left_at, ..
                        } => [*joined_at, *left_at],
                        Fact::PresentSet { .. } => [None, None],
                    };
                    for t in times.into_iter().flatten() {
                        last_active_at = active_at(last_active_at, t, Some(f.received_at));
                    }
                }
                room.facts(f);
            }
            Delivery::Expire(now) => room.expire(*now),
        }
        // What the room shows after this call, for its current session's peaks.
        if let Some((id, listeners, speakers)) = room.shown() {
            let peak = peaks.entry(id).or_insert((0, 0));
            *peak = (peak.0.max(listeners), peak.1.max(speakers));
        }
    }
    for id in room.sessions.keys() {
        peaks.entry(id.clone()).or_insert((0, 0));
    }

    let present: BTreeSet<(String, String)> = room
        .peers
        .iter()
        .filter(|((session, peer), p)| room.present(session, peer, p))
        .map(|(key, _)| key.clone())
        .collect();

    let (current_session, listener_count, speaker_count, is_live) = match room.shown() {
        None => (None, 0, 0, initial.is_live),
        Some((id, listeners, speakers)) => {
            let live = room.live(&id, &room.sessions[&id]);
            (Some(id), listeners, speakers, live)
        }
    };

    RoomState {
        listener_count,
        speaker_count,
        is_live,
        last_active_at,
        current_session,
        present,
        recap: recap(&room),
        peaks,
    }
}

impl Room {
    /// The current session (the largest (started_at with None first, session_id by bytes)) and
    /// its present peers by class, as the room shows them; `None` while the room has no session.
    fn shown(&self) -> Option<(String, u64, u64)> {
        let (id, _) = self
            .sessions
            .iter()
            .max_by(|(a_id, a), (b_id, b)| (a.started_at, a_id).cmp(&(b.started_at, b_id)))?;
        let (mut listeners, mut speakers) = (0, 0);
        for ((session, peer), p) in &self.peers {
            if session == id && self.present(session, peer, p) {
                match p.role.as_ref().map(|r| r.2) {
                    Some(RoleClass::Listener) => listeners += 1,
                    Some(RoleClass::Speaker) => speakers += 1,
                    _ => {}
                }
            }
        }
        Some((id.clone(), listeners, speakers))
    }
}

/// The recap of each closed envelope session: its participants are the peers seen with a final
/// class other than `ignored`; each is present from its join to its leave or the close, the
/// earlier (design §7).
fn recap(room: &Room) -> BTreeMap<String, (u64, Micros)> {
    let mut out = BTreeMap::new();
    for (id, s) in &room.sessions {
        let (false, Some(closed)) = (id.is_empty(), s.closed_at) else {
            continue;
        };
        let (mut unique, mut micros) = (0, 0);
        for ((session, _), p) in &room.peers {
            let counted = matches!(
                p.role.as_ref().map(|r| r.2),
                Some(RoleClass::Listener | RoleClass::Speaker)
            );
            if session != id || !p.seen || !counted {
                continue;
            }
            let Some(joined) = p.joined_at() else {
                continue;
            };
            let end = p.left_at.map_or(closed, |left| left.min(closed));
            unique += 1;
            micros += (end - joined).max(0);
        }
        out.insert(id.clone(), (unique, micros));
    }
    out
}
