/**
 * What Supabase Realtime reads from the database, reproduced on the local PostgreSQL:
 *
 * - Postgres Changes: a real logical replication slot with the wal2json plugin, read with the
 *   exact options and table list Realtime's `realtime.list_changes()` uses (supabase/realtime,
 *   `realtime.list_changes`: wal2json `format-version 2`, `include-pk`, `include-type-oids`,
 *   `actions` from the publication's pubinsert/pubupdate/pubdelete, and `add-tables` = the tables
 *   of `pg_publication_tables` for `supabase_realtime`). So "in the stream" here means "what
 *   Realtime decodes and then checks against each subscriber's RLS".
 * - Broadcast from the database: a stand-in `realtime` schema, created only in the test database,
 *   following the documented contract (Supabase docs, guides/realtime/broadcast "How Broadcast
 *   works": "Database: Adds a new entry to `realtime.messages` …", signature
 *   `realtime.send(payload, event, topic, is_private)`; guides/realtime/authorization: policies on
 *   `realtime.messages`, `realtime.topic()`, "the validation is done when the user connects").
 *   Supabase's own `realtime.send` (supabase/realtime migrations) adds an `id` to the payload,
 *   sets `realtime.topic` for the transaction, inserts `(id, payload, event, topic, private,
 *   extension = 'broadcast')` and turns any error into a warning; `realtime.topic()` reads the
 *   `realtime.topic` setting. The stand-in does exactly that and nothing more (no delivery).
 */

import type postgres from "postgres";

/** One change as wal2json format-version 2 prints it. */
export interface W2jChange {
  action: "I" | "U" | "D" | "T" | "B" | "C" | "M";
  schema: string;
  table: string;
  columns?: { name: string; type: string; value: unknown }[];
  identity?: { name: string; type: string; value: unknown }[];
}

/** The new row of an insert or update as a name -> value map. */
export function rowOf(change: W2jChange): Record<string, unknown> {
  return Object.fromEntries(
    (change.columns ?? []).map((c) => [c.name, c.value]),
  );
}

export const PUBLICATION = "supabase_realtime";

const PLAIN_NAME = /^[a-z_][a-z0-9_]*$/;

/**
 * A temporary wal2json slot on its own connection (a temporary slot belongs to the session that
 * made it, and goes away with it, so a failed test leaves no slot holding WAL back).
 */
export class RealtimeSlot {
  private constructor(
    private readonly conn: postgres.ReservedSql,
    readonly name: string,
  ) {}

  static async open(sql: postgres.Sql): Promise<RealtimeSlot> {
    const conn = await sql.reserve();
    const name = `hms_rt_${
      crypto.randomUUID().replaceAll("-", "").slice(0, 16)
    }`;
    await conn`select pg_create_logical_replication_slot(${name}, 'wal2json', true)`;
    return new RealtimeSlot(conn, name);
  }

  /** `add-tables` and `actions` exactly as realtime.list_changes() derives them. */
  async publication(): Promise<{ tables: string[]; actions: string }> {
    const rows = await this.conn<
      { schemaname: string | null; tablename: string | null; actions: string }[]
    >`
      select t.schemaname, t.tablename,
        concat_ws(',',
          case when bool_or(p.pubinsert) over () then 'insert' end,
          case when bool_or(p.pubupdate) over () then 'update' end,
          case when bool_or(p.pubdelete) over () then 'delete' end) as actions
      from pg_publication p
      left join pg_publication_tables t on t.pubname = p.pubname
      where p.pubname = ${PUBLICATION}`;
    if (rows.length === 0) throw new Error(`no publication ${PUBLICATION}`);
    const tables: string[] = [];
    for (const r of rows) {
      if (r.schemaname === null || r.tablename === null) continue;
      // realtime.quote_wal2json escapes odd names; ours never need it, so refuse them instead.
      if (!PLAIN_NAME.test(r.schemaname) || !PLAIN_NAME.test(r.tablename)) {
        throw new Error(`unexpected name ${r.schemaname}.${r.tablename}`);
      }
      tables.push(`${r.schemaname}.${r.tablename}`);
    }
    return { tables: tables.sort(), actions: rows[0].actions };
  }

