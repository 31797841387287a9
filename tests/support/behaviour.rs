//! SQL behaviour tests, each asserting real rows: idempotent migrations, refused arguments,
//! unknown rooms, auto-create, duplicates, featured, refresh, prune and permissions.

use std::collections::HashSet;
use std::sync::Barrier;

use super::trending::{rank_key, score, Weights};
use postgres::Client;

use super::db::{apply_all, connect, describe, read_state, text};
use super::harness::{close_rel, db_now, event, join, new_room, q, query_value, room_name, Ctx};
use super::model::{Action, Event, Micros, RoleClass};
use super::time::rfc3339;

/// A catalog fingerprint of everything the migrations define in `public` (definitions, grants,
/// policies, triggers), plus the rows they own. Equal fingerprints = nothing changed.
pub fn fingerprint(client: &mut Client) -> Result<String, String> {
    let row = client
        .query_one(
            r"select string_agg(x, E'\n' order by x) from (
                select 'col ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                       || ' nn=' || a.attnotnull || ' def=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
                       || ' coll=' || coalesce(co.collname, '')
                  from pg_attribute a join pg_class c on c.oid = a.attrelid
                  left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                  left join pg_collation co on co.oid = a.attcollation
                 where c.relnamespace in ('public'::regnamespace, 'hms_private'::regnamespace) and a.attnum > 0 and not a.attisdropped
                union all
                select 'rel ' || c.relname || ' kind=' || c.relkind::text || ' rls=' || c.relrowsecurity
                       || ' acl=' || coalesce(c.relacl::text, '')
                  from pg_class c where c.relnamespace in ('public'::regnamespace, 'hms_private'::regnamespace)
                union all
                select 'idx ' || pg_get_indexdef(i.indexrelid) from pg_index i join pg_class c on c.oid = i.indrelid
                 where c.relnamespace in ('public'::regnamespace, 'hms_private'::regnamespace)
                union all
                select 'con ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
                       || ' valid=' || convalidated
                  from pg_constraint where connamespace in ('public'::regnamespace, 'hms_private'::regnamespace)
                union all
                select 'fn ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid))
                       || ' acl=' || coalesce(p.proacl::text, '') || ' owner=' || p.proowner::regrole::text
                  from pg_proc p where p.pronamespace in ('public'::regnamespace, 'hms_private'::regnamespace) and p.prokind = 'f'
                union all
                select 'trg ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
                  from pg_trigger t join pg_class c on c.oid = t.tgrelid
                 where c.relnamespace in ('public'::regnamespace, 'hms_private'::regnamespace) and not t.tgisinternal
                union all
                select 'pol ' || tablename || ' ' || policyname || ' ' || permissive || ' ' || roles::text || ' '
                       || cmd || ' ' || coalesce(qual, '') || ' ' || coalesce(with_check, '')
                  from pg_policies where schemaname in ('public', 'hms_private')
                union all
                select 'settings ' || s::text from public.hms_settings s
                union all
                select 'rooms ' || count(*) || ' ' || md5(coalesce(string_agg(r::text, ',' order by r.id), ''))
                  from public.rooms r
                union all
                select 'ledger ' || count(*) || ' ' || md5(coalesce(string_agg(e::text, ',' order by e.event_id), ''))
                  from hms_private.events e
              ) as parts(x)",
            &[],
        )
        .map_err(q)?;
    let mut print: String = row.get(0);
    // With pg_cron the migrations also own two jobs: re-running must not add or change any.
    let has_cron: bool = query_value(client, "select to_regclass('cron.job') is not null", &[])?;
    if has_cron {
        let jobs: String = client
            .query_one(
                "select coalesce(string_agg(format('cron %s %s %s %s %s', jobid, jobname, schedule, command, active), \
                 E'\\n' order by jobid), '') from cron.job",
                &[],
            )
            .map_err(q)?
            .get(0);
        print.push('\n');
        print.push_str(&jobs);
    }
    Ok(print)
}

