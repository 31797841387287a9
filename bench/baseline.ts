/**
 * The TypeScript baseline: what a competent developer would write instead of the Rust core.
 *
 * Same steps and rules as `src/webhook/handler.rs::begin` (docs/design.md §2-§6): method and size
 * limits, WebCrypto HMAC-SHA256 of the raw body (`x-100ms-signature`) or the static secret header
 * (constant time, rotation), JSON.parse, validation of both formats, freshness, role
 * classification and the RPC plan with its JSON body. Keys are imported once per isolate, as a
 * careful developer would; nothing is deliberately slow. The benchmark times `checkEvent`.
 */

export type AuthMode = "signature" | "header" | "either";
export type RoleClass = "speaker" | "listener" | "ignored";
export type Action =
  | "session_open"
  | "session_close"
  | "peer_join"
  | "peer_leave"
  | "role_change"
  | "activity";

/** Named arguments of `public.hms_apply_event` (design §6). */
export interface ApplyArgs {
  p_event_id: string;
  p_event_type: string;
  p_action: Action;
  p_room_id: string;
  p_session_id: string;
  p_session_started_at: string | null;
  p_peer_id: string | null;
  p_role: string | null;
  p_role_class: RoleClass | null;
  p_event_at: string;
  p_joined_at: string | null;
  p_auto_create: boolean;
  p_received_at: string;
  p_user_id: string | null;
  p_user_name: string | null;
  p_sent_at: string;
}

export interface BaselineConfig {
  readonly problem: string | null;
  readonly keys: CryptoKey[];
  readonly secrets: Uint8Array[];
  readonly auth: AuthMode;
  readonly secretHeader: string;
  readonly toleranceMs: number;
  readonly maxBodyBytes: number;
  readonly speakerRoles: ReadonlySet<string>;
  readonly ignoredRoles: ReadonlySet<string>;
  readonly autoCreate: boolean;
  readonly rpcUrl: string;
  readonly serviceKey: string;
}

/** Either an immediate answer or the one RPC call to make. */
export type Decision =
  | { kind: "respond"; status: number; body: Record<string, unknown> }
  | {
    kind: "call";
    args: ApplyArgs;
    url: string;
    headers: Record<string, string>;
    body: string;
  };

/** Raw request bytes. WebCrypto takes them as a `BufferSource`: `Uint8Array` is generic only from
 * TypeScript 5.7 on, and the edge runtime's Deno 2.1, which runs the baseline function, checks
 * with 5.6. */
export type Bytes = Uint8Array;

const SIGNATURE_HEADER = "x-100ms-signature";
const MAX_FIELD_BYTES = 256;
const FUTURE_SKEW_MS = 120_000;
// This independent baseline keeps its own copies of the contract tables (the defaults here and
// ACTIONS below); tests/bench_smoke.test.ts checks them against the Rust core's.
export const DEFAULT_SPEAKERS =
  "host,speaker,moderator,co-host,broadcaster,co-broadcaster";
export const DEFAULT_IGNORED = "__internal_recorder,beam";
const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function roleSet(list: string | undefined, fallback: string): Set<string> {
  return new Set(
    (list ?? fallback).split(",").map((r) => r.trim().toLowerCase()).filter((
      r,
    ) => r !== ""),
  );
}

function flag(value: string | undefined): boolean {
  return ["true", "1", "yes"].includes((value ?? "").trim().toLowerCase());
}

function serviceKeyFrom(env: Record<string, string | undefined>): string {
  try {
    const keys = JSON.parse(env.SUPABASE_SECRET_KEYS ?? "{}");
    if (typeof keys?.default === "string" && keys.default !== "") {
      return keys.default;
    }
  } catch {
    // A malformed SUPABASE_SECRET_KEYS falls back to the legacy key, as the Rust config does.
  }
  return env.SUPABASE_SERVICE_ROLE_KEY ?? "";
}

