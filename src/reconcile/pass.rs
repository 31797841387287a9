//! One reconcile pass (docs/reconcile.md): close sessions past 100ms's 12-hour maximum, then
//! ask 100ms about every room the database holds live and every room 100ms reports active, and
//! apply what 100ms says as snapshot facts, one `hms_apply_facts` call per room.
//!
//! One pass at a time: the pass first takes the database's turn (`hms_reconcile_begin`), which
//! refuses while another pass runs or when the last one started less than the configured
//! interval ago (429 with `Retry-After`, before any 100ms call), and gives it back at the end
//! with the cursor: the last live room it reached. The next pass reads the live rooms after the
//! cursor first and wraps around, so every live room is reached within a bounded number of
//! passes; the answer names the rooms of its window it did not reach and counts the live rooms
//! outside its window (`not_read`).
//!
//! 100ms's answers are facts only within the webhooks' time bounds, measured against the
//! pass's clock ([`check_times`]); a room whose answers break them is reported unverified and
//! nothing is written for it. A room or session id that is a URL dot segment is never put in a
//! path (fetch would resolve it to another resource).
//!
//! The pass is an `async fn` over [`Http`], so it runs unchanged on `fetch` (src/wasm.rs) and
//! on a fake in tests. At most [`CONCURRENCY`] rooms are in flight; a 429 or a refused token
//! stops new calls at once, and so does the [`BUDGET_MS`] time budget; what was not reached is
//! reported and left to the next pass. A room's facts are applied only when every call for
//! that room succeeded, so a failure never writes half a picture.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};

use crate::config::Config;
use crate::config::{RestTarget, Settings};
use crate::document::{self, Field, Nested};
use crate::error::Error;
use crate::http::Http;
use crate::reconcile::facts::{self, Applied, Correction, DbError, DbRoom, Fact, RoomRange, Turn};
use crate::reconcile::hms_api::{self, ActivePeer, ActiveRoom, Api, ApiError, Session};
use crate::reply::{Log, Outcome as Answer, Reply};
use crate::roles::Roles;
use crate::signature::AuthMethod;
use crate::time::Timestamp;
use crate::webhook::event::{MAX_DATA_TIME_AFTER_US, MAX_SESSION_US};
use crate::webhook::handler::{self, Incoming};
use serde::Serialize;

/// Rooms worked on at once (each has at most three API calls and one RPC in sequence).
pub const CONCURRENCY: usize = 6;
/// No new call starts after this much of the pass: well inside the platform's 150 s request
/// idle timeout and wall clock (<https://supabase.com/docs/guides/functions/limits>), leaving
/// room for calls in flight (10 s each).
pub const BUDGET_MS: i64 = 60_000;
/// `p_observed_at` is the earliest send time of a room's calls minus this margin for clock
/// skew between this function and 100ms (docs/design.md §6.1, `p_observed_at`).
pub const SKEW_MARGIN_MS: i64 = 60_000;
/// Most pages of active sessions read (100 each).
pub const MAX_PAGES: usize = 50;
/// How long a pass holds the turn at most: the platform's 150 s wall clock
/// (<https://supabase.com/docs/guides/functions/limits>),
/// past which no pass is still running. A pass that dies early frees the turn by then.
pub const LEASE_MS: i64 = 150_000;

/// What a pass needs besides I/O.
pub struct Pass<'a> {
    /// PostgREST.
    pub rest: &'a RestTarget,
    /// 100ms's API with a management token; `None` when no keys are configured.
    pub api: Option<Api<'a>>,
    /// Role classification for peer facts.
    pub roles: &'a Roles,
    /// Least time between the starts of two passes (`HMS_RECONCILE_INTERVAL_SECONDS`).
    pub min_interval_ms: i64,
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
    /// For `malformed`: which field was wrong and what was expected there, never its value
    /// (left out otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'static, str>>,
}

/// A database call that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DbFailure {
    /// The room it was for.
    pub room_id: Option<String>,
    /// `reconcile_begin`, `close_expired_sessions`, `live_rooms`, `apply_facts` or
    /// `reconcile_end`.
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
    /// `completed`, `incomplete` (something was not reached or failed), `failed`, or, with no
    /// pass run, `running` (another pass holds the turn) or `too_soon` (the interval).
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
    /// Rooms of this pass's window not reached (rate limit, refused token, time budget).
    pub not_reached: Vec<String>,
    /// Live rooms outside this pass's window (counted when the pass began, not named): the
    /// next passes read them first, from `cursor` on.
    pub not_read: u64,
    /// The last live room (in `hms_room_id` order) this pass reached; the next pass starts
    /// after it. `None`: at the first room.
    pub cursor: Option<String>,
    /// Rooms 100ms had nothing to say about.
    pub unverified: Vec<Unverified>,
    /// Active rooms 100ms reports that the database does not have.
    pub rooms_unknown: u64,
    /// Why the pass stopped early: `rate_limited`, `unauthorized` or `time_budget`.
    pub stopped: Option<&'static str>,
    /// Duration of the pass.
    pub ms: i64,
    /// With `running` or `too_soon`: seconds until a pass may start (also `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    RateLimited,
    Unauthorized,
    TimeBudget,
}