/// Re-applies every migration file: the catalog fingerprint (and pg_cron jobs) must not move.
pub fn migrations_reapply(ctx: &mut Ctx) -> Result<String, String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("supabase/migrations");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    if files.len() < 2 {
        return Err(format!("expected the two migrations in {}", dir.display()));
    }
    let before = fingerprint(&mut ctx.admin)?;
    for f in &files {
        let sql = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        ctx.admin
            .batch_execute(&sql)
            .map_err(|e| format!("{}: {}", f.display(), q(e)))?;
    }
    let after = fingerprint(&mut ctx.admin)?;
    if before != after {
        let b: HashSet<&str> = before.lines().collect();
        let a: HashSet<&str> = after.lines().collect();
        let gone: Vec<_> = b.difference(&a).collect();
        let new: Vec<_> = a.difference(&b).collect();
        return Err(format!(
            "schema or data changed: before-only {gone:?}, after-only {new:?}"
        ));
    }
    let cron = if before.contains("\ncron ") {
        "with pg_cron jobs"
    } else {
        "pg_cron absent"
    };
    Ok(format!(
        "{} files, {} catalog/data lines identical ({cron})",
        files.len(),
        before.lines().count()
    ))
}

/// The statement must fail with exactly this SQLSTATE.
pub fn expect_sqlstate(
    result: Result<Vec<postgres::SimpleQueryMessage>, postgres::Error>,
    code: &str,
    what: &str,
) -> Result<(), String> {
    match result {
        Ok(_) => Err(format!("{what}: succeeded, expected SQLSTATE {code}")),
        Err(e) => match e.as_db_error() {
            Some(db) if db.code().code() == code => Ok(()),
            _ => Err(format!(
                "{what}: expected SQLSTATE {code}, got {}",
                describe(&e)
            )),
        },
    }
}

/// Whether the dedup ledger holds this event id.
pub fn ledger_has(client: &mut Client, id: &str) -> Result<bool, String> {
    query_value(
        client,
        "select exists (select 1 from hms_private.events where event_id = $1)",
        &[&id],
    )
}

/// Malformed calls get 22023 with a message naming the problem, and write nothing.
pub fn invalid_arguments(ctx: &mut Ctx) -> Result<String, String> {
    let room = new_room(ctx, "invalid", 0)?;
    let at = rfc3339(1_728_064_800_000_000);
    let cases = [
        ("bogus action", format!("select public.hms_apply_event('inv-1', 'x', 'explode', {}, p_event_at => '{at}')", text(&room))),
        ("null action", format!("select public.hms_apply_event('inv-2', 'x', null, {}, p_event_at => '{at}')", text(&room))),
        ("null room", format!("select public.hms_apply_event('inv-3', 'x', 'activity', null, p_event_at => '{at}')")),
        ("null event time", format!("select public.hms_apply_event('inv-4', 'x', 'activity', {})", text(&room))),
        ("join without peer", format!("select public.hms_apply_event('inv-5', 'x', 'peer_join', {}, p_role_class => 'listener', p_event_at => '{at}')", text(&room))),
        ("join without class", format!("select public.hms_apply_event('inv-6', 'x', 'peer_join', {}, p_peer_id => 'p', p_event_at => '{at}')", text(&room))),
        ("unknown class", format!("select public.hms_apply_event('inv-7', 'x', 'peer_join', {}, p_peer_id => 'p', p_role_class => 'vip', p_event_at => '{at}')", text(&room))),
        ("empty event id", format!("select public.hms_apply_event('', 'x', 'activity', {}, p_event_at => '{at}')", text(&room))),
        ("infinite time", format!("select public.hms_apply_event('inv-9', 'x', 'activity', {}, p_event_at => 'infinity')", text(&room))),
    ];
    for (what, sql) in &cases {
        expect_sqlstate(ctx.svc.simple_query(sql), "22023", what)?;
    }
    let message = match ctx.svc.simple_query(&cases[0].1) {
        Err(e) => e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_default(),
        Ok(_) => String::new(),
    };
    if !message.contains("unknown p_action 'explode'") {
        return Err(format!(
            "message should name the bad action, got {message:?}"
        ));
    }
    for i in 1..=9 {
        if ledger_has(&mut ctx.svc, &format!("inv-{i}"))? {
            return Err(format!("inv-{i} reached the ledger"));
        }
    }
    let state = read_state(&mut ctx.svc, &room)?;
    if state.current_session.is_some() || state.listener_count != 0 {
        return Err(format!("refused calls changed the room: {state:?}"));
    }
    Ok(format!("{} malformed calls refused", cases.len()))
}

