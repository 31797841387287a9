/**
 * Supabase Realtime (migration 20261206000600_hms_realtime.sql), proven on the stack's real WAL.
 *
 * Realtime cannot run here, but it only reads the database: Postgres Changes through a logical
 * replication slot decoded by wal2json with the tables of the `supabase_realtime` publication,
 * Broadcast from the database through rows `realtime.send()` adds to `realtime.messages`. These
 * tests open a real wal2json slot and read it with Realtime's own options (tests/helpers/
 * realtime.ts), send real webhooks through the function URL, and check what Realtime would get:
 * exactly one `rooms` change per applied webhook, none for a duplicate, an ignored event or a
 * refused request, and never a row of hms_private.presence, hms_private.sessions or hms_private.events.
 *
 * The Broadcast test runs the migration's trigger SQL against a stand-in `realtime.send` /
 * `realtime.messages` / `realtime.topic()` created only in the test database and removed
 * afterwards; it follows Supabase's documented signature and behaviour (cited in
 * tests/helpers/realtime.ts), and the "stand-in contract" test checks it does.
 *
 * The last test measures (and prints) what each mode costs per event in WAL bytes and what a
 * subscriber of a very busy room receives. It asserts the counts, never a speed.
 */

import {
  buildEvent,
  type BuiltEvent,
  nowNanos,
  objectId,
  SessionTimeline,
} from "../scripts/lib/hms.ts";
import postgres from "postgres";
import { applySqlFile } from "../scripts/stack/postgres.ts";
import { assert } from "./helpers/assert.ts";
import { createRoom, roomRow } from "./helpers/db.ts";
import {
  createRealtimeStandIn,
  dropRealtimeStandIn,
  mayJoin,
  PUBLICATION,
  REALTIME_STAND_IN,
  RealtimeSlot,
  rowOf,
  type W2jChange,
} from "./helpers/realtime.ts";
import { stackTest, type TestStack } from "./helpers/stack.ts";
import { type Answer, deliver, S } from "./helpers/webhook.ts";

const MIGRATION = "supabase/migrations/20261206000600_hms_realtime.sql";
/** The fields a Broadcast message carries (plus the `id` realtime.send adds). */
const PAYLOAD_KEYS = [
  "featured",
  "hms_room_id",
  "id",
  "is_live",
  "last_active_at",
  "listener_count",
  "speaker_count",
  "trending_rank",
  "trending_score",
];

type Mode = "postgres_changes" | "broadcast" | "off";

async function setMode(
  stack: TestStack,
  mode: Mode,
  intervalMs = 1000,
): Promise<void> {
  await stack.sql`update public.hms_settings
    set realtime = ${mode}, realtime_interval_ms = ${intervalMs} where id`;
}

/**
 * Runs `fn` in a transaction that is rolled back, on a connection of its own: what `fn` answered
 * and the notices the server sent meanwhile.
 */
async function rolledBack<T>(
  stack: TestStack,
  fn: (tx: postgres.TransactionSql) => Promise<T>,
): Promise<{ value: T; notices: string[] }> {
  const notices: string[] = [];
  const sql = postgres(stack.databaseUrl, {
    max: 1,
    onnotice: (n) => notices.push(`${n.severity}: ${n.message}`),
  });
  const rollback = new Error("rollback");
  let value: T | undefined;
  try {
    await sql.begin(async (tx) => {
      value = await fn(tx);
      throw rollback;
    }).catch((e) => {
      if (e !== rollback) throw e;
    });
  } finally {
    await sql.end();
  }
  return { value: value as T, notices };
}

async function publishedTables(stack: TestStack): Promise<string[]> {
  const rows = await stack.sql<{ t: string }[]>`
    select schemaname || '.' || tablename as t from pg_publication_tables
    where pubname = ${PUBLICATION} order by 1`;
  return rows.map((r) => r.t);
}

function send(stack: TestStack, event: BuiltEvent | string): Promise<Answer> {
  return deliver(stack.functionUrl, event, {
    secret: stack.secret,
    headerName: stack.secretHeader,
  });
}

/** Sends every event with `concurrency` requests in flight; returns the answers. */
async function fire(
  stack: TestStack,
  events: BuiltEvent[],
  concurrency: number,
): Promise<Answer[]> {
  const answers: Answer[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < events.length) {
        answers.push(await send(stack, events[next++]));
      }
    }),
  );
  return answers;
}

function roomOf(answer: Answer): Record<string, unknown> {
  const room = answer.json?.room;
  assert.ok(room && typeof room === "object", `no room in ${answer.text}`);
  return room as Record<string, unknown>;
}

