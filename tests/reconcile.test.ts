/**
 * Reconcile and replay end to end: the real function (Wasm under Deno) on the real database,
 * against the 100ms API stand-in serving the true history (scripts/stack/hms_api.ts).
 *
 * - Generated histories (the counting tests' generator) delivered with 10-40 % of the webhooks
 *   lost for good; one pass makes every room exactly what 100ms reports; a second pass changes
 *   nothing. The same with the pass racing the remaining deliveries.
 * - Failure paths: 429, 500, timeout, malformed answers and a refused token are reported, write
 *   nothing wrong, and the next pass finishes the job. An unauthenticated POST /reconcile is a
 *   401 and makes no API call. Without keys the pass still closes sessions past 12 hours.
 * - The management tokens the function sends verify with `jose`, an independent JWT library.
 * - `npm run replay` against the stand-in: old deliveries are applied with the default
 *   configuration, and replaying them all again changes nothing.
 * - The time of one pass over 100 live rooms is printed (a figure, not an assertion).
 */

import { jwtVerify } from "jose";
import { assert } from "./helpers/assert.ts";
import { assertNothingWritten, roomRow } from "./helpers/db.ts";
import { npmStart } from "./helpers/npm_start.ts";
import { stackTest, type TestStack } from "./helpers/stack.ts";
import { deliver, post } from "./helpers/webhook.ts";
import {
  expected,
  generatedHistories,
  type RoomHistory,
  seeded,
  shuffle,
  toRoom,
} from "./helpers/histories.ts";
import { type HmsApi, startHmsApi } from "../scripts/stack/hms_api.ts";
import { denoBinary, type FunctionProcess } from "../scripts/stack/function.ts";
import { buildEvent, headersFor, objectId } from "../scripts/lib/hms.ts";

const ACCESS_KEY = "64f1a2b3c4d5e6f708192a3c";
const APP_SECRET = "app-secret-" + crypto.randomUUID();
const SEED = Number(Deno.env.get("HMS_SEED") ?? 0x5eed);

interface World {
  stack: TestStack;
  api: HmsApi;
  fn: FunctionProcess;
  /** The function's URL as 100ms would call it. */
  url: string;
}

/** A stand-in and a function instance that reconciles against it. */
async function world(
  stack: TestStack,
  env: Record<string, string>,
): Promise<World> {
  const api = await startHmsApi({
    accessKey: ACCESS_KEY,
    appSecret: APP_SECRET,
    replayRate: 500,
  });
  const fn = await stack.startFunction({
    env: {
      HMS_API_URL: api.url,
      HMS_APP_ACCESS_KEY: ACCESS_KEY,
      HMS_APP_SECRET: APP_SECRET,
      // Passes back to back (the interval has its own test).
      HMS_RECONCILE_INTERVAL_SECONDS: "0",
      ...env,
    },
  });
  const url = `${fn.url}/hms-webhook`;
  api.setWebhook(url, stack.secret, stack.secretHeader);
  return { stack, api, fn, url };
}

async function close(w: World): Promise<void> {
  await w.api.stop();
  await w.fn.stop();
}

/** Runs `use` in a world of its own, closed however `use` ends. */
async function withWorld(
  stack: TestStack,
  env: Record<string, string>,
  use: (w: World) => Promise<void>,
): Promise<void> {
  const w = await world(stack, env);
  try {
    await use(w);
  } finally {
    await close(w);
  }
}

/** A test with its own world. */
function worldTest(
  name: string,
  fn: (w: World) => Promise<void>,
  env: Record<string, string> = {},
): void {
  stackTest({ name, fn: (stack) => withWorld(stack, env, fn) });
}

/** A reconcile request's body: its time, as the scheduler sends it. */
const passBody = (at = new Date()) =>
  JSON.stringify({ timestamp: at.toISOString() });

/** One pass through the route, authenticated with the secret header. */
async function reconcile(w: World): Promise<Record<string, unknown>> {
  const body = passBody();
  const answer = await post(
    `${w.url}/reconcile`,
    body,
    await headersFor(body, { secret: w.stack.secret, auth: "header" }),
  );
  assert.equal(answer.status, 200, answer.text);
  return answer.json!;
}

/**
 * `count` generated histories (seeded by `seed`) as fresh rooms, each ending `endMsAgo(random)`
 * before now, and that seeded random, which the test goes on using.
 */