/// Row counts of rooms, sessions, presence and the ledger.
pub fn table_counts(client: &mut Client) -> Result<Vec<i64>, String> {
    let row = client
        .query_one(
            "select (select count(*) from public.rooms), (select count(*) from hms_private.sessions), \
                    (select count(*) from hms_private.presence), (select count(*) from hms_private.events)",
            &[],
        )
        .map_err(q)?;
    Ok((0..4).map(|i| row.get(i)).collect())
}

/// An event for a room that does not exist: `ignored`, and not a single row anywhere.
pub fn unknown_room(ctx: &mut Ctx) -> Result<String, String> {
    let room = room_name(ctx, "never-created");
    let before = table_counts(&mut ctx.admin)?;
    let e = join(
        "unknown-room-join",
        "s1",
        "p1",
        RoleClass::Speaker,
        1_728_064_800_000_000,
    );
    let answers = apply_all(&mut ctx.svc, &room, &[e], false)?;
    let want = serde_json::json!({"status": "ignored", "reason": "unknown room", "room": null});
    if answers[0] != want {
        return Err(format!("answered {}, expected {want}", answers[0]));
    }
    let after = table_counts(&mut ctx.admin)?;
    if before != after {
        return Err(format!(
            "row counts (rooms, sessions, presence, events) moved: {before:?} -> {after:?}"
        ));
    }
    if ledger_has(&mut ctx.svc, "unknown-room-join")? {
        return Err("the ledger recorded an event for an unknown room".into());
    }
    Ok(String::new())
}

