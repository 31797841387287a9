//! One reconcile pass (README "Reconcile"): close sessions past 100ms's 12-hour maximum, then
//! ask 100ms about every room the database holds live and every room 100ms reports active, and
//! apply what 100ms says as snapshot facts, one `hms_apply_facts` call per room.
//!
//! The pass is an `async fn` over [`Http`], so it runs unchanged on `fetch` (src/wasm.rs) and
//! on a fake in tests. At most [`CONCURRENCY`] rooms are in flight; a 429 or a refused token
//! stops new calls at once, and so does the [`BUDGET_MS`] time budget; what was not reached is
//! reported and left to the next pass. A room's facts are applied only when every call for
//! that room succeeded, so a failure never writes half a picture.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use crate::config::Config;
use crate::config::{RestTarget, Settings};
use crate::document::{self, Nested};
use crate::error::Error;
use crate::http::{join_all, Http};
use crate::reconcile::facts::{self, Applied, Correction, DbError, DbRoom, Fact};
use crate::reconcile::hms_api::{self, ActivePeer, ActiveRoom, Api, ApiError, Session};
use crate::reply::{Log, Outcome as Answer, Reply};
use crate::roles::Roles;
use crate::time::Timestamp;
use crate::webhook::handler::{self, Incoming};
use serde::de::IgnoredAny;
use serde::Serialize;

/// Rooms worked on at once (each has at most three API calls and one RPC in sequence).
pub const CONCURRENCY: usize = 6;
/// No new call starts after this much of the pass: well inside the platform's 150 s request
/// idle timeout and wall clock (supabase.md §4), leaving room for calls in flight (10 s each).
pub const BUDGET_MS: i64 = 60_000;
/// `p_observed_at` is the earliest send time of a room's calls minus this margin for clock
/// skew between this function and 100ms (COORDINATION contract).
pub const SKEW_MARGIN_MS: i64 = 60_000;
/// Most pages of active sessions read (100 each).
pub const MAX_PAGES: usize = 50;

/// What a pass needs besides I/O.
pub struct Pass<'a> {
    /// PostgREST.
    pub rest: &'a RestTarget,
    /// 100ms's API with a management token; `None` when no keys are configured.
    pub api: Option<Api<'a>>,
    /// Role classification for peer facts.
    pub roles: &'a Roles,
}

/// An API call that failed, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiFailure {
    /// The room it was for (none for the list of active sessions).
    pub room_id: Option<String>,
    /// Which call: `list_sessions`, `retrieve_session`, `active_room`, `active_room_peers`.
    pub call: &'static str,
    /// [`ApiError::code`].
    pub error: &'static str,
    /// HTTP status, when one arrived.
    pub status: Option<u16>,
    /// For `malformed`: what was wrong (left out otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'static str>,
}

/// A database call that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbFailure {
    /// The room it was for.
    pub room_id: Option<String>,
    /// `close_expired_sessions`, `live_rooms` or `apply_facts`.
    pub call: &'static str,
    /// What was wrong.
    pub problem: &'static str,
    /// HTTP status, when one arrived.
    pub status: Option<u16>,
}

/// A room 100ms could tell nothing about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unverified {
    /// 100ms room id.
    pub room_id: String,
    /// Why.
    pub reason: &'static str,
}

/// The pass's answer (also the JSON body of `POST …/reconcile`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Summary {
    /// `completed`, `incomplete` (something was not reached or failed) or `failed`.
    pub status: &'static str,
    /// `on`, or `off` when no 100ms keys are configured (only the 12-hour rule ran).
    pub api: &'static str,
    /// Rooms whose facts were applied.
    pub rooms_checked: u64,
    /// Rooms whose counts changed, with before/after.
    pub rooms_corrected: Vec<Correction>,
    /// Sessions closed (12-hour rule and sessions 100ms reports inactive).
    pub sessions_closed: u64,
    /// Failed API calls.
    pub api_errors: Vec<ApiFailure>,
    /// Failed database calls.
    pub db_errors: Vec<DbFailure>,
    /// Rooms not reached (rate limit, refused token, time budget, too many rooms).
    pub not_reached: Vec<String>,
    /// Rooms 100ms had nothing to say about.
    pub unverified: Vec<Unverified>,
    /// Active rooms 100ms reports that the database does not have.
    pub rooms_unknown: u64,
    /// Why the pass stopped early: `rate_limited`, `unauthorized` or `time_budget`.
    pub stopped: Option<&'static str>,
    /// Duration of the pass.
    pub ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    RateLimited,
    Unauthorized,
    TimeBudget,
}

impl Stop {
    /// The stop an API error calls for: a 429 or a refused token ends the pass.
    fn after(error: ApiError) -> Option<Stop> {
        match error {
            ApiError::RateLimited => Some(Stop::RateLimited),
            ApiError::Unauthorized(_) => Some(Stop::Unauthorized),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Stop::RateLimited => "rate_limited",
            Stop::Unauthorized => "unauthorized",
            Stop::TimeBudget => "time_budget",
        }
    }
}

/// One room to check.
#[derive(Debug, Clone)]
struct Job {
    room_id: String,
    db: Option<DbRoom>,
    /// Active sessions of the room from the list, and when that page was requested.
    listed: Vec<Session>,
    listed_at_ms: i64,
}