async function generatedRooms(
  w: World,
  seed: number,
  count: number,
  endMsAgo: (random: () => number) => number,
): Promise<{ rooms: RoomHistory[]; random: () => number }> {
  const random = seeded(seed);
  const histories = await generatedHistories(w.stack.root, seed, count);
  return { rooms: histories.map((h) => toRoom(h, endMsAgo(random))), random };
}

/** Ends 3 to 13 minutes ago: recent enough for the webhooks' freshness window. */
const MINUTES_AGO = (random: () => number) =>
  180_000 + Math.floor(random() * 600_000);

/** Creates the rooms, records every event in 100ms's log and delivers the kept ones. */
async function setUp(
  w: World,
  rooms: RoomHistory[],
  dropRate: number,
  random: () => number,
): Promise<{ kept: string[]; dropped: number; total: number }> {
  for (const room of rooms) {
    await w.stack
      .sql`insert into public.rooms (hms_room_id) values (${room.roomId})`;
  }
  const kept: string[] = [];
  let dropped = 0;
  for (const room of rooms) {
    room.bodies.forEach((body, i) => {
      const lost = random() < dropRate;
      w.api.record(lost ? room.oldBodies[i] : body, !lost, room.at[i]);
      if (lost) dropped++;
      else kept.push(body);
    });
  }
  return { kept: shuffle(kept, random), dropped, total: kept.length + dropped };
}

async function deliverAll(w: World, bodies: string[]): Promise<void> {
  const queue = [...bodies];
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let body = queue.shift(); body !== undefined; body = queue.shift()) {
      const answer = await deliver(w.url, body, { secret: w.stack.secret });
      assert.equal(answer.status, 200, `${answer.text}\n${body}`);
    }
  }));
}

/** Every room against 100ms's record; returns the mismatches. */
async function mismatches(w: World, rooms: RoomHistory[]): Promise<string[]> {
  const truth = w.api.sessions();
  const wrong: string[] = [];
  for (const room of rooms) {
    const want = expected(truth, room.roomId);
    const row = await roomRow(w.stack.sql, room.roomId);
    const got = {
      isLive: row?.isLive === true,
      listeners: row?.listeners,
      speakers: row?.speakers,
    };
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      wrong.push(
        `${room.roomId}: want ${JSON.stringify(want)}, got ${
          JSON.stringify(got)
        }`,
      );
    }
  }
  return wrong;
}

async function roomsState(w: World, rooms: RoomHistory[]): Promise<string> {
  const rows = await Promise.all(
    rooms.map((r) => roomRow(w.stack.sql, r.roomId)),
  );
  return JSON.stringify(rows, (_, v) => typeof v === "bigint" ? String(v) : v);
}

worldTest(
  "an unauthenticated POST /reconcile is a 401 and makes no API call",
  async (w) => {
    const json = { "content-type": "application/json" };
    const forged: Record<string, string>[] = [
      json,
      { ...json, [w.stack.secretHeader]: "wrong" },
      { ...json, "x-100ms-signature": "ab".repeat(32) },
    ];
    await assertNothingWritten(w.stack.sql, [], "refused passes", async () => {
      for (const headers of forged) {
        const answer = await post(`${w.url}/reconcile`, "{}", headers);
        assert.equal(answer.status, 401);
        assert.equal(answer.json?.code, "unauthorized");
      }
      const get = await fetch(`${w.url}/reconcile`);
      assert.equal(get.status, 405);
      await get.body?.cancel();
    });
    assert.equal(w.api.served().length, 0, "no call reached 100ms");
  },
);