function describe(changes: W2jChange[]): string[] {
  return changes.map((c) => `${c.action} ${c.schema}.${c.table}`);
}

/** Nothing of hms_* may ever be decoded for Realtime. */
function assertNoHmsTable(changes: W2jChange[], where: string) {
  const leaked = changes.filter((c) => c.table.startsWith("hms_"));
  assert.deepEqual(describe(leaked), [], `${where}: hms_* in the stream`);
}

/** One story of a room: what each step is and whether it must be applied. */
interface Step {
  name: string;
  body: BuiltEvent | string;
  /** `applied`: 200 applied; otherwise the status and JSON status expected. */
  expect: "applied" | { status: number; json?: string };
  refuse?: boolean;
}

function story(roomId: string): Step[] {
  const t0 = nowNanos() - 120n * S;
  const tl = new SessionTimeline({ roomId, startedAt: t0 });
  const listener = tl.join({ at: t0 + 2n * S, role: "listener" });
  const listenerId = (listener.payload.data as { peer_id: string }).peer_id;
  return [
    { name: "session open", body: tl.open(), expect: "applied" },
    { name: "listener joins", body: listener, expect: "applied" },
    {
      name: "speaker joins",
      body: tl.join({ at: t0 + 3n * S, role: "speaker" }),
      expect: "applied",
    },
    {
      name: "duplicate of the listener's join",
      body: listener.body,
      expect: { status: 200, json: "duplicate" },
    },
    {
      name: "event type not handled",
      body: tl.event("recording.success", { at: t0 + 4n * S }),
      expect: { status: 200, json: "ignored" },
    },
    {
      name: "failure event",
      body: tl.event("peer.join.failure", { at: t0 + 4n * S }),
      expect: { status: 200, json: "ignored" },
    },
    {
      name: "unknown room",
      body: buildEvent("peer.join.success", {
        roomId: objectId(),
        at: t0 + 4n * S,
      }),
      expect: { status: 200, json: "ignored" },
    },
    {
      name: "refused (no credentials)",
      body: tl.join({ at: t0 + 5n * S }),
      expect: { status: 401 },
      refuse: true,
    },
    {
      name: "listener leaves",
      body: tl.leave(listenerId, { at: t0 + 6n * S }),
      expect: "applied",
    },
    {
      name: "session closes",
      body: tl.close({ at: t0 + 7n * S }),
      expect: "applied",
    },
  ];
}

async function deliverStep(stack: TestStack, step: Step): Promise<Answer> {
  const answer = step.refuse
    ? await deliver(stack.functionUrl, step.body, {
      secret: stack.secret,
      auth: "none",
    })
    : await send(stack, step.body);
  if (step.expect === "applied") {
    assert.equal(answer.status, 200, `${step.name}: ${answer.text}`);
    assert.equal(
      answer.json?.status,
      "applied",
      `${step.name}: ${answer.text}`,
    );
  } else {
    assert.equal(
      answer.status,
      step.expect.status,
      `${step.name}: ${answer.text}`,
    );
    if (step.expect.json) {
      assert.equal(answer.json?.status, step.expect.json, step.name);
    }
  }
  return answer;
}

stackTest({
  name:
    "postgres_changes: every applied webhook is exactly one rooms UPDATE with the new counts; duplicates, ignored and refused requests stream nothing; no hms_* table ever",
  async fn(stack) {
    await setMode(stack, "postgres_changes");
    assert.deepEqual(await publishedTables(stack), ["public.rooms"]);
    const slot = await RealtimeSlot.open(stack.sql);
    try {
      const roomId = await createRoom(stack.sql);
      let drained = await slot.drain();
      assert.deepEqual(describe(drained.realtime), ["I public.rooms"]);
      assert.equal(rowOf(drained.realtime[0]).hms_room_id, roomId);

      for (const step of story(roomId)) {
        const answer = await deliverStep(stack, step);
        drained = await slot.drain();
        assertNoHmsTable(drained.realtime, step.name);
        if (step.expect !== "applied") {
          assert.deepEqual(describe(drained.realtime), [], step.name);
          assert.deepEqual(
            describe(drained.everything),
            [],
            `${step.name}: nothing may be written at all`,
          );
          continue;
        }
        // Exactly the rooms change, carrying what the webhook answered and the row holds.
        assert.deepEqual(
          describe(drained.realtime),
          ["U public.rooms"],
          step.name,
        );
        const row = rowOf(drained.realtime[0]);
        const room = roomOf(answer);
        const stored = await roomRow(stack.sql, roomId);
        assert.equal(row.hms_room_id, roomId, step.name);
        for (const field of ["is_live", "listener_count", "speaker_count"]) {
          assert.equal(row[field], room[field], `${step.name}: ${field}`);
        }
        assert.equal(row.listener_count, stored?.listeners, step.name);
        assert.equal(row.speaker_count, stored?.speakers, step.name);
        assert.equal(row.is_live, stored?.isLive, step.name);
        assert.equal(
          Number(row.trending_score),
          stored?.trendingScore,
          `${step.name}: trending_score`,
        );
        // The control: the same WAL range did hold the ledger and presence writes.
        assert.ok(
          drained.everything.some((c) =>
            c.schema === "hms_private" && c.table === "events"
          ),
          `${step.name}: the slot saw no ledger insert (${
            describe(drained.everything)
          })`,
        );
      }
    } finally {
      await slot.close();
    }
  },
});