enum RoomResult {
    Applied {
        correction: Correction,
        changed: bool,
        sessions_closed: u64,
    },
    Ignored,
    Unverified(&'static str),
    ApiFailed(ApiFailure),
    DbFailed(DbFailure),
    NotReached,
}

struct Shared<'p, H> {
    http: &'p H,
    pass: &'p Pass<'p>,
    api: Api<'p>,
    deadline_ms: i64,
    received_at: Timestamp,
    stop: Cell<Option<Stop>>,
    queue: RefCell<VecDeque<Job>>,
    results: RefCell<Vec<(String, RoomResult)>>,
}

/// The facts 100ms's answers give for one room (pure; see the contract for each kind).
///
/// `sessions`: session objects (listed or retrieved); `active`: the active-room answer
/// (`Some(None)` = 404, not active; `None` = not asked); `active_peers`: the active-room
/// peers, when asked.
pub fn build_facts(
    sessions: &[Session],
    active: Option<&Option<ActiveRoom>>,
    active_peers: &[ActivePeer],
    roles: &Roles,
) -> Vec<Fact> {
    let mut out = Vec::new();
    let mut seen_sessions: Vec<&str> = Vec::new();
    let current_role = |id: &str| active_peers.iter().find(|p| p.id == id).map(|p| &p.role);
    let class = |role: &str| roles.classify(role).as_str();
    for session in sessions {
        if seen_sessions.contains(&session.id.as_str()) {
            continue;
        }
        seen_sessions.push(&session.id);
        // 100ms reports it over: a close no earlier than anything it reports of the session.
        let closed_at = (!session.active).then(|| {
            session
                .peers
                .iter()
                .flat_map(|p| [Some(p.joined_at), p.left_at])
                .flatten()
                .chain([session.created_at])
                .chain(session.updated_at)
                .max()
                .unwrap_or(session.created_at)
                .to_rfc3339()
        });
        out.push(Fact::Session {
            session_id: session.id.clone(),
            started_at: session.created_at.to_rfc3339(),
            closed_at,
        });
        for peer in &session.peers {
            let role = current_role(&peer.id).unwrap_or(&peer.role);
            out.push(Fact::Peer {
                session_id: session.id.clone(),
                peer_id: peer.id.clone(),
                role: role.clone(),
                role_class: class(role),
                joined_at: peer.joined_at.to_rfc3339(),
                left_at: peer.left_at.map(Timestamp::to_rfc3339),
            });
        }
    }
    match active {
        Some(Some(room)) => {
            let object = sessions.iter().find(|s| s.id == room.session_id);
            if object.is_none() {
                if let Some(started) = room.session_created_at {
                    out.push(Fact::Session {
                        session_id: room.session_id.clone(),
                        started_at: started.to_rfc3339(),
                        closed_at: None,
                    });
                }
            }
            // Present peers the session object does not list yet: their join from /peers.
            for id in &room.peer_ids {
                if object.is_some_and(|s| s.peers.iter().any(|p| &p.id == id)) {
                    continue;
                }
                if let Some(peer) = active_peers.iter().find(|p| &p.id == id) {
                    if let Some(joined_at) = peer.joined_at {
                        out.push(Fact::Peer {
                            session_id: room.session_id.clone(),
                            peer_id: peer.id.clone(),
                            role: peer.role.clone(),
                            role_class: class(&peer.role),
                            joined_at: joined_at.to_rfc3339(),
                            left_at: None,
                        });
                    }
                }
            }
            out.push(Fact::PresentSet {
                session_id: room.session_id.clone(),
                peer_ids: room.peer_ids.clone(),
            });
        }
        Some(None) => {
            // The room is not active now: nobody is in the sessions the list still called active.
            for session in sessions.iter().filter(|s| s.active) {
                out.push(Fact::PresentSet {
                    session_id: session.id.clone(),
                    peer_ids: Vec::new(),
                });
            }
        }
        None => {}
    }
    out
}

fn api_failure(room_id: Option<&str>, call: &'static str, error: ApiError) -> ApiFailure {
    ApiFailure {
        room_id: room_id.map(str::to_owned),
        call,
        error: error.code(),
        status: error.status(),
        detail: match error {
            ApiError::Malformed(what) => Some(what),
            _ => None,
        },
    }
}

fn db_failure(room_id: Option<&str>, call: &'static str, error: DbError) -> DbFailure {
    DbFailure {
        room_id: room_id.map(str::to_owned),
        call,
        problem: error.problem,
        status: error.status,
    }
}