worldTest(
  "one pass makes every room exact after 10-40 % of the webhooks were lost",
  async (w) => {
    const { rooms, random } = await generatedRooms(w, SEED, 120, MINUTES_AGO);
    const dropRate = 0.1 + random() * 0.3;
    const { kept, dropped, total } = await setUp(w, rooms, dropRate, random);
    await deliverAll(w, kept);
    const wrongBefore = await mismatches(w, rooms);

    const summary = await reconcile(w);
    assert.equal(summary.status, "completed", JSON.stringify(summary));
    assert.deepEqual(summary.api_errors, []);
    assert.deepEqual(await mismatches(w, rooms), []);
    const live =
      rooms.filter((r) => expected(w.api.sessions(), r.roomId).isLive).length;
    console.log(
      `${rooms.length} histories/rooms (${live} live), ${total} webhooks, ` +
        `${dropped} lost (${
          (dropRate * 100).toFixed(0)
        } %): ${wrongBefore.length} rooms wrong ` +
        `before the pass, 0 after; ${
          (summary.rooms_corrected as unknown[]).length
        } corrected, ` +
        `${summary.sessions_closed} sessions closed, ${summary.ms} ms`,
    );
    assert.ok(wrongBefore.length > 0, "the losses made some rooms wrong");

    // Tokens: HS256 with the app secret and 100ms's claims, checked by an independent library.
    const served = w.api.served();
    assert.ok(served.every((s) => s.tokenProblem === null));
    const { payload, protectedHeader } = await jwtVerify(
      served[0].token!,
      new TextEncoder().encode(APP_SECRET),
      { algorithms: ["HS256"] },
    );
    assert.equal(protectedHeader.alg, "HS256");
    assert.equal(payload.access_key, ACCESS_KEY);
    assert.equal(payload.type, "management");
    assert.equal(payload.version, 2);
    assert.match(String(payload.jti), /^[0-9a-f-]{36}$/);
    assert.ok(
      payload.iat === payload.nbf && payload.exp! - payload.iat! === 86_400,
    );
    assert.equal(
      new Set(served.map((s) => s.token)).size,
      1,
      "one token for the whole pass",
    );
    // The function's logs never show the token or the secret.
    for (const line of w.fn.logs()) {
      assert.ok(
        !line.includes(APP_SECRET) && !line.includes(served[0].token!),
        line,
      );
    }

    // Twice changes nothing.
    const state = await roomsState(w, rooms);
    const again = await reconcile(w);
    assert.deepEqual(again.rooms_corrected, []);
    assert.equal(again.sessions_closed, 0);
    assert.equal(await roomsState(w, rooms), state);
  },
);

worldTest(
  "a pass racing the remaining deliveries never makes a count wrong; the next ends exact",
  async (w) => {
    const { rooms, random } = await generatedRooms(
      w,
      SEED + 1,
      60,
      MINUTES_AGO,
    );
    const { kept } = await setUp(w, rooms, 0.1 + random() * 0.3, random);
    const half = Math.floor(kept.length / 2);
    await deliverAll(w, kept.slice(0, half));
    const [summary] = await Promise.all([
      reconcile(w),
      deliverAll(w, kept.slice(half)),
    ]);
    assert.equal(summary.status, "completed", JSON.stringify(summary));
    // The pass never makes a count wrong. What it cannot fix is a session it had no way to
    // know of: one whose first webhooks reached the database only after the pass read it
    // and whose close was lost; such a room shows live until the next pass closes it.
    const truth = w.api.sessions();
    const left = await mismatches(w, rooms);
    for (const line of left) {
      const roomId = line.slice(0, line.indexOf(":"));
      assert.equal(expected(truth, roomId).isLive, false, line);
    }
    const next = await reconcile(w);
    assert.equal(next.status, "completed");
    assert.deepEqual(await mismatches(w, rooms), []);
    console.log(
      `${rooms.length} rooms, ${
        kept.length - half
      } deliveries raced the pass: ` +
        `${left.length} rooms showed a session the pass could not have seen (closed by the next pass), ` +
        `no count made wrong; exact after the next pass`,
    );
  },
);

stackTest({
  name:
    "API failures are reported, write nothing wrong, and the next pass finishes",
  async fn(stack) {
    const faults = [
      { kind: "429", path: "/v2/active-rooms/" },
      { kind: "500", path: "/v2/active-rooms/" },
      { kind: "malformed", path: "/v2/active-rooms/" },
      { kind: "timeout", path: "/v2/active-rooms/" },
      { kind: "429", path: "/v2/sessions?" },
      { kind: "malformed", path: "/v2/sessions?" },
    ] as const;
    for (const [i, fault] of faults.entries()) {
      await withWorld(stack, {}, async (w) => {
        const { rooms, random } = await generatedRooms(
          w,
          SEED + 10 + i,
          8,
          () => 180_000,
        );
        const { kept } = await setUp(w, rooms, 0.35, random);
        await deliverAll(w, kept);
        const before = new Map<string, string>();
        for (const r of rooms) {
          before.set(
            r.roomId,
            JSON.stringify(
              await roomRow(w.stack.sql, r.roomId),
              (_, v) => typeof v === "bigint" ? String(v) : v,
            ),
          );
        }
        w.api.fault({ path: fault.path, kind: fault.kind });
        const summary = await reconcile(w);
        const errors = summary.api_errors as {
          error: string;
          room_id: string | null;
        }[];
        const code = {
          "429": "rate_limited",
          "500": "server_error",
          malformed: "malformed",
          timeout: "timeout",
        }[fault.kind];
        assert.equal(errors[0]?.error, code, JSON.stringify(summary));
        assert.equal(summary.status, "incomplete");
        if (fault.kind === "429") assert.equal(summary.stopped, "rate_limited");
        // Nothing wrong written: a room is either exact now or exactly as it was.
        const truth = w.api.sessions();
        for (const r of rooms) {
          const row = await roomRow(w.stack.sql, r.roomId);
          const want = expected(truth, r.roomId);
          const exact = row?.isLive === want.isLive &&
            row?.listeners === want.listeners &&
            row?.speakers === want.speakers;
          const unchanged = JSON.stringify(
            row,
            (_, v) => typeof v === "bigint" ? String(v) : v,
          ) === before.get(r.roomId);
          assert.ok(
            exact || unchanged,
            `${fault.kind}: ${r.roomId} neither exact nor untouched`,
          );
        }
        const next = await reconcile(w);
        assert.equal(next.status, "completed", JSON.stringify(next));
        assert.deepEqual(await mismatches(w, rooms), [], fault.kind);
      });
    }
  },
});