/// `p_auto_create` creates the room (once, even when eight webhooks race for it).
pub fn auto_create(ctx: &mut Ctx) -> Result<String, String> {
    let room = room_name(ctx, "auto");
    let t = 1_728_064_800_000_000;
    let answers = apply_all(
        &mut ctx.svc,
        &room,
        &[join("auto-1", "s1", "p1", RoleClass::Listener, t)],
        true,
    )?;
    let r = &answers[0];
    let want = serde_json::json!({"hms_room_id": room, "is_live": true, "listener_count": 1, "speaker_count": 0, "last_active_at": rfc3339(t)});
    for key in [
        "hms_room_id",
        "is_live",
        "listener_count",
        "speaker_count",
        "last_active_at",
    ] {
        if r["room"][key] != want[key] {
            return Err(format!("answer {r}: {key} should be {}", want[key]));
        }
    }
    if r["status"] != "applied" || !r["room"]["trending_score"].is_number() {
        return Err(format!("answer {r}"));
    }
    let state = read_state(&mut ctx.svc, &room)?;
    if (state.listener_count, state.is_live, state.last_active_at) != (1, true, t) {
        return Err(format!("row {state:?}"));
    }
    // Eight webhooks racing to create the same unknown room: one row, every event applied.
    let racing = room_name(ctx, "auto-race");
    let url = ctx.url.clone();
    let barrier = Barrier::new(8);
    let results: Vec<Result<serde_json::Value, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (url, racing, barrier) = (&url, &racing, &barrier);
                scope.spawn(move || {
                    let mut c = connect(url, Some("service_role"))?;
                    let e = join(
                        &format!("race-{i}"),
                        "s1",
                        &format!("p{i}"),
                        RoleClass::Speaker,
                        t + i,
                    );
                    barrier.wait();
                    apply_all(&mut c, racing, &[e], true).map(|mut v| v.remove(0))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    for r in results {
        let r = r?;
        if r["status"] != "applied" {
            return Err(format!("racing auto-create answered {r}"));
        }
    }
    let rows: i64 = query_value(
        &mut ctx.svc,
        "select count(*) from public.rooms where hms_room_id = $1",
        &[&racing],
    )?;
    let state = read_state(&mut ctx.svc, &racing)?;
    if rows != 1 || state.speaker_count != 8 {
        return Err(format!(
            "racing auto-create: {rows} rows, {} speakers",
            state.speaker_count
        ));
    }
    Ok(String::new())
}

/// Everything stored about a room, including the row version (xmin), as one string.
pub fn snapshot(client: &mut Client, room: &str) -> Result<String, String> {
    let row = client
        .query_one(
            "select r.xmin::text || row_to_json(r)::text \
                    || (select coalesce(string_agg(s::text, ',' order by s.session_id), '') from hms_private.sessions s where s.room_id = r.id) \
                    || (select coalesce(string_agg(p::text, ',' order by p.session_id, p.peer_id), '') from hms_private.presence p where p.room_id = r.id) \
                    || (select count(*) from hms_private.events e where e.room_id = r.id)::text \
             from public.rooms r where r.hms_room_id = $1",
            &[&room],
        )
        .map_err(q)?;
    Ok(row.get(0))
}

/// A repeated event (same id and envelope time, even with another payload) is `duplicate` and
/// rewrites nothing.
pub fn duplicate(ctx: &mut Ctx) -> Result<String, String> {
    let t = 1_728_064_800_000_000;
    let room = new_room(ctx, "dup", t)?;
    let first = [
        event("dup-open", Action::SessionOpen, "s1", t),
        join("dup-join", "s1", "p1", RoleClass::Speaker, t + 5),
    ];
    apply_all(&mut ctx.svc, &room, &first, false)?;
    let before = snapshot(&mut ctx.svc, &room)?;
    // Same id and time, and even a different payload (a leave): the ledger answers duplicate,
    // nothing moves.
    let mut again = first[1].clone();
    again.action = Action::PeerLeave;
    let answers = apply_all(&mut ctx.svc, &room, &[first[1].clone(), again], false)?;
    if answers
        .iter()
        .any(|a| a["status"] != "duplicate" || a["room"]["speaker_count"] != 1)
    {
        return Err(format!("answers {answers:?}"));
    }
    let after = snapshot(&mut ctx.svc, &room)?;
    if before != after {
        return Err(format!("state changed:\n  {before}\n  {after}"));
    }
    Ok(String::new())
}

/// Applies `n` listener and `m` speaker joins at `at` to a new room (and an open).
pub fn populated_room(
    ctx: &mut Ctx,
    what: &str,
    listeners: usize,
    speakers: usize,
    at: Micros,
) -> Result<String, String> {
    let room = new_room(ctx, what, at)?;
    let mut events = vec![event(
        &format!("{room}-open"),
        Action::SessionOpen,
        "s1",
        at,
    )];
    for i in 0..listeners + speakers {
        let class = if i < listeners {
            RoleClass::Listener
        } else {
            RoleClass::Speaker
        };
        events.push(join(
            &format!("{room}-j{i}"),
            "s1",
            &format!("p{i}"),
            class,
            at,
        ));
    }
    apply_all(&mut ctx.svc, &room, &events, false)?;
    Ok(room)
}

/// The app setting `featured` recomputes score and rank in the same statement.
pub fn featured_update(ctx: &mut Ctx) -> Result<String, String> {
    let now = db_now(&mut ctx.admin)?;
    let room = populated_room(ctx, "featured", 3, 1, now - 30 * 60 * 1_000_000)?;
    let read = |c: &mut Client, sql: &str| -> Result<(f64, Option<f64>, f64, f64, bool), String> {
        let row = c.query_one(sql, &[&room]).map_err(q)?;
        let score: String = row.get(0);
        Ok((
            score.parse().map_err(|e| format!("{score}: {e}"))?,
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
        ))
    };
    let cols = "trending_score::text, trending_rank, extract(epoch from now())::float8, \
                extract(epoch from last_active_at)::float8, featured";
    let (s0, r0, _, _, _) = read(
        &mut ctx.admin,
        &format!("select {cols} from public.rooms where hms_room_id = $1"),
    )?;
    let (s1, r1, now_s, last_s, featured) = read(
        &mut ctx.admin,
        &format!("update public.rooms set featured = true where hms_room_id = $1 returning {cols}"),
    )?;
    let w = &ctx.weights;
    let want_rank = rank_key(3, 1, true, last_s, w);
    let want_score = score(3, 1, true, (now_s - last_s) / 3600.0, w);
    if !featured || !close_rel(r1, want_rank, 1e-9) || (s1 - want_score).abs() > 0.0101 {
        return Err(format!(
            "after featured: score {s1} rank {r1:?}, expected {want_score} / {want_rank:?}"
        ));
    }
    if s1 <= s0 || r1 <= r0 {
        return Err(format!(
            "featured did not raise the room: {s0}/{r0:?} -> {s1}/{r1:?}"
        ));
    }
    Ok(format!("score {s0} -> {s1}"))
}

/// hms_refresh_trending decays a stale score and leaves rows whose score is current alone.
pub fn refresh(ctx: &mut Ctx) -> Result<String, String> {
    let now = db_now(&mut ctx.admin)?;
    let room = populated_room(ctx, "refresh", 10, 2, now - 6 * 3600 * 1_000_000)?;
    let quiet = populated_room(ctx, "refresh-quiet", 1, 0, now - 4000 * 3600 * 1_000_000)?;
    // Make the stored score stale (as if written 6 h ago) with the rooms trigger bypassed.
    ctx.admin
        .batch_execute(&format!(
            "begin; set local session_replication_role = replica; \
             update public.rooms set trending_score = 16 where hms_room_id = {}; commit;",
            text(&room)
        ))
        .map_err(q)?;
    let xmin = |c: &mut Client, r: &str| -> Result<String, String> {
        query_value(
            c,
            "select xmin::text from public.rooms where hms_room_id = $1",
            &[&r],
        )
    };
    let quiet_before = xmin(&mut ctx.admin, &quiet)?;
    let changed: i64 = query_value(&mut ctx.svc, "select hms_private.refresh_trending()", &[])?;
    let row = ctx
        .admin
        .query_one(
            "select trending_score::text, extract(epoch from now())::float8, extract(epoch from last_active_at)::float8 \
             from public.rooms where hms_room_id = $1",
            &[&room],
        )
        .map_err(q)?;
    let stored: String = row.get(0);
    let (now_s, last_s): (f64, f64) = (row.get(1), row.get(2));
    let want = score(10, 2, false, (now_s - last_s) / 3600.0, &ctx.weights);
    let got: f64 = stored.parse().map_err(|e| format!("{stored}: {e}"))?;
    if changed < 1 || (got - want).abs() > 0.0101 {
        return Err(format!(
            "refresh changed {changed} rows; stored score {got}, expected {want}"
        ));
    }
    if xmin(&mut ctx.admin, &quiet)? != quiet_before {
        return Err("refresh rewrote a room whose score did not change".into());
    }
    Ok(format!(
        "16.00 -> {stored} after 6 h, {changed} rows rewritten"
    ))
}

/// hms_prune_events deletes ledger rows past the retention, and only those.
pub fn prune(ctx: &mut Ctx) -> Result<String, String> {
    let t = 1_728_064_800_000_000;
    let room = new_room(ctx, "prune", t)?;
    let ids = ["prune-8d", "prune-6d", "prune-2h", "prune-now"];
    let events: Vec<Event> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, Action::Activity, "s1", t + i as i64))
        .collect();
    apply_all(&mut ctx.svc, &room, &events, false)?;
    ctx.admin
        .batch_execute(
            "update hms_private.events set received_at = now() - interval '8 days' where event_id = 'prune-8d';
             update hms_private.events set received_at = now() - interval '6 days' where event_id = 'prune-6d';
             update hms_private.events set received_at = now() - interval '2 hours' where event_id = 'prune-2h';",
        )
        .map_err(q)?;
    let default_run: i64 = query_value(&mut ctx.svc, "select hms_private.prune_events()", &[])?;
    let left = |c: &mut Client| -> Result<Vec<bool>, String> {
        ids.iter().map(|id| ledger_has(c, id)).collect()
    };
    if default_run < 1 || left(&mut ctx.svc)? != [false, true, true, true] {
        return Err(format!(
            "default retention (7 days) deleted {default_run}, left {:?}",
            left(&mut ctx.svc)?
        ));
    }
    let hour_run: i64 = query_value(
        &mut ctx.svc,
        "select hms_private.prune_events(interval '1 hour')",
        &[],
    )?;
    if hour_run < 2 || left(&mut ctx.svc)? != [false, false, false, true] {
        return Err(format!(
            "1 hour retention deleted {hour_run}, left {:?}",
            left(&mut ctx.svc)?
        ));
    }
    expect_sqlstate(
        ctx.svc
            .simple_query("select hms_private.prune_events(interval '-1 day')"),
        "22023",
        "negative retention",
    )?;
    Ok(String::new())
}

