//! The tests' side of PostgreSQL: connecting, calling `hms_apply_event` (as SQL text, or a whole
//! history per round trip through a session-local driver), creating rooms, reading them back.

use std::collections::{BTreeMap, BTreeSet};

use postgres::{Client, NoTls, SimpleQueryMessage};

use super::model::{Delivery, Event, EventType, Fact, Facts, Micros};
use super::time::rfc3339;

/// Every room a test creates starts with this, so a run can remove what earlier runs left.
pub const ROOM_PREFIX: &str = "hmstest:";

/// `DATABASE_URL`, or a message saying how to get a database with the migrations.
pub fn database_url() -> Result<String, String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => Err("DATABASE_URL is not set. Point it at a PostgreSQL where \
                  scripts/stack/supabase_roles.sql and supabase/migrations/*.sql were applied, e.g. \
                  DATABASE_URL=postgresql://postgres@127.0.0.1:55432/postgres"
            .to_string()),
    }
}

/// A connection as the given role (`None` keeps the login role, normally the superuser).
///
/// The one place durability is relaxed, and only for these test sessions: they set
/// `synchronous_commit = off`, because the histories binary checks what the SQL computes, not
/// what survives a crash, and waiting for a WAL flush on each of its many small commits only
/// slows it down on a shared machine. The server keeps a Supabase database's durability
/// (`SUPABASE_DURABILITY` in scripts/stack/postgres.ts), so every other client — the function
/// through the REST stand-in, the fault tests, the acceptance stories, `npm start` — commits
/// durably.
pub fn connect(url: &str, role: Option<&str>) -> Result<Client, String> {
    let mut client =
        Client::connect(url, NoTls).map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let mut setup = String::from("set synchronous_commit = off; set timezone = 'UTC';");
    if let Some(role) = role {
        setup.push_str(&format!("set role {role};"));
    }
    client
        .batch_execute(&setup)
        .map_err(|e| format!("session setup failed: {e}"))?;
    Ok(client)
}

/// A SQL string literal.
pub fn text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn opt_text(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_string(), text)
}

/// A timestamptz literal for an instant.
pub fn ts(t: Micros) -> String {
    format!("'{}'::timestamptz", rfc3339(t))
}

fn opt_ts(t: Option<Micros>) -> String {
    t.map_or_else(|| "null".to_string(), ts)
}

/// The names of the `hms_apply_event` arguments the tests pass positionally, in order.
const EVENT_ARGS: [&str; 11] = [
    "p_event_id",
    "p_event_type",
    "p_action",
    "p_room_id",
    "p_session_id",
    "p_session_started_at",
    "p_peer_id",
    "p_role",
    "p_role_class",
    "p_event_at",
    "p_joined_at",
];

/// The values of [`EVENT_ARGS`] for one event in `room`, as SQL literals.
pub fn event_args(room: &str, e: &Event) -> [String; 11] {
    [
        text(&e.event_id),
        text(e.action.event_type()),
        text(e.action.as_str()),
        text(room),
        text(&e.session_id),
        opt_ts(e.session_started_at),
        opt_text(e.peer_id.as_deref()),
        opt_text(e.role.as_deref()),
        opt_text(e.role_class.map(|c| c.as_str())),
        ts(e.event_at),
        opt_ts(e.joined_at),
    ]
}

/// `select public.hms_apply_event(...)` for one event, with named arguments as PostgREST sends them.
pub fn apply_sql(room: &str, e: &Event, auto_create: bool) -> String {
    let named: Vec<String> = EVENT_ARGS
        .iter()
        .zip(event_args(room, e))
        .map(|(name, value)| format!("{name} => {value}"))
        .collect();
    format!(
        "select public.hms_apply_event({}, p_auto_create => {auto_create}, p_received_at => {})",
        named.join(", "),
        opt_ts(e.received_at)
    )
}