worldTest(
  "a refused token stops the pass cleanly; nothing is written",
  async (w) => {
    const { rooms, random } = await generatedRooms(
      w,
      SEED + 20,
      5,
      () => 180_000,
    );
    const { kept } = await setUp(w, rooms, 0.3, random);
    await deliverAll(w, kept);
    const before = await roomsState(w, rooms);
    const summary = await reconcile(w);
    assert.equal(summary.stopped, "unauthorized", JSON.stringify(summary));
    assert.equal(
      (summary.api_errors as { error: string }[])[0].error,
      "unauthorized",
    );
    assert.equal(w.api.served().length, 1, "stopped after the first refusal");
    assert.equal(w.api.served()[0].tokenProblem, "bad signature");
    assert.equal(await roomsState(w, rooms), before);
    assert.ok(!JSON.stringify(summary).includes("not-the-app-secret"));
  },
  { HMS_APP_SECRET: "not-the-app-secret" },
);

stackTest({
  name: "without 100ms keys a pass still closes sessions past 12 hours",
  async fn(stack) {
    const fn = await stack.startFunction({
      env: { HMS_RECONCILE_INTERVAL_SECONDS: "0" },
    });
    try {
      const roomId = objectId();
      await stack
        .sql`insert into public.rooms (hms_room_id) values (${roomId})`;
      const started = new Date(Date.now() - 13 * 3600_000);
      const join = buildEvent("peer.join.success", {
        roomId,
        sessionId: objectId(),
        sessionStartedAt: started,
        at: new Date(Date.now() - 12.5 * 3600_000),
        deliveredAt: new Date(),
        role: "listener",
      });
      const answer = await deliver(`${fn.url}/hms-webhook`, join, {
        secret: stack.secret,
      });
      assert.equal(answer.status, 200, answer.text);
      assert.equal((await roomRow(stack.sql, roomId))?.listeners, 1);
      const body = passBody();
      const pass = await post(
        `${fn.url}/hms-webhook/reconcile`,
        body,
        await headersFor(body, { secret: stack.secret, auth: "signature" }),
      );
      assert.equal(pass.status, 200, pass.text);
      assert.equal(pass.json?.api, "off");
      assert.ok(Number(pass.json?.sessions_closed) >= 1);
      const corrected = (pass.json?.rooms_corrected as { room_id: string }[])
        .find((c) => c.room_id === roomId);
      assert.ok(corrected, pass.text);
      const row = await roomRow(stack.sql, roomId);
      assert.deepEqual([row?.isLive, row?.listeners], [false, 0]);
    } finally {
      await fn.stop();
    }
  },
});