/// The API roles cannot apply events or read internals, but can read rooms and the feed.
pub fn permissions(ctx: &mut Ctx) -> Result<String, String> {
    let at = rfc3339(1_728_064_800_000_000);
    let apply = format!(
        "select public.hms_apply_event('perm-1', 'x', 'activity', {}, p_event_at => '{at}')",
        text(&room_name(ctx, "perm"))
    );
    for role in ["anon", "authenticated"] {
        let mut c = connect(&ctx.url, Some(role))?;
        for (what, sql) in [
            ("execute hms_apply_event", apply.as_str()),
            (
                "read hms_presence",
                "select * from hms_private.presence limit 1",
            ),
            (
                "read hms_events",
                "select * from hms_private.events limit 1",
            ),
            (
                "read hms_sessions",
                "select * from hms_private.sessions limit 1",
            ),
            ("read hms_settings", "select * from public.hms_settings"),
            (
                "execute hms_refresh_trending",
                "select hms_private.refresh_trending()",
            ),
            (
                "execute hms_prune_events",
                "select hms_private.prune_events()",
            ),
        ] {
            expect_sqlstate(c.simple_query(sql), "42501", &format!("{role} {what}"))?;
        }
        let feed = c
            .query("select * from public.trending_rooms(5)", &[])
            .map_err(|e| format!("{role} feed: {}", q(e)))?;
        if feed.len() > 5 {
            return Err(format!(
                "{role}: trending_rooms(5) returned {} rows",
                feed.len()
            ));
        }
        c.query(
            "select hms_room_id, listener_count from public.rooms limit 1",
            &[],
        )
        .map_err(|e| format!("{role} rooms: {}", q(e)))?;
    }
    let mut anon = connect(&ctx.url, Some("anon"))?;
    expect_sqlstate(
        anon.simple_query("insert into public.rooms (hms_room_id) values ('hmstest:anon-write')"),
        "42501",
        "anon insert rooms",
    )?;
    if ledger_has(&mut ctx.svc, "perm-1")? {
        return Err("an API role reached the ledger".into());
    }
    Ok(String::new())
}

