/**
 * A stand-in for 100ms's server API (100ms cannot run here), serving what reconcile and replay
 * use, fed from a true history of webhook events and the fate of each delivery. Shapes follow
 * 100ms's docs (https://www.100ms.live/docs/server-side/v2/api-reference/; their source is
 * https://github.com/100mslive/100ms-docs, and the .mdx paths below are inside it):
 *
 * - Every request: `Authorization: Bearer <management token>`, an HS256 JWT signed with the app
 *   secret, claims `access_key`, `type: "management"`, `version: 2`, `iat`, `nbf`, `exp`, `jti`
 *   (docs/get-started/v2/get-started/security-and-tokens.mdx, "Management token for REST API").
 *   Anything else: 401.
 * - `GET /v2/sessions?active&room_id&limit(10..100)&start&after&before` → `{limit, data, last}`,
 *   newest first, `last` the cursor for `start` (Sessions/list-sessions.mdx);
 *   `GET /v2/sessions/<id>` → one session object (Sessions/retrieve-a-session.mdx, object.mdx:
 *   `id, room_id, customer_id, active, peers{<id>: {id, session_id, name, role, user_id,
 *   joined_at, left_at?}}, created_at, updated_at`).
 * - `GET /v2/active-rooms/<room>` → `{id, name, customer_id, session: {id, created_at,
 *   peers: [ids]}}`; `…/peers` → `{peers: {<id>: {id, name, user_id, metadata, role,
 *   joined_at}}}`; 404 when the room is not active (active-rooms/retrieve-active-room.mdx,
 *   list-peers.mdx; the 404 body is undocumented, so the client must not read it).
 * - In both peer objects, `name` and `user_id` are the `user_name` and `user_id` the peer's
 *   webhooks carried (https://www.100ms.live/docs/server-side/v2/api-reference/Sessions/object,
 *   https://www.100ms.live/docs/server-side/v2/api-reference/active-rooms/list-peers).
 * - `POST /v2/analytics/webhooks/replay` `{start_time, end_time, room_id, event_names, limit,
 *   offset, status}` → `{workflow_id, status: started|already_running, message, filters}`; the
 *   matching deliveries of the last 30 days (default status `failed`, replayable types only)
 *   are re-sent to the webhook URL at 10 events/s, marked `is_replay: true`
 *   (analytics/replay-webhook-events.mdx). Where the mark sits is undocumented: `replayMark`
 *   chooses. `GET …/replay/<workflow_id>` reports progress (its shape is this stand-in's own).
 * - 429 `{"code":429,"message":"rate limit exceeded, retry after 45 seconds"}` (same doc).
 * - Not 100ms's: `POST /_local/record {body, delivered}` (no token) lets the local stack's
 *   `npm run send` tell the stand-in what happened (`--lost`: a failed delivery).
 *
 * Where the docs are silent the stand-in picks one documented-compatible behaviour and lets tests
 * pick the other (`cursorInclusive`). The truth it serves is derived from the events by the
 * rules in {@link deriveSessions}; tests/hms_api.test.ts checks that contract.
 */

import { HOST } from "./net.ts";
import { headersFor, parseTime } from "../lib/hms.ts";

const NS_PER_MS = 1_000_000n;
const HOUR_NS = 3_600_000_000_000n;
/** 100ms's maximum session length (Sessions/object.mdx). */
const MAX_SESSION_NS = 12n * HOUR_NS;
/** Deliveries older than this are gone from the delivery log (list-webhook-events.mdx). */
const LOG_DAYS = 30;

/** Types the replay API re-sends (analytics/replay-webhook-events.mdx). */
export const REPLAYABLE_TYPES: readonly string[] = [
  "session.open.success",
  "session.close.success",
  "peer.join.success",
  "peer.leave.success",
  "recording.success",
  "recording.failed",
  "transcription.success",
  "beam.started.success",
  "beam.stopped.success",
  "beam.recording.success",
  "hls.recording.success",
  "stream.recording.success",
];

