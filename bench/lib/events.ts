/**
 * Bench workloads built with the canonical 100ms builder (scripts/lib/hms.ts): the ~1 KB signed
 * `peer.join.success` timed by the core section, and realistic shuffled room traffic (joins,
 * leaves, role changes, duplicates) with the exact counts it must produce.
 */

import {
  buildEvent,
  type BuiltEvent,
  headersFor,
  objectId,
  SessionTimeline,
} from "../../scripts/lib/hms.ts";
import { seeded, shuffle } from "../../scripts/lib/random.ts";

/** One request as sent: exact body bytes and headers. */
export interface Delivery {
  roomId: string;
  body: string;
  headers: Record<string, string>;
}

/** The counts a room must end with. */
export interface Expected {
  listeners: number;
  speakers: number;
}

export interface Workload {
  /** session.open.success of every room, sent before the timed run. */
  opens: Delivery[];
  /** The timed traffic, in delivery (shuffled) order. */
  events: Delivery[];
  expected: Map<string, Expected>;
}

const NS_PER_MS = 1_000_000n;

/** Fresh 100ms-style room ids, unique per run so runs never see each other's rows. */
export function roomIds(count: number): string[] {
  return Array.from({ length: count }, () => objectId());
}

async function deliver(
  roomId: string,
  event: BuiltEvent,
  secret: string,
): Promise<Delivery> {
  return {
    roomId,
    body: event.body,
    headers: await headersFor(event.body, { secret, auth: "signature" }),
  };
}

/**
 * The core section's event: a signed `peer.join.success` padded to about 1 KB with realistic
 * peer metadata, at a fixed instant so every implementation sees the same bytes.
 */
export async function coreSample(secret: string): Promise<{
  body: string;
  signature: string;
  nowMs: number;
}> {
  const at = 1_728_064_990_558_102_640n; // 2024-10-04T18:03:10.55810264Z
  const userData = JSON.stringify({
    avatar: "https://cdn.example.com/avatars/usr_1907/r7-256x256.png",
    display_name: "Ravi Shankar",
    bio:
      "Jazz enthusiast, late-night listener, occasional speaker on Friday sessions.",
    badges: ["early-supporter", "top-listener", "verified"],
    locale: "en-IN",
    followers: 1842,
    client: {
      platform: "ios",
      app_version: "4.12.1",
      sdk: "hms-ios-sdk 1.16.2",
    },
  });
  const event = buildEvent("peer.join.success", {
    id: "7c2e9a44-1f0b-4d3a-b8e6-5a9c0d2f7e81",
    at,
    roomId: "6501c1d2e3f4a5b6c7d8e9f0",
    roomName: "friday-night-jazz-with-the-quartet-live-from-bangalore",
    sessionId: "6702a7b8c9d0e1f2a3b4c5d6",
    sessionStartedAt: "2024-10-04T18:00:02.183742915Z",
    peerId: "a71c4e02-58b3-4f6d-9e1a-c3d2b7f6e845",
    userId: "usr_1907",
    userName: "Ravi",
    userData,
    role: "listener",
  });
  const headers = await headersFor(event.body, { secret, auth: "signature" });
  return {
    body: event.body,
    signature: headers["x-100ms-signature"],
    nowMs: Number(at / NS_PER_MS) + 1_000,
  };
}

interface PeerState {
  peerId: string;
  cls: "listener" | "speaker" | "ignored";
  left: boolean;
}

const CLASS_OF: Record<string, PeerState["cls"]> = {
  listener: "listener",
  speaker: "speaker",
  host: "speaker",
  __internal_recorder: "ignored",
};

function pickRole(random: () => number): string {
  const x = random();
  return x < 0.72
    ? "listener"
    : x < 0.92
    ? "speaker"
    : x < 0.99
    ? "host"
    : "__internal_recorder";
}

/**
 * Realistic traffic for `rooms`: `total` events (joins ~70%, leaves ~12%, listener<->speaker
 * changes ~10%, exact duplicates ~8%), event times in the last minutes, delivered shuffled. With
 * `joinsOnly` it is a join storm (the hot-room case). Expected counts follow design §7.
 */
export async function roomTraffic(opts: {
  rooms: string[];
  total: number;
  secret: string;
  seed: number;
  joinsOnly?: boolean;
}): Promise<Workload> {
  const random = seeded(opts.seed);
  const nowNs = BigInt(Date.now()) * NS_PER_MS;
  const start = nowNs - 5n * 60_000n * NS_PER_MS;
  const timelines = opts.rooms.map((roomId) =>
    new SessionTimeline({ roomId, startedAt: start - 60_000n * NS_PER_MS })
  );
  const peers = opts.rooms.map(() => [] as PeerState[]);
  const clock = opts.rooms.map(() => start);
  const built: { room: number; event: BuiltEvent }[] = [];
  for (let i = 0; i < opts.total; i++) {
    const room = Math.floor(random() * opts.rooms.length);
    const tl = timelines[room];
    // Distinct microsecond-spaced times per room keep each peer's history in a real order.
    clock[room] += 1_000n + BigInt(Math.floor(random() * 1_000_000));
    const at = clock[room];
    const present = peers[room].filter((p) => !p.left);
    const x = opts.joinsOnly ? 0 : random();
    if (x >= 0.92 && built.length > 0) {
      built.push(built[Math.floor(random() * built.length)]);
    } else if (x >= 0.80 && present.length > 0) {
      const p = present[Math.floor(random() * present.length)];
      p.left = true;
      built.push({ room, event: tl.leave(p.peerId, { at }) });
    } else if (x >= 0.70 && present.some((p) => p.cls !== "ignored")) {
      const movable = present.filter((p) => p.cls !== "ignored");
      const p = movable[Math.floor(random() * movable.length)];
      const role = p.cls === "listener" ? "speaker" : "listener";
      p.cls = CLASS_OF[role];
      built.push({ room, event: tl.changeRole(p.peerId, role, { at }) });
    } else {
      const role = pickRole(random);
      const peerId = crypto.randomUUID();
      peers[room].push({ peerId, cls: CLASS_OF[role], left: false });
      built.push({ room, event: tl.join({ at, role, peerId }) });
    }
  }
  shuffle(built, random);
  const expected = new Map<string, Expected>();
  opts.rooms.forEach((roomId, room) => {
    const live = peers[room].filter((p) => !p.left);
    expected.set(roomId, {
      listeners: live.filter((p) => p.cls === "listener").length,
      speakers: live.filter((p) => p.cls === "speaker").length,
    });
  });
  return {
    opens: await Promise.all(
      timelines.map((tl, room) =>
        deliver(opts.rooms[room], tl.open(), opts.secret)
      ),
    ),
    events: await Promise.all(
      built.map(({ room, event }) =>
        deliver(opts.rooms[room], event, opts.secret)
      ),
    ),
    expected,
  };
}
