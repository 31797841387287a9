//! Seeded generator of realistic 100ms histories for one room (sessions, joins, leaves, role
//! changes, closes) and of their delivery (shuffled, duplicated, replayed under new ids).

use super::model::{Action, Delivery, Event, Fact, Facts, Micros, RoleClass, MAX_SESSION};

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

/// A generated history: the events that happened (each once), the snapshots 100ms's API gave of
/// it, and how all of that was delivered.
pub struct History {
    /// Earlier than every event: the room's last_active_at before the history.
    pub before: Micros,
    pub events: Vec<Event>,
    /// Snapshot fact batches (`hms_apply_facts` calls), in the order they were taken.
    pub facts: Vec<Facts>,
    /// A run of the 12-hour rule after everything else, if any.
    pub expire: Option<Micros>,
    pub delivery: Vec<Delivery>,
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
    legacy: bool,
    /// Flat format: the peer ids a sender reuses for its users (one per user, every join).
    reused_ids: Vec<String>,
}

/// The end of the second `at` falls in: what an event time given only by a whole-second
/// envelope timestamp means (docs/design.md §5, the one sub-second rule).
pub fn end_of_second(at: Micros) -> Micros {
    at.div_euclid(SECOND) * SECOND + SECOND - 1
}

impl Builder<'_> {
    fn push(&mut self, action: Action, session: &Session, at: Micros) -> &mut Event {
        let event_id = self.rng.uuid();
        let at = if self.legacy {
            // The flat format's timestamp is in milliseconds.
            at.div_euclid(1000) * 1000
        } else if self.rng.chance(5) && action != Action::SessionOpen {
            // Sent without its own time: the whole-second envelope timestamp stands in for it.
            end_of_second(at)
        } else {
            at
        };
        // Received a little after the event, or (clock skew, an envelope timestamp up to 120 s
        // ahead and a data time up to 120 s after it) up to 240 s before it.
        let received_at = if self.rng.chance(4) {
            at - self.rng.range(0, 240 * SECOND)
        } else {
            at + self.rng.range(0, 15 * SECOND)
        };
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
            received_at: Some(received_at),
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
    let reused_ids = (0..rng.range(1, 6)).map(|u| format!("user-{u}")).collect();
    let reuse = legacy && rng.chance(50);
    let mut b = Builder {
        rng,
        events: Vec::new(),
        legacy,
        reused_ids: if reuse { reused_ids } else { Vec::new() },
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
    let facts = if legacy || !rng.chance(30) {
        Vec::new()
    } else {
        (0..rng.range(1, 3))
            .map(|_| snapshot(rng, &events, base, t))
            .collect()
    };
    let expire =
        (!legacy && rng.chance(5)).then(|| t + rng.range(-2 * HOUR, MAX_SESSION + 2 * HOUR));
    let delivery = deliver(rng, &events, &facts, expire);
    History {
        before: base - 24 * HOUR,
        events,
        facts,
        expire,
        delivery,
    }
}

/// What 100ms's API says about the room at a time between `from` and `to`, built from the events
/// that happened (the truth): the request is sent at R, and `p_observed_at` = R - 60 s. Sessions
/// with their start and (if over by R) their close; peers joined by R with their join, their leave
/// (if by R) and their role at R; for each session still open at R, the peers present at R. A
/// random part of it is left out (an API pass cut short).
fn snapshot(rng: &mut Rng, events: &[Event], from: Micros, to: Micros) -> Facts {
    let sent = rng.range(from, to + 10 * MINUTE);
    let observed_at = sent - MINUTE;
    let mut sessions: Vec<&str> = events.iter().map(|e| e.session_id.as_str()).collect();
    sessions.sort_unstable();
    sessions.dedup();
    let mut facts = Vec::new();
    for session in sessions {
        let of_session = || events.iter().filter(move |e| e.session_id == session);
        let started_at = of_session()
            .filter_map(|e| match e.action {
                Action::SessionOpen => Some(e.event_at),
                _ => e.session_started_at,
            })
            .max();
        let closed_at = of_session()
            .filter(|e| e.action == Action::SessionClose && e.event_at <= sent)
            .map(|e| e.event_at)
            .max();
        if started_at.is_some_and(|s| s > sent) {
            continue; // not started yet when the API was asked
        }
        facts.push(Fact::Session {
            session_id: session.to_string(),
            started_at,
            closed_at,
        });
        let mut peers: Vec<&str> = of_session().filter_map(|e| e.peer_id.as_deref()).collect();
        peers.sort_unstable();
        peers.dedup();
        let mut present = Vec::new();
        for peer in peers {
            let of_peer = || of_session().filter(move |e| e.peer_id.as_deref() == Some(peer));
            let Some(joined_at) = of_peer()
                .filter(|e| e.action != Action::PeerLeave)
                .map(|e| e.joined_at.unwrap_or(e.event_at).min(e.event_at))
                .min()
            else {
                continue; // a leave alone: the API never saw this peer join
            };
            if joined_at > sent {
                continue;
            }
            let left_at = of_peer()
                .filter(|e| e.action == Action::PeerLeave && e.event_at <= sent)
                .map(|e| e.event_at)
                .max();
            let role = of_peer()
                .filter(|e| e.action != Action::PeerLeave && e.event_at <= sent)
                .max_by_key(|e| e.event_at)
                .and_then(|e| Some((e.role.clone(), e.role_class?)));
            if rng.chance(85) {
                facts.push(Fact::Peer {
                    session_id: session.to_string(),
                    peer_id: peer.to_string(),
                    role: role.as_ref().and_then(|r| r.0.clone()),
                    role_class: role.map(|r| r.1),
                    joined_at: rng.chance(95).then_some(joined_at),
                    left_at,
                });
            }
            if left_at.is_none() {
                present.push(peer.to_string());
            }
        }
        if closed_at.is_none() && rng.chance(80) {
            facts.push(Fact::PresentSet {
                session_id: session.to_string(),
                peer_ids: present,
            });
        }
    }
    facts.retain(|_| rng.chance(90));
    Facts {
        observed_at,
        received_at: sent + rng.range(0, SECOND),
        facts,
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
    let closed = if legacy { close < 70 } else { close < 65 };
    if legacy {
        if closed {
            b.push(Action::SessionClose, session, end);
        }
    } else if close < 45 {
        b.push(Action::SessionClose, session, end);
    } else if closed {
        // room.end.success carries no stop time: its whole-second envelope timestamp stands in.
        b.push(Action::SessionClose, session, end_of_second(end));
        if b.rng.chance(50) {
            b.push(Action::SessionClose, session, end);
        }
    }
    if closed && !legacy && b.rng.chance(15) {
        // A join stamped just after the close (clock skew between 100ms servers), perhaps of an
        // ignored role (a recorder or beam): the session is over all the same.
        let at = end + b.rng.range(1, 2 * SECOND);
        let class = if b.rng.chance(40) {
            RoleClass::Ignored
        } else {
            b.initial_class()
        };
        let (role, class) = b.role(class);
        let peer_id = b.rng.uuid();
        let e = b.push(Action::PeerJoin, session, at);
        e.peer_id = Some(peer_id);
        e.role = Some(role);
        e.role_class = Some(class);
    }
}

/// One peer id's events; returns when it left (if a leave exists for it).
fn one_peer(b: &mut Builder, session: &Session, joined: Micros, end: Micros) -> Option<Micros> {
    let peer_id = if b.reused_ids.is_empty() {
        b.rng.uuid()
    } else {
        // A legacy sender may send the same id every time a user joins, in every epoch.
        b.rng.pick(&b.reused_ids).clone()
    };
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
        let reported = reported_join(b, joined);
        let e = b.push(Action::RoleChange, session, at);
        e.peer_id = Some(peer_id.clone());
        e.role = Some(current.0.clone());
        e.role_class = Some(current.1);
        e.joined_at = reported;
    }
    if let Some(l) = leave {
        let reported = reported_join(b, joined);
        let e = b.push(Action::PeerLeave, session, l);
        e.peer_id = Some(peer_id);
        e.role = Some(current.0);
        e.role_class = Some(current.1);
        e.joined_at = reported;
    }
    leave
}

/// `data.joined_at` on leaves and role changes: usually the join time, sometimes absent, rarely a
/// little earlier (the join's own time was truncated differently). The flat format has none.
fn reported_join(b: &mut Builder, joined: Micros) -> Option<Micros> {
    if b.legacy {
        return None;
    }
    match b.rng.below(100) {
        0..=9 => None,
        10..=11 => Some(joined - b.rng.range(1, 1000)),
        _ => Some(joined),
    }
}

/// How 100ms might deliver `events`: retries of the same id (1-4 extra copies, each received
/// later), occasional replays under a new id, in a shuffled, jittered or reversed order; the
/// snapshot batches mixed in anywhere (each possibly twice); the 12-hour rule last.
pub fn deliver(
    rng: &mut Rng,
    events: &[Event],
    facts: &[Facts],
    expire: Option<Micros>,
) -> Vec<Delivery> {
    let mut out: Vec<(Micros, Delivery)> = Vec::with_capacity(events.len() * 2);
    for e in events {
        let copy = |rng: &mut Rng, e: &Event| {
            let mut c = e.clone();
            c.received_at = c.received_at.map(|r| r + rng.range(SECOND, 15 * SECOND));
            c
        };
        out.push((e.event_at, Delivery::Event(e.clone())));
        if rng.chance(20) {
            for _ in 0..rng.range(1, 5) {
                let c = copy(rng, e);
                out.push((e.event_at, Delivery::Event(c)));
            }
        }
        if rng.chance(4) {
            let mut replay = copy(rng, e);
            replay.event_id = rng.uuid();
            out.push((e.event_at, Delivery::Event(replay)));
        }
    }
    for f in facts {
        out.push((f.observed_at, Delivery::Facts(f.clone())));
        if rng.chance(20) {
            out.push((f.observed_at, Delivery::Facts(f.clone())));
        }
    }
    match rng.below(4) {
        0 | 1 => rng.shuffle(&mut out),
        2 => {
            // Mostly in time order; retries land up to ~14 s late, a few replays hours later.
            for (key, _) in &mut out {
                *key += if rng.chance(90) {
                    rng.range(0, 15 * SECOND)
                } else {
                    rng.range(0, 6 * HOUR)
                };
            }
            out.sort_by_key(|(k, _)| *k);
        }
        _ => {
            out.sort_by_key(|(k, _)| *k);
            out.reverse();
        }
    }
    let mut delivery: Vec<Delivery> = out.into_iter().map(|(_, d)| d).collect();
    delivery.extend(expire.map(Delivery::Expire));
    delivery
}

/// The same deliveries again in another order (the 12-hour rule stays last).
pub fn reshuffle(rng: &mut Rng, delivery: &[Delivery]) -> Vec<Delivery> {
    let mut out: Vec<Delivery> = delivery
        .iter()
        .filter(|d| !matches!(d, Delivery::Expire(_)))
        .cloned()
        .collect();
    rng.shuffle(&mut out);
    out.extend(
        delivery
            .iter()
            .filter(|d| matches!(d, Delivery::Expire(_)))
            .cloned(),
    );
    out
}
