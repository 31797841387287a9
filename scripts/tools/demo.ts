/**
 * `npm run demo`: replays a realistic evening of three audio rooms through the function, step by
 * step, with signed events (sessions opening, listeners joining, a promotion, a 100ms retry, a
 * replay with a new id, a leave delivered before its join, a forged request, a session that
 * closes without every leave, the app featuring a room) and prints after each step what the
 * function answered, the rooms and the trending feed. Exits 0 only if every answer and the final
 * counts are what the story implies.
 */

import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import {
  buildEvent,
  type BuiltEvent,
  nowNanos,
  SessionTimeline,
  type TimeInput,
} from "../lib/hms.ts";
import {
  type FeedRow,
  fetchFeed,
  renderTable,
  roomCells,
  roomColumns,
} from "./rooms.ts";
import {
  type Attempt,
  parseFlags,
  post,
  signRequest,
  type Target,
  UsageError,
} from "./send.ts";
import {
  parseStackInfo,
  requireStack,
  type StackInfo,
  StackNotRunningError,
} from "./stack_info.ts";
import { type Stack, startStack } from "../stack/main.ts";

/** The stored row of a room, as the demo prints it. */
interface RoomRow {
  hms_room_id: string;
  is_live: boolean;
  listener_count: number;
  speaker_count: number;
  featured: boolean;
  trending_score: number;
  last_active_at: string | null;
}

/** What the story implies for a room at the end. */
interface Expected {
  is_live: boolean;
  listener_count: number;
  speaker_count: number;
  featured: boolean;
}

/** Everything a run needs: where to send, how to read, how fast to go. */
export interface DemoContext {
  target: Target;
  db: SupabaseClient;
  stack: StackInfo;
  pauseMs: number;
  out: (line: string) => void;
}

const SECOND = 1_000_000_000n;

class Story {
  readonly failures: string[] = [];
  #step = 0;

  constructor(
    readonly ctx: DemoContext,
    readonly rooms: { label: string; id: string }[],
    readonly totalSteps: number,
  ) {}

  label(id: string): string {
    return this.rooms.find((r) => r.id === id)?.label ?? id;
  }

  /** Sends one event and checks the answer; returns the answer. */
  async deliver(
    event: BuiltEvent,
    what: string,
    expect: { status: number; outcome?: string },
    target: Target = this.ctx.target,
  ): Promise<Attempt> {
    const request = await signRequest(event, target);
    const answer = await post(request);
    const body = (answer.body ?? {}) as Record<string, unknown>;
    const room = body.room as Record<string, unknown> | undefined;
    const outcome = answer.status === 200
      ? String(body.status ?? "?")
      : String(body.code ?? answer.error ?? "?");
    const counts = room
      ? `${this.label(String(room.hms_room_id))}: ${
        room.is_live ? "live" : "off"
      }, ` +
        `${room.listener_count} listening, ${room.speaker_count} speaking`
      : String(body.reason ?? body.message ?? "");
    const ok = answer.status === expect.status &&
      (expect.outcome === undefined || outcome === expect.outcome);
    this.ctx.out(
      `    ${ok ? "✓" : "✗"} ${what.padEnd(46)} ${
        String(answer.status ?? "---")
      } ` +
        `${outcome.padEnd(12)} ${counts}  (${answer.ms} ms)`,
    );
    if (!ok) {
      this.failures.push(
        `${what}: expected ${expect.status} ${expect.outcome ?? ""}, got ` +
          `${answer.status} ${outcome}`,
      );
    }
    return answer;
  }

  /** Prints the step caption, runs it, then shows the rooms and the feed. */
  async step(caption: string, body: () => Promise<void>): Promise<void> {
    this.#step++;
    this.ctx.out(`\n[${this.#step}/${this.totalSteps}] ${caption}`);
    await body();
    await this.show();
    await this.pause();
  }

  pause(ms = this.ctx.pauseMs): Promise<void> {
    return ms > 0
      ? new Promise((resolve) => setTimeout(resolve, ms))
      : Promise.resolve();
  }