worldTest(
  "npm run replay: old deliveries apply with the default configuration, twice changes nothing",
  async (w) => {
    // An outage an hour ago or more: every lost delivery is far older than the 900 s window.
    const { rooms, random } = await generatedRooms(
      w,
      SEED + 30,
      20,
      (r) => 3600_000 + Math.floor(r() * 3600_000),
    );
    const { kept, dropped } = await setUp(w, rooms, 0.3, random);
    await deliverAll(w, kept);
    const lost = w.api.deliveries().filter((d) => d.status === "failed");
    // Unmarked, an old delivery is still refused: the freshness window holds.
    const stale = await deliver(w.url, lost[0].body, {
      secret: w.stack.secret,
    });
    assert.equal(stale.status, 401);
    assert.equal(stale.json?.code, "stale_timestamp");

    const replay = async (...args: string[]) => {
      const out = await new Deno.Command(
        `${w.stack.root}/node_modules/.bin/deno`,
        {
          args: [
            "run",
            "-A",
            `${w.stack.root}/scripts/tools/replay.ts`,
            ...args,
          ],
          env: {
            HMS_APP_ACCESS_KEY: ACCESS_KEY,
            HMS_APP_SECRET: APP_SECRET,
            HMS_API_URL: w.api.url,
          },
          stdout: "piped",
          stderr: "piped",
        },
      ).output();
      const text = new TextDecoder().decode(out.stdout) +
        new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, text);
      await w.api.replaysDone();
      return text;
    };
    const printed = await replay("--since", "1d");
    assert.match(printed, /replay workflow [0-9a-f-]{36}: started/);
    const [workflow] = w.api.workflows();
    const replayable = lost.filter((d) =>
      !d.type.startsWith("role.change") && !d.type.startsWith("room.end")
    );
    assert.equal(workflow.total, replayable.length);
    assert.ok(
      workflow.answers.every((s) => s === 200),
      JSON.stringify(workflow.answers),
    );
    const ids = replayable.map((d) => JSON.parse(d.body).id);
    const [{ n }] = await w.stack.sql`
      select count(*)::int as n from hms_private.events where event_id = any(${ids})`;
    assert.equal(n, ids.length, "every replayed delivery was applied");

    // Everything again (status all): duplicates, nothing changes.
    await assertNothingWritten(
      w.stack.sql,
      [],
      "everything replayed again",
      () => replay("--since", "1d", "--status", "all"),
    );
    const everyReplayable = w.api.deliveries().filter((d) =>
      !d.type.startsWith("role.change")
    );
    assert.equal(w.api.workflows()[1].total, everyReplayable.length);
    assert.ok(w.api.workflows()[1].answers.every((s) => s === 200));
    console.log(
      `replay: ${dropped} deliveries lost, ${replayable.length} replayable re-sent and applied; ` +
        `${lost.length - replayable.length} role changes left to reconcile`,
    );
    // Role changes are not replayable: reconcile repairs what is left.
    await reconcile(w);
    assert.deepEqual(await mismatches(w, rooms), []);
  },
);

/** `n` rooms live for the last hour, a host and four listeners each (nothing delivered yet). */
function liveRooms(n: number): RoomHistory[] {
  const rooms: RoomHistory[] = [];
  for (let i = 0; i < n; i++) {
    const roomId = objectId();
    const sessionId = objectId();
    const start = new Date(Date.now() - 3600_000);
    const bodies = [
      buildEvent("session.open.success", { roomId, sessionId, at: start })
        .body,
    ];
    for (let p = 0; p < 5; p++) {
      bodies.push(
        buildEvent("peer.join.success", {
          roomId,
          sessionId,
          sessionStartedAt: start,
          role: p === 0 ? "host" : "listener",
          at: new Date(start.getTime() + 60_000 * (p + 1)),
        }).body,
      );
    }
    rooms.push({
      roomId,
      bodies,
      oldBodies: bodies,
      at: bodies.map(() => start.getTime()),
    });
  }
  return rooms;
}

worldTest("figure: one pass over 100 live rooms", async (w) => {
  const rooms = liveRooms(100);
  // 100ms knows them all; the database heard nothing: every room is corrected.
  await setUp(w, rooms, 1, () => 0);
  const started = performance.now();
  const summary = await reconcile(w);
  const ms = performance.now() - started;
  assert.equal((summary.rooms_corrected as unknown[]).length, 100);
  assert.deepEqual(await mismatches(w, rooms), []);
  const calls = w.api.served().length;
  console.log(
    `one pass, 100 live rooms (5 peers each), all corrected: ${
      ms.toFixed(0)
    } ms end to end ` +
      `(function's own figure ${summary.ms} ms), ${calls} API calls, 100 RPCs`,
  );
});

