//! The spec's promise: an app's existing `rooms` table (the spec's columns, its rows, its own
//! read policy) is kept and extended by the migrations, never recreated. Checked on a throwaway
//! database: the table is created as an app would have it, filled, then every migration file is
//! applied, and a webhook is applied to one of the kept rooms.

use std::path::{Path, PathBuf};

use postgres::Client;

use super::db::{apply_sql, connect};
use super::harness::{join, q, query_value, Ctx};
use super::model::RoleClass;

fn apply_files(client: &mut Client, files: &[PathBuf]) -> Result<(), String> {
    for f in files {
        let sql = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        client
            .batch_execute(&sql)
            .map_err(|e| format!("{}: {}", f.display(), q(e)))?;
    }
    Ok(())
}

/// The rows as the app stored them (the spec's columns), in id order.
const SPEC_ROWS: &str =
    "select coalesce(string_agg(format('%s %s %s %s %s %s %s %s', id, hms_room_id, \
     is_live, listener_count, speaker_count, last_active_at, trending_score, featured), E'\\n' \
     order by id), '') from public.rooms";

pub fn existing_rooms_kept(ctx: &mut Ctx) -> Result<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("supabase/migrations"))
        .map_err(|e| format!("supabase/migrations: {e}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();

    let name = format!("hmstest_existing_{:x}", ctx.seed);
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
        // The app's table: the spec's columns, its rows, and a read policy narrower than ours.
        admin
            .batch_execute(
                "create table public.rooms (
                   id uuid primary key default gen_random_uuid(),
                   hms_room_id text unique not null,
                   is_live boolean default false,
                   listener_count integer default 0,
                   speaker_count integer default 0,
                   last_active_at timestamptz default now(),
                   trending_score numeric(10,2) default 0,
                   featured boolean default false);
                 alter table public.rooms enable row level security;
                 create policy app_featured_read on public.rooms for select to authenticated
                   using (featured);
                 grant select on public.rooms to authenticated;
                 insert into public.rooms (hms_room_id, is_live, listener_count, speaker_count,
                   last_active_at, trending_score, featured)
                 values ('app-1', true, 4, 1, '2026-12-01T10:00:00Z', 7.00, true),
                        ('app-2', false, 0, 0, '2026-11-30T09:00:00Z', 0, false),
                        ('app-3', true, 12, 3, '2026-12-01T11:30:00Z', 21.00, false);",
            )
            .map_err(q)?;
        let oid_before: u32 = query_value(&mut admin, "select 'public.rooms'::regclass::oid", &[])?;
        let rows_before: String = query_value(&mut admin, SPEC_ROWS, &[])?;
        apply_files(&mut admin, &files)?;

        let oid_after: u32 = query_value(&mut admin, "select 'public.rooms'::regclass::oid", &[])?;
        if oid_after != oid_before {
            return Err("rooms was recreated".into());
        }
        let rows_after: String = query_value(&mut admin, SPEC_ROWS, &[])?;
        if rows_after != rows_before {
            return Err(format!(
                "the app's rows changed:\n{rows_before}\n->\n{rows_after}"
            ));
        }
        let policies: String = query_value(
            &mut admin,
            "select string_agg(policyname, ',' order by policyname) from pg_policies \
             where schemaname = 'public' and tablename = 'rooms'",
            &[],
        )?;
        if policies != "app_featured_read" {
            return Err(format!("rooms policies now {policies}"));
        }
        // Extended: the feed ranks the kept rooms with a score (app-2 has none), and a webhook
        // applies to one of them.
        let ranked: String = query_value(
            &mut admin,
            "select string_agg(hms_room_id, ',' order by hms_room_id) from public.rooms \
             where trending_rank is not null",
            &[],
        )?;
        if ranked != "app-1,app-3" {
            return Err(format!("ranked kept rooms: {ranked}"));
        }
        let t = 1_764_583_200_000_000; // 2025-12-01T10:00:00Z
        let answer: String = query_value(
            &mut admin,
            &format!(
                "select ({})::text",
                apply_sql(
                    "app-2",
                    &join("existing-join", "s1", "p1", RoleClass::Speaker, t),
                    false
                )
                .trim_start_matches("select ")
            ),
            &[],
        )?;
        let answer: serde_json::Value =
            serde_json::from_str(&answer).map_err(|e| format!("{e}: {answer}"))?;
        if answer["status"] != "applied" || answer["room"]["speaker_count"] != 1 {
            return Err(format!("a webhook on a kept room answered {answer}"));
        }
        // The feed shows authenticated no more rooms than the app's policy does.
        let mut tx = admin.transaction().map_err(q)?;
        tx.batch_execute("set local role authenticated")
            .map_err(q)?;
        let seen: i64 = query_value(
            &mut tx,
            "select count(*) from public.trending_rooms(100)",
            &[],
        )?;
        tx.rollback().map_err(q)?;
        if seen != 1 {
            return Err(format!(
                "authenticated sees {seen} rooms in the feed, its policy 1"
            ));
        }
        Ok(format!(
            "{} migration files on an app's rooms: same table, rows and policy",
            files.len()
        ))
    })();
    ctx.admin
        .batch_execute(&format!("drop database if exists {name} with (force)"))
        .map_err(q)?;
    result
}