impl<H: Http> Shared<'_, H> {
    /// Whether a new call may start; records the time budget running out.
    fn may_call(&self) -> bool {
        if self.stop.get().is_some() {
            return false;
        }
        if self.http.now_ms() >= self.deadline_ms {
            self.stop.set(Some(Stop::TimeBudget));
            return false;
        }
        true
    }

    fn note(&self, error: ApiError) {
        if let Some(stop) = Stop::after(error) {
            self.stop.set(Some(stop));
        }
    }

    /// One API call for a room: the body of a 200, `None` for a 404, or the room's result when
    /// the call may not start (not reached) or failed.
    async fn call(
        &self,
        room_id: &str,
        call: &'static str,
        request: crate::http::Request,
        sent_at: &mut i64,
    ) -> Result<Option<Vec<u8>>, RoomResult> {
        if !self.may_call() {
            return Err(RoomResult::NotReached);
        }
        *sent_at = (*sent_at).min(self.http.now_ms());
        let outcome = self.http.send(request).await;
        match hms_api::body_of(&outcome) {
            Ok(body) => Ok(Some(body.to_vec())),
            Err(ApiError::NotFound) => Ok(None),
            Err(error) => {
                self.note(error);
                Err(RoomResult::ApiFailed(api_failure(
                    Some(room_id),
                    call,
                    error,
                )))
            }
        }
    }

    async fn room(&self, job: Job) -> RoomResult {
        match self.check(job).await {
            Ok(result) | Err(result) => result,
        }
    }

    /// The calls for one room, then its facts applied; `Err` ends the room early.
    async fn check(&self, job: Job) -> Result<RoomResult, RoomResult> {
        let room_id = job.room_id.as_str();
        let failed = |call, error| RoomResult::ApiFailed(api_failure(Some(room_id), call, error));
        let mut sent_at = if job.listed.is_empty() {
            i64::MAX
        } else {
            job.listed_at_ms
        };
        let mut sessions = job.listed;
        let mut active: Option<Option<ActiveRoom>> = None;
        if !sessions.is_empty() {
            let request = self.api.active_room(room_id);
            let body = self
                .call(room_id, "active_room", request, &mut sent_at)
                .await?;
            let room = body.map(|body| hms_api::parse_active_room(&body));
            active = Some(room.transpose().map_err(|e| failed("active_room", e))?);
        }
        let current = job
            .db
            .as_ref()
            .and_then(|db| db.current_session_id.as_deref());
        let active_id = active
            .as_ref()
            .and_then(|a| a.as_ref())
            .map(|a| a.session_id.as_str());
        let mut current_unknown = false;
        if let Some(current) = current.filter(|c| !c.is_empty()) {
            let known = sessions.iter().any(|s| s.id == current);
            if !known && active_id != Some(current) {
                let request = self.api.retrieve_session(current);
                let body = self
                    .call(room_id, "retrieve_session", request, &mut sent_at)
                    .await?;
                match body {
                    Some(body) => {
                        let session = hms_api::parse_session(&body)
                            .map_err(|e| failed("retrieve_session", e))?;
                        if session.room_id != room_id || session.id != current {
                            let wrong = ApiError::Malformed("session of another room or id");
                            return Err(failed("retrieve_session", wrong));
                        }
                        sessions.push(session);
                    }
                    None => current_unknown = true,
                }
            }
        }
        let mut active_peers = Vec::new();
        if let Some(Some(room)) = &active {
            let object = sessions.iter().find(|s| s.id == room.session_id);
            let missing = room
                .peer_ids
                .iter()
                .any(|id| !object.is_some_and(|s| s.peers.iter().any(|p| &p.id == id)));
            if missing {
                let request = self.api.active_room_peers(room_id);
                let body = self
                    .call(room_id, "active_room_peers", request, &mut sent_at)
                    .await?;
                // A 404: ended since; the present set says who was there, roles come next pass.
                if let Some(body) = body {
                    active_peers = hms_api::parse_active_peers(&body)
                        .map_err(|e| failed("active_room_peers", e))?;
                }
            }
        }
        let facts = build_facts(&sessions, active.as_ref(), &active_peers, self.pass.roles);
        if facts.is_empty() {
            return Ok(RoomResult::Unverified(match current {
                Some("") => "legacy session (no 100ms session id)",
                _ if current_unknown => "session unknown to 100ms",
                _ => "no session to check",
            }));
        }
        if sent_at == i64::MAX {
            sent_at = self.http.now_ms();
        }
        let observed_at = Timestamp::from_unix_ms(sent_at.saturating_sub(SKEW_MARGIN_MS));
        let request = facts::apply_facts(
            self.pass.rest,
            room_id,
            observed_at,
            self.received_at,
            &facts,
        );
        Ok(match facts::parse_applied(&self.http.send(request).await) {
            Ok(Applied::Applied {
                correction,
                changed,
                sessions_closed,
            }) => RoomResult::Applied {
                correction,
                changed,
                sessions_closed,
            },
            Ok(Applied::Ignored(_)) => RoomResult::Ignored,
            Err(e) => RoomResult::DbFailed(db_failure(Some(room_id), "apply_facts", e)),
        })
    }

    async fn worker(&self) {
        loop {
            let Some(job) = self.queue.borrow_mut().pop_front() else {
                return;
            };
            let room_id = job.room_id.clone();
            let result = self.room(job).await;
            self.results.borrow_mut().push((room_id, result));
        }
    }
}

/// Reads every page of active sessions (each session once).
async fn discover<H: Http>(
    http: &H,
    api: Api<'_>,
    deadline_ms: i64,
) -> Result<Vec<Session>, (ApiFailure, Option<Stop>)> {
    let mut sessions: Vec<Session> = Vec::new();
    let mut start: Option<String> = None;
    for _ in 0..MAX_PAGES {
        if http.now_ms() >= deadline_ms {
            return Err((
                api_failure(None, "list_sessions", ApiError::TimedOut),
                Some(Stop::TimeBudget),
            ));
        }
        let outcome = http
            .send(api.list_sessions(true, None, start.as_deref()))
            .await;
        let page = hms_api::body_of(&outcome).and_then(hms_api::parse_session_page);
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                return Err((api_failure(None, "list_sessions", e), Stop::after(e)));
            }
        };
        let full = page.sessions.len() >= hms_api::PAGE_LIMIT as usize;
        let before = sessions.len();
        // Whether `start` is inclusive is not documented: a repeated session counts once.
        // Kept sorted by id with binary-search inserts (no sort instance of its own: each
        // costs ~4 KB of Wasm).
        for session in page.sessions.into_iter().filter(|s| s.active) {
            if let Err(at) = sessions.binary_search_by(|s| s.id.cmp(&session.id)) {
                sessions.insert(at, session);
            }
        }
        let new = sessions.len() > before;
        match page.last {
            Some(last) if full && new && start.as_deref() != Some(last.as_str()) => {
                start = Some(last)
            }
            _ => return Ok(sessions),
        }
    }
    Ok(sessions)
}