impl Stop {
    /// The stop an API error calls for: a 429 or a refused token ends the pass.
    fn after(error: &ApiError) -> Option<Stop> {
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
    /// Its place in the pass's window of live rooms (`None`: only 100ms lists it).
    window_at: Option<usize>,
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
    results: RefCell<Vec<(String, Option<usize>, RoomResult)>>,
}

/// Why a room is unverified when its id cannot be a path segment (`hms_api::is_dot_segment`).
const DOT_ROOM: &str = "room id is a URL dot segment";
/// The same for the room's current session id.
const DOT_SESSION: &str = "session id is a URL dot segment";

/// Holds 100ms's answers for one room to the webhooks' time bounds (design §11), measured
/// against the pass's clock `now`: no time more than [`MAX_DATA_TIME_AFTER_US`] ahead of it, no
/// session still active more than [`MAX_SESSION_US`] after it started, and every peer's times
/// inside its session (from the session's start to its end when it ended, and a leave not
/// before its join), each with the same slack: 100ms's servers stamp these times on different
/// clocks. `Err` names the first broken bound: the room is then unverified and nothing is
/// written for it, so no single answer can pin a room.
pub fn check_times(
    sessions: &[Session],
    active: Option<&Option<ActiveRoom>>,
    active_peers: &[ActivePeer],
    now: Timestamp,
) -> Result<(), &'static str> {
    let slack = MAX_DATA_TIME_AFTER_US;
    let ahead = |t: Timestamp| t.micros() > now.micros().saturating_add(slack);
    let before = |t: Timestamp, start: Timestamp| t.micros() < start.micros().saturating_sub(slack);
    let after = |t: Timestamp, end: Timestamp| t.micros() > end.micros().saturating_add(slack);
    let expired = |start: Timestamp| {
        start
            .micros()
            .saturating_add(MAX_SESSION_US)
            .saturating_add(slack)
            < now.micros()
    };
    for session in sessions {
        if ahead(session.created_at) {
            return Err("session starts in the future");
        }
        if session.active && expired(session.created_at) {
            return Err("session active past 12 hours");
        }
        if session.updated_at.is_some_and(ahead) {
            return Err("session updated in the future");
        }
        let end = session.updated_at.filter(|_| !session.active);
        for peer in &session.peers {
            let times = [Some(peer.joined_at), peer.left_at];
            if times.iter().flatten().any(|&t| ahead(t)) {
                return Err("peer time in the future");
            }
            if before(peer.joined_at, session.created_at)
                || peer
                    .left_at
                    .is_some_and(|left| before(left, peer.joined_at))
                || end.is_some_and(|end| times.iter().flatten().any(|&t| after(t, end)))
            {
                return Err("peer time outside its session");
            }
        }
    }
    if let Some(Some(room)) = active {
        let start = room.session_created_at.or_else(|| {
            sessions
                .iter()
                .find(|s| s.id == room.session_id)
                .map(|s| s.created_at)
        });
        if start.is_some_and(ahead) {
            return Err("session starts in the future");
        }
        if start.is_some_and(expired) {
            return Err("session active past 12 hours");
        }
        for joined in active_peers.iter().filter_map(|p| p.joined_at) {
            if ahead(joined) {
                return Err("peer time in the future");
            }
            if start.is_some_and(|start| before(joined, start)) {
                return Err("peer time outside its session");
            }
        }
    }
    Ok(())
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
    let current = |id: &str| active_peers.iter().find(|p| p.id == id);
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
            // What /peers reports now wins: the role and, with it, the labels.
            let now = current(&peer.id);
            let role = now.map_or(&peer.role, |p| &p.role);
            let pick = |now: Option<&String>, then: &Option<String>| now.or(then.as_ref()).cloned();
            out.push(Fact::Peer {
                session_id: session.id.clone(),
                peer_id: peer.id.clone(),
                role: role.clone(),
                role_class: class(role),
                joined_at: peer.joined_at.to_rfc3339(),
                left_at: peer.left_at.map(Timestamp::to_rfc3339),
                user_id: pick(now.and_then(|p| p.user_id.as_ref()), &peer.user_id),
                user_name: pick(now.and_then(|p| p.name.as_ref()), &peer.name),
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
                            user_id: peer.user_id.clone(),
                            user_name: peer.name.clone(),
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

    fn note(&self, error: &ApiError) {
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
                self.note(&error);
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
        if hms_api::is_dot_segment(room_id) {
            return Ok(RoomResult::Unverified(DOT_ROOM));
        }
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
            if hms_api::is_dot_segment(current) {
                return Ok(RoomResult::Unverified(DOT_SESSION));
            }
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
                            let wrong = ApiError::Malformed("session of another room or id".into());
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
        let now = Timestamp::from_unix_ms(self.http.now_ms());
        if let Err(reason) = check_times(&sessions, active.as_ref(), &active_peers, now) {
            return Ok(RoomResult::Unverified(reason));
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
            let window_at = job.window_at;
            let result = self.room(job).await;
            self.results.borrow_mut().push((room_id, window_at, result));
        }
    }
}

/// Reads every page of active sessions: each session once, by id.
async fn discover<H: Http>(
    http: &H,
    api: Api<'_>,
    deadline_ms: i64,
) -> Result<Vec<Session>, (ApiFailure, Option<Stop>)> {
    let mut sessions: BTreeMap<String, Session> = BTreeMap::new();
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
                let stop = Stop::after(&e);
                return Err((api_failure(None, "list_sessions", e), stop));
            }
        };
        let full = page.sessions.len() >= hms_api::PAGE_LIMIT as usize;
        let before = sessions.len();
        // Whether `start` is inclusive is not documented: a repeated session counts once, as
        // first listed.
        for session in page.sessions.into_iter().filter(|s| s.active) {
            sessions.entry(session.id.clone()).or_insert(session);
        }
        let new = sessions.len() > before;
        match page.last {
            Some(last) if full && new && start.as_deref() != Some(last.as_str()) => {
                start = Some(last)
            }
            _ => break,
        }
    }
    Ok(sessions.into_values().collect())
}