/** What a room's subscribers received for one applied webhook: its counts, one per message. */
type Seen = { listener_count: unknown; speaker_count: unknown }[];
/** The step name `seen` gets for the story's set-up (what it sent is not checked). */
const BEFORE = "before the story";

/**
 * Who is on stage, as subscribers follow it: a speaker joining, a listener promoted, a speaker
 * demoted, a speaker leaving, each a webhook whose one visible change carries the new speaker
 * count (the stage itself is re-read from room_participants); then host -> speaker, which keeps
 * the stage and the counts. `seen` is what the mode delivered for the webhook just applied.
 */
async function stageStory(
  stack: TestStack,
  roomId: string,
  seen: (step: string) => Promise<Seen>,
): Promise<void> {
  const t0 = nowNanos() - 120n * S;
  const tl = new SessionTimeline({ roomId, startedAt: t0 });
  const at = (s: number) => t0 + BigInt(s) * S;
  const peer = (e: BuiltEvent) => {
    const data = e.payload.data as { peer_id: string; user_name: string };
    return { id: data.peer_id, name: data.user_name };
  };
  const host = tl.join({ at: at(1), role: "host" });
  const listener = tl.join({ at: at(2), role: "listener" });
  const speaker = tl.join({ at: at(3), role: "speaker" });
  const [h, l, sp] = [host, listener, speaker].map(peer);
  /** The stage a subscriber re-reads: the speakers' names, in join order. */
  const stage = async () =>
    (await stack.sql<{ user_name: string }[]>`
      select user_name from public.room_participants
      where hms_room_id = ${roomId} and role_class = 'speaker'
      order by joined_at, peer_id`).map((r) => r.user_name);
  // Last active before the story, as a room idle for an hour: each event moves it.
  await stack.sql`update public.rooms
    set last_active_at = to_timestamp(${Number(t0 / S) - 3600})
    where hms_room_id = ${roomId}`;
  for (const body of [tl.open(), host, listener]) await send(stack, body);
  await seen(BEFORE);

  const steps: { name: string; body: BuiltEvent; stage: string[] }[] = [
    { name: "a speaker joins", body: speaker, stage: [h.name, sp.name] },
    {
      name: "a listener is promoted",
      body: tl.changeRole(l.id, "speaker", { at: at(4) }),
      stage: [h.name, l.name, sp.name],
    },
    {
      name: "a speaker is demoted",
      body: tl.changeRole(sp.id, "listener", { at: at(5) }),
      stage: [h.name, l.name],
    },
    {
      name: "a speaker leaves",
      body: tl.leave(l.id, { at: at(6) }),
      stage: [h.name],
    },
  ];
  let before = await roomRow(stack.sql, roomId);
  for (const step of steps) {
    const answer = await send(stack, step.body);
    assert.equal(answer.json?.status, "applied", answer.text);
    const changes = await seen(step.name);
    assert.deepEqual(await stage(), step.stage, step.name);
    for (const change of changes) {
      // Every stage change moves the speaker count, so the change itself says the stage moved.
      assert.equal(change.speaker_count, step.stage.length, step.name);
      assert.notEqual(change.speaker_count, before?.speakers, step.name);
    }
    before = await roomRow(stack.sql, roomId);
  }

  // host -> speaker keeps the same people on stage: the change its time makes (last activity
  // moved) carries the same counts, and the stage reads the same names. (One that moves no
  // time, e.g. late, changes no rooms field and sends nothing.)
  const same = await send(stack, tl.changeRole(h.id, "speaker", { at: at(7) }));
  assert.equal(same.json?.status, "applied", same.text);
  for (const change of await seen("host becomes speaker")) {
    assert.deepEqual(
      [change.listener_count, change.speaker_count],
      [before?.listeners, before?.speakers],
    );
  }
  assert.deepEqual(await stage(), [h.name]);
  const [{ role }] = await stack.sql<{ role: string }[]>`
    select role from public.room_participants where peer_id = ${h.id}`;
  assert.equal(role, "speaker");
}

