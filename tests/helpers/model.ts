/**
 * The tests' independent statement of docs/design.md §5 and §7: what the function should pass
 * to the RPC for a webhook body (the plan), and what a room's row must be after a set of applied
 * events (the counting model). Expectations come from here, never from the code under test.
 */

import { GO_ZERO_TIME, parseTime } from "../../scripts/lib/hms.ts";

/** The RPC actions of design §5. */
export type Action =
  | "session_open"
  | "session_close"
  | "peer_join"
  | "peer_leave"
  | "role_change"
  | "activity";

/** Role classes of design §3 (`HMS_SPEAKER_ROLES` / `HMS_IGNORED_ROLES`, defaults). */
export type RoleClass = "listener" | "speaker" | "ignored";

/** One event as the model sees it; times are microseconds since the epoch. */
export interface ModelEvent {
  action: Action;
  sessionId: string;
  sessionStartedAt: bigint | null;
  peerId: string | null;
  roleClass: RoleClass | null;
  eventAt: bigint;
  joinedAt: bigint | null;
}

/** A body the function must answer `ignored` without calling the database. */
export interface Ignored {
  ignored: "failure event" | "event type not handled";
}

const ACTIONS: Record<string, Action> = {
  "session.open.success": "session_open",
  "room.started": "session_open",
  "session.close.success": "session_close",
  "room.end.success": "session_close",
  "room.ended": "session_close",
  "peer.join.success": "peer_join",
  "peer.joined": "peer_join",
  "peer.leave.success": "peer_leave",
  "peer.left": "peer_leave",
  "role.change.success": "role_change",
  "track.add.success": "activity",
  "track.update.success": "activity",
  "track.remove.success": "activity",
  "track.updated": "activity",
};

const DEFAULT_SPEAKERS = [
  "host",
  "speaker",
  "moderator",
  "co-host",
  "broadcaster",
  "co-broadcaster",
];
const DEFAULT_IGNORED = ["__internal_recorder", "beam"];

/** The class of a role name under the default configuration (case-insensitive). */
export function classify(role: string): RoleClass {
  const name = role.trim().toLowerCase();
  if (DEFAULT_IGNORED.includes(name)) return "ignored";
  return DEFAULT_SPEAKERS.includes(name) ? "speaker" : "listener";
}

/** RFC 3339 to microseconds, truncating nanoseconds; absent or Go zero time is null. */
export function micros(text: unknown): bigint | null {
  if (typeof text !== "string" || text === "" || text === GO_ZERO_TIME) {
    return null;
  }
  const ns = parseTime(text);
  return ns >= 0n ? ns / 1000n : -((-ns + 999n) / 1000n);
}

/** What the function should do with this payload (design §5). */
export function planOf(payload: Record<string, unknown>): ModelEvent | Ignored {
  const flat = "event" in payload;
  const type = String(flat ? payload.event : payload.type);
  const action = ACTIONS[type];
  if (action === undefined) {
    return {
      ignored: type.endsWith(".failure") || type.endsWith(".failed")
        ? "failure event"
        : "event type not handled",
    };
  }
  if (flat) {
    const peer = (payload.peer ?? {}) as Record<string, unknown>;
    const role = typeof peer.role === "string" ? peer.role : null;
    const peerEvent = action.startsWith("peer_") || action === "role_change";
    return {
      action,
      sessionId: "",
      sessionStartedAt: null,
      peerId: peerEvent ? String(peer.id) : null,
      roleClass: peerEvent && role !== null ? classify(role) : null,
      eventAt: BigInt(payload.timestamp as number) * 1000n,
      joinedAt: null,
    };
  }
  const data = payload.data as Record<string, unknown>;
  const envelope = micros(payload.timestamp)!;
  const own: Record<Action, unknown> = {
    session_open: data.session_started_at,
    session_close: data.session_stopped_at,
    peer_join: data.joined_at,
    peer_leave: data.left_at,
    role_change: data.role_changed_at,
    activity: undefined,
  };
  // room.end.success has no stop time: the envelope second, rounded up to its end.
  const eventAt = type === "room.end.success"
    ? envelope + 999_999n
    : micros(own[action]) ?? envelope;
  const peerEvent = action.startsWith("peer_") || action === "role_change";
  return {
    action,
    sessionId: typeof data.session_id === "string" ? data.session_id : "",
    sessionStartedAt: micros(data.session_started_at),
    peerId: peerEvent ? String(data.peer_id) : null,
    roleClass: peerEvent && typeof data.role === "string"
      ? classify(data.role)
      : null,
    eventAt,
    joinedAt: action === "peer_leave" || action === "role_change"
      ? micros(data.joined_at)
      : null,
  };
}