/// The answer's duration, and `incomplete` when anything failed or was not reached.
fn finish<H: Http>(http: &H, started_ms: i64, mut summary: Summary) -> Summary {
    summary.ms = http.now_ms().saturating_sub(started_ms).max(0);
    if summary.status == "completed"
        && (!summary.api_errors.is_empty()
            || !summary.db_errors.is_empty()
            || !summary.not_reached.is_empty())
    {
        summary.status = "incomplete";
    }
    summary
}

/// Runs one pass, if the turn is free. `received_at_ms` is when the request arrived (the
/// function's clock).
pub async fn run<H: Http>(http: &H, pass: &Pass<'_>, received_at_ms: i64) -> Summary {
    let mut summary = Summary {
        status: "completed",
        api: if pass.api.is_some() { "on" } else { "off" },
        ..Summary::default()
    };
    // 0. The turn: refused before anything else, so a refusal costs no 100ms call.
    let begin = facts::reconcile_begin(pass.rest, pass.min_interval_ms, LEASE_MS);
    let (pass_id, cursor, live_rooms) = match facts::parse_turn(&http.send(begin).await) {
        Ok(Turn::Granted {
            pass_id,
            cursor,
            live_rooms,
        }) => (pass_id, cursor, live_rooms),
        Ok(Turn::Refused {
            reason,
            retry_after_ms,
        }) => {
            summary.status = reason;
            summary.retry_after_s = Some(retry_after_ms.div_ceil(1000).max(1));
            return finish(http, received_at_ms, summary);
        }
        Err(e) => {
            summary.status = "failed";
            summary
                .db_errors
                .push(db_failure(None, "reconcile_begin", e));
            return finish(http, received_at_ms, summary);
        }
    };
    let next = checks(http, pass, received_at_ms, &mut summary, cursor, live_rooms).await;
    let end = facts::reconcile_end(pass.rest, &pass_id, next.as_deref());
    match facts::parse_end(&http.send(end).await) {
        Ok(true) => {}
        // Past its lease: the next pass starts from the cursor it was given, not this one.
        Ok(false) => summary.db_errors.push(DbFailure {
            room_id: None,
            call: "reconcile_end",
            problem: "the turn had passed to another pass",
            status: Some(200),
        }),
        Err(e) => summary.db_errors.push(db_failure(None, "reconcile_end", e)),
    }
    summary.cursor = next;
    finish(http, received_at_ms, summary)
}

/// The live rooms of this pass's window: up to [`facts::MAX_ROOMS`] after the cursor, then,
/// when fewer, from the first room on (wrapping around).
async fn window<H: Http>(
    http: &H,
    pass: &Pass<'_>,
    cursor: Option<&str>,
) -> Result<Vec<DbRoom>, DbError> {
    let range = cursor.map_or(RoomRange::All, RoomRange::After);
    let read = facts::live_rooms(pass.rest, range, facts::MAX_ROOMS);
    let mut rooms = facts::parse_live_rooms(&http.send(read).await)?;
    if let Some(cursor) = cursor {
        let room_left = facts::MAX_ROOMS.saturating_sub(rooms.len());
        if room_left > 0 {
            let read = facts::live_rooms(pass.rest, RoomRange::Through(cursor), room_left);
            rooms.extend(facts::parse_live_rooms(&http.send(read).await)?);
        }
    }
    Ok(rooms)
}