stackTest({
  name:
    "postgres_changes: a speaker joining, leaving, promoted or demoted reaches the room's subscribers as a change of that room",
  async fn(stack) {
    await setMode(stack, "postgres_changes");
    const slot = await RealtimeSlot.open(stack.sql);
    try {
      const roomId = await createRoom(stack.sql);
      await stageStory(stack, roomId, async (step) => {
        const drained = await slot.drain();
        if (step === BEFORE) return [];
        assertNoHmsTable(drained.realtime, step);
        assert.deepEqual(describe(drained.realtime), ["U public.rooms"], step);
        const row = rowOf(drained.realtime[0]);
        assert.equal(row.hms_room_id, roomId, step);
        return [row as Seen[number]];
      });
    } finally {
      await slot.close();
    }
  },
});

stackTest({
  name:
    "broadcast: a speaker joining, leaving, promoted or demoted reaches the room's topic and the all-rooms topic",
  async fn(stack) {
    await createRealtimeStandIn(stack.sql);
    try {
      await setMode(stack, "broadcast", 0);
      const roomId = await createRoom(stack.sql);
      let mark = (await stack.sql`select localtimestamp as t`)[0].t as Date;
      await stageStory(stack, roomId, async (step) => {
        const messages = await messagesSince(stack, mark);
        mark = (await stack.sql`select localtimestamp as t`)[0].t as Date;
        if (step === BEFORE) return [];
        assert.deepEqual(
          messages.map((m) => m.topic).sort(),
          [`hms:room:${roomId}`, "hms:rooms"],
          step,
        );
        for (const m of messages) assert.equal(m.payload.hms_room_id, roomId);
        return messages.map((m) => ({
          listener_count: m.payload.listener_count,
          speaker_count: m.payload.speaker_count,
        }));
      });
    } finally {
      await setMode(stack, "postgres_changes").catch(() => {});
      await dropRealtimeStandIn(stack.sql);
    }
  },
});

stackTest({
  name:
    "the switch: off unpublishes rooms, re-running the migration keeps the app's choice, broadcast is refused without Supabase Realtime",
  async fn(stack) {
    const slot = await RealtimeSlot.open(stack.sql);
    try {
      await setMode(stack, "off");
      assert.deepEqual(await publishedTables(stack), []);
      await applySqlFile(stack.databaseUrl, MIGRATION);
      assert.deepEqual(await publishedTables(stack), [], "re-run keeps off");
      const roomId = await createRoom(stack.sql);
      const t0 = nowNanos() - 60n * S;
      const tl = new SessionTimeline({ roomId, startedAt: t0 });
      await slot.drain();
      const answer = await send(stack, tl.join({ at: t0 + S }));
      assert.equal(answer.json?.status, "applied", answer.text);
      const drained = await slot.drain();
      assert.deepEqual(describe(drained.realtime), [], "off streams nothing");
      assert.ok(
        describe(drained.everything).includes("U public.rooms"),
        "the room was written",
      );

      await setMode(stack, "postgres_changes");
      assert.deepEqual(await publishedTables(stack), ["public.rooms"]);
      const settings = await stack.sql`select * from public.hms_settings`;
      await applySqlFile(stack.databaseUrl, MIGRATION);
      await applySqlFile(stack.databaseUrl, MIGRATION);
      assert.deepEqual(await publishedTables(stack), ["public.rooms"]);
      assert.deepEqual(
        await stack.sql`select * from public.hms_settings`,
        settings,
        "re-running the migration changes no setting",
      );

      // No realtime schema here: broadcast is refused and the mode stays as it was.
      let refused = "";
      await setMode(stack, "broadcast").catch((e) => refused = String(e));
      assert.match(refused, /realtime\.send/);
      const [{ realtime }] = await stack
        .sql`select realtime from public.hms_settings`;
      assert.equal(realtime, "postgres_changes");
      assert.deepEqual(await publishedTables(stack), ["public.rooms"]);
    } finally {
      await setMode(stack, "postgres_changes").catch(() => {});
      await slot.close();
    }
  },
});

