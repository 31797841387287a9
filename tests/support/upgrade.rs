//! The upgrade path: a database built by the first build's migrations (commit e3c104a, frozen as
//! gzip files in tests/fixtures/first-build-migrations), with rooms filled through its own
//! hms_apply_event, then
//! only the newer migration files applied (what `supabase db push` does on a deployed project).
//! It must end with the schema of a fresh install and with every room as the v2 model says.

use std::io::Read;
use std::path::{Path, PathBuf};

use postgres::Client;

use super::behaviour::fingerprint;
use super::db::{connect, create_room_sql, event_args, read_state};
use super::generate::{history, Rng, Shape};
use super::harness::{compare, q, query_value, Ctx};
use super::model::{expected, Delivery, Event, Initial};

/// The files of `dir` whose names end in `suffix` (".sql", or ".sql.gz" for the frozen first
/// build), in name order.
fn sql_files(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(suffix)))
        .collect();
    files.sort();
    Ok(files)
}

/// A migration's name: its file name without `.gz`.
fn migration_name(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    Some(name.strip_suffix(".gz").unwrap_or(name))
}

/// A migration's SQL, gunzipped when the file is `.gz`.
fn read_sql(path: &Path) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    if path.extension().is_some_and(|x| x == "gz") {
        let mut sql = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(path).map_err(fail)?)
            .read_to_string(&mut sql)
            .map_err(fail)?;
        Ok(sql)
    } else {
        std::fs::read_to_string(path).map_err(fail)
    }
}

fn apply_files(client: &mut Client, files: &[PathBuf]) -> Result<(), String> {
    for f in files {
        let sql = read_sql(f)?;
        client
            .batch_execute(&sql)
            .map_err(|e| format!("{}: {}", f.display(), q(e)))?;
    }
    Ok(())
}

/// The first build's hms_apply_event (12 arguments, no p_received_at).
fn old_apply_sql(room: &str, e: &Event) -> String {
    format!(
        "select public.hms_apply_event({}, false)",
        event_args(room, e).join(", ")
    )
}