/// The pass proper, once it holds the turn; returns the cursor for the next pass.
async fn checks<H: Http>(
    http: &H,
    pass: &Pass<'_>,
    received_at_ms: i64,
    summary: &mut Summary,
    cursor: Option<String>,
    live_rooms: u64,
) -> Option<String> {
    let deadline_ms = received_at_ms.saturating_add(BUDGET_MS);
    let received_at = Timestamp::from_unix_ms(received_at_ms);

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
            return cursor;
        }
    }
    let Some(api) = pass.api else {
        return cursor;
    };

    // 2. What the database holds live: this pass's window.
    let db_rooms = match window(http, pass, cursor.as_deref()).await {
        Ok(rooms) => rooms,
        Err(e) => {
            summary.db_errors.push(db_failure(None, "live_rooms", e));
            return cursor;
        }
    };
    summary.not_read = live_rooms.saturating_sub(db_rooms.len() as u64);

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
            return cursor;
        }
    };

    // 4. One job per room (room ids are unique in the database): the window's rooms, then rooms
    // only 100ms knows are live, each with its listed sessions (in id order).
    let window_ids: Vec<String> = db_rooms.iter().map(|r| r.room_id.clone()).collect();
    let mut jobs: BTreeMap<String, Job> = BTreeMap::new();
    for (at, db) in db_rooms.into_iter().enumerate() {
        let job = Job {
            room_id: db.room_id.clone(),
            db: Some(db),
            window_at: Some(at),
            listed: Vec::new(),
            listed_at_ms,
        };
        jobs.insert(job.room_id.clone(), job);
    }
    for session in active {
        jobs.entry(session.room_id.clone())
            .or_insert_with(|| Job {
                room_id: session.room_id.clone(),
                db: None,
                window_at: None,
                listed: Vec::new(),
                listed_at_ms,
            })
            .listed
            .push(session);
    }
    // The queue: the window in its order (so the rooms reached are a prefix and the cursor moves
    // past them), taking turns with the rooms only 100ms lists; those start at another point of
    // their sorted list each pass, scattered by the minute it runs in.
    let mut in_window: Vec<Option<Job>> = (0..window_ids.len()).map(|_| None).collect();
    let mut others = VecDeque::new();
    for job in jobs.into_values() {
        match job.window_at.and_then(|at| in_window.get_mut(at)) {
            Some(slot) => *slot = Some(job),
            None => others.push_back(job),
        }
    }
    if !others.is_empty() {
        let minute = u64::try_from(received_at_ms.div_euclid(60_000)).unwrap_or(0);
        let start = minute.wrapping_mul(0x9E37_79B9) % others.len() as u64;
        others.rotate_left(usize::try_from(start).unwrap_or(0));
    }
    let mut queue = VecDeque::with_capacity(window_ids.len() + others.len());
    for job in in_window.into_iter().flatten() {
        queue.push_back(job);
        queue.extend(others.pop_front());
    }
    queue.extend(others);
    let shared = Shared {
        http,
        pass,
        api,
        deadline_ms,
        received_at,
        stop: Cell::new(None),
        queue: RefCell::new(queue),
        results: RefCell::new(Vec::new()),
    };
    // The workers share the queue: at most CONCURRENCY rooms in flight.
    futures_util::future::join_all((0..CONCURRENCY).map(|_| shared.worker())).await;

    summary.stopped = shared.stop.get().map(Stop::as_str);
    let mut first_unreached = window_ids.len();
    for (room_id, window_at, result) in shared.results.into_inner() {
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
            RoomResult::NotReached => {
                first_unreached = first_unreached.min(window_at.unwrap_or(usize::MAX));
                summary.not_reached.push(room_id)
            }
        }
    }
    summary.not_reached.sort_unstable();
    // The last room of the reached prefix of the window; none reached: the cursor stays.
    match first_unreached
        .checked_sub(1)
        .and_then(|at| window_ids.get(at))
    {
        Some(last) => Some(last.clone()),
        None => cursor,
    }
}

/// Whether a request path is the reconcile route (`…/reconcile`, e.g.
/// `/functions/v1/hms-webhook/reconcile` or, behind the platform, `/hms-webhook/reconcile`).
pub fn is_route(path: &str) -> bool {
    path.trim_end_matches('/').ends_with("/reconcile")
}

/// Admits a reconcile request exactly like a webhook: method and size first, then the secret
/// header or the signature over the raw body; the body, if any, must be a JSON object. Its
/// `timestamp` (RFC 3339, like an envelope's) is held to the webhooks' freshness window; a
/// signed request must carry one, so a captured signed request goes stale (a static header can
/// be replayed with any time, so there it is checked only when present). Other members are
/// ignored. Any refusal is the webhook's own reply for that fault.
pub fn admit<'c>(config: &'c Config, incoming: &Incoming<'_>) -> Result<&'c Settings, Reply> {
    let body_len = u64::try_from(incoming.body.len()).unwrap_or(u64::MAX);
    if let Some(reply) = handler::preflight(config, incoming.method, Some(body_len)) {
        return Err(reply);
    }
    let refuse =
        |err: &Error| Log::new(config.debug(), incoming.now_ms).reply(Answer::Refused(err));
    let settings = config.settings();
    let method = settings
        .verifier
        .check(incoming.headers, incoming.body)
        .map_err(|err| refuse(&err))?;
    let mut sent_at = None;
    if !incoming.body.is_empty() {
        let text = std::str::from_utf8(incoming.body).map_err(|_| refuse(&Error::InvalidUtf8))?;
        /// A reconcile body: only its `timestamp` is read (a repeated one is refused).
        #[derive(serde::Deserialize)]
        struct Body<'a> {
            #[serde(borrow)]
            timestamp: Option<Field<'a>>,
        }
        match document::read::<Nested<Body<'_>>>(text) {
            Ok(Nested::Object(Body { timestamp })) => match timestamp {
                None | Some(Field::Null) => {}
                Some(Field::Str(s)) => {
                    let time = Timestamp::parse_rfc3339(&s).ok().flatten().ok_or_else(|| {
                        refuse(&Error::InvalidTimestamp {
                            field: "timestamp",
                            reason: "not an RFC 3339 time".into(),
                        })
                    })?;
                    sent_at = Some(time);
                }
                Some(_) => {
                    return Err(refuse(&Error::InvalidField {
                        field: "timestamp",
                        expected: "an RFC 3339 time string",
                    }))
                }
            },
            Ok(Nested::Other) => return Err(refuse(&Error::NotAnObject)),
            Err(e) => return Err(refuse(&e.into())),
        }
    }
    match sent_at {
        Some(time) => handler::check_freshness(time, incoming.now_ms, settings.tolerance_seconds)
            .map_err(|err| refuse(&err))?,
        None if method == AuthMethod::Signature => {
            return Err(refuse(&Error::MissingField("timestamp")))
        }
        None => {}
    }
    Ok(settings)
}