stackTest({
  name:
    "npm start's 100ms stand-in: a --lost join comes back with npm run replay; npm run reconcile prints the pass",
  async fn({ root }) {
    const started = await npmStart(root, ["--no-reconcile"], 60_000);
    const { child, stackFile } = started;
    const deno = denoBinary(root);
    const env = { HMS_STACK_FILE: stackFile, PORT: "0" };
    const tool = async (name: string, ...args: string[]) => {
      const out = await new Deno.Command(deno, {
        args: ["run", "-A", `${root}/scripts/tools/${name}.ts`, ...args],
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) +
        new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, `${name} ${args.join(" ")}: ${text}`);
      return text;
    };
    try {
      const file = JSON.parse(await Deno.readTextFile(stackFile));
      assert.ok(
        file.hmsApi?.url,
        "npm start runs the stand-in without real keys",
      );
      await tool("send", "session.open.success", "--session", "s-local");
      assert.match(
        await tool(
          "send",
          "peer.join.success",
          "--session",
          "s-local",
          "--peer",
          "p-lost",
          "--lost",
        ),
        /recorded as a failed delivery/,
      );
      const sql = (await import("postgres")).default(file.databaseUrl, {
        max: 1,
      });
      try {
        const count = async () =>
          (await sql`select listener_count from rooms where hms_room_id = '6501c1d2e3f4a5b6c7d8e9f0'`)[
            0
          ]
            .listener_count;
        assert.equal(await count(), 0, "the join was lost");
        assert.match(
          await tool("replay", "--since", "10m", "--wait"),
          /workflow completed/,
        );
        assert.equal(await count(), 1, "the replay brought it back");
        assert.match(
          await tool("reconcile"),
          /completed\s+on\s+1\s+0\s+0\s+0\s+0/,
          "one room checked, nothing left to correct",
        );
      } finally {
        await sql.end();
      }
    } finally {
      child.kill("SIGINT");
      await child.status;
      await started.drained;
      await Deno.remove(started.dir, { recursive: true }).catch(() => {});
    }
  },
});

/** `n` POSTs at once; their answers in sending order. */
async function concurrentPasses(w: World, n: number) {
  const body = passBody();
  const headers = await headersFor(body, {
    secret: w.stack.secret,
    auth: "header",
  });
  return await Promise.all(
    Array.from({ length: n }, () => post(`${w.url}/reconcile`, body, headers)),
  );
}

worldTest(
  "one pass at a time: of 10 concurrent POSTs one runs, nine get 429 with Retry-After and cost no API call",
  async (w) => {
    // 100ms knows 12 live rooms; the database heard nothing: a pass corrects them all.
    const rooms = liveRooms(12);
    await setUp(w, rooms, 1, () => 0);
    // A fresh turn: no pass of an earlier test counts against this function's interval.
    await w.stack.sql`update hms_private.reconcile_turn set started_at = null`;
    const answers = await concurrentPasses(w, 10);
    const calls = w.api.served().length;
    console.log(
      `10 concurrent POST /reconcile: ${
        answers.map((a) => a.status).join(" ")
      }; ${calls} API calls`,
    );
    const ran = answers.filter((a) => a.status === 200);
    assert.equal(ran.length, 1, answers.map((a) => a.text).join("\n"));
    for (const refused of answers.filter((a) => a.status !== 200)) {
      assert.equal(refused.status, 429, refused.text);
      const retry = Number(refused.headers.get("retry-after"));
      assert.ok(Number.isInteger(retry) && retry >= 1, refused.text);
      assert.ok(
        ["running", "too_soon"].includes(String(refused.json?.status)),
        refused.text,
      );
    }
    const corrected = ran[0].json?.rooms_corrected as { room_id: string }[];
    assert.deepEqual(
      corrected.map((c) => c.room_id).sort(),
      rooms.map((r) => r.roomId).sort(),
    );
    // Within the interval: refused before any call, with the wait until the interval ends, in
    // whole seconds rounded up, as the database's clock saw it on either side of the request.
    const waitLeft = async () => {
      const [turn] = await w.stack.sql`
        select extract(epoch from started_at + interval '120 s' - clock_timestamp())::float8
          as seconds
        from hms_private.reconcile_turn`;
      return Math.ceil(turn.seconds);
    };
    const atMost = await waitLeft();
    const later = await concurrentPasses(w, 1);
    const atLeast = await waitLeft();
    assert.equal(later[0].status, 429, later[0].text);
    assert.equal(later[0].json?.status, "too_soon");
    const retry = Number(later[0].headers.get("retry-after"));
    assert.ok(
      atLeast >= 1 && atLeast <= retry && retry <= atMost,
      `Retry-After ${retry} s, the turn's wait ${atLeast}..${atMost} s`,
    );
    assert.equal(w.api.served().length, calls, "a refused request calls 100ms");
  },
  { HMS_RECONCILE_INTERVAL_SECONDS: "120" },
);