/** Reads the environment once per isolate and imports the HMAC keys. */
export async function loadConfig(
  env: Record<string, string | undefined>,
): Promise<BaselineConfig> {
  const secret = env.HMS_WEBHOOK_SECRET ?? "";
  const previous = env.HMS_WEBHOOK_SECRET_PREVIOUS;
  const rawSecrets = [secret, ...(previous ? [previous] : [])].filter((s) =>
    s !== ""
  );
  const url = (env.SUPABASE_URL ?? "").replace(/\/+$/, "");
  const serviceKey = serviceKeyFrom(env);
  const problem = secret === ""
    ? "HMS_WEBHOOK_SECRET"
    : url === ""
    ? "SUPABASE_URL"
    : serviceKey === ""
    ? "SUPABASE_SECRET_KEYS"
    : null;
  const secrets = rawSecrets.map((s) => encoder.encode(s));
  const keys = await Promise.all(
    secrets.map((raw) =>
      crypto.subtle.importKey(
        "raw",
        raw,
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["verify"],
      )
    ),
  );
  const auth = (env.HMS_WEBHOOK_AUTH ?? "either").trim().toLowerCase();
  const tolerance = Number(env.HMS_TIMESTAMP_TOLERANCE_SECONDS ?? "900");
  const maxBody = Number(env.HMS_MAX_BODY_BYTES ?? "65536");
  return {
    problem,
    keys,
    secrets,
    auth: auth === "signature" || auth === "header" ? auth : "either",
    secretHeader: (env.HMS_WEBHOOK_SECRET_HEADER ?? "x-webhook-secret")
      .toLowerCase(),
    toleranceMs: Number.isFinite(tolerance) && tolerance >= 0
      ? tolerance * 1000
      : 900_000,
    maxBodyBytes: Number.isFinite(maxBody) && maxBody > 0 ? maxBody : 65536,
    speakerRoles: roleSet(env.HMS_SPEAKER_ROLES, DEFAULT_SPEAKERS),
    ignoredRoles: roleSet(env.HMS_IGNORED_ROLES, DEFAULT_IGNORED),
    autoCreate: flag(env.HMS_AUTO_CREATE_ROOMS),
    rpcUrl: `${url}/rest/v1/rpc/hms_apply_event`,
    serviceKey,
  };
}

class Refusal extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

function refuse(status: number, code: string, message: string): never {
  throw new Refusal(status, code, message);
}