/// Inserts `item` after any equal key, where a stable sort would place it: binary-search
/// inserts instead of a sort instance (each costs ~4 KB of Wasm).
fn insert_sorted<T>(sorted: &mut Vec<T>, item: T, key: impl Fn(&T) -> &str) {
    let at = sorted.partition_point(|other| key(other) <= key(&item));
    sorted.insert(at, item);
}

/// Runs one pass. `received_at_ms` is when the request arrived (the function's clock).
pub async fn run<H: Http>(http: &H, pass: &Pass<'_>, received_at_ms: i64) -> Summary {
    let started = received_at_ms;
    let deadline_ms = started.saturating_add(BUDGET_MS);
    let received_at = Timestamp::from_unix_ms(received_at_ms);
    let mut summary = Summary {
        status: "completed",
        api: if pass.api.is_some() { "on" } else { "off" },
        ..Summary::default()
    };
    let finish = |mut summary: Summary| {
        summary.ms = http.now_ms().saturating_sub(started).max(0);
        if summary.status == "completed"
            && (!summary.api_errors.is_empty()
                || !summary.db_errors.is_empty()
                || !summary.not_reached.is_empty())
        {
            summary.status = "incomplete";
        }
        summary
    };

    // 1. The 12-hour rule needs no API at all.
    let expired = http
        .send(facts::close_expired(pass.rest, received_at))
        .await;
    match facts::parse_expired(&expired) {
        Ok(expired) => {
            summary.sessions_closed += expired.sessions_closed;
            summary.rooms_corrected.extend(expired.corrections);
        }
        Err(e) => {
            summary.status = "failed";
            summary
                .db_errors
                .push(db_failure(None, "close_expired_sessions", e));
            return finish(summary);
        }
    }
    let Some(api) = pass.api else {
        return finish(summary);
    };

    // 2. What the database holds live.
    let mut db_rooms = match facts::parse_live_rooms(&http.send(facts::live_rooms(pass.rest)).await)
    {
        Ok(rooms) => rooms,
        Err(e) => {
            summary.db_errors.push(db_failure(None, "live_rooms", e));
            return finish(summary);
        }
    };
    if db_rooms.len() > facts::MAX_ROOMS {
        summary.not_reached.extend(
            db_rooms
                .split_off(facts::MAX_ROOMS)
                .into_iter()
                .map(|r| r.room_id),
        );
    }

    // 3. What 100ms reports active.
    let listed_at_ms = http.now_ms();
    let active = match discover(http, api, deadline_ms).await {
        Ok(active) => active,
        Err((failure, stop)) => {
            summary.api_errors.push(failure);
            summary.stopped = stop.map(Stop::as_str);
            summary
                .not_reached
                .extend(db_rooms.into_iter().map(|r| r.room_id));
            return finish(summary);
        }
    };

    // 4. One job per room: the database's live rooms, then rooms only 100ms knows are live.
    // Sorted by room id with binary-search inserts, like the sessions above (the rows come
    // ordered by the database's collation, so most inserts land at the end).
    let mut jobs: Vec<Job> = Vec::with_capacity(db_rooms.len());
    for db in db_rooms {
        let job = Job {
            room_id: db.room_id.clone(),
            db: Some(db),
            listed: Vec::new(),
            listed_at_ms,
        };
        insert_sorted(&mut jobs, job, |j| &j.room_id);
    }
    for session in active {
        match jobs.binary_search_by(|j| j.room_id.as_str().cmp(&session.room_id)) {
            Ok(at) => {
                if let Some(job) = jobs.get_mut(at) {
                    job.listed.push(session);
                }
            }
            Err(at) => jobs.insert(
                at,
                Job {
                    room_id: session.room_id.clone(),
                    db: None,
                    listed: vec![session],
                    listed_at_ms,
                },
            ),
        }
    }
    // Passes that run out of budget must not always leave the same rooms for later: each pass
    // starts at another point of the (sorted) list, scattered by the minute it runs in.
    if !jobs.is_empty() {
        let minute = u64::try_from(received_at_ms.div_euclid(60_000)).unwrap_or(0);
        let start = minute.wrapping_mul(0x9E37_79B9) % jobs.len() as u64;
        jobs.rotate_left(usize::try_from(start).unwrap_or(0));
    }
    let shared = Shared {
        http,
        pass,
        api,
        deadline_ms,
        received_at,
        stop: Cell::new(None),
        queue: RefCell::new(jobs.into()),
        results: RefCell::new(Vec::new()),
    };
    join_all((0..CONCURRENCY).map(|_| shared.worker()).collect()).await;

    summary.stopped = shared.stop.get().map(Stop::as_str);
    for (room_id, result) in shared.results.into_inner() {
        match result {
            RoomResult::Applied {
                correction,
                changed,
                sessions_closed,
            } => {
                summary.rooms_checked += 1;
                summary.sessions_closed += sessions_closed;
                if changed && correction.before != correction.after {
                    summary.rooms_corrected.push(correction);
                }
            }
            RoomResult::Ignored => summary.rooms_unknown += 1,
            RoomResult::Unverified(reason) => {
                summary.unverified.push(Unverified { room_id, reason })
            }
            RoomResult::ApiFailed(failure) => summary.api_errors.push(failure),
            RoomResult::DbFailed(failure) => summary.db_errors.push(failure),
            RoomResult::NotReached => summary.not_reached.push(room_id),
        }
    }
    let mut not_reached = Vec::with_capacity(summary.not_reached.len());
    for room_id in std::mem::take(&mut summary.not_reached) {
        insert_sorted(&mut not_reached, room_id, |r| r);
    }
    summary.not_reached = not_reached;
    finish(summary)
}