worldTest(
  "a request's time: a signed pass must carry one, a stale one is a 401, and neither calls 100ms",
  async (w) => {
    const send = async (body: string) =>
      await post(
        `${w.url}/reconcile`,
        body,
        await headersFor(body, { secret: w.stack.secret, auth: "signature" }),
      );
    // Captured 16 minutes ago: past the 15-minute tolerance.
    const stale = await send(passBody(new Date(Date.now() - 16 * 60_000)));
    assert.equal(stale.status, 401, stale.text);
    assert.equal(stale.json?.code, "stale_timestamp");
    const timeless = await send("{}");
    assert.equal(timeless.status, 400, timeless.text);
    assert.equal(timeless.json?.code, "missing_field");
    assert.equal(w.api.served().length, 0, "a refused request calls 100ms");
    const fresh = await send(passBody());
    assert.equal(fresh.status, 200, fresh.text);
  },
  { HMS_WEBHOOK_AUTH: "signature" },
);

/** A room's row and how many sessions and presence rows it has. */
async function roomState(w: World, roomId: string): Promise<string> {
  const [rows] = await w.stack.sql`
    select (select count(*) from hms_private.sessions s where s.room_id = r.id)::int as sessions,
      (select count(*) from hms_private.presence p where p.room_id = r.id)::int as presence
    from public.rooms r where r.hms_room_id = ${roomId}`;
  return JSON.stringify(
    [await roomRow(w.stack.sql, roomId), { ...rows }],
    (_, v) => typeof v === "bigint" ? String(v) : v,
  );
}

worldTest(
  "every live room is reached: of 2,160 live rooms the pass counts those past its 2,000 and the next pass reaches them",
  async (w) => {
    const run = crypto.randomUUID().slice(0, 8);
    // Sorts after every other room: the last of all live rooms.
    const ghost = `zzzz-ghost-${run}`;
    const sessionId = objectId();
    const start = new Date(Date.now() - 600_000);
    const events = [
      buildEvent("session.open.success", {
        roomId: ghost,
        sessionId,
        at: start,
      }),
      buildEvent("peer.join.success", {
        roomId: ghost,
        sessionId,
        sessionStartedAt: start,
        role: "listener",
        at: new Date(start.getTime() + 60_000),
      }),
    ];
    await w.stack.sql`insert into public.rooms (hms_room_id) values (${ghost})`;
    for (const e of events) {
      w.api.record(e.body, true);
      const answer = await deliver(w.url, e.body, { secret: w.stack.secret });
      assert.equal(answer.status, 200, answer.text);
    }
    // Its close webhook was lost: live with one listener in the database, over at 100ms.
    w.api.record(
      buildEvent("session.close.success", {
        roomId: ghost,
        sessionId,
        sessionStartedAt: start,
        at: new Date(start.getTime() + 120_000),
      }).body,
      false,
    );
    const filler = `p22-${run}-%`;
    await w.stack.sql`
      insert into public.rooms (hms_room_id, is_live)
      select ${`p22-${run}-`} || lpad(i::text, 4, '0'), true from generate_series(1, 2159) as i`;
    try {
      await w.stack.sql`update hms_private.reconcile_turn set cursor = null`;
      const [{ live }] = await w.stack
        .sql`select count(*)::int as live from public.rooms where is_live`;
      assert.ok(live >= 2160, String(live));
      const first = await reconcile(w);
      // The window is the first 2,000; the rest are counted, with where the next pass starts.
      assert.equal(first.not_read, live - 2000, JSON.stringify(first.not_read));
      assert.ok(
        typeof first.cursor === "string" && first.cursor < ghost,
        String(first.cursor),
      );
      assert.deepEqual(first.not_reached, []);
      assert.ok(
        !JSON.stringify(first).includes(ghost),
        "the ghost is only counted",
      );
      assert.equal((await roomRow(w.stack.sql, ghost))?.isLive, true);
      // Every live room within ceil(live / 2000) passes; here the second.
      const second = await reconcile(w);
      const corrected = (second.rooms_corrected as { room_id: string }[])
        .map((c) => c.room_id);
      assert.ok(corrected.includes(ghost), JSON.stringify(second.cursor));
      const row = await roomRow(w.stack.sql, ghost);
      assert.deepEqual([row?.isLive, row?.listeners], [false, 0]);
    } finally {
      await w.stack
        .sql`delete from public.rooms where hms_room_id like ${filler}`;
    }
  },
);