/** A fault to answer instead of the real thing, for the next `times` matching requests. */
export interface Fault {
  /** Matches the request path (with query) by prefix, or by the regular expression. */
  path: string | RegExp;
  kind: "429" | "500" | "timeout" | "malformed" | "401";
  /** Default 1. */
  times?: number;
}

/** One request the stand-in served, and whether its token passed. */
export interface Served {
  method: string;
  path: string;
  status: number;
  /** Why the token was refused, or null. */
  tokenProblem: string | null;
  /** The decoded claims of a valid token. */
  claims: Record<string, unknown> | null;
  /** The bearer token as sent (tests verify it independently). */
  token: string | null;
}

/** A delivery in 100ms's log. */
export interface Delivery {
  body: string;
  type: string;
  roomId: string;
  /** When 100ms tried (ms). */
  attemptedAt: number;
  status: "success" | "failed";
  /** Times it was re-sent by a replay. */
  replays: number;
}

/** A replay workflow. */
export interface Workflow {
  id: string;
  key: string;
  status: "running" | "completed";
  total: number;
  sent: number;
  /** Status codes the webhook URL answered. */
  answers: number[];
}

/** Options of {@link startHmsApi}. */
export interface HmsApiOptions {
  accessKey: string;
  appSecret: string;
  /** Where replays go (the function URL). */
  webhookUrl?: string;
  /** The webhook secret: replays carry the dashboard's custom header and the signature. */
  webhookSecret?: string;
  webhookHeader?: string;
  /** Events per second a replay sends (documented: 10). */
  replayRate?: number;
  /** Where the replay mark goes (placement undocumented). Default `top`. */
  replayMark?: "top" | "data";
  /** Whether `start=<last>` repeats the `last` session (undocumented). Default false. */
  cursorInclusive?: boolean;
  /** How long a `timeout` fault hangs (ms). Default 15 s, past the function's 10 s. */
  hangMs?: number;
  /** The clock (ms). Default Date.now. */
  now?: () => number;
}

/** A session as 100ms reports it (times as epoch ns). */
export interface TrueSession {
  id: string;
  roomId: string;
  active: boolean;
  createdAt: bigint;
  updatedAt: bigint;
  peers: Map<string, TruePeer>;
}

/** A peer as 100ms reports it. */
export interface TruePeer {
  id: string;
  role: string;
  userId: string;
  name: string;
  joinedAt: bigint;
  leftAt: bigint | null;
}