/// Whether a request path is the reconcile route (`…/reconcile`, e.g.
/// `/functions/v1/hms-webhook/reconcile` or, behind the platform, `/hms-webhook/reconcile`).
pub fn is_route(path: &str) -> bool {
    path.trim_end_matches('/').ends_with("/reconcile")
}

/// Admits a reconcile request exactly like a webhook: method and size first, then the secret
/// header or the signature over the raw body; the body, if any, must be a JSON object (its
/// members are ignored). Any refusal is the webhook's own reply for that fault.
pub fn admit<'c>(config: &'c Config, incoming: &Incoming<'_>) -> Result<&'c Settings, Reply> {
    let body_len = u64::try_from(incoming.body.len()).unwrap_or(u64::MAX);
    if let Some(reply) = handler::preflight(config, incoming.method, Some(body_len)) {
        return Err(reply);
    }
    let refuse =
        |err: &Error| Log::new(config.debug(), incoming.now_ms).reply(Answer::Refused(err));
    let settings = config.settings();
    settings
        .verifier
        .check(incoming.headers, incoming.body)
        .map_err(|err| refuse(&err))?;
    if !incoming.body.is_empty() {
        let text = std::str::from_utf8(incoming.body).map_err(|_| refuse(&Error::InvalidUtf8))?;
        match document::read::<Nested<IgnoredAny>>(text) {
            Ok(Nested::Object(_)) => {}
            Ok(Nested::Other) => return Err(refuse(&Error::NotAnObject)),
            Err(e) => return Err(refuse(&e.into())),
        }
    }
    Ok(settings)
}