/// The `p_facts` argument of `hms_apply_facts` (docs/design.md §6), as JSON.
pub fn facts_json(f: &Facts) -> serde_json::Value {
    use serde_json::json;
    let time = |t: &Option<Micros>| t.map(rfc3339);
    let facts: Vec<serde_json::Value> = f
        .facts
        .iter()
        .map(|fact| match fact {
            Fact::Session {
                session_id,
                started_at,
                closed_at,
            } => {
                let mut v = json!({"kind": "session", "session_id": session_id,
                                   "started_at": time(started_at)});
                // Present (not null) only when 100ms reports the session inactive.
                if let Some(c) = closed_at {
                    v["closed_at"] = json!(rfc3339(*c));
                }
                v
            }
            Fact::Peer {
                session_id,
                peer_id,
                role,
                role_class,
                joined_at,
                left_at,
            } => json!({"kind": "peer", "session_id": session_id, "peer_id": peer_id,
                        "role": role, "role_class": role_class.map(|c| c.as_str()),
                        "joined_at": time(joined_at), "left_at": time(left_at)}),
            Fact::PresentSet {
                session_id,
                peer_ids,
            } => json!({"kind": "present_set", "session_id": session_id, "peer_ids": peer_ids}),
        })
        .collect();
    serde_json::Value::Array(facts)
}

/// `select public.hms_apply_facts(...)` for one batch.
pub fn facts_sql(room: &str, f: &Facts) -> String {
    format!(
        "select public.hms_apply_facts(p_room_id => {}, p_observed_at => {}, p_received_at => {}, \
         p_facts => {}::jsonb)",
        text(room),
        ts(f.observed_at),
        ts(f.received_at),
        text(&facts_json(f).to_string())
    )
}

/// Creates a room row the way an app would (not live, given last_active_at).
pub fn create_room_sql(room: &str, last_active_at: Micros) -> String {
    format!(
        "insert into public.rooms (hms_room_id, last_active_at) values ({}, {})",
        text(room),
        ts(last_active_at)
    )
}

/// Runs `sql` (one or more statements) and returns the first column of every row it produced.
pub fn simple_values(
    client: &mut Client,
    sql: &str,
) -> Result<Vec<Option<String>>, postgres::Error> {
    Ok(client
        .simple_query(sql)?
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).map(str::to_string)),
            _ => None,
        })
        .collect())
}

/// Applies `events` to `room` in one round trip and returns each call's jsonb answer. The
/// statements run one after the other on the server, as a sequence of webhooks would.
pub fn apply_all(
    client: &mut Client,
    room: &str,
    events: &[Event],
    auto_create: bool,
) -> Result<Vec<serde_json::Value>, String> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = String::with_capacity(events.len() * 400);
    for e in events {
        sql.push_str(&apply_sql(room, e, auto_create));
        sql.push_str(";\n");
    }
    let values = simple_values(client, &sql).map_err(|e| describe(&e))?;
    values
        .into_iter()
        .map(|v| {
            let v = v.ok_or("hms_apply_event returned null")?;
            serde_json::from_str(&v).map_err(|e| format!("not JSON ({e}): {v}"))
        })
        .collect()
}

/// The statuses of a batch of calls, and the full answer of the last one.
pub struct Applied {
    pub statuses: Vec<String>,
    pub last: Option<serde_json::Value>,
}

/// A session-local PL/pgSQL loop that applies a whole history with one typed statement: each
/// event is still one `hms_apply_event` call, in order, but the server parses and plans once per
/// history instead of once per event (which is most of a duplicate's cost), and only the last
/// answer travels whole. Created in `pg_temp`, so it never touches the schema under test.
const DRIVER: &str = r"
create function pg_temp.hms_apply_history(
  p_room text, p_before text, p_ids text[], p_types text[], p_actions text[], p_sessions text[],
  p_started text[], p_peers text[], p_roles text[], p_classes text[], p_at text[], p_joined text[],
  p_received text[], p_facts text[]
) returns text[] language plpgsql as $$
declare
  v_n integer := coalesce(array_length(p_ids, 1), 0);
  v_out text[] := '{}';
  v_answer jsonb;