/// The `hms_settings` row: the weights the trigger and the feed use.
pub fn settings_weights(client: &mut Client) -> Result<Weights, String> {
    settings_weights_from(client, "public.hms_settings where id")
}

/// The trending defaults are stated once, as the `hms_settings` column defaults (design §8);
/// every SQL place that repeats them must agree: the parameter defaults of `hms_trending_score`
/// and `hms_trending_rank`, and the fallbacks of `hms_half_life_hours()` and
/// `hms_refresh_trending()` when the row is missing (checked in a rolled-back transaction).
pub fn trending_defaults(ctx: &mut Ctx) -> Result<String, String> {
    let now = db_now(&mut ctx.admin)?;
    let room = populated_room(ctx, "defaults", 2, 1, now - 3600 * 1_000_000)?;
    let mut tx = ctx.admin.transaction().map_err(q)?;
    let d = column_defaults(&mut tx)?;
    let args: [&(dyn postgres::types::ToSql + Sync); 4] = [
        &d.listener,
        &d.speaker,
        &d.featured_bonus,
        &d.half_life_hours,
    ];
    let row = tx
        .query_one(
            "select hms_private.trending_score(3, 1, true, 2.5)::text, \
                    hms_private.trending_score(3, 1, true, 2.5, $1, $2, $3, $4)::text, \
                    hms_private.trending_rank(3, 1, true, 1.7e9), \
                    hms_private.trending_rank(3, 1, true, 1.7e9, $1, $2, $3, $4)",
            &args,
        )
        .map_err(q)?;
    let (score_default, score_given): (String, String) = (row.get(0), row.get(1));
    let (rank_default, rank_given): (Option<f64>, Option<f64>) = (row.get(2), row.get(3));
    if score_default != score_given || rank_default != rank_given {
        return Err(format!(
            "function defaults differ from the column defaults {d:?}: score {score_default} vs \
             {score_given}, rank {rank_default:?} vs {rank_given:?}"
        ));
    }
    // Without the row (and without the rooms trigger, which reads the row itself).
    tx.batch_execute(&format!(
        "delete from public.hms_settings; \
         alter table public.rooms disable trigger hms_rooms_trending; \
         update public.rooms set trending_score = 0 where hms_room_id = {};",
        text(&room)
    ))
    .map_err(q)?;
    let half_life: f64 = query_value(&mut tx, "select public.hms_half_life_hours()", &[])?;
    tx.execute("select hms_private.refresh_trending()", &[])
        .map_err(q)?;
    let row = tx
        .query_one(
            &format!(
                // The hours exactly as hms_room_score computes them.
                "select trending_score::text, ((extract(epoch from now()) \
                 - extract(epoch from last_active_at)) / 3600)::float8 \
                 from public.rooms where hms_room_id = {}",
                text(&room)
            ),
            &[],
        )
        .map_err(q)?;
    let (refreshed, hours): (String, f64) = (row.get(0), row.get(1));
    tx.rollback().map_err(q)?;
    let want = score(2, 1, false, hours, &d);
    if half_life != d.half_life_hours || refreshed.parse::<f64>().ok() != Some(want) {
        return Err(format!(
            "fallbacks without the row differ from the column defaults {d:?}: half-life \
             {half_life}, refreshed score {refreshed} (want {want})"
        ));
    }
    Ok(format!(
        "column defaults {d:?}; function defaults and fallbacks agree"
    ))
}