stackTest({
  name:
    "a supabase_realtime publication FOR ALL TABLES (which would publish hms_*) is reported, never silently accepted",
  async fn(stack) {
    // Rolled back: the stack's publication stays as it is.
    const { notices } = await rolledBack(stack, async (tx) => {
      await tx.unsafe(`drop publication ${PUBLICATION}`);
      await tx.unsafe(`create publication ${PUBLICATION} for all tables`);
      await tx`select hms_private.realtime_apply()`;
    });
    assert.ok(
      notices.some((n) =>
        /^WARNING: .*publishes every table of a schema, including hms_private\.presence/
          .test(n)
      ),
      `no warning in ${JSON.stringify(notices)}`,
    );
    assert.deepEqual(await publishedTables(stack), ["public.rooms"]);
  },
});

stackTest({
  name:
    "a rooms table without a replica identity is left unpublished (publishing it would make every rooms UPDATE fail)",
  async fn(stack) {
    const { value: published, notices } = await rolledBack(
      stack,
      async (tx) => {
        await tx`update public.hms_settings set realtime = 'off' where id`;
        await tx`alter table public.rooms replica identity nothing`;
        await tx`update public.hms_settings set realtime = 'postgres_changes' where id`;
        const published = (await tx`select tablename from pg_publication_tables
        where pubname = ${PUBLICATION}`).map((r) => r.tablename);
        // The webhook's write still works.
        await tx`update public.rooms set featured = featured`;
        return published;
      },
    );
    assert.deepEqual(published, []);
    assert.ok(
      notices.some((n) => /^WARNING: .*rooms has no replica identity/.test(n)),
      JSON.stringify(notices),
    );
    assert.deepEqual(await publishedTables(stack), ["public.rooms"]);
  },
});

stackTest({
  name: "the API roles can neither switch Realtime nor flush it",
  async fn(stack) {
    for (const role of ["anon", "authenticated"]) {
      for (
        const statement of [
          "select hms_private.realtime_apply()",
          "select hms_private.realtime_flush()",
          "update public.hms_settings set realtime = 'off'",
        ]
      ) {
        let code = "";
        await stack.sql.begin(async (tx) => {
          await tx.unsafe(`set local role ${role}`);
          await tx.unsafe(statement);
        }).catch((e) => code = String(e?.code));
        assert.equal(code, "42501", `${role}: ${statement}`);
      }
    }
    const [{ realtime }] = await stack
      .sql`select realtime from public.hms_settings`;
    assert.equal(realtime, "postgres_changes");
  },
});

stackTest({
  name:
    "broadcast with pg_cron: the flush and an hourly clean-up of its run log are scheduled and unscheduled together; the clean-up keeps the last hour and other jobs' runs",
  async fn(stack) {
    // The stack's pg_cron is the real one: Debian's 1.4 has no second schedules, Supabase's
    // 1.6 has; the flush runs as often as the installed one can.
    const [{ seconds }] = await stack.sql`select
      string_to_array(split_part(extversion, '-', 1), '.')::int[] >= '{1,5}' as seconds
      from pg_extension where extname = 'pg_cron'`;
    const { value: { left, after } } = await rolledBack(stack, async (tx) => {
      await tx.unsafe(REALTIME_STAND_IN);
      await tx`update public.hms_settings set realtime = 'broadcast' where id`;
      const jobs = await tx<{ jobname: string; schedule: string }[]>`
        select jobname, schedule from cron.job where jobname like 'hms-realtime-%'
        order by jobname`;
      assert.deepEqual(jobs.map((j) => [j.jobname, j.schedule]), [
        ["hms-realtime-flush", seconds ? "1 seconds" : "* * * * *"],
        ["hms-realtime-flush-history", "0 * * * *"],
      ]);
      // A day of runs of both jobs and of an app's job, one row every 10 minutes.
      await tx`select cron.schedule('app-job', '* * * * *', 'select 1')`;
      await tx`insert into cron.job_run_details (jobid, command, status, start_time, end_time)
        select j.jobid, j.command, 'succeeded', now() - m * interval '1 minute',
          now() - m * interval '1 minute' + interval '5 ms'
        from cron.job j cross join generate_series(5, 1445, 10) as m
        where j.jobname in ('app-job', 'hms-realtime-flush', 'hms-realtime-flush-history')`;
      const [{ command }] = await tx`select command from cron.job
        where jobname = 'hms-realtime-flush-history'`;
      await tx.unsafe(command);
      const left = await tx<{ jobname: string; n: number; oldest: number }[]>`
        select j.jobname, count(*)::int as n,
          max(extract(epoch from now() - d.end_time))::float8 as oldest
        from cron.job_run_details d join cron.job j using (jobid)
        where j.jobname in ('app-job', 'hms-realtime-flush', 'hms-realtime-flush-history')
        group by 1 order by 1`;
      await tx`update public.hms_settings set realtime = 'off' where id`;
      const after = await tx`select jobname from cron.job
        where jobname in ('app-job', 'hms-realtime-flush', 'hms-realtime-flush-history')
        order by jobname`;
      return { left, after: after.map((j) => j.jobname) };
    });
    // Runs 5, 15 … 55 minutes ago stay, older ones go; app-job keeps all 145.
    assert.deepEqual(left.map((r) => [r.jobname, r.n]), [
      ["app-job", 145],
      ["hms-realtime-flush", 6],
      ["hms-realtime-flush-history", 6],
    ]);
    for (const r of left.filter((r) => r.jobname !== "app-job")) {
      assert.ok(r.oldest < 3600, `${r.jobname}: a run ${r.oldest} s old left`);
    }
    assert.deepEqual(after, ["app-job"], "off unschedules both, not the app's");
  },
});