/** The room row the model predicts. */
export interface Expected {
  isLive: boolean;
  listeners: number;
  speakers: number;
  lastActiveUs: bigint;
}

const max = (
  a: bigint | null,
  b: bigint | null,
) => (a === null ? b : b === null ? a : a > b ? a : b);
const min = (
  a: bigint | null,
  b: bigint | null,
) => (a === null ? b : b === null ? a : a < b ? a : b);

interface Peer {
  seen: boolean;
  left: boolean;
  joinReported: bigint | null;
  firstRoleChange: bigint | null;
  role: { at: bigint; kind: number; roleClass: RoleClass } | null;
}

/**
 * The room after `events` (each applied once, in any order) starting from a row with
 * `initial` live flag and last activity (design §7).
 */
export function expectRoom(
  events: ModelEvent[],
  initial: { isLive: boolean; lastActiveUs: bigint },
): Expected {
  const sessions = new Map<string, {
    started: bigint | null;
    lastOpen: bigint | null;
    closed: bigint | null;
    peers: Map<string, Peer>;
  }>();
  let lastActive = initial.lastActiveUs;
  for (const e of events) {
    lastActive = max(lastActive, e.eventAt)!;
    const s = sessions.get(e.sessionId) ??
      {
        started: null,
        lastOpen: null,
        closed: null,
        peers: new Map<string, Peer>(),
      };
    sessions.set(e.sessionId, s);
    s.started = max(s.started, e.sessionStartedAt);
    if (e.action === "session_open") {
      s.started = max(s.started, e.eventAt);
      s.lastOpen = max(s.lastOpen, e.eventAt);
    }
    if (e.action === "session_close") s.closed = max(s.closed, e.eventAt);
    if (e.peerId === null) continue;
    const p = s.peers.get(e.peerId) ??
      {
        seen: false,
        left: false,
        joinReported: null,
        firstRoleChange: null,
        role: null,
      };
    s.peers.set(e.peerId, p);
    if (e.action === "peer_leave") p.left = true;
    if (e.action === "peer_join") {
      p.joinReported = min(p.joinReported, e.eventAt);
    }
    if (e.action === "role_change") {
      p.firstRoleChange = min(p.firstRoleChange, e.eventAt);
    }
    p.joinReported = min(p.joinReported, e.joinedAt);
    if (e.action === "peer_join" || e.action === "role_change") {
      p.seen = true;
      const kind = e.action === "peer_join" ? 0 : 1;
      const candidate = { at: e.eventAt, kind, roleClass: e.roleClass! };
      const r = p.role;
      const later = r === null || candidate.at > r.at ||
        (candidate.at === r.at &&
          (kind > r.kind ||
            (kind === r.kind && candidate.roleClass > r.roleClass)));
      if (later) p.role = candidate;
    }
  }
  if (sessions.size === 0) {
    return {
      isLive: initial.isLive,
      listeners: 0,
      speakers: 0,
      lastActiveUs: lastActive,
    };
  }
  // Current session: largest (started_at nulls first, session_id), byte order.
  const [, current] = [...sessions.entries()].sort(([ida, a], [idb, b]) => {
    if (a.started !== b.started) {
      if (a.started === null) return -1;
      if (b.started === null) return 1;
      return a.started < b.started ? -1 : 1;
    }
    return ida < idb ? -1 : ida > idb ? 1 : 0;
  }).at(-1)!;
  let listeners = 0;
  let speakers = 0;
  let lastJoin: bigint | null = null;
  for (const p of current.peers.values()) {
    if (!p.seen) continue;
    const joinedAt = p.joinReported ?? p.firstRoleChange;
    lastJoin = max(lastJoin, joinedAt);
    const present = !p.left &&
      (current.closed === null ||
        (joinedAt !== null && joinedAt > current.closed));
    if (present && p.role?.roleClass === "listener") listeners++;
    if (present && p.role?.roleClass === "speaker") speakers++;
  }
  const latest = max(current.lastOpen, lastJoin);
  const isLive = current.closed === null ||
    (latest !== null && latest > current.closed);
  return { isLive, listeners, speakers, lastActiveUs: lastActive };
}

/** Design §8 with the default settings: the score at `nowUs`, as stored (2 decimals). */
export function expectedScore(
  listeners: number,
  speakers: number,
  featured: boolean,
  lastActiveUs: bigint,
  nowUs: bigint,
): number {
  const base = listeners * 1 + speakers * 3 + (featured ? 5 : 0);
  const hours = Math.max(0, Number(nowUs - lastActiveUs) / 3.6e9);
  return Math.round(base * 0.5 ** (hours / 6) * 100) / 100;
}