  async roomsNow(): Promise<RoomRow[]> {
    const { data, error } = await this.ctx.db.from("rooms")
      .select(
        "hms_room_id, is_live, listener_count, speaker_count, featured, trending_score, last_active_at",
      )
      .in("hms_room_id", this.rooms.map((r) => r.id));
    if (error) throw new Error(`reading rooms: ${error.message}`);
    const rows = (data ?? []) as Record<string, unknown>[];
    return this.rooms.flatMap(({ id }) => {
      const r = rows.find((row) => row.hms_room_id === id);
      return r
        ? [{
          hms_room_id: id,
          is_live: r.is_live === true,
          listener_count: Number(r.listener_count),
          speaker_count: Number(r.speaker_count),
          featured: r.featured === true,
          trending_score: Number(r.trending_score),
          last_active_at: (r.last_active_at as string | null) ?? null,
        }]
        : [];
    });
  }

  /**
   * The demo's rooms as the trending_rooms feed ranks them, with their rank in the whole feed.
   * Pages through the feed, because a reused stack may hold many other rooms.
   */
  async feedNow(): Promise<(FeedRow & { rank: number })[]> {
    const source = {
      kind: "rest" as const,
      url: this.ctx.stack.supabaseUrl,
      key: this.ctx.stack.serviceRoleKey,
    };
    const ours = new Set(this.rooms.map((r) => r.id));
    const found: (FeedRow & { rank: number })[] = [];
    const page = 1000;
    for (let offset = 0; found.length < ours.size; offset += page) {
      const rows = await fetchFeed(source, {
        limit: page,
        offset,
        liveOnly: false,
      });
      rows.forEach((row, i) => {
        if (ours.has(row.hms_room_id)) {
          found.push({ ...row, rank: offset + i + 1 });
        }
      });
      if (rows.length < page) break;
    }
    return found;
  }