/** Constant-time byte comparison (no early exit on the first difference). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ (i < b.length ? b[i] : 0);
  return diff === 0;
}

function hexToBytes(hex: string): Bytes | null {
  if (hex.length !== 64 || !/^[0-9a-fA-F]+$/.test(hex)) return null;
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  }
  return out;
}

/** Signature first, then the static header (either may pass in `either` mode); 401 otherwise. */
async function authenticate(
  cfg: BaselineConfig,
  headers: Headers,
  body: Bytes,
): Promise<void> {
  let presented = false;
  if (cfg.auth !== "header") {
    const signature = headers.get(SIGNATURE_HEADER);
    if (signature !== null) {
      presented = true;
      const trimmed = signature.trim();
      const tag = hexToBytes(
        trimmed.startsWith("sha256=") ? trimmed.slice(7) : trimmed,
      );
      if (tag !== null) {
        for (const key of cfg.keys) {
          if (
            await crypto.subtle.verify(
              "HMAC",
              key,
              tag as BufferSource,
              body as BufferSource,
            )
          ) return;
        }
      }
    }
  }
  if (cfg.auth !== "signature") {
    const value = headers.get(cfg.secretHeader);
    if (value !== null) {
      presented = true;
      const given = encoder.encode(value);
      let ok = false;
      for (const secret of cfg.secrets) ok = sameBytes(given, secret) || ok;
      if (ok) return;
    }
  }
  refuse(
    401,
    "unauthorized",
    presented ? "invalid credentials" : "missing credentials",
  );
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
const US_PER_DAY = 86_400_000_000;
const GO_ZERO_US = daysFromCivil(1, 1, 1) * US_PER_DAY;
const MIN_US = GO_ZERO_US;
const MAX_US = daysFromCivil(10000, 1, 1) * US_PER_DAY - 1;
const MAX_EPOCH_MS = 253_402_300_799_999;

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day -
    1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function daysInMonth(year: number, month: number): number {
  if (month !== 2) {
    return [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  }
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
}

/** RFC 3339 -> microseconds since the epoch; null for the Go zero time ("absent"). */
function parseTime(value: string, field: string): number | null {
  const m = RFC3339.exec(value);
  if (m === null) {
    refuse(400, "invalid_timestamp", `${field} is not an RFC 3339 timestamp`);
  }
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  const offHour = Number(m[10] ?? 0);
  const offMinute = Number(m[11] ?? 0);
  if (
    offHour > 23 || offMinute > 59 || month < 1 || month > 12 || day < 1 ||
    day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59
  ) {
    refuse(400, "invalid_timestamp", `${field} is out of range`);
  }
  const offset = (m[9] === "-" ? -1 : 1) * (offHour * 3600 + offMinute * 60);
  const seconds = daysFromCivil(year, month, day) * 86_400 + hour * 3600 +
    minute * 60 + second -
    offset;
  const us = seconds * 1_000_000 +
    Number((m[7] ?? "").padEnd(6, "0").slice(0, 6));
  if (us < MIN_US || us > MAX_US) {
    refuse(400, "invalid_timestamp", `${field} is out of range`);
  }
  return us === GO_ZERO_US ? null : us;
}

/** Microseconds since the epoch -> RFC 3339 UTC with exactly six fraction digits. */
function formatTime(us: number): string {
  const ms = Math.floor(us / 1000);
  const micros = String(((us % 1_000_000) + 1_000_000) % 1_000_000).padStart(
    6,
    "0",
  );
  return `${new Date(ms).toISOString().slice(0, 19)}.${micros}Z`;
}

function byteLength(s: string): number {
  // Cheap path first: a string can't have more UTF-8 bytes than 3 per UTF-16 unit.
  return s.length * 3 <= MAX_FIELD_BYTES ? s.length : encoder.encode(s).length;
}

type Json = Record<string, unknown>;

/** A string field: right type, not too long, not empty unless allowed; null when absent. */
function text(
  obj: Json,
  key: string,
  field: string,
  allowEmpty: boolean,
): string | null {
  const value = obj[key];
  if (value === undefined) return null;
  if (typeof value !== "string") {
    refuse(400, "invalid_field", `${field} must be a string`);
  }
  if (byteLength(value) > MAX_FIELD_BYTES) {
    refuse(
      400,
      "field_too_long",
      `${field} is longer than ${MAX_FIELD_BYTES} bytes`,
    );
  }
  if (value === "" && !allowEmpty) {
    refuse(400, "invalid_field", `${field} must not be empty`);
  }
  return value;
}

function required(obj: Json, key: string, field: string): string {
  const value = text(obj, key, field, false);
  if (value === null) refuse(400, "missing_field", `${field} is required`);
  return value;
}

function time(obj: Json, key: string, field: string): number | null {
  const value = obj[key];
  if (value === undefined) return null;
  if (typeof value !== "string") {
    refuse(400, "invalid_field", `${field} must be a timestamp`);
  }
  return parseTime(value, field);
}

function isObject(x: unknown): x is Json {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

export const ACTIONS: Record<string, Action> = {
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
const PEER_ACTIONS = new Set<Action>([
  "peer_join",
  "peer_leave",
  "role_change",
]);

function classify(cfg: BaselineConfig, role: string | null): RoleClass {
  // A peer without a role counts like an unknown role: as a listener.
  const name = (role ?? "").trim().toLowerCase();
  if (cfg.ignoredRoles.has(name)) return "ignored";
  return cfg.speakerRoles.has(name) ? "speaker" : "listener";
}

/** A validated event: what the plan needs, times in microseconds. */
interface Parsed {
  id: string;
  type: string;
  action: Action | "failure" | "unhandled";
  stampUs: number;
  /** What the envelope timestamp means as an event time: +999,999 µs without fraction digits. */
  standInUs: number;
  roomId: string;
  sessionId: string;
  peerId: string | null;
  role: string | null;
  userId: string | null;
  userName: string | null;
  joinedUs: number | null;
  leftUs: number | null;
  changedUs: number | null;
  startedUs: number | null;
  stoppedUs: number | null;
  flat: boolean;
}

function actionOf(type: string): Parsed["action"] {
  return ACTIONS[type] ??
    (/\.(failure|failed)$/.test(type) ? "failure" : "unhandled");
}

async function parseBody(body: Bytes): Promise<Parsed> {
  if (body.length === 0) refuse(400, "empty_body", "request body is empty");
  let raw: string;
  try {
    raw = strictUtf8.decode(body);
  } catch {
    refuse(400, "invalid_utf8", "request body is not valid UTF-8");
  }
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    refuse(400, "invalid_json", "request body is not valid JSON");
  }
  if (!isObject(doc)) {
    refuse(400, "not_an_object", "request body must be a JSON object");
  }
  return doc.event !== undefined
    ? await parseFlat(doc, body)
    : parseEnvelope(doc);
}

/** An event with only its envelope facts; the parsers fill in the rest. */
function parsed(
  id: string,
  type: string,
  action: Parsed["action"],
  stampUs: number,
  standInUs: number,
  flat: boolean,
): Parsed {
  return {
    id,
    type,
    action,
    stampUs,
    standInUs,
    roomId: "",
    sessionId: "",
    peerId: null,
    role: null,
    userId: null,
    userName: null,
    joinedUs: null,
    leftUs: null,
    changedUs: null,
    startedUs: null,
    stoppedUs: null,
    flat,
  };
}

function parseEnvelope(obj: Json): Parsed {
  const id = required(obj, "id", "id");
  const type = required(obj, "type", "type");
  const stampUs = time(obj, "timestamp", "timestamp");
  if (stampUs === null) refuse(400, "missing_field", "timestamp is required");
  const d = obj.data;
  if (d === undefined) refuse(400, "missing_field", "data is required");
  if (!isObject(d)) refuse(400, "invalid_field", "data must be an object");
  const whole = String(obj.timestamp).charAt(19) !== ".";
  const standInUs = whole
    ? Math.floor(stampUs / 1_000_000) * 1_000_000 + 999_999
    : stampUs;
  const action = actionOf(type);
  const ev = parsed(id, type, action, stampUs, standInUs, false);
  // The envelope is valid; the payload of types we ignore is not our business.
  if (action === "failure" || action === "unhandled") return ev;
  ev.roomId = required(d, "room_id", "data.room_id");
  ev.sessionId = required(d, "session_id", "data.session_id");
  if (PEER_ACTIONS.has(action)) {
    ev.peerId = required(d, "peer_id", "data.peer_id");
    ev.role = action === "role_change"
      ? required(d, "role", "data.role")
      : text(d, "role", "data.role", true);
    ev.userId = text(d, "user_id", "data.user_id", true);
    ev.userName = text(d, "user_name", "data.user_name", true);
  }
  ev.startedUs = time(d, "session_started_at", "data.session_started_at");
  if (action === "peer_leave") ev.leftUs = time(d, "left_at", "data.left_at");
  if (action === "role_change") {
    ev.changedUs = time(d, "role_changed_at", "data.role_changed_at");
  }
  if (PEER_ACTIONS.has(action)) {
    ev.joinedUs = time(d, "joined_at", "data.joined_at");
  }
  if (action === "session_close") {
    ev.stoppedUs = time(d, "session_stopped_at", "data.session_stopped_at");
  }
  // Data times at most 24 h before and 120 s after the envelope timestamp.
  for (
    const [us, field] of [
      [ev.startedUs, "data.session_started_at"],
      [ev.leftUs, "data.left_at"],
      [ev.changedUs, "data.role_changed_at"],
      [ev.joinedUs, "data.joined_at"],
      [ev.stoppedUs, "data.session_stopped_at"],
    ] as const
  ) {
    if (us !== null && (us < stampUs - 86_400e6 || us > stampUs + 120e6)) {
      refuse(
        400,
        "invalid_timestamp",
        `${field} is too far from the envelope timestamp`,
      );
    }
  }
  return ev;
}

function flatTimestamp(value: unknown): number {
  if (value === undefined) {
    refuse(400, "missing_field", "timestamp is required");
  }
  if (typeof value !== "number") {
    refuse(
      400,
      "invalid_field",
      "timestamp must be milliseconds since the epoch",
    );
  }
  if (!Number.isInteger(value) || value < 0 || value > MAX_EPOCH_MS) {
    refuse(
      400,
      "invalid_timestamp",
      "timestamp must be whole, non-negative milliseconds",
    );
  }
  return value * 1000;
}

async function parseFlat(obj: Json, body: Bytes): Promise<Parsed> {
  const type = required(obj, "event", "event");
  const stampUs = flatTimestamp(obj.timestamp);
  // The flat format has no id: the body's hash makes identical redeliveries duplicates.
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", body as BufferSource),
  );
  const id = "sha256:" +
    Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  const action = actionOf(type);
  const ev = parsed(id, type, action, stampUs, stampUs, true);
  if (action === "failure" || action === "unhandled") return ev;
  ev.roomId = required(obj, "room_id", "room_id");
  if (PEER_ACTIONS.has(action)) {
    const peer = obj.peer;
    if (peer === undefined) refuse(400, "missing_field", "peer is required");
    if (!isObject(peer)) refuse(400, "invalid_field", "peer must be an object");
    ev.peerId = required(peer, "id", "peer.id");
    ev.role = action === "role_change"
      ? required(peer, "role", "peer.role")
      : text(peer, "role", "peer.role", true);
    ev.userId = text(peer, "user_id", "peer.user_id", true);
    ev.userName = text(peer, "user_name", "peer.user_name", true);
  }
  return ev;
}

function ignored(reason: string, id: string, type: string): Decision {
  return {
    kind: "respond",
    status: 200,
    body: { status: "ignored", reason, event_id: id, type },
  };
}

function checkFreshness(cfg: BaselineConfig, eventUs: number, nowMs: number) {
  const ageUs = nowMs * 1000 - eventUs;
  const tooOld = cfg.toleranceMs > 0 && ageUs > cfg.toleranceMs * 1000;
  if (tooOld || ageUs < -FUTURE_SKEW_MS * 1000) {
    refuse(
      401,
      "stale_timestamp",
      "event timestamp is outside the accepted window",
    );
  }
}

/** The event's own time (design §5), falling back to the envelope timestamp. */
function eventTime(ev: Parsed, action: Action): number {
  if (ev.flat) return ev.stampUs;
  const own = action === "peer_join"
    ? ev.joinedUs
    : action === "peer_leave"
    ? ev.leftUs
    : action === "role_change"
    ? ev.changedUs
    : action === "session_open"
    ? ev.startedUs
    : action === "session_close"
    ? ev.stoppedUs
    : null;
  return own ?? ev.standInUs;
}

function plan(
  cfg: BaselineConfig,
  ev: Parsed,
  action: Action,
  nowMs: number,
): ApplyArgs {
  const peerEvent = PEER_ACTIONS.has(action);
  const joined = action === "peer_leave" || action === "role_change"
    ? ev.joinedUs
    : null;
  return {
    p_event_id: ev.id,
    p_event_type: ev.type,
    p_action: action,
    p_room_id: ev.roomId,
    p_session_id: ev.sessionId,
    p_session_started_at: ev.startedUs === null
      ? null
      : formatTime(ev.startedUs),
    p_peer_id: ev.peerId,
    p_role: ev.role,
    p_role_class: peerEvent ? classify(cfg, ev.role) : null,
    p_event_at: formatTime(eventTime(ev, action)),
    p_joined_at: joined === null ? null : formatTime(joined),
    p_auto_create: cfg.autoCreate,
    p_received_at: formatTime(nowMs * 1000),
    p_user_id: ev.userId,
    p_user_name: ev.userName,
    p_sent_at: formatTime(ev.stampUs),
  };
}

/** Verify + parse + classify + plan one request; never throws. */
export async function checkEvent(
  cfg: BaselineConfig,
  method: string,
  headers: Headers,
  body: Bytes,
  nowMs: number,
): Promise<Decision> {
  try {
    if (cfg.problem !== null) {
      refuse(500, "misconfigured", "the function is not configured");
    }
    if (method !== "POST") {
      refuse(405, "method_not_allowed", "only POST is accepted");
    }
    if (body.length > cfg.maxBodyBytes) {
      refuse(413, "payload_too_large", "body is too large");
    }
    await authenticate(cfg, headers, body);
    const ev = await parseBody(body);
    checkFreshness(cfg, ev.stampUs, nowMs);
    const action = ev.action;
    if (action === "failure") return ignored("failure event", ev.id, ev.type);
    if (action === "unhandled") {
      return ignored("event type not handled", ev.id, ev.type);
    }
    const args = plan(cfg, ev, action, nowMs);
    return {
      kind: "call",
      args,
      url: cfg.rpcUrl,
      headers: {
        apikey: cfg.serviceKey,
        authorization: `Bearer ${cfg.serviceKey}`,
        "content-type": "application/json",
        accept: "application/json",
      },
      body: JSON.stringify(args),
    };
  } catch (err) {
    if (err instanceof Refusal) {
      return {
        kind: "respond",
        status: err.status,
        body: { status: "error", code: err.code, message: err.message },
      };
    }
    throw err;
  }
}
