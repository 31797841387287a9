/**
 * Section 6, database cost: what one event costs PostgreSQL — WAL bytes (with and without
 * full-page images), rows written, the HOT share of the `rooms` update and backend CPU — for
 * `hms_apply_event` and for the floor (`update rooms set listener_count = listener_count + 1`,
 * same trigger), in one run, per kind of event (joins, role changes, leaves, closes), each a
 * direct `select public.hms_apply_event(...)` in its own transaction, spread over the rooms.
 * Plus the ledger: its size per million events and what pruning a day of it costs.
 *
 * It runs on its own throwaway PostgreSQL (the stack's `startPostgres` + `migrate`), so nothing
 * else writes WAL there: autovacuum is off and checkpoints happen only where this section asks.
 * The apply function is called with named arguments only, so a new argument with a default (e.g.
 * `p_received_at`) does not break it.
 *
 * The floor is the spec's one `update rooms set listener_count = listener_count + 1,
 * last_active_at = now()` in a plpgsql function, on a copy of `rooms` with the same columns and
 * indexes but none of the project's triggers, so the reference does not move with the design
 * under test. Time inside the entry function (hms_apply_event, or the floor's) comes from
 * pg_stat_user_functions with track_functions = all.
 *
 * HMS_DBCOST_ROOT=<checkout> measures the migrations of another checkout (e.g. an older commit,
 * for a before/after table) with this same code: the ledger and prune are found by name.
 */

import postgres from "postgres";
import type { BenchContext } from "../lib/context.ts";
import {
  migrate,
  startPostgres,
  supabaseCli,
} from "../../scripts/stack/postgres.ts";

type Kind = "join" | "role_change" | "leave" | "close" | "floor";

export interface Window {
  kind: Kind;
  full_page_writes: boolean;
  /** wal_compression of the backend ("off", or "lz4" for the extra run). */
  wal_compression: string;
  events: number;
  /** pg_current_wal_insert_lsn() difference / events: every WAL byte the cluster wrote. */
  wal_bytes_per_event: number;
  /** From pg_stat_wal (cluster-wide): records and full-page images per event. */
  wal_records_per_event: number;
  wal_fpi_per_event: number;
  /** Bytes of full-page images per event (pg_walinspect), null without the extension. */
  wal_fpi_bytes_per_event: number | null;
  /** WAL records and bytes per event by record type (pg_walinspect: Heap/INSERT, Btree/…). */
  wal_by_record: Record<string, { records: number; bytes: number }> | null;
  /** pg_stat_user_tables deltas / events, summed over the public tables. */
  rows_inserted_per_event: number;
  rows_updated_per_event: number;
  rows_deleted_per_event: number;
  /** The same by table (per event). */
  by_table: Record<
    string,
    { ins: number; upd: number; hot: number; del: number }
  >;
  /** n_tup_hot_upd / n_tup_upd of `rooms` in the window (null: no update). */
  rooms_hot_share: number | null;
  /** Events that moved their room's feed band (`trending_rank_band`), per event: each such
   * update must write the feed's index, so it cannot be HOT. */
  band_changes_per_event: number;
  /** HOT share of the `rooms` updates that kept the band (null: none): what is left is room
   * on the page, which the fillfactor is for. */
  rooms_hot_share_same_band: number | null;
  /** On-CPU time of the one backend that ran the window (/proc/<pid>/schedstat), µs/event. */
  backend_cpu_us_per_event: number;
  /** Time inside the entry function (pg_stat_user_functions total_time), µs/event. */
  entry_us_per_event: number | null;
}

export interface DbCostResult {
  postgres: string;
  method: Record<string, string>;
  rooms: number;
  ledger_prefill_rows: number;
  windows: Window[];
  /** apply / floor WAL bytes per event, per kind and fpw setting. */
  wal_over_floor: Record<string, number>;
  /** apply / floor time inside the entry function, per kind and fpw setting. */
  time_over_floor: Record<string, number>;
  /** p50 of `select * from trending_rooms(20)` (server side, ms) among 100,000 rooms. */
  feed: { rooms: number; live: number; p50_ms: number; p99_ms: number }[];
  ledger: {
    rows: number;
    heap_bytes: number;
    index_bytes: Record<string, number>;
    total_bytes_per_million: number;
    prune: {
      rows_deleted: number;
      ms: number;
      wal_bytes: number;
      wal_bytes_per_row: number;
      full_page_writes: boolean;
    };
  };
}