  /**
   * Consumes everything up to now and returns it twice: `realtime`, what Realtime's options
   * decode (empty when the publication has no table: Realtime ignores the slot then), and
   * `everything`, every change of every table of `public` and `hms_private` in the same range (the control that
   * shows the slot does see the hms_* writes the filter keeps out).
   */
  async drain(): Promise<{ realtime: W2jChange[]; everything: W2jChange[] }> {
    // Logical decoding reads flushed WAL only. Commits flush themselves, but a record no commit
    // follows (a page prune done by a read, which has no xid) stays unflushed until a later
    // commit asks: the WAL writer on its own flushes whole pages only. So end with a commit of
    // our own that has an xid; it writes no row, and asks the WAL writer to flush past it within
    // wal_writer_delay.
    const [{ upto }] = await this.conn<{ upto: string }[]>`
      select pg_current_wal_insert_lsn()::text as upto`;
    await this.conn`select pg_current_xact_id()`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const [{ flushed }] = await this.conn<{ flushed: boolean }[]>`
        select pg_current_wal_flush_lsn() >= ${upto}::pg_lsn as flushed`;
      if (flushed) break;
      if (Date.now() > deadline) {
        throw new Error(`WAL not flushed up to ${upto}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const everything = await this.conn<{ data: string }[]>`
      select data from pg_logical_slot_peek_changes(${this.name}, ${upto}::pg_lsn, null,
        'include-pk', 'true', 'include-transaction', 'false', 'format-version', '2',
        'add-tables', 'public.*,hms_private.*')`;
    const pub = await this.publication();
    const realtime = await this.conn<{ data: string }[]>`
      select data from pg_logical_slot_get_changes(${this.name}, ${upto}::pg_lsn, null,
        'include-pk', 'true',
        'include-transaction', 'false',
        'include-timestamp', 'true',
        'include-type-oids', 'true',
        'format-version', '2',
        'actions', ${pub.actions},
        'add-tables', ${pub.tables.join(",")})`;
    const parse = (rows: { data: string }[]) =>
      rows.map((r) => JSON.parse(r.data) as W2jChange);
    return {
      realtime: pub.tables.length === 0 ? [] : parse(realtime),
      everything: parse(everything),
    };
  }

  async close(): Promise<void> {
    await this.conn`select pg_drop_replication_slot(${this.name})`.catch(
      () => {},
    );
    this.conn.release();
  }
}

/**
 * The stand-in `realtime` schema (see the module comment for the documents it follows). Only
 * for the test database; {@link dropRealtimeStandIn} removes it again.
 */
export const REALTIME_STAND_IN = `
create schema if not exists realtime;
create table if not exists realtime.messages (
  id uuid not null default gen_random_uuid(),
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  inserted_at timestamp not null default now(),
  primary key (id, inserted_at)
);
alter table realtime.messages enable row level security;
grant usage on schema realtime to anon, authenticated;
grant select on realtime.messages to anon, authenticated;

create or replace function realtime.send(payload jsonb, event text, topic text, private boolean default true)
returns void language plpgsql as $$
declare
  generated_id uuid := gen_random_uuid();
begin
  begin
    execute format('set local realtime.topic to %L', topic);
    insert into realtime.messages (id, payload, event, topic, private, extension)
    values (generated_id,
      case when payload ? 'id' then payload else jsonb_set(payload, '{id}', to_jsonb(generated_id)) end,
      event, topic, private, 'broadcast');
  exception when others then
    raise warning 'WarnSendingBroadcastMessage: %', sqlerrm;
  end;
end
$$;

create or replace function realtime.topic() returns text language sql stable as $$
  select nullif(current_setting('realtime.topic', true), '')::text
$$;
grant execute on function realtime.topic() to anon, authenticated;
`;

export async function createRealtimeStandIn(sql: postgres.Sql): Promise<void> {
  await sql.unsafe(REALTIME_STAND_IN);
}

export async function dropRealtimeStandIn(sql: postgres.Sql): Promise<void> {
  await sql.unsafe("drop schema if exists realtime cascade");
}

/**
 * Realtime's join-time check, as the authorization guide describes it: as the joining role, with
 * the topic set, can a broadcast message of that topic be read? Done in a transaction that is
 * rolled back, like Realtime does.
 */
export async function mayJoin(
  sql: postgres.Sql,
  role: "anon" | "authenticated",
  topic: string,
): Promise<boolean> {
  let allowed = false;
  await sql.begin(async (tx) => {
    await tx`insert into realtime.messages (topic, extension, payload, event, private)
      values (${topic}, 'broadcast', '{}'::jsonb, 'probe', true)`;
    await tx`select set_config('realtime.topic', ${topic}, true)`;
    await tx.unsafe(`set local role ${role}`);
    const [{ ok }] = await tx<{ ok: boolean }[]>`
      select exists (select 1 from realtime.messages
        where topic = realtime.topic() and extension = 'broadcast') as ok`;
    allowed = ok;
    throw new Rollback();
  }).catch((e) => {
    if (!(e instanceof Rollback)) throw e;
  });
  return allowed;
}

class Rollback extends Error {}
