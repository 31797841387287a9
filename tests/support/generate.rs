//! Seeded generator of realistic 100ms histories for one room (sessions, joins, leaves, role
//! changes, closes) and of their delivery (shuffled, duplicated, replayed under new ids).

use super::model::{Action, Event, Micros, RoleClass};

/// SplitMix64: tiny, fast, and good enough to drive a test generator reproducibly.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The generator for item `index` of a run seeded with `seed` (independent streams).
    pub fn for_item(seed: u64, index: u64) -> Self {
        let mut r = Rng(seed ^ index.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below((hi - lo) as u64) as i64
        }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }

    /// A UUID-v4-shaped id, as 100ms uses for events and peers.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    /// A 24-hex-digit id, the shape of 100ms room and session ids.
    pub fn object_id(&mut self) -> String {
        format!("{:016x}{:08x}", self.next_u64(), self.next_u64() >> 32)
    }
}

const SECOND: Micros = 1_000_000;
const MINUTE: Micros = 60 * SECOND;
const HOUR: Micros = 60 * MINUTE;
/// 2024-01-01T00:00:00Z.
const EPOCH_2024: Micros = 1_704_067_200 * SECOND;

const SPEAKER_ROLES: &[&str] = &["host", "speaker", "moderator", "co-host", "Broadcaster"];
const LISTENER_ROLES: &[&str] = &["listener", "viewer-realtime", "audience", "hls-viewer"];
const IGNORED_ROLES: &[&str] = &["__internal_recorder", "beam"];

/// A generated history: the events that happened (each once) and how they were delivered.
pub struct History {
    /// Earlier than every event: the room's last_active_at before the history.
    pub before: Micros,
    pub events: Vec<Event>,
    pub delivery: Vec<Event>,
}

/// Shape knobs; `Default` is the mix used for the 10,000-history run.
#[derive(Clone, Copy)]
pub struct Shape {
    /// Percent of histories that are one big room (many peers).
    pub big_percent: u64,
    /// Peers per session in a big room.
    pub big_peers: (i64, i64),
    /// Peers per session otherwise.
    pub peers: (i64, i64),
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            big_percent: 2,
            big_peers: (20, 40),
            peers: (0, 6),
        }
    }
}

struct Builder<'r> {
    rng: &'r mut Rng,
    events: Vec<Event>,
}

impl Builder<'_> {
    fn push(&mut self, action: Action, session: &Session, at: Micros) -> &mut Event {
        let event_id = self.rng.uuid();
        self.events.push(Event {
            event_id,
            action,
            session_id: session.id.clone(),
            session_started_at: session.reported_start,
            peer_id: None,
            role: None,
            role_class: None,
            event_at: at,
            joined_at: None,
        });
        let last = self.events.len() - 1;
        &mut self.events[last]
    }

    fn role(&mut self, class: RoleClass) -> (String, RoleClass) {
        let names = match class {
            RoleClass::Speaker => SPEAKER_ROLES,
            RoleClass::Listener => LISTENER_ROLES,
            RoleClass::Ignored => IGNORED_ROLES,
        };
        (self.rng.pick(names).to_string(), class)
    }

    fn initial_class(&mut self) -> RoleClass {
        match self.rng.below(100) {
            0..=64 => RoleClass::Listener,
            65..=94 => RoleClass::Speaker,
            _ => RoleClass::Ignored,
        }
    }
}

struct Session {
    id: String,
    reported_start: Option<Micros>,
}

/// One room's history: 1-3 sessions one after the other, peers coming and going, then delivery.
pub fn history(rng: &mut Rng, shape: Shape) -> History {
    let legacy = rng.chance(8);
    let big = rng.chance(shape.big_percent);
    let base = EPOCH_2024 + rng.range(0, 300 * 24 * HOUR);
    let sessions = match rng.below(100) {
        0..=59 => 1,
        60..=89 => 2,
        _ => 3,
    };
    let mut b = Builder {
        rng,
        events: Vec::new(),
    };
    let mut t = base;
    let mut prev_start = base;
    for k in 0..sessions {
        let mut start = match b.rng.below(100) {
            0..=4 => t, // opens the instant the previous one ended
            _ => t + b.rng.range(SECOND, 2 * HOUR),
        };
        if k > 0 && !legacy && b.rng.chance(3) {
            start = prev_start; // same started_at: session_id decides which is current
        }
        let end = start + b.rng.range(MINUTE, 2 * HOUR);
        let session = Session {
            id: if legacy {
                String::new()
            } else {
                b.rng.object_id()
            },
            reported_start: if legacy || b.rng.chance(3) {
                None
            } else {
                Some(start)
            },
        };
        one_session(&mut b, &session, start, end, big, shape, legacy);
        prev_start = start;
        t = t.max(end);
    }
    let events = b.events;
    let delivery = deliver(rng, &events);
    History {
        before: base - 24 * HOUR,
        events,
        delivery,
    }
}