/** A running stand-in. */
export interface HmsApi {
  url: string;
  /** Adds an event that happened; `delivered` says whether its webhook got through. */
  record(body: string, delivered: boolean, attemptedAt?: number): void;
  /** Answers the next matching requests with a fault. */
  fault(fault: Fault): void;
  /** Every request so far. */
  served(): Served[];
  deliveries(): Delivery[];
  workflows(): Workflow[];
  /** The truth as the API serves it now. */
  sessions(): TrueSession[];
  /** Resolves when every running replay has sent everything. */
  replaysDone(): Promise<void>;
  /** Where replays go, once the function's URL is known. */
  setWebhook(url: string, secret: string, header?: string): void;
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// The truth: sessions and peers derived from the events
// ---------------------------------------------------------------------------------------------

interface Parsed {
  type: string;
  timestamp: bigint;
  data: Record<string, unknown>;
}

function parseBody(body: string): Parsed | null {
  try {
    const v = JSON.parse(body);
    if (typeof v?.type !== "string" || typeof v?.data !== "object") return null;
    return { type: v.type, timestamp: parseTime(v.timestamp), data: v.data };
  } catch {
    return null;
  }
}

function timeOf(data: Record<string, unknown>, key: string): bigint | null {
  const v = data[key];
  if (typeof v !== "string" || v === "" || v.startsWith("0001-01-01")) {
    return null;
  }
  return parseTime(v);
}

const minOf = (a: bigint | null, b: bigint | null) =>
  a === null ? b : b === null ? a : a < b ? a : b;
const maxOf = (a: bigint | null, b: bigint | null) =>
  a === null ? b : b === null ? a : a > b ? a : b;

/**
 * What 100ms reports, from what happened:
 * - a session is its events by `data.session_id`; `created_at` is the earliest
 *   `session_started_at` or open time (else its earliest event); `updated_at` its latest event;
 * - it is active unless it was closed (session.close / room.end), is not the room's latest
 *   session, or started more than 12 h before `nowNs` (100ms's maximum);
 * - a peer's `joined_at` is the earliest join time reported for it, `left_at` its leave; in an
 *   inactive session every peer has left (at the close, else at `updated_at`);
 * - a peer's role is that of its latest join or role change (a role change wins a tie).
 */
export function deriveSessions(bodies: string[], nowNs: bigint): TrueSession[] {
  interface Acc {
    s: TrueSession;
    start: bigint | null;
    first: bigint;
    closedAt: bigint | null;
    roleAt: Map<string, [bigint, number]>;
  }
  const sessions = new Map<string, Acc>();
  for (const body of bodies) {
    const e = parseBody(body);
    if (e === null) continue;
    const sessionId = e.data.session_id;
    const roomId = e.data.room_id;
    if (typeof sessionId !== "string" || sessionId === "") continue;
    if (typeof roomId !== "string") continue;
    let acc = sessions.get(sessionId);
    if (acc === undefined) {
      acc = {
        s: {
          id: sessionId,
          roomId,
          active: false,
          createdAt: 0n,
          updatedAt: e.timestamp,
          peers: new Map(),
        },
        start: null,
        first: e.timestamp,
        closedAt: null,
        roleAt: new Map(),
      };
      sessions.set(sessionId, acc);
    }
    const started = timeOf(e.data, "session_started_at");
    acc.start = minOf(acc.start, started);
    const own = e.type === "peer.join.success"
      ? timeOf(e.data, "joined_at")
      : e.type === "peer.leave.success"
      ? timeOf(e.data, "left_at")
      : e.type === "role.change.success"
      ? timeOf(e.data, "role_changed_at")
      : e.type === "session.close.success"
      ? timeOf(e.data, "session_stopped_at")
      : e.type === "session.open.success"
      ? started
      : null;
    const at = own ?? e.timestamp;
    acc.first = minOf(acc.first, at)!;
    acc.s.updatedAt = maxOf(acc.s.updatedAt, at)!;
    if (e.type === "session.open.success") acc.start = minOf(acc.start, at);
    if (e.type === "session.close.success" || e.type === "room.end.success") {
      acc.closedAt = maxOf(acc.closedAt, at);
    }
    const peerId = e.data.peer_id;
    if (
      typeof peerId !== "string" ||
      !e.type.startsWith("peer.") && e.type !== "role.change.success"
    ) {
      continue;
    }
    if (e.type.endsWith(".failure")) continue;
    const joined = e.type === "peer.join.success"
      ? at
      : timeOf(e.data, "joined_at");
    let peer = acc.s.peers.get(peerId);
    if (peer === undefined) {
      peer = {
        id: peerId,
        role: String(e.data.role ?? ""),
        userId: String(e.data.user_id ?? ""),
        name: String(e.data.user_name ?? ""),
        joinedAt: joined ?? at,
        leftAt: null,
      };
      acc.s.peers.set(peerId, peer);
    }
    // 100ms sends the same user_id and user_name on every event of a peer; an event that
    // lacks them (or came first without them) leaves the labels to one that has them.
    if (peer.userId === "" && typeof e.data.user_id === "string") {
      peer.userId = e.data.user_id;
    }
    if (peer.name === "" && typeof e.data.user_name === "string") {
      peer.name = e.data.user_name;
    }
    peer.joinedAt = minOf(peer.joinedAt, joined ?? at)!;
    if (e.type === "peer.leave.success") peer.leftAt = maxOf(peer.leftAt, at);
    if (e.type === "peer.join.success" || e.type === "role.change.success") {
      const kind = e.type === "peer.join.success" ? 0 : 1;
      const prev = acc.roleAt.get(peerId);
      if (
        prev === undefined || at > prev[0] ||
        (at === prev[0] && kind >= prev[1])
      ) {
        acc.roleAt.set(peerId, [at, kind]);
        peer.role = String(e.data.role ?? "");
      }
    }
  }
  const latest = new Map<string, Acc>();
  for (const acc of sessions.values()) {
    acc.s.createdAt = acc.start ?? acc.first;
    const other = latest.get(acc.s.roomId);
    if (
      other === undefined || acc.s.createdAt > other.s.createdAt ||
      (acc.s.createdAt === other.s.createdAt && acc.s.id > other.s.id)
    ) latest.set(acc.s.roomId, acc);
  }
  for (const acc of sessions.values()) {
    acc.s.active = acc.closedAt === null &&
      latest.get(acc.s.roomId) === acc &&
      acc.s.createdAt > nowNs - MAX_SESSION_NS;
    if (!acc.s.active) {
      const end = acc.closedAt ?? acc.s.updatedAt;
      for (const peer of acc.s.peers.values()) peer.leftAt ??= end;
    }
  }
  return [...sessions.values()].map((acc) => acc.s);
}

// ---------------------------------------------------------------------------------------------
// Tokens (checked with WebCrypto; the function's own minting is what is under test)
// ---------------------------------------------------------------------------------------------

function b64urlDecode(text: string): Uint8Array {
  const base = text.replaceAll("-", "+").replaceAll("_", "/");
  const padded = base + "=".repeat((4 - base.length % 4) % 4);
  const binary = atob(padded);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Checks a management token; returns its claims or why it is refused. */
export async function checkToken(
  authorization: string | null,
  accessKey: string,
  appSecret: string,
  nowMs: number,
): Promise<{ claims: Record<string, unknown> } | { problem: string }> {
  const match = /^Bearer ([\w-]+)\.([\w-]+)\.([\w-]+)$/.exec(
    authorization ?? "",
  );
  if (match === null) return { problem: "no bearer JWT" };
  const [, head, body, signature] = match;
  let header: Record<string, unknown>;
  let claims: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(b64urlDecode(head)));
    claims = JSON.parse(new TextDecoder().decode(b64urlDecode(body)));
  } catch {
    return { problem: "undecodable JWT" };
  }
  if (header.alg !== "HS256") return { problem: "alg is not HS256" };
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(appSecret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const valid = await crypto.subtle.verify(
    "HMAC",
    key,
    b64urlDecode(signature) as BufferSource,
    new TextEncoder().encode(`${head}.${body}`),
  );
  if (!valid) return { problem: "bad signature" };
  const now = Math.floor(nowMs / 1000);
  if (claims.access_key !== accessKey) return { problem: "wrong access_key" };
  if (claims.type !== "management") {
    return { problem: "type is not management" };
  }
  if (claims.version !== 2) return { problem: "version is not 2" };
  for (const name of ["iat", "nbf", "exp"]) {
    if (!Number.isInteger(claims[name])) {
      return { problem: `${name} is not a number` };
    }
  }
  // A minute of leeway for clocks, as JWT libraries allow.
  if ((claims.nbf as number) > now + 60) {
    return { problem: "not valid yet (nbf)" };
  }
  if ((claims.iat as number) > now + 60) {
    return { problem: "issued in the future" };
  }
  if ((claims.exp as number) <= now) return { problem: "expired" };
  if (typeof claims.jti !== "string" || !UUID.test(claims.jti)) {
    return { problem: "jti is not a UUID" };
  }
  return { claims };
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

const isoMs = (ns: bigint) => new Date(Number(ns / NS_PER_MS)).toISOString();

function sessionObject(s: TrueSession): Record<string, unknown> {
  const peers: Record<string, unknown> = {};
  for (const p of s.peers.values()) {
    peers[p.id] = {
      id: p.id,
      session_id: s.id,
      name: p.name,
      role: p.role,
      user_id: p.userId,
      joined_at: isoMs(p.joinedAt),
      ...(p.leftAt === null ? {} : { left_at: isoMs(p.leftAt) }),
    };
  }
  return {
    id: s.id,
    room_id: s.roomId,
    customer_id: "64f1a2b3c4d5e6f708192a3b",
    active: s.active,
    peers,
    created_at: isoMs(s.createdAt),
    updated_at: isoMs(s.updatedAt),
  };
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** Starts the stand-in on a free port. */
export function startHmsApi(options: HmsApiOptions): Promise<HmsApi> {
  const now = options.now ?? Date.now;
  const events: { body: string; at: number }[] = [];
  const log: Delivery[] = [];
  const served: Served[] = [];
  const faults: (Fault & { left: number })[] = [];
  const workflows: Workflow[] = [];
  const running = new Set<Promise<void>>();
  const controller = new AbortController();
  const hangs = new Set<ReturnType<typeof setTimeout>>();
  // Assigned once listening; the local record endpoint uses it.
  let api!: HmsApi;

  const truth = () =>
    deriveSessions(events.map((e) => e.body), BigInt(now()) * NS_PER_MS);

  function takeFault(path: string): Fault | null {
    const i = faults.findIndex((f) =>
      typeof f.path === "string" ? path.startsWith(f.path) : f.path.test(path)
    );
    if (i < 0) return null;
    const fault = faults[i];
    if (--fault.left <= 0) faults.splice(i, 1);
    return fault;
  }

  async function resend(
    workflow: Workflow,
    deliveries: Delivery[],
  ): Promise<void> {
    const interval = 1000 / (options.replayRate ?? 10);
    for (const delivery of deliveries) {
      const payload = JSON.parse(delivery.body);
      if ((options.replayMark ?? "top") === "top") payload.is_replay = true;
      else payload.data.is_replay = true;
      const body = JSON.stringify(payload);
      let status = 0;
      if (options.webhookUrl !== undefined) {
        try {
          const response = await fetch(options.webhookUrl, {
            method: "POST",
            headers: await headersFor(body, {
              secret: options.webhookSecret ?? "",
              auth: "both",
              headerName: options.webhookHeader,
            }),
            body,
            signal: AbortSignal.timeout(30_000),
          });
          status = response.status;
          await response.body?.cancel();
        } catch {
          status = 0;
        }
      }
      workflow.answers.push(status);
      workflow.sent++;
      delivery.replays++;
      if (status === 200) delivery.status = "success";
      await new Promise((r) => setTimeout(r, interval));
    }
    workflow.status = "completed";
  }

  async function replay(request: Request): Promise<Response> {
    let body: Record<string, unknown>;
    try {
      body = await request.json();
    } catch {
      return json(400, { code: 400, message: "invalid JSON body" });
    }
    const startText = body.start_time;
    if (typeof startText !== "string") {
      return json(400, { code: 400, message: "start_time is required" });
    }
    let start: number;
    let end: number;
    try {
      start = Number(parseTime(startText) / NS_PER_MS);
      end = typeof body.end_time === "string"
        ? Number(parseTime(body.end_time) / NS_PER_MS)
        : now();
    } catch {
      return json(400, {
        code: 400,
        message: "start_time/end_time must be RFC 3339",
      });
    }
    if (start < now() - LOG_DAYS * 86_400_000 || end < start) {
      return json(400, {
        code: 400,
        message: "time range outside the last 30 days",
      });
    }
    const status = body.status ?? "failed";
    if (!["failed", "success", "all"].includes(String(status))) {
      return json(400, {
        code: 400,
        message: "status must be failed, success or all",
      });
    }
    const limit = Number(body.limit ?? 50_000);
    const offset = Number(body.offset ?? 0);
    if (!Number.isInteger(limit) || limit < 1 || limit > 50_000) {
      return json(400, { code: 400, message: "limit must be 1..50000" });
    }
    const names = Array.isArray(body.event_names)
      ? body.event_names.map(String)
      : null;
    const filters = {
      start_time: startText,
      end_time: body.end_time ?? null,
      room_id: body.room_id ?? null,
      event_names: names,
      status,
      limit,
      offset,
    };
    const key = JSON.stringify(filters);
    const same = workflows.find((w) => w.key === key && w.status === "running");
    if (same !== undefined) {
      return json(200, {
        workflow_id: same.id,
        status: "already_running",
        message: "a replay with these filters is already running",
        filters,
      });
    }
    const matching = log.filter((d) =>
      REPLAYABLE_TYPES.includes(d.type) &&
      d.attemptedAt >= start && d.attemptedAt <= end &&
      (body.room_id === undefined || body.room_id === null ||
        d.roomId === body.room_id) &&
      (names === null || names.includes(d.type)) &&
      (status === "all" || d.status === status)
    ).slice(offset, offset + limit);
    const workflow: Workflow = {
      id: crypto.randomUUID(),
      key,
      status: "running",
      total: matching.length,
      sent: 0,
      answers: [],
    };
    workflows.push(workflow);
    const task = resend(workflow, matching).finally(() => running.delete(task));
    running.add(task);
    return json(200, {
      workflow_id: workflow.id,
      status: "started",
      message: `replaying ${matching.length} webhook events`,
      filters,
    });
  }

  function route(method: string, url: URL): Response | Promise<Response> {
    const path = url.pathname.replace(/\/$/, "");
    const q = url.searchParams;
    if (method === "GET" && path === "/v2/sessions") {
      const limit = Number(q.get("limit") ?? 10);
      if (!Number.isInteger(limit) || limit < 10 || limit > 100) {
        return json(400, { code: 400, message: "limit must be 10..100" });
      }
      const active = (q.get("active") ?? "true") === "true";
      const room = q.get("room_id");
      const after = q.get("after");
      const before = q.get("before");
      let list = truth().filter((s) =>
        s.active === active && (room === null || s.roomId === room) &&
        (after === null || s.createdAt >= parseTime(after)) &&
        (before === null || s.createdAt <= parseTime(before))
      ).sort((a, b) =>
        a.createdAt === b.createdAt
          ? (a.id < b.id ? 1 : -1)
          : a.createdAt < b.createdAt
          ? 1
          : -1
      );
      const start = q.get("start");
      if (start !== null) {
        const at = list.findIndex((s) => s.id === start);
        list = at < 0 ? [] : list.slice(options.cursorInclusive ? at : at + 1);
      }
      const page = list.slice(0, limit);
      return json(200, {
        limit,
        data: page.map(sessionObject),
        last: page.at(-1)?.id ?? "",
      });
    }
    let m = /^\/v2\/sessions\/([^/]+)$/.exec(path);
    if (method === "GET" && m) {
      const s = truth().find((s) => s.id === decodeURIComponent(m![1]));
      return s
        ? json(200, sessionObject(s))
        : json(404, { code: 404, message: "session not found" });
    }
    m = /^\/v2\/active-rooms\/([^/]+)(\/peers)?$/.exec(path);
    if (method === "GET" && m) {
      const roomId = decodeURIComponent(m[1]);
      const s = truth().find((s) => s.roomId === roomId && s.active);
      if (!s) return json(404, { code: 404, message: "room is not active" });
      const present = [...s.peers.values()].filter((p) => p.leftAt === null);
      if (m[2]) {
        return json(200, {
          peers: Object.fromEntries(present.map((p) => [p.id, {
            id: p.id,
            name: p.name,
            user_id: p.userId,
            metadata: "",
            role: p.role,
            joined_at: isoMs(p.joinedAt),
          }])),
        });
      }
      return json(200, {
        id: roomId,
        name: roomId,
        customer_id: "64f1a2b3c4d5e6f708192a3b",
        session: {
          id: s.id,
          created_at: isoMs(s.createdAt),
          peers: present.map((p) => p.id),
        },
      });
    }
    m = /^\/v2\/analytics\/webhooks\/replay\/([^/]+)$/.exec(path);
    if (method === "GET" && m) {
      const w = workflows.find((w) => w.id === m![1]);
      return w
        ? json(200, {
          workflow_id: w.id,
          status: w.status,
          total: w.total,
          sent: w.sent,
        })
        : json(404, { code: 404, message: "workflow not found" });
    }
    return json(404, { code: 404, message: `no route for ${method} ${path}` });
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (request.method === "POST" && url.pathname === "/_local/record") {
      try {
        const { body, delivered } = await request.json();
        if (typeof body !== "string" || typeof delivered !== "boolean") {
          throw new Error();
        }
        api.record(body, delivered);
        return json(200, { recorded: true });
      } catch {
        return json(400, { code: 400, message: "expected {body, delivered}" });
      }
    }
    const entry: Served = {
      method: request.method,
      path: url.pathname + url.search,
      status: 0,
      tokenProblem: null,
      claims: null,
      token: request.headers.get("authorization")?.replace(/^Bearer /, "") ??
        null,
    };
    served.push(entry);
    const verdict = await checkToken(
      request.headers.get("authorization"),
      options.accessKey,
      options.appSecret,
      now(),
    );
    const fault = takeFault(entry.path);
    let response: Response;
    if ("problem" in verdict) {
      entry.tokenProblem = verdict.problem;
      response = json(401, { code: 401, message: "invalid management token" });
    } else if (fault?.kind === "401") {
      entry.claims = verdict.claims;
      response = json(401, { code: 401, message: "token expired" });
    } else if (fault?.kind === "429") {
      entry.claims = verdict.claims;
      response = json(429, {
        code: 429,
        message: "rate limit exceeded, retry after 45 seconds",
      });
    } else if (fault?.kind === "500") {
      response = json(500, { code: 500, message: "internal server error" });
    } else if (fault?.kind === "malformed") {
      response = new Response('{"limit": 10, "data": [{"id": ', {
        status: 200,
        headers: { "content-type": "application/json" },
      });
    } else if (fault?.kind === "timeout") {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          hangs.delete(timer);
          resolve();
        }, options.hangMs ?? 15_000);
        hangs.add(timer);
        controller.signal.addEventListener("abort", () => resolve());
      });
      response = json(504, { code: 504, message: "gateway timeout" });
    } else {
      entry.claims = verdict.claims;
      response = request.method === "POST" &&
          url.pathname.replace(/\/$/, "") === "/v2/analytics/webhooks/replay"
        ? await replay(request)
        : await route(request.method, url);
    }
    entry.status = response.status;
    return response;
  }

  return new Promise((resolve, reject) => {
    try {
      const server = Deno.serve({
        hostname: HOST,
        port: 0,
        signal: controller.signal,
        onListen: ({ port }) => {
          resolve(
            api = {
              url: `http://${HOST}:${port}`,
              record(body, delivered, attemptedAt) {
                const at = attemptedAt ?? now();
                events.push({ body, at });
                const parsed = parseBody(body);
                if (parsed === null) return;
                log.push({
                  body,
                  type: parsed.type,
                  roomId: String(parsed.data.room_id ?? ""),
                  attemptedAt: at,
                  status: delivered ? "success" : "failed",
                  replays: 0,
                });
              },
              fault(fault) {
                faults.push({ ...fault, left: fault.times ?? 1 });
              },
              served: () => [...served],
              deliveries: () => [...log],
              workflows: () => [...workflows],
              sessions: truth,
              setWebhook(url, secret, header) {
                options.webhookUrl = url;
                options.webhookSecret = secret;
                options.webhookHeader = header;
              },
              async replaysDone() {
                while (running.size > 0) await Promise.all([...running]);
              },
              async stop() {
                for (const timer of hangs) clearTimeout(timer);
                controller.abort();
                await Promise.race([
                  server.finished,
                  new Promise((r) => setTimeout(r, 2000)),
                ]);
              },
            },
          );
        },
      }, handler);
    } catch (error) {
      reject(error);
    }
  });
}