worldTest(
  "100ms's answers outside the webhooks' time bounds are reported unverified and write nothing",
  async (w) => {
    const future = objectId();
    const early = objectId();
    for (const id of [future, early]) {
      await w.stack.sql`insert into public.rooms (hms_room_id) values (${id})`;
    }
    // A session 100ms says starts in 2100, with three listeners.
    const farSession = objectId();
    const year2100 = new Date("2100-01-01T00:00:00Z");
    w.api.record(
      buildEvent("session.open.success", {
        roomId: future,
        sessionId: farSession,
        at: year2100,
      }).body,
      false,
    );
    for (let p = 0; p < 3; p++) {
      w.api.record(
        buildEvent("peer.join.success", {
          roomId: future,
          sessionId: farSession,
          sessionStartedAt: year2100,
          role: "listener",
          at: new Date(year2100.getTime() + 1000 * (p + 1)),
        }).body,
        false,
      );
    }
    // A session of an hour ago whose listener joined two hours before it started.
    const session = objectId();
    const start = new Date(Date.now() - 3600_000);
    w.api.record(
      buildEvent("session.open.success", {
        roomId: early,
        sessionId: session,
        at: start,
      }).body,
      false,
    );
    w.api.record(
      buildEvent("peer.join.success", {
        roomId: early,
        sessionId: session,
        sessionStartedAt: start,
        role: "listener",
        at: new Date(start.getTime() - 2 * 3600_000),
      }).body,
      false,
    );
    const before = [await roomState(w, future), await roomState(w, early)];
    const summary = await reconcile(w);
    const unverified = summary.unverified as {
      room_id: string;
      reason: string;
    }[];
    assert.deepEqual(
      unverified.filter((u) => [future, early].includes(u.room_id))
        .sort((a, b) =>
          a.room_id === future ? -1 : b.room_id === future ? 1 : 0
        ),
      [
        { room_id: future, reason: "session starts in the future" },
        { room_id: early, reason: "peer time outside its session" },
      ],
    );
    assert.deepEqual(
      [await roomState(w, future), await roomState(w, early)],
      before,
      "nothing written for them",
    );
  },
);

worldTest(
  "room ids '.' and '..' never become a path: no request leaves a room's own path, nothing is written",
  async (w) => {
    const ids = [".", ".."];
    await w.stack.sql`delete from public.rooms where hms_room_id in ${
      w.stack.sql(ids)
    }`;
    try {
      for (const roomId of ids) {
        const sessionId = objectId();
        const start = new Date(Date.now() - 600_000);
        // The database holds it live with one listener (from before webhooks refused such
        // ids); 100ms lists it occupied.
        await w.stack.sql`
          insert into public.rooms (hms_room_id, is_live, listener_count, current_session_id)
          values (${roomId}, true, 1, ${sessionId})`;
        w.api.record(
          buildEvent("session.open.success", { roomId, sessionId, at: start })
            .body,
          false,
        );
        w.api.record(
          buildEvent("peer.join.success", {
            roomId,
            sessionId,
            sessionStartedAt: start,
            role: "listener",
            at: new Date(start.getTime() + 60_000),
          }).body,
          false,
        );
      }
      const before = await Promise.all(ids.map((id) => roomState(w, id)));
      const summary = await reconcile(w);
      const paths = w.api.served().map((s) => s.path);
      const own =
        /^\/v2\/(sessions(\?.*|\/[^/]+)|active-rooms\/[^/]+(\/peers)?)$/;
      assert.deepEqual(paths.filter((p) => !own.test(p)), []);
      assert.ok(
        !paths.some((p) =>
          /^\/v2\/active-rooms\/\.|^\/v2\/sessions\/\./.test(p)
        ),
        paths.join("\n"),
      );
      const unverified = summary.unverified as {
        room_id: string;
        reason: string;
      }[];
      for (const id of ids) {
        assert.deepEqual(
          unverified.filter((u) => u.room_id === id),
          [{ room_id: id, reason: "room id is a URL dot segment" }],
        );
      }
      assert.deepEqual(
        await Promise.all(ids.map((id) => roomState(w, id))),
        before,
      );
    } finally {
      await w.stack.sql`delete from public.rooms where hms_room_id in ${
        w.stack.sql(ids)
      }`;
    }
  },
);