type Sql = postgres.Sql;

interface Snapshot {
  lsn: string;
  wal_records: number;
  wal_fpi: number;
  tables: Map<string, { ins: number; upd: number; hot: number; del: number }>;
  /** Entry functions' total_time (ms) by name. */
  functions: Map<string, number>;
}

/** On-CPU ns of a process: /proc/<pid>/schedstat (ns), else /proc/<pid>/stat ticks. */
function cpuNs(pid: number): number {
  try {
    return Number(
      Deno.readTextFileSync(`/proc/${pid}/schedstat`).split(" ")[0],
    );
  } catch {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10_000_000;
  }
}

async function snapshot(c: Sql): Promise<Snapshot> {
  // The backend's pending table and WAL statistics are flushed when it next goes idle.
  await c`select pg_stat_force_next_flush()`;
  const [w] = await c`select pg_current_wal_insert_lsn()::text as lsn,
    wal_records::float8 as records, wal_fpi::float8 as fpi from pg_stat_wal`;
  const rows = await c`select case when schemaname = 'public' then relname::text
      else schemaname || '.' || relname end as name, n_tup_ins::float8 as ins,
    n_tup_upd::float8 as upd, n_tup_hot_upd::float8 as hot, n_tup_del::float8 as del
    from pg_stat_user_tables where schemaname in ('public', 'hms_private')`;
  const fns = await c`select funcname::text as name, total_time::float8 as ms
    from pg_stat_user_functions where schemaname = 'public'
      and funcname in ('hms_apply_event', 'hms_floor')`;
  return {
    lsn: w.lsn,
    wal_records: w.records,
    wal_fpi: w.fpi,
    tables: new Map(
      rows.map((r) => [r.name, {
        ins: r.ins,
        upd: r.upd,
        hot: r.hot,
        del: r.del,
      }]),
    ),
    functions: new Map(fns.map((f) => [f.name, f.ms])),
  };
}

const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/**
 * A call: the SQL of one event, run in its own transaction. An apply answers its room and the
 * room's feed band before the event, read in the same statement (its snapshot predates the
 * call's writes), so a window can count the events that moved a band.
 */
type Call = (c: Sql) => Promise<BandBefore | void>;
type BandBefore = { room: string; band: number | null };

interface ApplyArgs {
  p_event_id: string;
  p_event_type: string;
  p_action: string;
  p_room_id: string;
  p_session_id: string;
  p_session_started_at?: string | null;
  p_peer_id?: string | null;
  p_role?: string | null;
  p_role_class?: string | null;
  p_event_at: string;
  p_joined_at?: string | null;
}

/**
 * Named arguments only: survives new trailing arguments with defaults. Event ids are random
 * UUIDs, as 100ms's are, so the ledger's id index sees the same scattered inserts as in
 * production.
 */
function apply(a: ApplyArgs): Call {
  // The band read costs the backend an index lookup (in its CPU column, not in the entry
  // function's time); to_jsonb because older checkouts' rooms have no band column.
  return async (c) => {
    const [row] =
      await c`select (select (to_jsonb(r) ->> 'trending_rank_band')::float8
        from public.rooms as r where r.hms_room_id = ${a.p_room_id}) as band,
      public.hms_apply_event(
      p_event_id => ${a.p_event_id}, p_event_type => ${a.p_event_type},
      p_action => ${a.p_action}, p_room_id => ${a.p_room_id},
      p_session_id => ${a.p_session_id},
      p_session_started_at => ${
        a.p_session_started_at ?? null
      }::text::timestamptz,
      p_peer_id => ${a.p_peer_id ?? null}::text, p_role => ${
        a.p_role ?? null
      }::text,
      p_role_class => ${a.p_role_class ?? null}::text,
      p_event_at => ${a.p_event_at}::text::timestamptz,
      p_joined_at => ${a.p_joined_at ?? null}::text::timestamptz
    ) as result`;
    const status = (row.result as { status?: string }).status;
    if (status !== "applied") {
      throw new Error(
        `${a.p_action} ${a.p_event_id}: ${JSON.stringify(row.result)}`,
      );
    }
    return { room: a.p_room_id, band: row.band as number | null };
  };
}