stackTest({
  name:
    "stand-in contract: realtime.send adds one broadcast row (id added to the payload, topic set), realtime.topic() reads it",
  async fn(stack) {
    await createRealtimeStandIn(stack.sql);
    try {
      const rows = await stack.sql.begin(async (tx) => {
        await tx`select realtime.send('{"a":1}'::jsonb, 'ev', 'hms:test', true)`;
        const [{ topic }] = await tx`select realtime.topic() as topic`;
        const messages =
          await tx`select topic, extension, event, private, payload
          from realtime.messages where topic = 'hms:test'`;
        return { topic, messages };
      });
      assert.equal(rows.topic, "hms:test");
      assert.equal(rows.messages.length, 1);
      const m = rows.messages[0];
      assert.deepEqual(
        [m.topic, m.extension, m.event, m.private],
        ["hms:test", "broadcast", "ev", true],
      );
      assert.equal(m.payload.a, 1);
      assert.equal(typeof m.payload.id, "string");
    } finally {
      await dropRealtimeStandIn(stack.sql);
    }
  },
});

async function messagesSince(
  stack: TestStack,
  since: Date,
): Promise<
  {
    topic: string;
    event: string;
    private: boolean;
    payload: Record<string, unknown>;
  }[]
> {
  return await stack
    .sql`select topic, event, private, payload from realtime.messages
    where inserted_at > ${since} and event = 'room'
    order by inserted_at, topic`;
}

stackTest({
  name:
    "broadcast: the trigger's SQL against the documented realtime.send: one message per topic per applied webhook, none otherwise, only the payload fields; topic policies follow the rooms read policy",
  async fn(stack) {
    await createRealtimeStandIn(stack.sql);
    const slot = await RealtimeSlot.open(stack.sql);
    const hidden = await createRoom(stack.sql);
    try {
      await setMode(stack, "broadcast", 0);
      assert.deepEqual(await publishedTables(stack), [], "rooms unpublished");
      const roomId = await createRoom(stack.sql);
      await slot.drain();
      let mark = (await stack.sql`select localtimestamp as t`)[0].t as Date;
      for (const step of story(roomId)) {
        const answer = await deliverStep(stack, step);
        const messages = await messagesSince(stack, mark);
        mark = (await stack.sql`select localtimestamp as t`)[0].t as Date;
        const drained = await slot.drain();
        assertNoHmsTable(drained.realtime, step.name);
        assert.deepEqual(describe(drained.realtime), [], step.name);
        if (step.expect !== "applied") {
          assert.equal(
            messages.length,
            0,
            `${step.name}: ${JSON.stringify(messages)}`,
          );
          continue;
        }
        assert.deepEqual(
          messages.map((m) => m.topic).sort(),
          [`hms:room:${roomId}`, "hms:rooms"],
          step.name,
        );
        const room = roomOf(answer);
        for (const m of messages) {
          assert.equal(m.private, true);
          assert.deepEqual(
            Object.keys(m.payload).sort(),
            PAYLOAD_KEYS,
            step.name,
          );
          for (
            const field of [
              "hms_room_id",
              "is_live",
              "listener_count",
              "speaker_count",
            ]
          ) {
            assert.equal(
              m.payload[field],
              room[field],
              `${step.name}: ${field}`,
            );
          }
        }
      }

      // Join-time authorization, as Realtime checks it (tests/helpers/realtime.ts mayJoin).
      assert.ok(await mayJoin(stack.sql, "anon", `hms:room:${roomId}`));
      assert.ok(
        await mayJoin(stack.sql, "authenticated", `hms:room:${roomId}`),
      );
      assert.ok(await mayJoin(stack.sql, "anon", "hms:rooms"));
      assert.ok(!(await mayJoin(stack.sql, "anon", `hms:room:${objectId()}`)));
      assert.ok(!(await mayJoin(stack.sql, "anon", "other:topic")));
      // An app whose rooms read policy hides a room: its topic and the all-rooms topic close.
      await stack.sql.unsafe(
        `create policy hms_test_hide on public.rooms as restrictive for select to anon
         using (hms_room_id <> '${hidden}')`,
      );
      try {
        assert.ok(!(await mayJoin(stack.sql, "anon", `hms:room:${hidden}`)));
        assert.ok(!(await mayJoin(stack.sql, "anon", "hms:rooms")));
        assert.ok(await mayJoin(stack.sql, "anon", `hms:room:${roomId}`));
        assert.ok(await mayJoin(stack.sql, "authenticated", "hms:rooms"));
      } finally {
        await stack.sql`drop policy hms_test_hide on public.rooms`;
      }
    } finally {
      await setMode(stack, "postgres_changes").catch(() => {});
      await slot.close();
      await dropRealtimeStandIn(stack.sql);
    }
    // Back to the default: the trigger and its policies are gone, rooms is published again.
    const [{ n }] = await stack.sql`select count(*)::int as n from pg_trigger
      where tgrelid = 'public.rooms'::regclass and tgname = 'hms_rooms_zz_realtime'`;
    assert.equal(n, 0);
    assert.deepEqual(await publishedTables(stack), ["public.rooms"]);
  },
});