/// The HTTP reply and its one log line (counts only: room ids and errors are in the answer).
/// 503 only when the database could not be used at all; 429 with `Retry-After` when the turn
/// was refused.
pub fn reply(summary: &Summary) -> Reply {
    let status: u16 = match summary.status {
        "failed" => 503,
        _ if summary.retry_after_s.is_some() => 429,
        _ => 200,
    };
    let mut headers = vec![("content-type".into(), "application/json".into())];
    if let Some(seconds) = summary.retry_after_s {
        headers.push(("retry-after".into(), seconds.to_string()));
    }
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
        not_read: u64,
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
        not_read: summary.not_read,
        stopped: summary.stopped,
        ms: summary.ms,
    });
    Reply {
        status,
        headers,
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
        if url.ends_with("/rpc/hms_reconcile_begin") {
            return Some(ok(
                json!({"granted":true,"pass_id":"pass-1","cursor":null,"live_rooms":2}),
            ));
        }
        if url.ends_with("/rpc/hms_reconcile_end") {
            return Some(ok(json!(true)));
        }
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
                "p7":{"id":"p7","session_id":"s1","name":"x","role":"listener","user_id":"u7","joined_at":"2026-12-01T09:01:00Z"}}),
            )),
            "/v2/active-rooms/r2" => ok(json!({"id":"r2","name":"n","customer_id":"c",
                "session":{"id":"s2","created_at":"2026-12-01T09:00:00Z","peers":["p1","p3"]}})),
            "/v2/active-rooms/r2/peers" => ok(json!({"peers":{
                "p1":{"id":"p1","name":"a1","user_id":"u1","metadata":"","role":"listener","joined_at":"2026-12-01T09:01:00Z"},
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
            min_interval_ms: 60_000,
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
        let urls: Vec<&str> = sent.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "http://db/rest/v1/rpc/hms_reconcile_begin",
                "http://db/rest/v1/rpc/hms_close_expired_sessions",
                "http://db/rest/v1/rpc/hms_reconcile_end"
            ]
        );
        let body: Value = serde_json::from_str(sent[1].body.as_deref().unwrap()).unwrap();
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
                   "role_class":"listener","joined_at":"2026-12-01T09:01:00.000000Z",
                   "user_id":"u1","user_name":"a1"}),
            "the role and labels /peers reports now win over the session object's"
        );
        assert_eq!(facts[2]["left_at"], "2026-12-01T09:05:00.000000Z");
        assert_eq!(
            (&facts[2]["user_id"], &facts[2]["user_name"]),
            (&json!("u2"), &json!("b"))
        );
        assert_eq!(facts[3]["peer_id"], "p3");
        assert_eq!(facts[3]["role_class"], "speaker");
        assert_eq!(
            (&facts[3]["user_id"], &facts[3]["user_name"]),
            (&json!("u3"), &json!("c"))
        );
        assert_eq!(
            facts[4],
            json!({"kind":"present_set","session_id":"s2","peer_ids":["p1","p3"]})
        );
        // Observed: the list was requested at NOW+15 ms (three calls before it), minus 60 s.
        assert_eq!(r2["p_observed_at"], "2026-12-01T09:59:00.015000Z");
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

    /// Five live rooms, each with a session 100ms reports over; the turn's cursor kept between
    /// passes like `hms_reconcile_begin`/`_end` keep it, and the rooms read honouring the
    /// cursor's filter and the limit like PostgREST.
    fn rotating_world(cursor: std::rc::Rc<RefCell<Option<String>>>) -> Fake {
        let rooms = ["r1", "r2", "r3", "r4", "r5"];
        fake(move |request| {
            let url = request.url.as_str();
            let body: Value = request
                .body
                .as_deref()
                .map_or(Value::Null, |b| serde_json::from_str(b).unwrap());
            if url.ends_with("/rpc/hms_reconcile_begin") {
                let at = cursor.borrow().clone();
                return ok(json!({"granted":true,"pass_id":"p","cursor":at,"live_rooms":5}));
            }
            if url.ends_with("/rpc/hms_reconcile_end") {
                *cursor.borrow_mut() = body["p_cursor"].as_str().map(str::to_owned);
                return ok(json!(true));
            }
            if url.contains("/rest/v1/rooms?") {
                let limit: usize = url.rsplit("limit=").next().unwrap().parse().unwrap();
                let filter = |id: &&&str| match url.split("hms_room_id=").nth(1) {
                    Some(f) if f.starts_with("gt.") => **id > &f[3..f.find('&').unwrap()],
                    Some(f) if f.starts_with("lte.") => **id <= &f[4..f.find('&').unwrap()],
                    _ => true,
                };
                let rows: Vec<Value> = rooms
                    .iter()
                    .filter(filter)
                    .take(limit)
                    .map(|id| {
                        json!({"hms_room_id":id,"current_session_id":format!("s-{id}"),
                        "is_live":true,"listener_count":1,"speaker_count":0})
                    })
                    .collect();
                return ok(Value::Array(rows));
            }
            if let Some(id) = url.strip_prefix("https://api.test/v2/sessions/s-") {
                return ok(session(&format!("s-{id}"), id, false, json!({})));
            }
            if url.contains("/v2/sessions?") {
                return ok(json!({"limit":100,"data":[],"last":""}));
            }
            database(request).unwrap_or_else(|| status(404))
        })
    }

    #[test]
    fn passes_cut_short_hand_on_their_cursor_and_reach_every_room() {
        let cursor = std::rc::Rc::new(RefCell::new(None));
        let rest = target();
        let roles = Roles::default();
        let pass = Pass {
            rest: &rest,
            api: Some(Api {
                base_url: "https://api.test",
                token: "t",
            }),
            roles: &roles,
            min_interval_ms: 0,
        };
        let mut reached = Vec::new();
        for n in 0..6 {
            // Enough time for the reads and one room's calls, then the budget is gone.
            let http = Fake {
                tick_ms: 10_000,
                ..rotating_world(cursor.clone())
            };
            let at_ms = NOW_MS + n * 600_000;
            http.clock.set(at_ms);
            let summary = block_on(run(&http, &pass, at_ms));
            assert_eq!(summary.stopped, Some("time_budget"), "{summary:?}");
            // Every live room is accounted for: checked or named as not reached.
            assert_eq!(
                summary.rooms_checked + summary.not_reached.len() as u64 + summary.not_read,
                5,
                "{summary:?}"
            );
            let checked: Vec<String> = http
                .sent
                .borrow()
                .iter()
                .filter_map(|r| r.url.strip_prefix("https://api.test/v2/sessions/s-"))
                .map(str::to_owned)
                .collect();
            assert_eq!(checked.len(), 1, "one room per pass here");
            assert_eq!(summary.cursor.as_deref(), Some(checked[0].as_str()));
            reached.extend(checked);
        }
        // Each pass starts after the last one's cursor, and wraps around.
        assert_eq!(reached, ["r1", "r2", "r3", "r4", "r5", "r1"]);
    }

    #[test]
    fn a_refused_turn_is_a_429_with_retry_after_and_makes_no_other_call() {
        for (reason, ms, seconds) in [("running", 149_001, "150"), ("too_soon", 1, "1")] {
            let http = fake(move |r| {
                if r.url.ends_with("/rpc/hms_reconcile_begin") {
                    ok(json!({"granted":false,"reason":reason,"retry_after_ms":ms}))
                } else {
                    database(r).unwrap_or_else(|| hms(r))
                }
            });
            let summary = run_pass(&http, true);
            assert_eq!(summary.status, reason);
            assert_eq!(http.sent.borrow().len(), 1, "only the turn was asked for");
            let begin: Value =
                serde_json::from_str(http.sent.borrow()[0].body.as_deref().unwrap()).unwrap();
            assert_eq!(
                begin,
                json!({"p_min_interval_ms":60_000,"p_lease_ms":LEASE_MS})
            );
            let reply = reply(&summary);
            assert_eq!(reply.status, 429);
            assert!(reply
                .headers
                .contains(&("retry-after".into(), seconds.into())));
            let body: Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(body["status"], reason);
            assert_eq!(body["retry_after_s"].to_string(), seconds);
        }
        // A turn answer of another shape is a failed pass, not a pass.
        let http = fake(|r| {
            if r.url.ends_with("/rpc/hms_reconcile_begin") {
                ok(json!({"granted":false,"reason":"later"}))
            } else {
                database(r).unwrap_or_else(|| hms(r))
            }
        });
        let summary = run_pass(&http, true);
        assert_eq!((summary.status, http.sent.borrow().len()), ("failed", 1));
        assert_eq!(reply(&summary).status, 503);
    }

    #[test]
    fn answers_outside_the_webhooks_time_bounds_are_unverified() {
        let at = |text: &str| Timestamp::parse_rfc3339(text).unwrap().unwrap();
        let now = at("2026-12-01T10:00:00Z");
        let session = |created: &str, active: bool, peers: Vec<(&str, Option<&str>)>| Session {
            id: "s".into(),
            room_id: "r".into(),
            active,
            created_at: at(created),
            updated_at: Some(at("2026-12-01T09:30:00Z")),
            peers: peers
                .into_iter()
                .map(|(joined, left)| hms_api::SessionPeer {
                    id: "p".into(),
                    role: "listener".into(),
                    user_id: None,
                    name: None,
                    joined_at: at(joined),
                    left_at: left.map(at),
                })
                .collect(),
        };
        let check = |s: Session| check_times(&[s], None, &[], now);
        // Within bounds: a join a little before the start (clocks), a start up to 120 s ahead.
        assert_eq!(
            check(session(
                "2026-12-01T09:00:00Z",
                true,
                vec![("2026-12-01T08:59:00Z", None)]
            )),
            Ok(())
        );
        assert_eq!(check(session("2026-12-01T10:02:00Z", true, vec![])), Ok(()));
        // Active up to 12 h after its start (and the slack); over once it ended, whatever its age.
        assert_eq!(check(session("2026-11-30T21:58:00Z", true, vec![])), Ok(()));
        assert_eq!(
            check(session("2026-11-01T09:00:00Z", false, vec![])),
            Ok(())
        );
        assert_eq!(
            check(session(
                "2026-12-01T09:00:00Z",
                false,
                vec![("2026-12-01T09:10:01Z", Some("2026-12-01T09:10:00Z"))]
            )),
            Ok(())
        );
        for (s, why) in [
            (
                session("2100-01-01T00:00:00Z", true, vec![]),
                "session starts in the future",
            ),
            (
                session("2026-12-01T10:02:01Z", true, vec![]),
                "session starts in the future",
            ),
            (
                session("2026-11-30T21:57:59Z", true, vec![]),
                "session active past 12 hours",
            ),
            (
                session(
                    "2026-12-01T09:00:00Z",
                    true,
                    vec![("2100-01-01T00:00:00Z", None)],
                ),
                "peer time in the future",
            ),
            (
                session(
                    "2026-12-01T09:00:00Z",
                    true,
                    vec![("2026-12-01T08:57:59Z", None)],
                ),
                "peer time outside its session",
            ),
            (
                session(
                    "2026-12-01T09:00:00Z",
                    true,
                    vec![("2026-12-01T09:10:00Z", Some("2026-12-01T09:07:59Z"))],
                ),
                "peer time outside its session",
            ),
            (
                session(
                    "2026-12-01T09:00:00Z",
                    false,
                    vec![("2026-12-01T09:10:00Z", Some("2026-12-01T09:45:00Z"))],
                ),
                "peer time outside its session",
            ),
        ] {
            assert_eq!(check(s), Err(why));
        }
        let room = |created: &str| ActiveRoom {
            session_id: "s".into(),
            session_created_at: Some(at(created)),
            peer_ids: vec!["p".into()],
        };
        let peer = |joined: &str| ActivePeer {
            id: "p".into(),
            role: "listener".into(),
            user_id: None,
            name: None,
            joined_at: Some(at(joined)),
        };
        let active = Some(room("2100-01-01T00:00:00Z"));
        assert_eq!(
            check_times(&[], Some(&active), &[], now),
            Err("session starts in the future")
        );
        let active = Some(room("2026-11-30T09:00:00Z"));
        assert_eq!(
            check_times(&[], Some(&active), &[], now),
            Err("session active past 12 hours")
        );
        let active = Some(room("2026-12-01T09:00:00Z"));
        let early = [peer("2026-12-01T08:00:00Z")];
        assert_eq!(
            check_times(&[], Some(&active), &early, now),
            Err("peer time outside its session")
        );
        assert_eq!(
            check_times(&[], Some(&active), &[peer("2026-12-01T09:10:00Z")], now),
            Ok(())
        );
    }

    #[test]
    fn a_future_session_from_100ms_writes_nothing_and_is_reported() {
        let http = fake(|r| {
            let path = r.url.strip_prefix("https://api.test").unwrap_or("");
            if path.starts_with("/v2/sessions?active=true") {
                return ok(
                    json!({"limit":100,"data":[{"id":"s2","room_id":"r2","active":true,
                    "created_at":"2100-01-01T00:00:00Z","peers":{}}],"last":""}),
                );
            }
            if path == "/v2/active-rooms/r2" {
                return ok(json!({"id":"r2","session":{"id":"s2",
                    "created_at":"2100-01-01T00:00:00Z","peers":["p1"]}}));
            }
            database(r).unwrap_or_else(|| hms(r))
        });
        let summary = run_pass(&http, true);
        assert!(facts_for(&http, "r2").is_none(), "nothing written for r2");
        assert!(summary.unverified.contains(&Unverified {
            room_id: "r2".into(),
            reason: "session starts in the future",
        }));
    }

    #[test]
    fn dot_segment_ids_never_reach_a_path() {
        let http = fake(|r| {
            let path = r.url.strip_prefix("https://api.test").unwrap_or("");
            if path.starts_with("/v2/sessions?active=true") {
                return ok(json!({"limit":100,"data":[
                    session("s5", "..", true, json!({})), session("s6", ".", true, json!({}))],
                    "last":""}));
            }
            if r.url.contains("/rest/v1/rooms?") {
                return ok(json!([{"hms_room_id":"r4","current_session_id":"..",
                    "is_live":true,"listener_count":1,"speaker_count":0}]));
            }
            database(r).unwrap_or_else(|| hms(r))
        });
        let summary = run_pass(&http, true);
        let api_paths: Vec<String> = http
            .sent
            .borrow()
            .iter()
            .filter_map(|r| r.url.strip_prefix("https://api.test"))
            .map(str::to_owned)
            .collect();
        assert_eq!(api_paths, ["/v2/sessions?active=true&limit=100"]);
        let mut unverified = summary.unverified.clone();
        unverified.sort_by(|a, b| a.room_id.cmp(&b.room_id));
        assert_eq!(
            unverified,
            [
                Unverified {
                    room_id: ".".into(),
                    reason: DOT_ROOM
                },
                Unverified {
                    room_id: "..".into(),
                    reason: DOT_ROOM
                },
                Unverified {
                    room_id: "r4".into(),
                    reason: DOT_SESSION
                },
            ]
        );
        assert!(http
            .sent
            .borrow()
            .iter()
            .all(|r| !r.url.ends_with("/rpc/hms_apply_facts")));
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
        // A signed request carries its time, held to the webhooks' window (900 s back, 120 s
        // ahead); a static header may leave it out, and is held to it when it carries one.
        let at = |text: &str| format!(r#"{{"timestamp":"{text}"}}"#).into_bytes();
        let fresh = at("2026-12-01T09:50:00Z");
        let stale = at("2026-12-01T09:44:59Z");
        let ahead = at("2026-12-01T10:02:01Z");
        assert!(admit_with("POST", &signature(&fresh), &fresh).is_ok());
        assert!(admit_with("POST", &header, &fresh).is_ok());
        let code = |reply: Reply| {
            let body: Value = serde_json::from_str(&reply.body).unwrap();
            (reply.status, body["code"].as_str().unwrap().to_owned())
        };
        for (headers, body) in [
            (signature(&stale), &stale),
            (signature(&ahead), &ahead),
            (header.clone(), &stale),
        ] {
            let refused = admit_with("POST", &headers, body).unwrap_err();
            assert_eq!(code(refused), (401, "stale_timestamp".into()));
        }
        let unsigned_time = admit_with("POST", &signature(b"{}"), b"{}").unwrap_err();
        assert_eq!(code(unsigned_time), (400, "missing_field".into()));
        let not_a_time = at("yesterday");
        let refused = admit_with("POST", &signature(&not_a_time), &not_a_time).unwrap_err();
        assert_eq!(code(refused), (400, "invalid_timestamp".into()));
        let number = br#"{"timestamp":1}"#;
        let refused = admit_with("POST", &signature(number), number).unwrap_err();
        assert_eq!(code(refused), (400, "invalid_field".into()));
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

    #[test]
    fn a_malformed_answer_is_reported_with_the_field_and_what_was_expected() {
        let http = fake(|r| {
            if r.url.ends_with("/v2/active-rooms/r2") {
                return ok(json!({"id":"r2","session":{"id":"s2","peers":"Ravi, Mia"}}));
            }
            database(r).unwrap_or_else(|| hms(r))
        });
        let body: Value = serde_json::from_str(&reply(&run_pass(&http, true)).body).unwrap();
        assert_eq!(
            body["api_errors"],
            json!([{"room_id":"r2","call":"active_room","error":"malformed","status":200,
                    "detail":"session.peers: expected a sequence"}])
        );
    }

    #[test]
    fn sessions_and_unreached_rooms_come_in_id_order() {
        // 100ms lists r3's sessions out of order and three rooms the database does not hold; the
        // budget allows one room's calls, so the rest are not reached.
        let mut http = fake(|r| {
            if r.url.contains("/v2/sessions?") {
                return ok(json!({"limit":100,"data":[
                    session("s9","r3",true,json!({})),
                    session("s7","x2",true,json!({})),
                    session("s4","r3",true,json!({})),
                    session("s8","x3",true,json!({})),
                    session("s6","x1",true,json!({}))],"last":""}));
            }
            database(r).unwrap_or_else(|| status(404))
        });
        http.tick_ms = 12_000;
        let summary = run_pass(&http, true);
        assert_eq!(summary.stopped, Some("time_budget"), "{summary:?}");
        assert_eq!(summary.not_reached, ["r3", "x1", "x2", "x3"]);
        // With the budget: r3's facts name its sessions in id order.
        let http = fake(|r| {
            if r.url.contains("/v2/sessions?") {
                return ok(json!({"limit":100,"data":[
                    session("s9","r3",true,json!({})),
                    session("s4","r3",true,json!({}))],"last":""}));
            }
            database(r).unwrap_or_else(|| status(404))
        });
        run_pass(&http, true);
        let r3 = facts_for(&http, "r3").unwrap();
        let sessions: Vec<&str> = r3["p_facts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "session")
            .map(|f| f["session_id"].as_str().unwrap())
            .collect();
        assert_eq!(sessions, ["s4", "s9"]);
    }
}