  async show(): Promise<void> {
    const now = Date.now();
    const rows = await this.roomsNow();
    const table = renderTable(
      ["room", ...roomColumns("stored score")],
      rows.map((r) => [
        this.label(r.hms_room_id),
        ...roomCells(r, r.trending_score, now),
      ]),
      new Set([2, 3, 5]),
    );
    this.ctx.out(table.split("\n").map((l) => `    ${l}`).join("\n"));
    const feed = await this.feedNow();
    this.ctx.out(
      `    trending: ${
        feed.map((r) =>
          `#${r.rank} ${this.label(r.hms_room_id)} (${r.score_now.toFixed(2)})`
        )
          .join("   ")
      }`,
    );
  }

  expectRoom(
    row: RoomRow | undefined,
    label: string,
    expected: Expected,
  ): void {
    if (!row) {
      this.failures.push(`${label}: room row missing`);
      return;
    }
    for (const key of Object.keys(expected) as (keyof Expected)[]) {
      if (row[key] !== expected[key]) {
        this.failures.push(
          `${label}.${key}: expected ${expected[key]}, got ${row[key]}`,
        );
      }
    }
  }
}

/** Replays the story; returns the list of broken expectations (empty = the function is right). */
export async function runStory(ctx: DemoContext): Promise<string[]> {
  const suffix = crypto.randomUUID().slice(0, 6);
  const ids = {
    jazz: `demo-jazz-${suffix}`,
    tech: `demo-tech-${suffix}`,
    poetry: `demo-poetry-${suffix}`,
  };
  const story = new Story(ctx, [
    { label: "jazz", id: ids.jazz },
    { label: "tech", id: ids.tech },
    { label: "poetry", id: ids.poetry },
  ], 10);
  const out = ctx.out;

  // Event times: a story that started a few minutes ago, so every event is inside the
  // function's freshness window and in the past.
  const t0 = nowNanos() - 200n * SECOND;
  const at = (seconds: number): bigint =>
    t0 + BigInt(Math.round(seconds * 1000)) * 1_000_000n;

  out(
    `hms-webhook demo: three rooms, one evening, told through signed 100ms webhooks`,
  );
  out(`  function  ${ctx.target.url}`);
  out(`  rest      ${ctx.stack.supabaseUrl}/rest/v1`);
  out(`  rooms     ${Object.values(ids).join(", ")}`);

  // Seeding is the app's job; the function only updates rooms that exist. The rooms were set
  // up an hour ago, so poetry's featured bonus has already decayed a little.
  {
    const created = new Date(Date.now() - 3600_000).toISOString();
    const { error } = await ctx.db.from("rooms").insert([
      { hms_room_id: ids.jazz, featured: false, last_active_at: created },
      { hms_room_id: ids.tech, featured: false, last_active_at: created },
      { hms_room_id: ids.poetry, featured: true, last_active_at: created },
    ]);
    if (error) throw new Error(`seeding rooms: ${error.message}`);
  }
  out(
    `\n[0/10] The app set up three rooms an hour ago; poetry is featured, nobody is on air yet`,
  );
  await story.show();
  await story.pause();

  const jazz = new SessionTimeline({
    roomId: ids.jazz,
    roomName: "friday-night-jazz",
    startedAt: at(0),
  });
  const tech = new SessionTimeline({
    roomId: ids.tech,
    roomName: "startup-stories",
    startedAt: at(4),
  });
  const peers = {
    maya: crypto.randomUUID(),
    ravi: crypto.randomUUID(),
    aiko: crypto.randomUUID(),
    lena: crypto.randomUUID(),
    omar: crypto.randomUUID(),
    sam: crypto.randomUUID(),
    zoe: crypto.randomUUID(),
    noor: crypto.randomUUID(),
  };
  // The answers the story expects (status, outcome), named once.
  const applied = { status: 200, outcome: "applied" };
  const duplicate = { status: 200, outcome: "duplicate" };
  const ignored = { status: 200, outcome: "ignored" };
  const unauthorized = { status: 401, outcome: "unauthorized" };
  const join = (
    s: SessionTimeline,
    peerId: string,
    name: string,
    role: string,
    t: TimeInput,
  ) =>
    s.join({
      peerId,
      userId: `usr_${name.toLowerCase()}`,
      userName: name,
      role,
      at: t,
    });

  await story.step(
    "Sessions open in jazz and tech (the first peer is connecting)",
    async () => {
      await story.deliver(jazz.open(), "session.open.success   jazz", applied);
      await story.deliver(tech.open(), "session.open.success   tech", applied);
    },
  );

  await story.step("Hosts and listeners join", async () => {
    const joins: [SessionTimeline, string, string, string, string, number][] = [
      [jazz, "jazz", peers.maya, "Maya", "host", 2],
      [jazz, "jazz", peers.ravi, "Ravi", "listener", 20],
      [jazz, "jazz", peers.aiko, "Aiko", "listener", 25],
      [jazz, "jazz", peers.lena, "Lena", "listener", 31],
      [tech, "tech", peers.sam, "Sam", "host", 8],
      [tech, "tech", peers.zoe, "Zoe", "listener", 40],
    ];
    for (const [room, label, peer, name, role, second] of joins) {
      await story.deliver(
        join(room, peer, name, role, at(second)),
        `${name} joins ${label} (${role})`,
        applied,
      );
    }
  });

  await story.step("Maya promotes Ravi from listener to speaker", async () => {
    await story.deliver(
      jazz.changeRole(peers.ravi, "speaker", {
        at: at(60),
        requestedBy: peers.maya,
      }),
      "role.change.success    Ravi -> speaker",
      applied,
    );
  });

  const noorJoin = join(tech, peers.noor, "Noor", "listener", at(70));
  await story.step(
    "100ms retries Noor's join (our 200 came too late): same event id again",
    async () => {
      await story.deliver(noorJoin, "Noor joins tech (attempt 1)", applied);
      await story.pause(Math.min(ctx.pauseMs, 1000)); // 100ms waits 1 s before its first retry
      await story.deliver(
        noorJoin,
        "Noor joins tech (retry, same id)",
        duplicate,
      );
    },
  );

  await story.step(
    "A replay delivers Noor's join again with a NEW event id: still one Noor",
    async () => {
      const replay = tech.event("peer.join.success", {
        peerId: peers.noor,
        userId: "usr_noor",
        userName: "Noor",
        role: "listener",
        at: at(70),
      });
      await story.deliver(replay, "Noor joins tech (replay, new id)", applied);
    },
  );

  await story.step(
    "Omar's leave is delivered before his join (reordered retries)",
    async () => {
      const omarJoin = join(jazz, peers.omar, "Omar", "listener", at(80));
      const omarLeave = jazz.leave(peers.omar, {
        at: at(95),
        reason: "client request",
      });
      await story.deliver(
        omarLeave,
        "Omar leaves jazz (arrives first)",
        applied,
      );
      await story.deliver(omarJoin, "Omar joins jazz (arrives late)", applied);
    },
  );

  await story.step(
    "Zoe's network drops; 100ms reports the leave ~60 s later",
    async () => {
      await story.deliver(
        tech.leave(peers.zoe, { at: at(150), reason: "websocket closed" }),
        "Zoe leaves tech (websocket closed)",
        applied,
      );
    },
  );

  await story.step(
    "Things that must not count: a forged request and a failure event",
    async () => {
      const forged = join(
        jazz,
        crypto.randomUUID(),
        "Mallory",
        "listener",
        at(155),
      );
      await story.deliver(forged, "forged join (wrong secret)", unauthorized, {
        ...ctx.target,
        secret: `not-${ctx.target.secret}`,
      });
      const failed = buildEvent("peer.join.failure", {
        roomId: ids.jazz,
        at: at(156),
      });
      await story.deliver(failed, "peer.join.failure     jazz", ignored);
    },
  );

  await story.step(
    "tech's session closes; Sam's and Noor's leaves never arrive",
    async () => {
      await story.deliver(
        tech.close({ at: at(170) }),
        "session.close.success  tech",
        applied,
      );
    },
  );

  await story.step(
    "The app features jazz: supabase-js .update({ featured: true })",
    async () => {
      const { error } = await ctx.db.from("rooms").update({ featured: true })
        .eq("hms_room_id", ids.jazz);
      if (error) story.failures.push(`featuring jazz: ${error.message}`);
      else {out(
          "    ✓ rooms.update({ featured: true }).eq('hms_room_id', jazz)",
        );}
    },
  );

  // What the story implies.
  const rows = await story.roomsNow();
  const row = (id: string) => rows.find((r) => r.hms_room_id === id);
  story.expectRoom(row(ids.jazz), "jazz", {
    is_live: true,
    listener_count: 2,
    speaker_count: 2,
    featured: true,
  });
  story.expectRoom(row(ids.tech), "tech", {
    is_live: false,
    listener_count: 0,
    speaker_count: 0,
    featured: false,
  });
  story.expectRoom(row(ids.poetry), "poetry", {
    is_live: false,
    listener_count: 0,
    speaker_count: 0,
    featured: true,
  });
  const order = (await story.feedNow()).map((r) => story.label(r.hms_room_id));
  if (order.join(",") !== "jazz,poetry,tech") {
    story.failures.push(
      `trending order: expected jazz, poetry, tech; got ${order.join(", ")}`,
    );
  }

  // The recap of tech's session (room_sessions): Sam 8..170 s, Zoe 40..150 s, Noor 70..170 s.
  const { data: recaps, error: recapError } = await ctx.db.from("room_sessions")
    .select(
      "session_id,started_at,ended_at,peak_listeners,peak_speakers,unique_participants,participant_seconds",
    )
    .eq("hms_room_id", ids.tech);
  const recap = recaps?.[0];
  if (recapError || recaps?.length !== 1 || recap === undefined) {
    story.failures.push(
      `tech's recap: ${recapError?.message ?? `${recaps?.length} sessions`}`,
    );
  } else {
    out("\nSession recap (room_sessions), tech");
    out(
      `  ${recap.session_id}: ${
        recap.ended_at ? "ended" : "live"
      }, peak ${recap.peak_listeners} listeners / ${recap.peak_speakers} speakers, ${recap.unique_participants} participants, ${
        Number(recap.participant_seconds)
      } participant-seconds`,
    );
    const got = [
      recap.ended_at !== null,
      recap.peak_listeners,
      recap.peak_speakers,
      recap.unique_participants,
      Number(recap.participant_seconds),
    ].join(",");
    if (got !== "true,2,1,3,372") {
      story.failures.push(
        `tech's recap: expected ended, peaks 2/1, 3 participants, 372 s; got ${got}`,
      );
    }
  }

  out("\nSummary");
  out(
    "  jazz    live; Maya and Ravi speaking, Aiko and Lena listening (Omar's late join did not",
  );
  out(
    "          resurrect him); featured, so it leads the feed from a base of 2×1 + 2×3 + 5 = 13",
  );
  out(
    "  tech    closed: the session close zeroed Sam and Noor, whose leaves never came; Noor's",
  );
  out(
    "          retry was a duplicate and the replay with a new id changed nothing",
  );
  out(
    "  poetry  featured but never on air: 5 points, decayed by an hour of quiet (half-life 6 h)",
  );
  out(`  feed    ${order.join(" > ")}`);
  return story.failures;
}