/// Schema lines of the fingerprint (the data lines differ between the two databases, and so do
/// the pg_cron jobs: pg_cron lives in one database, `cron.database_name`, never in a scratch one).
fn schema(print: &str) -> Vec<String> {
    print
        .lines()
        .filter(|l| {
            !["rooms ", "ledger ", "settings ", "cron "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

pub fn upgrade_from_first_build(ctx: &mut Ctx) -> Result<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let old = sql_files(
        &root.join("tests/fixtures/first-build-migrations"),
        ".sql.gz",
    )?;
    let all = sql_files(&root.join("supabase/migrations"), ".sql")?;
    let old_names: Vec<_> = old.iter().filter_map(|p| migration_name(p)).collect();
    let new: Vec<PathBuf> = all
        .iter()
        .filter(|p| migration_name(p).is_some_and(|n| !old_names.contains(&n)))
        .cloned()
        .collect();
    if old.len() != 2 || new.is_empty() {
        return Err(format!(
            "expected 2 old and some new migrations, got {old:?} / {new:?}"
        ));
    }

    let name = format!("hmstest_upgrade_{:x}", ctx.seed);
    for statement in [
        format!("drop database if exists {name} with (force)"),
        format!("create database {name}"),
    ] {
        ctx.admin.batch_execute(&statement).map_err(q)?;
    }
    let url = match ctx.url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => return Err(format!("cannot derive a database URL from {}", ctx.url)),
    };
    let result = (|| -> Result<String, String> {
        let mut admin = connect(&url, None)?;
        apply_files(&mut admin, &[root.join("scripts/stack/supabase_roles.sql")])?;
        apply_files(&mut admin, &old)?;

        // Rooms filled by the first rules: 300 generated histories' webhooks, in delivery order.
        let mut rooms = Vec::new();
        let mut events = 0;
        for i in 0..300u64 {
            let mut rng = Rng::for_item(ctx.seed ^ 0x0bad_cafe, i);
            let h = history(&mut rng, Shape::default());
            let delivery: Vec<Event> = h
                .delivery
                .into_iter()
                .filter_map(|d| match d {
                    Delivery::Event(e) => Some(Event {
                        received_at: None,
                        ..e
                    }),
                    _ => None,
                })
                .collect();
            let room = format!("hmstest:upgrade:{i}");
            let mut sql = create_room_sql(&room, h.before);
            for e in &delivery {
                sql.push_str(";\n");
                sql.push_str(&old_apply_sql(&room, e));
            }
            admin.batch_execute(&sql).map_err(q)?;
            events += delivery.len();
            rooms.push((room, h.before, delivery));
        }

        let mut old_states = Vec::new();
        for (room, _, _) in &rooms {
            old_states.push(read_state(&mut admin, room)?);
        }
        // The rules v2 upgrade rewrites rooms, and must do so through this round's rooms
        // trigger, which scores with the fallbacks when the settings row is gone (the first
        // build's scored every written room 99999999.99 then). So: no settings row while rules
        // v2 runs, then the row back (with its defaults) for the rest.
        let (rules_v2, rest) = match new.split_first() {
            Some((first, rest))
                if migration_name(first).is_some_and(|n| n.starts_with("20261201000100_")) =>
            {
                (first, rest)
            }
            _ => return Err(format!("the first new migration is not rules v2: {new:?}")),
        };
        admin
            .batch_execute("delete from public.hms_settings")
            .map_err(q)?;
        apply_files(&mut admin, std::slice::from_ref(rules_v2))?;
        let pinned: i64 = query_value(
            &mut admin,
            "select count(*) from public.rooms where trending_score >= 99999999.99",
            &[],
        )?;
        if pinned > 0 {
            return Err(format!(
                "{pinned} rooms scored 99999999.99 by the upgrade without the settings row"
            ));
        }
        admin
            .batch_execute("insert into public.hms_settings (id) values (true)")
            .map_err(q)?;
        apply_files(&mut admin, rest)?;

        let fresh = schema(&fingerprint(&mut ctx.admin)?);
        let upgraded = schema(&fingerprint(&mut admin)?);
        if fresh != upgraded {
            let only_fresh: Vec<_> = fresh.iter().filter(|l| !upgraded.contains(l)).collect();
            let only_upgraded: Vec<_> = upgraded.iter().filter(|l| !fresh.contains(l)).collect();
            return Err(format!(
                "schemas differ: fresh only {only_fresh:?}, upgraded only {only_upgraded:?}"
            ));
        }
        let mut changed = 0;
        for ((room, before, delivery), old_state) in rooms.iter().zip(&old_states) {
            let want = expected(
                Initial {
                    is_live: false,
                    last_active_at: *before,
                },
                delivery,
            );
            let got = read_state(&mut admin, room)?;
            let diffs = compare(&got, &want, &ctx.weights);
            if !diffs.is_empty() {
                return Err(format!("{room} after the upgrade: {}", diffs.join("; ")));
            }
            changed += usize::from(
                (
                    old_state.is_live,
                    old_state.listener_count,
                    old_state.speaker_count,
                ) != (got.is_live, got.listener_count, got.speaker_count),
            );
        }
        // The upgraded database keeps working under the new rules: everything again is a no-op.
        let mut svc = connect(&url, Some("service_role"))?;
        for (room, _, delivery) in rooms.iter().take(30) {
            let state = read_state(&mut svc, room)?;
            let sql: Vec<String> = delivery
                .iter()
                .map(|e| super::db::apply_sql(room, e, false))
                .collect();
            svc.batch_execute(&sql.join(";\n")).map_err(q)?;
            if read_state(&mut svc, room)? != state {
                return Err(format!("{room}: re-sent events changed the upgraded room"));
            }
        }
        if changed == 0 {
            return Err(
                "no room differs between the first rules and v2: the test shows nothing".into(),
            );
        }
        Ok(format!(
            "{} rooms, {events} events applied by the first rules; schema equals a fresh install; every room equals the v2 model ({changed} rooms corrected)",
            rooms.len()
        ))
    })();
    ctx.admin
        .batch_execute(&format!("drop database if exists {name} with (force)"))
        .map_err(q)?;
    result
}