begin
  if p_before is not null then
    insert into public.rooms (hms_room_id, last_active_at) values (p_room, p_before::timestamptz);
  end if;
  for i in 1 .. v_n loop
    if p_actions[i] = 'facts' then
      v_answer := public.hms_apply_facts(p_room_id => p_room, p_observed_at => p_at[i]::timestamptz,
        p_received_at => p_received[i]::timestamptz, p_facts => p_facts[i]::jsonb);
    elsif p_actions[i] = 'expire' then
      v_answer := public.hms_close_expired_sessions(p_at[i]::timestamptz)
        || jsonb_build_object('status', 'expired');
    else
      v_answer := public.hms_apply_event(
        p_event_id => p_ids[i], p_event_type => p_types[i], p_action => p_actions[i],
        p_room_id => p_room, p_session_id => p_sessions[i],
        p_session_started_at => p_started[i]::timestamptz, p_peer_id => p_peers[i],
        p_role => p_roles[i], p_role_class => p_classes[i], p_event_at => p_at[i]::timestamptz,
        p_joined_at => p_joined[i]::timestamptz, p_auto_create => false,
        p_received_at => p_received[i]::timestamptz);
    end if;
    v_out := v_out || case when i = v_n then v_answer::text else v_answer ->> 'status' end;
  end loop;
  return v_out;
end
$$;";

/// The columns of a history, as the driver takes them (one array per argument). A facts batch
/// is action `facts` (time = observed_at, facts JSON), the 12-hour rule action `expire`.
pub struct HistoryArgs {
    columns: [Vec<Option<String>>; 12],
}

impl HistoryArgs {
    pub fn new(deliveries: &[Delivery]) -> Self {
        let col = |f: &dyn Fn(&Event) -> Option<String>,
                   facts: &dyn Fn(&Facts) -> Option<String>,
                   expire: &dyn Fn(Micros) -> Option<String>| {
            deliveries
                .iter()
                .map(|d| match d {
                    Delivery::Event(e) => f(e),
                    Delivery::Facts(x) => facts(x),
                    Delivery::Expire(now) => expire(*now),
                })
                .collect::<Vec<_>>()
        };
        let none_f = |_: &Facts| None;
        let none_x = |_: Micros| None;
        HistoryArgs {
            columns: [
                col(&|e| Some(e.event_id.clone()), &none_f, &none_x),
                col(
                    &|e| Some(e.action.event_type().to_string()),
                    &none_f,
                    &none_x,
                ),
                col(
                    &|e| Some(e.action.as_str().to_string()),
                    &|_| Some("facts".into()),
                    &|_| Some("expire".into()),
                ),
                col(&|e| Some(e.session_id.clone()), &none_f, &none_x),
                col(&|e| e.session_started_at.map(rfc3339), &none_f, &none_x),
                col(&|e| e.peer_id.clone(), &none_f, &none_x),
                col(&|e| e.role.clone(), &none_f, &none_x),
                col(
                    &|e| e.role_class.map(|c| c.as_str().to_string()),
                    &none_f,
                    &none_x,
                ),
                col(
                    &|e| Some(rfc3339(e.event_at)),
                    &|f| Some(rfc3339(f.observed_at)),
                    &|now| Some(rfc3339(now)),
                ),
                col(&|e| e.joined_at.map(rfc3339), &none_f, &none_x),
                col(
                    &|e| e.received_at.map(rfc3339),
                    &|f| Some(rfc3339(f.received_at)),
                    &none_x,
                ),
                col(&|_| None, &|f| Some(facts_json(f).to_string()), &none_x),
            ],
        }
    }
}

/// Applies whole histories through [`DRIVER`] on one connection.
pub struct Driver {
    statement: postgres::Statement,
}

impl Driver {
    pub fn install(client: &mut Client) -> Result<Driver, String> {
        client.batch_execute(DRIVER).map_err(|e| describe(&e))?;
        let statement = client
            .prepare(
                "select pg_temp.hms_apply_history($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                 $13, $14)",
            )
            .map_err(|e| describe(&e))?;
        Ok(Driver { statement })
    }