export const USAGE = `Usage: npm run demo [-- --fast]

Replays a realistic story through the function with signed 100ms webhooks and prints,
after each step, the function's answers, the rooms and the trending feed. Uses the running
local stack (\`npm start\`), or starts a temporary one for the duration of the demo.

Options:
  --fast          no pauses between steps
  --pause MS      pause between steps in milliseconds   [1500]
  -h, --help      this text

Exit status: 0 if every answer and the final counts are what the story implies, 1 otherwise.
`;

/** Runs the command; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let pauseMs = 1500;
  try {
    const { strings, booleans, positionals } = parseFlags(argv, {
      fast: "boolean",
      pause: "string",
      help: "boolean",
    });
    if (booleans.has("help")) {
      console.log(USAGE);
      return 0;
    }
    if (positionals.length > 0) {
      throw new UsageError(`unexpected argument ${positionals[0]}`);
    }
    if (booleans.has("fast") && strings.pause !== undefined) {
      throw new UsageError("--fast and --pause exclude each other");
    }
    if (strings.pause !== undefined) {
      if (!/^\d+$/.test(strings.pause) || Number(strings.pause) > 60_000) {
        throw new UsageError(
          "--pause must be a whole number of milliseconds up to 60000",
        );
      }
      pauseMs = Number(strings.pause);
    }
    if (booleans.has("fast")) pauseMs = 0;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(
      `demo: ${error.message}\nRun \`npm run demo -- --help\` for the options.`,
    );
    return 2;
  }

  let stack: StackInfo;
  let ownStack: Stack | null = null;
  try {
    stack = await requireStack();
  } catch (error) {
    if (!(error instanceof StackNotRunningError)) throw error;
    console.log(
      "No local stack is running: starting a temporary one for the demo …",
    );
    try {
      ownStack = await startStack({});
    } catch (startError) {
      console.error(
        `demo: could not start a local stack: ${
          (startError as Error).message
        }\n` +
          "(`npm start` builds what is missing; run it once, or run the demo while it runs)",
      );
      return 1;
    }
    const started = ownStack;
    // Ctrl-C must not leave PostgreSQL and the function running.
    Deno.addSignalListener("SIGINT", () => {
      started.stopSync();
      Deno.exit(130);
    });
    stack = parseStackInfo(started.file(), "(temporary stack)");
  }
  try {
    return await runDemo(stack, pauseMs);
  } finally {
    await ownStack?.stop();
  }
}

async function runDemo(stack: StackInfo, pauseMs: number): Promise<number> {
  const ctx: DemoContext = {
    stack,
    target: {
      url: stack.functionUrl,
      secret: stack.webhookSecret,
      headerName: stack.secretHeader,
      auth: "both",
    },
    db: createClient(stack.supabaseUrl, stack.serviceRoleKey, {
      auth: { persistSession: false, autoRefreshToken: false },
    }),
    pauseMs,
    out: (line) => console.log(line),
  };
  let failures: string[];
  try {
    failures = await runStory(ctx);
  } catch (error) {
    console.error(`demo: ${(error as Error).message}`);
    return 1;
  }
  if (failures.length > 0) {
    console.log(`\nFAILED: ${failures.length} expectation(s) broken:`);
    for (const f of failures) console.log(`  - ${f}`);
    return 1;
  }
  console.log("\nOK: every answer and the final counts match the story.");
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