fn one_session(
    b: &mut Builder,
    session: &Session,
    start: Micros,
    end: Micros,
    big: bool,
    shape: Shape,
    legacy: bool,
) {
    if b.rng.chance(92) {
        b.push(Action::SessionOpen, session, start);
    }
    let (lo, hi) = if big { shape.big_peers } else { shape.peers };
    let users = b.rng.range(lo, hi + 1);
    let mut last_join = start;
    for _ in 0..users {
        let mut joined = match b.rng.below(100) {
            0..=4 => start,     // joins the instant the session opens
            5..=7 => last_join, // two peers join in the same microsecond
            8..=9 => end,       // joins exactly at the close: not present if the close arrives
            _ => b.rng.range(start, end),
        };
        last_join = joined;
        // A user may leave and come back: every join is a new peer id.
        loop {
            let left = one_peer(b, session, joined, end);
            match left {
                Some(l) if l + SECOND < end && b.rng.chance(30) => {
                    joined = b.rng.range(l + SECOND, end.min(l + 2 * MINUTE));
                }
                _ => break,
            }
        }
    }
    for _ in 0..b.rng.below(3) {
        let at = b.rng.range(start, end);
        b.push(Action::Activity, session, at);
    }
    let close = b.rng.below(100);
    if legacy {
        if close < 70 {
            // The flat format's timestamp is in milliseconds.
            b.push(Action::SessionClose, session, end / 1000 * 1000);
        }
    } else if close < 45 {
        b.push(Action::SessionClose, session, end);
    } else if close < 65 {
        // room.end.success: envelope timestamp (whole seconds) rounded up to the end of its second.
        let stop = end / SECOND * SECOND + SECOND - 1;
        b.push(Action::SessionClose, session, stop);
        if b.rng.chance(50) {
            b.push(Action::SessionClose, session, end);
        }
    }
}

/// One peer id's events; returns when it left (if a leave exists for it).
fn one_peer(b: &mut Builder, session: &Session, joined: Micros, end: Micros) -> Option<Micros> {
    let peer_id = b.rng.uuid();
    let leave = match b.rng.below(100) {
        0..=54 => Some(if b.rng.chance(3) {
            end
        } else {
            b.rng.range(joined + 1, end + 1)
        }),
        // Abrupt disconnect: the leave comes ~60 s later, possibly after the session closed.
        55..=64 => Some(b.rng.range(joined + 1, end + 1) + 60 * SECOND + b.rng.range(0, SECOND)),
        _ => None, // no leave at all (room ended, leave lost)
    };
    let mut class = b.initial_class();
    let (role, _) = b.role(class);
    if !b.rng.chance(3) {
        let e = b.push(Action::PeerJoin, session, joined);
        e.peer_id = Some(peer_id.clone());
        e.role = Some(role.clone());
        e.role_class = Some(class);
    }
    let mut current = (role, class);
    let until = leave.unwrap_or(end).max(joined);
    for _ in 0..match b.rng.below(10) {
        0..=5 => 0,
        6..=8 => 1,
        _ => 2,
    } {
        let at = if b.rng.chance(5) {
            joined
        } else {
            b.rng.range(joined, until + 1)
        };
        class = match (b.rng.chance(5), class) {
            (true, _) => RoleClass::Ignored,
            (false, RoleClass::Speaker) => RoleClass::Listener,
            (false, _) => RoleClass::Speaker,
        };
        current = b.role(class);
        let reported = reported_join(b.rng, joined);
        let e = b.push(Action::RoleChange, session, at);
        e.peer_id = Some(peer_id.clone());
        e.role = Some(current.0.clone());
        e.role_class = Some(current.1);
        e.joined_at = reported;
    }
    if let Some(l) = leave {
        let reported = reported_join(b.rng, joined);
        let e = b.push(Action::PeerLeave, session, l);
        e.peer_id = Some(peer_id);
        e.role = Some(current.0);
        e.role_class = Some(current.1);
        e.joined_at = reported;
    }
    leave
}

/// `data.joined_at` on leaves and role changes: usually the join time, sometimes absent, rarely a
/// little earlier (the join's own time was truncated differently).
fn reported_join(rng: &mut Rng, joined: Micros) -> Option<Micros> {
    match rng.below(100) {
        0..=9 => None,
        10..=11 => Some(joined - rng.range(1, 1000)),
        _ => Some(joined),
    }
}

/// How 100ms might deliver `events`: retries of the same id (1-4 extra copies), occasional replays
/// under a new id, in a shuffled, jittered or reversed order.
pub fn deliver(rng: &mut Rng, events: &[Event]) -> Vec<Event> {
    let mut out = Vec::with_capacity(events.len() * 2);
    for e in events {
        out.push(e.clone());
        if rng.chance(20) {
            for _ in 0..rng.range(1, 5) {
                out.push(e.clone());
            }
        }
        if rng.chance(4) {
            let mut replay = e.clone();
            replay.event_id = rng.uuid();
            out.push(replay);
        }
    }
    match rng.below(4) {
        0 | 1 => rng.shuffle(&mut out),
        2 => {
            // Mostly in time order; retries land up to ~14 s late, a few replays hours later.
            let mut keyed: Vec<(Micros, Event)> = out
                .into_iter()
                .map(|e| {
                    let delay = if rng.chance(90) {
                        rng.range(0, 15 * SECOND)
                    } else {
                        rng.range(0, 6 * HOUR)
                    };
                    (e.event_at + delay, e)
                })
                .collect();
            keyed.sort_by_key(|(k, _)| *k);
            out = keyed.into_iter().map(|(_, e)| e).collect();
        }
        _ => {
            out.sort_by_key(|e| e.event_at);
            out.reverse();
        }
    }
    out
}