/** A burst of joins to one fresh room, `n` joins at `concurrency` in flight. */
function burst(roomId: string, n: number): BuiltEvent[] {
  const t0 = nowNanos() - 100n * S;
  const tl = new SessionTimeline({ roomId, startedAt: t0 });
  const events = [tl.open()];
  for (let i = 0; i < n; i++) {
    events.push(
      tl.join({
        at: t0 + S + BigInt(i) * 1000n,
        role: i % 10 === 0 ? "speaker" : "listener",
      }),
    );
  }
  return events;
}

async function walLsn(stack: TestStack): Promise<string> {
  const [{ lsn }] = await stack
    .sql`select pg_current_wal_insert_lsn()::text as lsn`;
  return lsn;
}

async function walSince(stack: TestStack, lsn: string): Promise<number> {
  const [{ d }] = await stack.sql`
    select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), ${lsn}::pg_lsn)::float8 as d`;
  return d;
}

interface Run {
  mode: string;
  roomId: string;
  events: number;
  seconds: number;
  walPerEvent: number;
  changes: number;
  /** Updates that changed a payload field (what Broadcast sends when it does not coalesce). */
  visible: number;
  roomTopicMessages: number;
  allRoomsMessages: number;
}

/** The payload fields of a decoded rooms row, to tell which updates a subscriber could see. */
const VISIBLE = PAYLOAD_KEYS.filter((k) => k !== "id");

async function runBurst(
  stack: TestStack,
  slot: RealtimeSlot,
  label: string,
  n: number,
): Promise<Run> {
  await slot.drain();
  const roomId = await createRoom(stack.sql);
  const events = burst(roomId, n);
  const since = (await stack.sql`select localtimestamp as t`)[0].t as Date;
  const lsn = await walLsn(stack);
  const started = performance.now();
  const answers = await fire(stack, events, 16);
  const seconds = (performance.now() - started) / 1000;
  const wal = await walSince(stack, lsn);
  for (const a of answers) assert.equal(a.json?.status, "applied", a.text);
  const drained = await slot.drain();
  assertNoHmsTable(drained.realtime, label);
  const mine = (changes: W2jChange[]) =>
    changes.filter((c) =>
      c.table === "rooms" && rowOf(c).hms_room_id === roomId
    );
  // Row versions of the room (its insert first) whose payload fields differ from the previous.
  let previous = "";
  let visible = -1;
  for (const c of mine(drained.everything)) {
    const row = rowOf(c);
    const tuple = JSON.stringify(VISIBLE.map((k) => row[k]));
    if (tuple !== previous) visible++;
    previous = tuple;
  }
  const hasMessages =
    (await stack.sql`select to_regclass('realtime.messages') as t`)[0].t;
  const messages = hasMessages ? await messagesSince(stack, since) : [];
  return {
    mode: label,
    roomId,
    events: events.length,
    seconds,
    walPerEvent: wal / events.length,
    // The room's insert (by the test) is not an event's change.
    changes: mine(drained.realtime).filter((c) => c.action === "U").length,
    visible,
    roomTopicMessages:
      messages.filter((m) => m.topic === `hms:room:${roomId}`).length,
    allRoomsMessages: messages.filter((m) => m.topic === "hms:rooms").length,
  };
}

