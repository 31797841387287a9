/**
 * Generated room histories (the counting tests' generator, via `cargo run --example
 * export_histories`) turned into 100ms webhook bodies that happened recently, and what a room
 * must show according to 100ms's record (the API stand-in's truth).
 */

import { buildEvent, objectId } from "../../scripts/lib/hms.ts";
import type { TrueSession } from "../../scripts/stack/hms_api.ts";

/** One event of a generated history (times in µs, as the Rust model keeps them). */
interface GeneratedEvent {
  event_id: string;
  action:
    | "session_open"
    | "session_close"
    | "peer_join"
    | "peer_leave"
    | "role_change";
  session_id: string;
  session_started_at: number | null;
  peer_id: string | null;
  role: string | null;
  /** The class the function gives `role` (the generator's, from the Rust core's defaults). */
  role_class: "listener" | "speaker" | "ignored" | null;
  event_at: number;
  joined_at: number | null;
}

/** A history moved to now, for one room. */
export interface RoomHistory {
  roomId: string;
  /** Webhook bodies with a fresh envelope timestamp (what the function gets on time). */
  bodies: string[];
  /** The same events with their own time as envelope timestamp (what a replay re-sends). */
  oldBodies: string[];
  /** When each event happened (ms), for the stand-in's delivery log. */
  at: number[];
}

const TYPES: Record<GeneratedEvent["action"], string> = {
  session_open: "session.open.success",
  session_close: "session.close.success",
  peer_join: "peer.join.success",
  peer_leave: "peer.leave.success",
  role_change: "role.change.success",
};

/** `count` envelope histories from the generator. */
export async function generatedHistories(
  root: string,
  seed: number,
  count: number,
): Promise<GeneratedEvent[][]> {
  const out = await new Deno.Command("cargo", {
    args: [
      "run",
      "-q",
      "--example",
      "export_histories",
      "--",
      String(seed),
      String(count),
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    env: { PATH: `${Deno.env.get("HOME")}/.cargo/bin:${Deno.env.get("PATH")}` },
  }).output();
  if (out.code !== 0) {
    throw new Error(
      `export_histories failed: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
  const histories: GeneratedEvent[][] = new TextDecoder().decode(out.stdout)
    .trim().split("\n").map((line) => JSON.parse(line).events);
  for (const e of histories.flat()) {
    if (e.role !== null && e.role_class !== null) {
      ROLE_CLASSES.set(e.role, e.role_class);
    }
  }
  return histories;
}

/** Role name -> class, as the exported histories classify them (one table: the Rust core's). */
const ROLE_CLASSES = new Map<string, string>();

function classify(role: string): string {
  const roleClass = ROLE_CLASSES.get(role);
  if (roleClass === undefined) {
    throw new Error(`no class exported for role ${role}`);
  }
  return roleClass;
}

/**
 * The history as webhooks of one fresh room, moved so that its last event happened `endMsAgo`
 * before now (every event stays within 100ms's 12-hour session limit of now when the history
 * allows it; older sessions are over by then, as they would be on 100ms).
 */
export function toRoom(
  events: GeneratedEvent[],
  endMsAgo: number,
): RoomHistory {
  const roomId = objectId();
  const last = Math.max(...events.map((e) => e.event_at));
  const shiftUs = BigInt(Date.now() - endMsAgo) * 1000n - BigInt(last);
  const ns = (us: number) => (BigInt(us) + shiftUs) * 1000n;
  const bodies: string[] = [];
  const oldBodies: string[] = [];
  const at: number[] = [];
  for (const e of events) {
    const when = ns(e.event_at);
    for (const fresh of [true, false]) {
      const built = buildEvent(TYPES[e.action], {
        id: e.event_id,
        roomId,
        sessionId: e.session_id,
        peerId: e.peer_id ?? undefined,
        role: e.role ?? undefined,
        at: when,
        deliveredAt: fresh ? new Date() : when,
        joinedAt: e.joined_at === null ? undefined : ns(e.joined_at),
        sessionStartedAt: e.session_started_at === null
          ? undefined
          : ns(e.session_started_at),
      });
      const data = built.payload.data as Record<string, unknown>;
      // What the generator left unreported stays absent, as 100ms would leave it.
      if (e.session_started_at === null && e.action !== "session_open") {
        delete data.session_started_at;
      }
      if (e.joined_at === null && e.action !== "peer_join") {
        delete data.joined_at;
      }
      (fresh ? bodies : oldBodies).push(JSON.stringify(built.payload));
    }
    at.push(Number(when / 1_000_000n));
  }
  return { roomId, bodies, oldBodies, at };
}

/** What a room must show per 100ms's record: its latest session's present peers, if active. */
export function expected(
  sessions: TrueSession[],
  roomId: string,
): { isLive: boolean; listeners: number; speakers: number } {
  const mine = sessions.filter((s) => s.roomId === roomId);
  mine.sort((a, b) =>
    a.createdAt === b.createdAt
      ? (a.id < b.id ? -1 : 1)
      : a.createdAt < b.createdAt
      ? -1
      : 1
  );
  const current = mine.at(-1);
  if (current === undefined || !current.active) {
    return { isLive: false, listeners: 0, speakers: 0 };
  }
  let listeners = 0;
  let speakers = 0;
  for (const peer of current.peers.values()) {
    if (peer.leftAt !== null) continue;
    const roleClass = classify(peer.role);
    if (roleClass === "listener") listeners++;
    if (roleClass === "speaker") speakers++;
  }
  return { isLive: true, listeners, speakers };
}

// One seeded PRNG and shuffle for the bench and the tests, so a failing run can be repeated.
export { seeded, shuffle } from "../../scripts/lib/random.ts";