/// The HTTP reply and its one log line (counts only: room ids and errors are in the answer).
/// 503 only when the database could not be used at all.
pub fn reply(summary: &Summary) -> Reply {
    let status: u16 = if summary.status == "failed" { 503 } else { 200 };
    let level = if summary.status == "completed" {
        "info"
    } else {
        "warn"
    };
    #[derive(Serialize)]
    struct LogLine {
        level: &'static str,
        msg: &'static str,
        status: u16,
        outcome: &'static str,
        api: &'static str,
        rooms_checked: u64,
        rooms_corrected: usize,
        sessions_closed: u64,
        api_errors: usize,
        db_errors: usize,
        not_reached: usize,
        stopped: Option<&'static str>,
        ms: i64,
    }
    let log = document::write(&LogLine {
        level,
        msg: "reconcile",
        status,
        outcome: summary.status,
        api: summary.api,
        rooms_checked: summary.rooms_checked,
        rooms_corrected: summary.rooms_corrected.len(),
        sessions_closed: summary.sessions_closed,
        api_errors: summary.api_errors.len(),
        db_errors: summary.db_errors.len(),
        not_reached: summary.not_reached.len(),
        stopped: summary.stopped,
        ms: summary.ms,
    });
    Reply {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: document::write(summary),
        log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Method, Outcome, Request};
    use serde_json::{json, Value};
    use std::collections::BTreeSet;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// Runs a future whose I/O is a fake that is always ready.
    fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
                return value;
            }
        }
    }

    type Responder = Box<dyn Fn(&Request) -> Outcome>;

    /// A scripted world: answers by URL, records every request, a clock that ticks per call.
    struct Fake {
        respond: Responder,
        sent: RefCell<Vec<Request>>,
        clock: Cell<i64>,
        tick_ms: i64,
    }

    impl Http for Fake {
        fn send(&self, request: Request) -> impl Future<Output = Outcome> {
            let outcome = (self.respond)(&request);
            self.sent.borrow_mut().push(request);
            self.clock.set(self.clock.get() + self.tick_ms);
            std::future::ready(outcome)
        }
        fn now_ms(&self) -> i64 {
            self.clock.get()
        }
    }

    const NOW_MS: i64 = 1_796_119_200_000; // 2026-12-01T10:00:00Z

    fn ok(value: Value) -> Outcome {
        Outcome::Response {
            status: 200,
            body: value.to_string().into_bytes(),
        }
    }

    fn status(code: u16) -> Outcome {
        Outcome::Response {
            status: code,
            body: br#"{"message":"rate limit exceeded, retry after 45 seconds"}"#.to_vec(),
        }
    }

    fn room_json(id: &str, live: bool, listeners: u64) -> Value {
        json!({"hms_room_id":id,"is_live":live,"listener_count":listeners,"speaker_count":0,
               "trending_score":0,"last_active_at":null})
    }

    fn target() -> RestTarget {
        RestTarget {
            rpc_url: "http://db/rest/v1/rpc/hms_apply_event".into(),
            base_url: "http://db".into(),
            api_key: "sb_secret_k".into(),
        }
    }

    /// Answers `hms_apply_facts` as if every room went from `listeners` 2 to what the facts'
    /// present sets say.
    fn database(request: &Request) -> Option<Outcome> {
        let url = request.url.as_str();
        if url.ends_with("/rpc/hms_close_expired_sessions") {
            return Some(ok(json!({"sessions_closed":1,"rooms":[]})));
        }
        if url.contains("/rest/v1/rooms?") {
            return Some(ok(json!([
                {"hms_room_id":"r1","current_session_id":"s1","is_live":true,"listener_count":2,"speaker_count":0},
                {"hms_room_id":"r3","current_session_id":"","is_live":true,"listener_count":1,"speaker_count":0}
            ])));
        }
        if url.ends_with("/rpc/hms_apply_facts") {
            let body: Value = serde_json::from_str(request.body.as_deref()?).ok()?;
            let room = body["p_room_id"].as_str()?.to_owned();
            if room == "r9" {
                return Some(ok(json!({"status":"ignored","reason":"unknown room"})));
            }
            let present = body["p_facts"]
                .as_array()?
                .iter()
                .filter(|f| f["kind"] == "present_set")
                .map(|f| f["peer_ids"].as_array().map_or(0, Vec::len) as u64)
                .sum::<u64>();
            let live = present > 0;
            return Some(ok(
                json!({"status":"applied","room":room_json(&room, live, present),
                "before":{"is_live":true,"listener_count":2,"speaker_count":0},
                "changed":true,"sessions_closed":u64::from(!live)}),
            ));
        }
        None
    }

    fn session(id: &str, room: &str, active: bool, peers: Value) -> Value {
        json!({"id":id,"room_id":room,"customer_id":"c","active":active,"peers":peers,
               "created_at":"2026-12-01T09:00:00Z","updated_at":"2026-12-01T09:30:00Z"})
    }

    /// 100ms: r2 is active (session s2: p1 present, p2 left, p3 present but not in the session
    /// object yet); s1 of r1 is over; r9 is active but not ours.
    fn hms(request: &Request) -> Outcome {
        let path = request.url.strip_prefix("https://api.test").unwrap_or("");
        match path {
            p if p.starts_with("/v2/sessions?active=true") => ok(json!({"limit":100,"data":[
                session("s2","r2",true,json!({
                    "p1":{"id":"p1","session_id":"s2","name":"a","role":"host","user_id":"u1","joined_at":"2026-12-01T09:01:00Z"},
                    "p2":{"id":"p2","session_id":"s2","name":"b","role":"listener","user_id":"u2","joined_at":"2026-12-01T09:02:00Z","left_at":"2026-12-01T09:05:00Z"}})),
                session("s9","r9",true,json!({}))],"last":"s9"})),
            "/v2/sessions/s1" => ok(session(
                "s1",
                "r1",
                false,
                json!({
                "p7":{"id":"p7","session_id":"s1","name":"x","role":"listener","user_id":"u7","joined_at":"2026-12-01T08:01:00Z"}}),
            )),
            "/v2/active-rooms/r2" => ok(json!({"id":"r2","name":"n","customer_id":"c",
                "session":{"id":"s2","created_at":"2026-12-01T09:00:00Z","peers":["p1","p3"]}})),
            "/v2/active-rooms/r2/peers" => ok(json!({"peers":{
                "p1":{"id":"p1","name":"a","user_id":"u1","metadata":"","role":"listener","joined_at":"2026-12-01T09:01:00Z"},
                "p3":{"id":"p3","name":"c","user_id":"u3","metadata":"","role":"speaker","joined_at":"2026-12-01T09:40:00Z"}}})),
            "/v2/active-rooms/r9" => ok(json!({"id":"r9","session":{"id":"s9","peers":[]}})),
            _ => status(404),
        }
    }

    fn fake(respond: impl Fn(&Request) -> Outcome + 'static) -> Fake {
        Fake {
            respond: Box::new(respond),
            sent: RefCell::new(Vec::new()),
            clock: Cell::new(NOW_MS),
            tick_ms: 5,
        }
    }

    fn world() -> Fake {
        fake(|r| database(r).unwrap_or_else(|| hms(r)))
    }

    fn run_pass(http: &Fake, with_api: bool) -> Summary {
        let rest = target();
        let roles = Roles::default();
        let pass = Pass {
            rest: &rest,
            api: with_api.then_some(Api {
                base_url: "https://api.test",
                token: "management-token",
            }),
            roles: &roles,
        };
        block_on(run(http, &pass, NOW_MS))
    }

    fn facts_for(http: &Fake, room: &str) -> Option<Value> {
        http.sent
            .borrow()
            .iter()
            .filter(|r| r.url.ends_with("/rpc/hms_apply_facts"))
            .map(|r| serde_json::from_str::<Value>(r.body.as_deref().unwrap()).unwrap())
            .find(|b| b["p_room_id"] == room)
    }

    #[test]
    fn without_keys_only_the_twelve_hour_rule_runs() {
        let http = world();
        let summary = run_pass(&http, false);
        assert_eq!(summary.api, "off");
        assert_eq!(summary.status, "completed");
        assert_eq!(summary.sessions_closed, 1);
        let sent = http.sent.borrow();
        assert_eq!(sent.len(), 1);
        let body: Value = serde_json::from_str(sent[0].body.as_deref().unwrap()).unwrap();
        assert_eq!(body, json!({"p_now":"2026-12-01T10:00:00.000000Z"}));
    }

    #[test]
    fn a_pass_turns_every_answer_into_facts_one_rpc_per_room() {
        let http = world();
        let summary = run_pass(&http, true);
        assert_eq!(summary.status, "completed", "{summary:?}");
        assert_eq!(summary.rooms_checked, 2, "r1 and r2");
        assert_eq!(summary.rooms_unknown, 1, "r9 is not ours");
        assert_eq!(
            summary.unverified,
            vec![Unverified {
                room_id: "r3".into(),
                reason: "legacy session (no 100ms session id)"
            }]
        );
        // r1: 100ms reports s1 over: a close no earlier than what it reports of s1.
        let r1 = facts_for(&http, "r1").unwrap();
        assert_eq!(
            r1["p_facts"][0],
            json!({"kind":"session","session_id":"s1","started_at":"2026-12-01T09:00:00.000000Z",
                   "closed_at":"2026-12-01T09:30:00.000000Z"})
        );
        assert_eq!(r1["p_facts"][1]["peer_id"], "p7");
        // r2: the listed session, its peers, p3 from /peers, and who is present now.
        let r2 = facts_for(&http, "r2").unwrap();
        let facts = r2["p_facts"].as_array().unwrap();
        assert_eq!(
            facts[0],
            json!({"kind":"session","session_id":"s2","started_at":"2026-12-01T09:00:00.000000Z"})
        );
        assert_eq!(
            facts[1],
            json!({"kind":"peer","session_id":"s2","peer_id":"p1","role":"listener",
                   "role_class":"listener","joined_at":"2026-12-01T09:01:00.000000Z"}),
            "the role /peers reports now wins over the session object's"
        );
        assert_eq!(facts[2]["left_at"], "2026-12-01T09:05:00.000000Z");
        assert_eq!(facts[3]["peer_id"], "p3");
        assert_eq!(facts[3]["role_class"], "speaker");
        assert_eq!(
            facts[4],
            json!({"kind":"present_set","session_id":"s2","peer_ids":["p1","p3"]})
        );
        // Observed: the list was requested at NOW+10 ms (two calls before it), minus 60 s.
        assert_eq!(r2["p_observed_at"], "2026-12-01T09:59:00.010000Z");
        assert_eq!(r2["p_received_at"], "2026-12-01T10:00:00.000000Z");
        // Corrections: r1 went to 0 and not live; r2 stays 2 listeners (no count change).
        assert_eq!(summary.rooms_corrected.len(), 1);
        assert_eq!(summary.rooms_corrected[0].room_id, "r1");
        assert_eq!(summary.sessions_closed, 1 + 1);
        // Every API call carried the token; no answer or log shows it.
        for request in http.sent.borrow().iter() {
            if request.url.starts_with("https://api.test") {
                assert!(request
                    .headers
                    .contains(&("authorization".into(), "Bearer management-token".into())));
                assert_eq!(request.method, Method::Get);
            }
        }
        let reply = reply(&summary);
        assert_eq!(reply.status, 200);
        for text in [&reply.body, &reply.log] {
            assert!(!text.contains("management-token") && !text.contains("sb_secret"));
        }
    }

    #[test]
    fn rate_limit_stops_the_pass_and_reports_what_was_not_reached() {
        let http = fake(|r| {
            if r.url.ends_with("/v2/active-rooms/r2") {
                return status(429);
            }
            database(r).unwrap_or_else(|| hms(r))
        });
        let summary = run_pass(&http, true);
        assert_eq!(summary.stopped, Some("rate_limited"));
        assert_eq!(summary.status, "incomplete");
        assert_eq!(summary.api_errors[0].error, "rate_limited");
        assert_eq!(summary.api_errors[0].status, Some(429));
        assert!(
            facts_for(&http, "r2").is_none(),
            "nothing half-known is written"
        );
        // Rooms queued after the 429 were not reached; the ones in flight finished.
        let done = summary.rooms_checked as usize
            + summary.not_reached.len()
            + summary.unverified.len()
            + summary.rooms_unknown as usize
            + summary.api_errors.len();
        assert_eq!(done, 4, "{summary:?}");
        assert!(!http
            .sent
            .borrow()
            .iter()
            .skip_while(|r| !r.url.ends_with("/v2/active-rooms/r2"))
            .skip(1)
            .any(|r| r.url.starts_with("https://api.test")));
    }

    #[test]
    fn failures_of_one_room_leave_the_others_alone() {
        for bad in [
            status(500),
            Outcome::TimedOut,
            ok(json!({"session":"no"})),
            Outcome::Response {
                status: 200,
                body: b"{not json".to_vec(),
            },
        ] {
            let http = fake(move |r| {
                if r.url.ends_with("/v2/active-rooms/r2") {
                    return bad.clone();
                }
                database(r).unwrap_or_else(|| hms(r))
            });
            let summary = run_pass(&http, true);
            assert_eq!(summary.api_errors.len(), 1);
            assert_eq!(summary.api_errors[0].room_id.as_deref(), Some("r2"));
            assert_eq!(summary.stopped, None);
            assert!(facts_for(&http, "r2").is_none());
            assert!(facts_for(&http, "r1").is_some());
        }
    }

    #[test]
    fn a_refused_token_or_a_failed_list_reaches_no_room() {
        for (answer, stopped) in [(status(401), Some("unauthorized")), (status(503), None)] {
            let http = fake(move |r| {
                if r.url.contains("/v2/sessions?") {
                    return answer.clone();
                }
                database(r).unwrap_or_else(|| hms(r))
            });
            let summary = run_pass(&http, true);
            assert_eq!(summary.stopped, stopped);
            assert_eq!(summary.not_reached, vec!["r1", "r3"]);
            assert_eq!(summary.api_errors[0].call, "list_sessions");
            assert!(facts_for(&http, "r1").is_none());
        }
    }

    #[test]
    fn the_time_budget_stops_new_calls() {
        let mut http = world();
        http.tick_ms = BUDGET_MS / 3;
        let summary = run_pass(&http, true);
        assert_eq!(summary.stopped, Some("time_budget"));
        assert!(!summary.not_reached.is_empty());
    }

    #[test]
    fn passes_cut_short_start_at_different_rooms() {
        let first_applied = |at_ms: i64| {
            let http = world();
            http.clock.set(at_ms);
            // Enough time for the reads and one room's calls, then the budget is gone.
            let http = Fake {
                tick_ms: 14_000,
                ..http
            };
            let rest = target();
            let roles = Roles::default();
            let pass = Pass {
                rest: &rest,
                api: Some(Api {
                    base_url: "https://api.test",
                    token: "t",
                }),
                roles: &roles,
            };
            let summary = block_on(run(&http, &pass, at_ms));
            assert_eq!(summary.stopped, Some("time_budget"));
            let reached: Vec<String> = http
                .sent
                .borrow()
                .iter()
                .filter_map(|r| r.url.strip_prefix("https://api.test/v2/"))
                .filter(|p| !p.starts_with("sessions?"))
                .map(str::to_owned)
                .collect();
            reached
        };
        let starts: BTreeSet<Vec<String>> =
            (0..8).map(|m| first_applied(NOW_MS + m * 60_000)).collect();
        assert!(
            starts.len() > 1,
            "every pass began with the same room: {starts:?}"
        );
    }

    #[test]
    fn a_database_that_is_down_fails_the_pass_with_503() {
        let http = fake(|_| Outcome::Unreachable);
        let summary = run_pass(&http, true);
        assert_eq!(summary.status, "failed");
        assert_eq!(reply(&summary).status, 503);
        assert_eq!(
            http.sent.borrow().len(),
            1,
            "no API call without a database"
        );
    }

    #[test]
    fn pages_follow_the_cursor_whether_or_not_it_is_inclusive() {
        for inclusive in [false, true] {
            let http = fake(move |r| {
                if let Some(o) = database(r) {
                    return o;
                }
                let Some(query) = r.url.strip_prefix("https://api.test/v2/sessions?") else {
                    return status(404);
                };
                let start: usize = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("start=s"))
                    .map_or(0, |n| n.parse::<usize>().unwrap() + usize::from(!inclusive));
                let data: Vec<Value> = (start..(start + 100).min(250))
                    .map(|i| session(&format!("s{i}"), &format!("x{i}"), true, json!({})))
                    .collect();
                let last = format!("s{}", (start + 99).min(249));
                ok(json!({"limit":100,"data":data,"last":last}))
            });
            let summary = run_pass(&http, true);
            assert_eq!(summary.rooms_unknown, 0);
            let listed: BTreeSet<String> = http
                .sent
                .borrow()
                .iter()
                .filter_map(|r| r.url.strip_prefix("https://api.test/v2/active-rooms/"))
                .map(str::to_owned)
                .collect();
            assert_eq!(listed.len(), 250, "inclusive={inclusive}");
        }
    }

    #[test]
    fn the_route_is_admitted_exactly_like_a_webhook() {
        let secret = "hms_test_secret_0123456789";
        let config = Config::from_env([
            ("HMS_WEBHOOK_SECRET", secret),
            ("SUPABASE_URL", "http://db"),
            ("SUPABASE_SECRET_KEYS", r#"{"default":"sb_secret_k"}"#),
        ])
        .unwrap();
        let admit_with = |method: &str, headers: &[(String, String)], body: &[u8]| {
            admit(
                &config,
                &Incoming {
                    method,
                    headers,
                    body,
                    now_ms: NOW_MS,
                },
            )
        };
        let signature = |body: &[u8]| {
            vec![(
                "x-100ms-signature".to_string(),
                crate::signature::sign_hex(secret, body),
            )]
        };
        let header = vec![("x-webhook-secret".to_string(), secret.to_string())];
        assert!(admit_with("POST", &header, b"").is_ok());
        assert!(admit_with("POST", &signature(b"{}"), b"{}").is_ok());
        let forged = admit_with("POST", &[], b"{}").unwrap_err();
        let webhook = handler::begin(
            &config,
            &Incoming {
                method: "POST",
                headers: &[],
                body: b"{}",
                now_ms: NOW_MS,
            },
        );
        assert_eq!(forged.status, 401);
        assert_eq!(handler::Step::Respond(forged.clone()), webhook);
        assert_eq!(
            admit_with("POST", &signature(b"{}"), b"{} ")
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(admit_with("GET", &header, b"").unwrap_err().status, 405);
        assert_eq!(admit_with("POST", &header, b"[1]").unwrap_err().status, 400);
        assert_eq!(admit_with("POST", &header, b"{").unwrap_err().status, 400);
        assert!(is_route("/hms-webhook/reconcile"));
        assert!(is_route("/functions/v1/hms-webhook/reconcile/"));
        assert!(!is_route("/hms-webhook"));
        assert!(!is_route("/hms-webhook/reconciled"));
    }

    #[test]
    fn a_room_that_ended_meanwhile_gets_an_empty_present_set() {
        let roles = Roles::default();
        let listed: Session =
            hms_api::parse_session(session("s2", "r2", true, json!({})).to_string().as_bytes())
                .unwrap();
        let facts = build_facts(&[listed], Some(&None), &[], &roles);
        assert_eq!(
            facts.last(),
            Some(&Fact::PresentSet {
                session_id: "s2".into(),
                peer_ids: vec![]
            })
        );
        assert!(build_facts(&[], None, &[], &roles).is_empty());
        let _ = Method::Get;
    }
}