stackTest({
  name:
    "cost and a busy room: changes and messages per applied event, WAL per event by mode, what a subscriber of a hot room receives",
  async fn(stack) {
    const n = Number(Deno.env.get("HMS_RT_BURST") ?? 500);
    const rounds = Number(Deno.env.get("HMS_RT_ROUNDS") ?? 2);
    const slot = await RealtimeSlot.open(stack.sql);
    const runs: Run[] = [];
    await createRealtimeStandIn(stack.sql);
    try {
      // Modes interleaved round by round, so that drift on a shared machine spreads evenly.
      for (let round = 0; round < rounds; round++) {
        await setMode(stack, "off");
        const off = await runBurst(stack, slot, "off", n);
        assert.equal(off.changes, 0, "off streams nothing");
        runs.push(off);

        // Postgres Changes: every applied join is one change, so a subscriber gets them all.
        await setMode(stack, "postgres_changes");
        const pc = await runBurst(stack, slot, "postgres_changes", n);
        // One change per rooms UPDATE: at least one per update a subscriber can see, at most one
        // per applied event (an event that changes nothing need not write the row).
        assert.ok(
          pc.changes >= pc.visible && pc.changes <= pc.events,
          `${pc.changes} changes for ${pc.events} events (${pc.visible} visible)`,
        );
        runs.push(pc);

        await setMode(stack, "broadcast", 0);
        const every = await runBurst(stack, slot, "broadcast, interval 0", n);
        assert.equal(every.changes, 0);
        // One message per topic per update a subscriber can see (an update that changes none
        // of the payload fields, e.g. a late session open, sends nothing).
        assert.ok(
          every.visible > every.events * 0.9,
          `visible ${every.visible}`,
        );
        assert.equal(every.roomTopicMessages, every.visible);
        assert.equal(every.allRoomsMessages, every.visible);
        runs.push(every);

        // Coalesced: at most one message per topic per second; the flush sends the last state.
        await setMode(stack, "broadcast", 1000);
        const hot = await runBurst(
          stack,
          slot,
          "broadcast, interval 1000 ms",
          n,
        );
        await new Promise((r) => setTimeout(r, 1100));
        const [{ flushed }] = await stack
          .sql`select hms_private.realtime_flush() as flushed`;
        const [last] = await stack.sql`select payload from realtime.messages
          where topic = ${`hms:room:${hot.roomId}`} order by inserted_at desc limit 1`;
        const final = await roomRow(stack.sql, hot.roomId);
        assert.equal(
          last.payload.listener_count,
          final?.listeners,
          "last message = final row",
        );
        assert.equal(last.payload.speaker_count, final?.speakers);
        assert.equal(last.payload.is_live, final?.isLive);
        const sent = hot.roomTopicMessages + Number(flushed);
        assert.ok(
          sent <= Math.ceil(hot.seconds / 1.0) + 2,
          `${sent} messages in ${
            hot.seconds.toFixed(2)
          } s is more than one per second`,
        );
        runs.push({ ...hot, roomTopicMessages: sent, allRoomsMessages: sent });
      }
    } finally {
      await setMode(stack, "postgres_changes").catch(() => {});
      await slot.close();
      await dropRealtimeStandIn(stack.sql).catch(() => {});
    }
    const modes = [...new Set(runs.map((r) => r.mode))];
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const byMode = modes.map((mode) => {
      const rs = runs.filter((r) => r.mode === mode);
      return {
        mode,
        events: mean(rs.map((r) => r.events)),
        rate: mean(rs.map((r) => r.events / r.seconds)),
        wal: rs.map((r) => r.walPerEvent),
        changes: mean(rs.map((r) => r.changes / r.events)),
        room: mean(rs.map((r) => r.roomTopicMessages)),
        seconds: mean(rs.map((r) => r.seconds)),
      };
    });
    const base = mean(byMode[0].wal);
    console.log(
      `\nrealtime cost: ${rounds} rounds of ${n} joins (+1 open) to one fresh room per run, c=16, ` +
        "through the function URL\n" +
        byMode.map((m) =>
          `  ${m.mode.padEnd(28)} ${m.rate.toFixed(0)} events/s; WAL/event ` +
          `${m.wal.map((w) => w.toFixed(0)).join(", ")} (mean ${
            mean(m.wal).toFixed(0)
          }, ` +
          `${mean(m.wal) - base >= 0 ? "+" : ""}${
            (mean(m.wal) - base).toFixed(0)
          } vs off); ` +
          `Postgres Changes per event ${
            m.changes.toFixed(2)
          }; room-topic messages ` +
          `${m.room.toFixed(1)} per ${m.seconds.toFixed(2)} s burst`
        ).join("\n"),
    );
  },
});