    /// Creates `room` (when `before` is given) and applies the history, in one transaction.
    pub fn run(
        &self,
        client: &mut Client,
        room: &str,
        before: Option<Micros>,
        args: &HistoryArgs,
    ) -> Result<Applied, String> {
        let before = before.map(rfc3339);
        let c = &args.columns;
        let row = client
            .query_one(
                &self.statement,
                &[
                    &room, &before, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6], &c[7], &c[8],
                    &c[9], &c[10], &c[11],
                ],
            )
            .map_err(|e| describe(&e))?;
        let mut statuses: Vec<String> = row.get(0);
        let last = match statuses.last_mut() {
            Some(answer) => {
                let json: serde_json::Value = serde_json::from_str(answer)
                    .map_err(|e| format!("not JSON ({e}): {answer}"))?;
                *answer = json["status"].as_str().unwrap_or_default().to_string();
                Some(json)
            }
            None => None,
        };
        Ok(Applied { statuses, last })
    }
}

/// The message, SQLSTATE and detail of a database error, for test output.
pub fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} [{}] {}",
            db.message(),
            db.code().code(),
            db.hint().unwrap_or("")
        ),
        None => e.to_string(),
    }
}

/// A room row as the tests compare it.
#[derive(Clone, Debug, PartialEq)]
pub struct DbState {
    pub listener_count: u64,
    pub speaker_count: u64,
    pub is_live: bool,
    pub last_active_at: Micros,
    pub current_session: Option<String>,
    pub featured: bool,
    pub trending_rank: Option<f64>,
    pub present: BTreeSet<(String, String)>,
    /// `room_sessions` of the closed envelope sessions: (unique participants, participant µs).
    pub recap: BTreeMap<String, (u64, Micros)>,
}

/// Reads the room row and the present peers of all its sessions (one round trip).
pub fn read_state(client: &mut Client, room: &str) -> Result<DbState, String> {
    let row = client
        .query_opt(
            "select r.listener_count::bigint, r.speaker_count::bigint, coalesce(r.is_live, false), \
                    (extract(epoch from r.last_active_at) * 1000000)::bigint, r.current_session_id, \
                    coalesce(r.featured, false), r.trending_rank, \
                    array(select p.session_id::text from hms_private.presence as p \
                          where p.room_id = r.id and p.present order by 1, p.peer_id), \
                    array(select p.peer_id::text from hms_private.presence as p \
                          where p.room_id = r.id and p.present order by p.session_id, 1), \
                    array(select s.session_id || ' ' || s.unique_participants || ' ' \
                                 || round(s.participant_seconds * 1000000) \
                          from public.room_sessions as s \
                          where s.room_id = r.id and s.ended_at is not null and s.session_id <> '' \
                          order by s.session_id) \
             from public.rooms as r where r.hms_room_id = $1",
            &[&room],
        )
        .map_err(|e| describe(&e))?
        .ok_or_else(|| format!("room {room} does not exist"))?;
    let sessions: Vec<String> = row.get(7);
    let peers: Vec<String> = row.get(8);
    let mut recap = BTreeMap::new();
    for line in row.get::<_, Vec<String>>(9) {
        // The session id may hold spaces; the two numbers do not.
        let parts: Vec<&str> = line.rsplitn(3, ' ').collect();
        let [micros, unique, session] = parts[..] else {
            return Err(format!("room_sessions row {line:?}"));
        };
        let number = |s: &str| s.parse::<i64>().map_err(|e| format!("{line:?}: {e}"));
        recap.insert(
            session.to_string(),
            (
                u64::try_from(number(unique)?).unwrap_or(u64::MAX),
                number(micros)?,
            ),
        );
    }
    let count = |v: i64| u64::try_from(v).unwrap_or(u64::MAX);
    Ok(DbState {
        listener_count: count(row.get(0)),
        speaker_count: count(row.get(1)),
        is_live: row.get(2),
        last_active_at: row.get(3),
        current_session: row.get(4),
        featured: row.get(5),
        trending_rank: row.get(6),
        present: sessions.into_iter().zip(peers).collect(),
        recap,
    })
}