/// Without the settings row the rooms trigger scores with the column defaults, not with nulls
/// (which made a written room score 99999999.99). Checked in a rolled-back transaction.
pub fn settings_row_missing(ctx: &mut Ctx) -> Result<String, String> {
    let now = db_now(&mut ctx.admin)?;
    let room = populated_room(ctx, "no-settings", 3, 1, now - 30 * 60 * 1_000_000)?;
    let mut tx = ctx.admin.transaction().map_err(q)?;
    let d = column_defaults(&mut tx)?;
    tx.batch_execute("delete from public.hms_settings")
        .map_err(q)?;
    let row = tx
        .query_one(
            "update public.rooms set featured = true where hms_room_id = $1 returning \
             trending_score::text, trending_rank, extract(epoch from now())::float8, \
             extract(epoch from last_active_at)::float8",
            &[&room],
        )
        .map_err(q)?;
    tx.rollback().map_err(q)?;
    let (score_text, rank, now_s, last_s): (String, Option<f64>, f64, f64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let got: f64 = score_text
        .parse()
        .map_err(|e| format!("{score_text}: {e}"))?;
    let want_score = score(3, 1, true, (now_s - last_s) / 3600.0, &d);
    let want_rank = rank_key(3, 1, true, last_s, &d);
    if (got - want_score).abs() > 0.0101 || !close_rel(rank, want_rank, 1e-9) {
        return Err(format!(
            "without the settings row: score {got} rank {rank:?}, expected {want_score} / \
             {want_rank:?} from the column defaults {d:?}"
        ));
    }
    Ok(format!("score {got} from the column defaults"))
}

/// The `hms_settings` column defaults, read from a temporary copy of the table (dropped at the
/// end of the caller's transaction).
fn column_defaults(tx: &mut postgres::Transaction) -> Result<Weights, String> {
    tx.batch_execute(
        "create temp table hms_settings_defaults (like public.hms_settings including defaults) \
         on commit drop; insert into hms_settings_defaults default values;",
    )
    .map_err(q)?;
    settings_weights_from(tx, "hms_settings_defaults")
}

fn settings_weights_from(
    client: &mut impl postgres::GenericClient,
    table: &str,
) -> Result<Weights, String> {
    let row = client
        .query_one(
            &format!(
                "select listener_weight, speaker_weight, featured_bonus, half_life_hours from {table}"
            ),
            &[],
        )
        .map_err(q)?;
    Ok(Weights {
        listener: row.get(0),
        speaker: row.get(1),
        featured_bonus: row.get(2),
        half_life_hours: row.get(3),
    })
}