function floor(room: string): Call {
  return async (c) => {
    await c`select public.hms_floor(${room})`;
  };
}

/** "join, fpw on" / "join, fpw on + lz4": how wal_over_floor names a window. */
export function modeKey(w: Window): string {
  return `${w.kind}, fpw ${w.full_page_writes ? "on" : "off"}${
    w.wal_compression === "off" ? "" : ` + ${w.wal_compression}`
  }`;
}

const iso = (ms: number) => new Date(ms).toISOString().replace("Z", "000Z");

export async function runDbCost(ctx: BenchContext): Promise<DbCostResult> {
  const quick = ctx.quick;
  const ROOMS = quick ? 10 : 100;
  const N = quick ? 200 : 2_000;
  const PREFILL = quick ? 20_000 : 1_000_000;
  const CLOSE_PEERS = 4;
  ctx.log("database cost: starting PostgreSQL with the migrations");
  const root = Deno.env.get("HMS_DBCOST_ROOT") ?? ctx.root;
  const CHECKPOINT_EVERY = 1_000;
  const pg = await startPostgres({ root: ctx.root, maxConnections: 20 });
  const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
  const c = postgres(pg.url, { max: 1, onnotice: () => {} });
  try {
    // Another checkout's migrations, applied by this checkout's Supabase CLI (an older checkout
    // may have no node_modules).
    await migrate(pg.url, root, supabaseCli(ctx.root));
    // Only this section's statements write WAL; checkpoints only where it asks for them.
    for (
      const s of [
        "alter system set track_functions = 'all'",
        "alter system set autovacuum = off",
        "alter system set checkpoint_timeout = '1d'",
        "alter system set max_wal_size = '20GB'",
        // pg_walinspect reads each window's WAL after the window's checkpoints.
        "alter system set wal_keep_size = '4GB'",
      ]
    ) await admin.unsafe(s);
    await admin`select pg_reload_conf()`;
    let walinspect = true;
    try {
      await admin`create extension if not exists pg_walinspect`;
    } catch {
      walinspect = false;
    }
    const [{ version }] = await admin`select version() as version`;
    // The layout: this baseline's private ledger, or the public one of older checkouts.
    const [{ ledger, keyed }] = await admin`select
      coalesce(to_regclass('hms_private.events'), to_regclass('public.hms_events'))::text
        as ledger,
      exists (select 1 from pg_attribute where attname = 'sent_at' and not attisdropped
        and attrelid = coalesce(to_regclass('hms_private.events'),
          to_regclass('public.hms_events'))) as keyed`;
    const prune = ledger === "hms_private.events"
      ? "hms_private.prune_events"
      : "public.hms_prune_events";
    // The floor: the same columns and indexes as rooms, none of the triggers.
    await admin.unsafe(
      `create table public.hms_floor_rooms (like public.rooms including all);
      create function public.hms_floor(p_room text) returns void language plpgsql as $f$
      begin
        update public.hms_floor_rooms set listener_count = listener_count + 1,
          last_active_at = now()
        where hms_room_id = p_room;
      end
      $f$;`,
    );
    const [{ pid }] = await c`select pg_backend_pid() as pid`;

    // The ledger as it stands in production: days of events, so its indexes are deep.
    ctx.log(`database cost: ledger prefill, ${PREFILL} rows over 8 days`);
    await admin`insert into public.rooms (hms_room_id) values ('cost-ledger-fill')`;
    await admin.unsafe(`insert into ${ledger}
        (${
      keyed ? "sent_at, " : ""
    }event_id, event_type, action, room_id, session_id, peer_id,
         event_at, received_at)
      select ${
      keyed ? "t, " : ""
    }gen_random_uuid()::text, 'peer.join.success', 'peer_join',
        r.id, 'fill', 'fill-peer-' || i, t, t
      from (select id from public.rooms where hms_room_id = 'cost-ledger-fill') r,
        lateral (select i, now() - interval '8 days' * (1 - i::float8 / ${PREFILL}) as t
                 from generate_series(1, ${PREFILL}) i) g`);
    await admin.unsafe(`vacuum analyze ${ledger}`);

    const windows: Window[] = [];
    let currentCompression = "off";
    const measure = async (
      kind: Kind,
      fpw: boolean,
      segments: { setup: Call[]; timed: Call[] }[],
    ) => {
      const compression = currentCompression;
      await admin`checkpoint`;
      let events = 0, walBytes = 0, records = 0, fpi = 0, cpu = 0, entryMs = 0;
      let fpiBytes = 0, bandChanges = 0;
      const rmgr: Record<string, { n: number; bytes: number }> = {};
      const tables: Window["by_table"] = {};
      for (const seg of segments) {
        for (const call of seg.setup) await call(c);
        const before = await snapshot(c);
        const cpu0 = cpuNs(pid);
        const bands = new Map<string, number | null>();
        const moved = (room: string, band: number | null) => {
          if (bands.has(room) && bands.get(room) !== band) bandChanges++;
          bands.set(room, band);
        };
        for (const [i, call] of seg.timed.entries()) {
          const seen = await call(c);
          if (seen) moved(seen.room, seen.band);
          // A checkpoint every 1,000 events: each page pays its full-page image again.
          if ((events + i + 1) % CHECKPOINT_EVERY === 0) {
            await admin`checkpoint`;
          }
        }
        const cpu1 = cpuNs(pid);
        const after = await snapshot(c);
        cpu += cpu1 - cpu0;
        for (
          const r of await admin`select hms_room_id as room,
            (to_jsonb(r) ->> 'trending_rank_band')::float8 as band
            from public.rooms as r where hms_room_id = any(${[
            ...bands.keys(),
          ]}::text[])`
        ) moved(r.room, r.band);
        events += seg.timed.length;
        const [{ d }] = await admin`select pg_wal_lsn_diff(${after.lsn}::pg_lsn,
          ${before.lsn}::pg_lsn)::float8 as d`;
        walBytes += d;
        records += after.wal_records - before.wal_records;
        const entry = kind === "floor" ? "hms_floor" : "hms_apply_event";
        entryMs += (after.functions.get(entry) ?? 0) -
          (before.functions.get(entry) ?? 0);
        fpi += after.wal_fpi - before.wal_fpi;
        if (walinspect) {
          // pg_walinspect reads only flushed WAL. A record no commit follows can stay unflushed
          // (the WAL writer alone flushes whole pages), so commit an xid after the range: that
          // asks the WAL writer to flush past it within its delay.
          await admin`select pg_current_xact_id()`;
          for (let i = 0;; i++) {
            const [{ ok }] = await admin`select pg_current_wal_flush_lsn() >=
              ${after.lsn}::pg_lsn as ok`;
            if (ok) break;
            if (i === 100) {
              throw new Error(`WAL not flushed up to ${after.lsn}`);
            }
            await new Promise((r) => setTimeout(r, 50));
          }
          const stats = await admin`select "resource_manager/record_type" as rt,
            count::float8 as n, (record_size + fpi_size)::float8 as bytes,
            fpi_size::float8 as fpi
            from pg_get_wal_stats(${before.lsn}::pg_lsn, ${after.lsn}::pg_lsn, true)
            where count > 0`;
          for (const s of stats) {
            const r = rmgr[s.rt] ??= { n: 0, bytes: 0 };
            r.n += s.n;
            r.bytes += s.bytes;
            fpiBytes += s.fpi;
          }
        }
        for (const [name, a] of after.tables) {
          const b = before.tables.get(name) ??
            { ins: 0, upd: 0, hot: 0, del: 0 };
          const t = tables[name] ??= { ins: 0, upd: 0, hot: 0, del: 0 };
          t.ins += a.ins - b.ins;
          t.upd += a.upd - b.upd;
          t.hot += a.hot - b.hot;
          t.del += a.del - b.del;
        }
      }
      const per = (x: number) => r3(x / events);
      const byTable: Window["by_table"] = {};
      let ins = 0, upd = 0, del = 0;
      for (const [name, t] of Object.entries(tables)) {
        if (t.ins + t.upd + t.del === 0) continue;
        byTable[name] = {
          ins: per(t.ins),
          upd: per(t.upd),
          hot: per(t.hot),
          del: per(t.del),
        };
        ins += t.ins;
        upd += t.upd;
        del += t.del;
      }
      const rooms = tables.rooms;
      windows.push({
        kind,
        full_page_writes: fpw,
        wal_compression: compression,
        events,
        wal_bytes_per_event: r1(walBytes / events),
        wal_records_per_event: per(records),
        wal_fpi_per_event: per(fpi),
        wal_fpi_bytes_per_event: walinspect ? r1(fpiBytes / events) : null,
        wal_by_record: walinspect
          ? Object.fromEntries(
            Object.entries(rmgr).sort((a, b) => b[1].bytes - a[1].bytes).map((
              [k, v],
            ) => [k, { records: per(v.n), bytes: r1(v.bytes / events) }]),
          )
          : null,
        rows_inserted_per_event: per(ins),
        rows_updated_per_event: per(upd),
        rows_deleted_per_event: per(del),
        by_table: byTable,
        rooms_hot_share: rooms && rooms.upd > 0
          ? r3(rooms.hot / rooms.upd)
          : null,
        band_changes_per_event: per(bandChanges),
        rooms_hot_share_same_band: rooms && rooms.upd > bandChanges
          ? r3(rooms.hot / (rooms.upd - bandChanges))
          : null,
        backend_cpu_us_per_event: r1(cpu / events / 1000),
        entry_us_per_event: r1(entryMs * 1000 / events),
      });
    };

    const base = Date.now() - 3_600_000;
    // full_page_writes off, on, and on with wal_compression (a server setting that Supabase
    // does not let a migration choose; shown for what it would save).
    const modes = [
      { fpw: false, compression: "off" },
      { fpw: true, compression: "off" },
      { fpw: true, compression: "lz4" },
    ];
    for (const { fpw, compression } of modes) {
      currentCompression = compression;
      await c.unsafe(`set wal_compression = ${compression}`);
      await admin.unsafe(`alter system set full_page_writes = ${fpw}`);
      await admin`select pg_reload_conf()`;
      // The reload reaches each backend asynchronously (SIGHUP): wait until ours has it.
      for (let i = 0;; i++) {
        const [{ on }] =
          await c`select current_setting('full_page_writes') as on`;
        if ((on === "on") === fpw) break;
        if (i === 100) {
          throw new Error(`full_page_writes did not switch to ${fpw}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      const tag = fpw
        ? (compression === "off" ? "on" : `on-${compression}`)
        : "off";
      const rooms = Array.from(
        { length: ROOMS },
        (_, i) => `cost-${tag}-${String(i).padStart(3, "0")}`,
      );
      await admin`insert into public.rooms (hms_room_id) select unnest(${rooms}::text[])`;
      await admin`insert into public.hms_floor_rooms (hms_room_id) select unnest(${rooms}::text[])`;
      const t = (k: number) => iso(base + k);
      const open = (room: string, sid: string, at: number) =>
        apply({
          p_event_id: crypto.randomUUID(),
          p_event_type: "session.open.success",
          p_action: "session_open",
          p_room_id: room,
          p_session_id: sid,
          p_session_started_at: t(at),
          p_event_at: t(at),
        });
      const peer = (j: number) => ({
        room: rooms[j % ROOMS],
        id: `peer-${tag}-${j}`,
        speaker: j % 5 === 0,
      });
      const join = (
        room: string,
        sid: string,
        id: string,
        sp: boolean,
        at: number,
      ) =>
        apply({
          p_event_id: crypto.randomUUID(),
          p_event_type: "peer.join.success",
          p_action: "peer_join",
          p_room_id: room,
          p_session_id: sid,
          p_session_started_at: t(0),
          p_peer_id: id,
          p_role: sp ? "speaker" : "listener",
          p_role_class: sp ? "speaker" : "listener",
          p_event_at: t(at),
        });
      const sid0 = (room: string) => `s0-${room}`;
      ctx.log(`database cost: full_page_writes ${tag}`);
      await measure("floor", fpw, [{
        setup: [],
        timed: Array.from({ length: N }, (_, j) => floor(rooms[j % ROOMS])),
      }]);
      await measure("join", fpw, [{
        setup: rooms.map((r) => open(r, sid0(r), 0)),
        timed: Array.from({ length: N }, (_, j) => {
          const p = peer(j);
          return join(p.room, sid0(p.room), p.id, p.speaker, 1_000 + j);
        }),
      }]);
      await measure("role_change", fpw, [{
        setup: [],
        timed: Array.from({ length: N }, (_, j) => {
          const p = peer(j);
          const sp = !p.speaker;
          return apply({
            p_event_id: crypto.randomUUID(),
            p_event_type: "role.change.success",
            p_action: "role_change",
            p_room_id: p.room,
            p_session_id: sid0(p.room),
            p_session_started_at: t(0),
            p_peer_id: p.id,
            p_role: sp ? "speaker" : "listener",
            p_role_class: sp ? "speaker" : "listener",
            p_event_at: t(1_000_000 + j),
            p_joined_at: t(1_000 + j),
          });
        }),
      }]);
      await measure("leave", fpw, [{
        setup: [],
        timed: Array.from({ length: N }, (_, j) => {
          const p = peer(j);
          return apply({
            p_event_id: crypto.randomUUID(),
            p_event_type: "peer.leave.success",
            p_action: "peer_leave",
            p_room_id: p.room,
            p_session_id: sid0(p.room),
            p_session_started_at: t(0),
            p_peer_id: p.id,
            p_role: p.speaker ? "listener" : "speaker",
            p_event_at: t(2_000_000 + j),
            p_joined_at: t(1_000 + j),
          });
        }),
      }]);
      // Closes: round k opens a new session in every room with CLOSE_PEERS present peers
      // (untimed), then closes each room's current session (timed).
      const rounds = Math.max(1, Math.round(N / ROOMS / 4));
      await measure(
        "close",
        fpw,
        Array.from({ length: rounds }, (_, k) => {
          const at = 3_000_000 + k * 100_000;
          const sid = (room: string) => `s${k + 1}-${room}`;
          return {
            setup: rooms.flatMap((r) => [
              open(r, sid(r), at),
              ...Array.from(
                { length: CLOSE_PEERS },
                (_, i) =>
                  join(r, sid(r), `cp-${k}-${i}-${r}`, i === 0, at + 1 + i),
              ),
            ]),
            timed: rooms.map((r) =>
              apply({
                p_event_id: crypto.randomUUID(),
                p_event_type: "session.close.success",
                p_action: "session_close",
                p_room_id: r,
                p_session_id: sid(r),
                p_session_started_at: t(at),
                p_event_at: t(at + 50_000),
              })
            ),
          };
        }),
      );
      // Every room ends with no one present: the closes ended every session.
      const [{ bad }] =
        await admin`select count(*)::int as bad from public.rooms
        where hms_room_id = any(${rooms}::text[])
          and (listener_count <> 0 or speaker_count <> 0 or is_live)`;
      if (bad !== 0) {
        throw new Error(
          `COUNTS NOT EXACT: ${bad} rooms not empty after their sessions closed`,
        );
      }
    }

    // The feed's read cost among 100,000 rooms, 1,000 and then 10,000 of them live with spread
    // counts and activity: p50/p99 of trending_rooms(20), timed inside the server.
    ctx.log("database cost: the feed among 100,000 rooms");
    const FEED_ROOMS = quick ? 10_000 : 100_000;
    // Rooms are inserted with their counts (the insert trigger ranks them), as many live as the
    // level says: the apply owns counts, so they are not updated in place.
    const feedRooms = (live: number) =>
      admin`insert into public.rooms (hms_room_id, is_live, listener_count, speaker_count,
          last_active_at)
        select 'feed-' || g, g <= ${live},
          case when g <= ${live} then 1 + (g * 7919) % 300 else 0 end,
          case when g <= ${live} then g % 6 else 0 end,
          now() - (case when g <= ${live} then g % 600 else g % 2000 end) * interval '1 minute'
        from generate_series(1, ${FEED_ROOMS - ROOMS * 3 - 1}) g`;
    await admin.unsafe(`create function pg_temp.feed_ms(n integer)
      returns table (p50 float8, p99 float8) language plpgsql as $f$
      declare t0 timestamptz; ms float8[] := '{}';
      begin
        for i in 1..n loop
          t0 := clock_timestamp();
          perform * from public.trending_rooms(20);
          ms := ms || (extract(epoch from clock_timestamp() - t0) * 1000)::float8;
        end loop;
        return query select percentile_disc(0.5) within group (order by x),
          percentile_disc(0.99) within group (order by x) from unnest(ms) x;
      end
      $f$`);
    const feed: DbCostResult["feed"] = [];
    for (const live of quick ? [100, 1_000] : [1_000, 10_000]) {
      await admin`delete from public.rooms where hms_room_id like 'feed-%'`;
      await feedRooms(live);
      await admin`vacuum analyze public.rooms`;
      const [r] = await admin`select p50, p99 from pg_temp.feed_ms(${
        quick ? 50 : 500
      })`;
      feed.push({
        rooms: FEED_ROOMS,
        live,
        p50_ms: r3(r.p50),
        p99_ms: r3(r.p99),
      });
    }

    // The ledger: size per million events, and one day's prune with full-page writes on.
    await admin.unsafe(`vacuum analyze ${ledger}`);
    const [size] = await admin.unsafe(`select count(*)::float8 as rows,
      pg_relation_size('${ledger}')::float8 as heap,
      pg_total_relation_size('${ledger}')::float8 as total
      from ${ledger}`);
    const idx = await admin.unsafe(`select indexrelid::regclass::text as name,
      pg_relation_size(indexrelid)::float8 as bytes
      from pg_index where indrelid = '${ledger}'::regclass`);
    await admin`checkpoint`;
    const [{ lsn: l0 }] =
      await admin`select pg_current_wal_insert_lsn()::text as lsn`;
    const p0 = performance.now();
    const [{ n }] = await admin.unsafe(`select ${prune}()::float8 as n`);
    const pruneMs = performance.now() - p0;
    const [{ d: pruneWal }] = await admin`select pg_wal_lsn_diff(
      pg_current_wal_insert_lsn(), ${l0}::pg_lsn)::float8 as d`;

    const wal_over_floor: Record<string, number> = {};
    const time_over_floor: Record<string, number> = {};
    for (const w of windows) {
      if (w.kind === "floor") continue;
      const f = windows.find((x) =>
        x.kind === "floor" && x.full_page_writes === w.full_page_writes &&
        x.wal_compression === w.wal_compression
      );
      if (f) {
        wal_over_floor[modeKey(w)] = r3(
          w.wal_bytes_per_event / f.wal_bytes_per_event,
        );
        if (w.entry_us_per_event !== null && f.entry_us_per_event) {
          time_over_floor[modeKey(w)] = r3(
            w.entry_us_per_event / f.entry_us_per_event,
          );
        }
      }
    }
    return {
      postgres: version.split(" on ")[0],
      method: {
        calls:
          "one backend, one event per transaction (autocommit select public.hms_apply_event(...) with named arguments; floor: select hms_floor($1), a plpgsql update hms_floor_rooms set listener_count = listener_count + 1, last_active_at = now() on a trigger-free copy of rooms with its columns and indexes)",
        checkpoints:
          "CHECKPOINT right before each window and after every 1,000 events (autovacuum off, checkpoint_timeout 1d): with full_page_writes on, every page touched pays a full-page image again after each; close windows are split by untimed setup between rounds",
        time:
          "pg_stat_user_functions total_time of the entry function (hms_apply_event, or hms_floor) with track_functions = all, per event",
        feed:
          "trending_rooms(20) run n times inside one plpgsql function, each timed with clock_timestamp(); 100,000 rooms, 1,000 then 10,000 live with spread counts and activity",
        wal:
          "pg_current_wal_insert_lsn() difference over the timed calls (cluster-wide, nothing else writes); records and FPIs from pg_stat_wal; by resource manager from pg_walinspect; wal_compression off",
        cpu:
          "on-CPU time of the backend that ran the calls (/proc/<pid>/schedstat), parse + plan + execute + commit; not the WAL writer, checkpointer or the client",
        rows:
          "pg_stat_user_tables deltas over the timed calls (stats flushed with pg_stat_force_next_flush())",
      },
      rooms: ROOMS,
      ledger_prefill_rows: PREFILL,
      windows,
      wal_over_floor,
      time_over_floor,
      feed,
      ledger: {
        rows: size.rows,
        heap_bytes: size.heap,
        index_bytes: Object.fromEntries(idx.map((i) => [i.name, i.bytes])),
        total_bytes_per_million: Math.round(size.total / size.rows * 1e6),
        prune: {
          rows_deleted: n,
          ms: r1(pruneMs),
          wal_bytes: pruneWal,
          wal_bytes_per_row: r1(pruneWal / Math.max(1, n)),
          full_page_writes: true,
        },
      },
    };
  } finally {
    await Promise.all([admin, c].map((x) => x.end({ timeout: 5 })));
    await pg.stop();
  }
}
