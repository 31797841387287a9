/**
 * Builds realistic 100ms webhook requests (the 2.0 envelope or the legacy flat format) and signs
 * them. The one canonical fake-100ms for this repository: the CLI tools, the end-to-end tests and
 * the benchmarks all import it, so it stays dependency-free (WebCrypto + TextEncoder only) and
 * deterministic whenever the caller passes ids and times.
 *
 * Field sets follow the 100ms docs (https://www.100ms.live/docs/server-side/v2/how-to-guides/
 * configure-webhooks/webhook; track.* from the Analytics API). Times inside `data`
 * are RFC 3339 with up to 9 fraction digits as Go's RFC3339Nano prints them (trailing zeros
 * dropped); the envelope `timestamp` is whole seconds, truncated.
 *
 * ```ts
 * const event = buildEvent("peer.join.success", { roomId, peerId, role: "listener" });
 * const headers = await headersFor(event.body, { secret: "s3cret", auth: "both" });
 * await fetch(url, { method: "POST", headers, body: event.body });
 * ```
 */

// ---------------------------------------------------------------------------------------------
// Event types
// ---------------------------------------------------------------------------------------------

/** Every event type this library can build, by its 100ms name. */
export const CANONICAL_TYPES = [
  "session.open.success",
  "session.close.success",
  "peer.join.success",
  "peer.leave.success",
  "role.change.success",
  "room.end.success",
  "track.add.success",
  "track.update.success",
  "track.remove.success",
  "peer.join.failure",
  "peer.leave.failure",
  "role.change.failure",
  "room.end.failure",
  "recording.success",
  "recording.failed",
] as const;

/** A 100ms event name this library can build. */
export type CanonicalType = typeof CANONICAL_TYPES[number];

/**
 * The project spec's names (also used by the legacy flat format) and the 100ms event whose data
 * shape they get. `room.ended` maps to the session close because that is what it means for a
 * room's live flag; its data then carries a precise `session_stopped_at`.
 */
export const SPEC_ALIASES: Readonly<Record<string, CanonicalType>> = {
  "room.started": "session.open.success",
  "room.ended": "session.close.success",
  "peer.joined": "peer.join.success",
  "peer.left": "peer.leave.success",
  "track.updated": "track.update.success",
};

/** Every accepted type name: the 100ms names, then the spec aliases. */
export const EVENT_TYPES: readonly string[] = [
  ...CANONICAL_TYPES,
  ...Object.keys(SPEC_ALIASES),
];

/** The 100ms event behind a type name (itself, or what an alias stands for); undefined if unknown. */
export function canonicalType(type: string): CanonicalType | undefined {
  if ((CANONICAL_TYPES as readonly string[]).includes(type)) {
    return type as CanonicalType;
  }
  return Object.hasOwn(SPEC_ALIASES, type) ? SPEC_ALIASES[type] : undefined;
}

/** Thrown by {@link buildEvent} for a type name it does not know. */
export class UnknownEventTypeError extends Error {
  constructor(readonly type: string) {
    super(
      `unknown event type "${type}"; known types: ${EVENT_TYPES.join(", ")}`,
    );
    this.name = "UnknownEventTypeError";
  }
}

// ---------------------------------------------------------------------------------------------
// Time: nanoseconds since the Unix epoch as bigint, because 100ms prints 9 fraction digits and a
// JS Date keeps only milliseconds.
// ---------------------------------------------------------------------------------------------

/** An instant: a Date, an RFC 3339 string, or nanoseconds since the epoch. */
export type TimeInput = Date | string | bigint;

const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;

/** The Go zero time that 100ms failure events use for "not set". */
export const GO_ZERO_TIME = "0001-01-01T00:00:00Z";

/** Thrown for a malformed time string. */
export class InvalidTimeError extends Error {
  constructor(readonly input: string) {
    super(
      `invalid RFC 3339 time "${input}" (expected e.g. 2024-10-04T18:03:10.558102640Z or ` +
        `2024-10-04T20:03:10+02:00)`,
    );
    this.name = "InvalidTimeError";
  }
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/** Parses RFC 3339 with 0-9 fraction digits and `Z` or a numeric offset into epoch nanoseconds. */
export function parseTime(text: string): bigint {
  const m = RFC3339.exec(text);
  if (!m) throw new InvalidTimeError(text);
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  // setUTCFullYear, unlike Date.UTC, keeps years 0-99 (the Go zero time is year 1).
  const check = new Date(0);
  check.setUTCFullYear(year, month - 1, day);
  check.setUTCHours(hour, minute, second, 0);
  // Date silently rolls 2024-02-30 over to March; a round trip catches impossible dates.
  if (
    check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 ||
    check.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59
  ) {
    throw new InvalidTimeError(text);
  }
  const fraction = BigInt((m[7] ?? "").padEnd(9, "0") || "0");
  let offsetNs = 0n;
  if (m[9] !== undefined) {
    const offHours = Number(m[10]);
    const offMinutes = Number(m[11]);
    if (offHours > 23 || offMinutes > 59) throw new InvalidTimeError(text);
    const sign = m[9] === "-" ? -1n : 1n;
    offsetNs = sign * BigInt(offHours * 3600 + offMinutes * 60) * NS_PER_S;
  }
  return BigInt(check.getTime()) * NS_PER_MS + fraction - offsetNs;
}

/** Any {@link TimeInput} as epoch nanoseconds. */
export function toNanos(time: TimeInput): bigint {
  if (typeof time === "bigint") return time;
  if (typeof time === "string") return parseTime(time);
  const ms = time.getTime();
  if (Number.isNaN(ms)) throw new InvalidTimeError(String(time));
  return BigInt(ms) * NS_PER_MS;
}

/** Now, with random sub-millisecond digits so that data times look like 100ms's (9 digits). */
export function nowNanos(): bigint {
  return BigInt(Date.now()) * NS_PER_MS +
    BigInt(Math.floor(Math.random() * 1_000_000));
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b < 0n ? q - 1n : q;
}

function secondsPart(ns: bigint): { seconds: bigint; fraction: bigint } {
  const seconds = floorDiv(ns, NS_PER_S);
  return { seconds, fraction: ns - seconds * NS_PER_S };
}

function isoSeconds(seconds: bigint): string {
  // toISOString gives "YYYY-MM-DDTHH:MM:SS.sssZ"; the milliseconds are always .000 here.
  return new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
}

/** A `data` timestamp: RFC 3339 UTC, fraction as Go's RFC3339Nano prints it (no trailing zeros). */
export function dataTime(time: TimeInput): string {
  const { seconds, fraction } = secondsPart(toNanos(time));
  const digits = fraction === 0n
    ? ""
    : "." + fraction.toString().padStart(9, "0").replace(/0+$/, "");
  return `${isoSeconds(seconds)}${digits}Z`;
}

/** The envelope `timestamp`: RFC 3339 UTC truncated to whole seconds. */
export function envelopeTime(time: TimeInput): string {
  return `${isoSeconds(secondsPart(toNanos(time)).seconds)}Z`;
}

/** Milliseconds since the epoch (truncated), as the legacy flat format's `timestamp` carries. */
export function epochMillis(time: TimeInput): number {
  return Number(floorDiv(toNanos(time), NS_PER_MS));
}

// ---------------------------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------------------------

/** A fresh event or peer id: UUID v4 text, as 100ms uses for `id` and `peer_id`. */
export function uuid(): string {
  return crypto.randomUUID();
}

/** A Mongo-ObjectId-style 24-hex id (room, session, account, template): seconds + 8 random bytes. */
export function objectId(at: TimeInput = nowNanos()): string {
  const seconds = Number(floorDiv(toNanos(at), NS_PER_S)) >>> 0;
  const random = crypto.getRandomValues(new Uint8Array(8));
  return seconds.toString(16).padStart(8, "0") + toHex(random);
}

/**
 * A session id derived from the room id (24 hex, ObjectId-shaped). Events built separately for
 * one room (e.g. two `npm run send` calls, a join and its leave) then share a session unless the
 * caller names one. FNV-1a keeps it synchronous; it only has to be stable, not secret.
 */
export function sessionIdFor(roomId: string): string {
  return [0x811c9dc5, 0x01000193, 0x5bd1e995]
    .map((seed) =>
      fnv1a(`session:${roomId}`, seed).toString(16).padStart(8, "0")
    )
    .join("");
}

function fnv1a(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (const b of new TextEncoder().encode(text)) {
    h = Math.imul(h ^ b, 0x01000193) >>> 0;
  }
  return h;
}

const FIRST_NAMES = [
  "Ravi",
  "Maya",
  "Aiko",
  "Lena",
  "Omar",
  "Zoe",
  "Noor",
  "Sam",
  "Ines",
  "Kofi",
];

/** A display name derived from the user id, so one user keeps one name across events. */
export function userNameFor(userId: string): string {
  return FIRST_NAMES[fnv1a(userId) % FIRST_NAMES.length];
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------------------------------------
// Building events
// ---------------------------------------------------------------------------------------------

/** `100ms`: the `{version,id,type,timestamp,data}` envelope; `flat`: the legacy `{event,…}` shape. */
export type Format = "100ms" | "flat";

/** Everything {@link buildEvent} lets a caller pin down; every field has a realistic default. */
export interface EventOptions {
  /** Envelope or legacy flat format. Default `100ms`. */
  format?: Format;
  /** Envelope `id` (100ms format only; the flat format's id is derived from its body). Default: a new UUID. */
  id?: string;
  /** The event's own time (joined_at, left_at, role_changed_at, session_started_at, …). Default: now. */
  at?: TimeInput;
  /** Delivery time for the envelope `timestamp` (truncated to seconds). Default: `at`. */
  deliveredAt?: TimeInput;
  /** 100ms room id (`rooms.hms_room_id`). Default {@link DEFAULT_ROOM_ID}. */
  roomId?: string;
  /** Default: derived from the room id. */
  roomName?: string;
  /** Default: {@link sessionIdFor}(roomId), so separately built events of one room share it. */
  sessionId?: string;
  /** Default: `at` for session.open, else 5 minutes before the peer's join (or before `at`). */
  sessionStartedAt?: TimeInput;
  /** Default: a new UUID (100ms issues a new peer id on every join). */
  peerId?: string;
  /** Default: derived from the peer id. */
  userId?: string;
  /** Default: derived from the user id. */
  userName?: string;
  /** Peer metadata string. Default `""`. */
  userData?: string;
  /** Role at the event (the new role for role changes). Default: `listener`, `speaker` for role changes, `host` for room ends. */
  role?: string;
  /** role.change.success only. Default: `listener`, or `speaker` when the new role is `listener`. */
  previousRole?: string;
  /** Join time reported on leave / role change / track events. Default: 60 s before `at`. */
  joinedAt?: TimeInput;
  /** peer.leave.success `reason` (default `client request`) or room.end `reason` (default `Show is over`). */
  reason?: string;
  /** peer.leave.success `message`. Default `""`. */
  message?: string;
  /** role.change `role_change_requested_by`; `null` omits it (a change made through the REST API). Default: a new UUID. */
  requestedBy?: string | null;
  /** Peer `type`. Default `regular`. */
  peerType?: "regular" | "sip";
  /** Default {@link DEFAULT_ACCOUNT_ID}. */
  accountId?: string;
  /** `null` omits `app_id` (several 100ms samples lack it). Default {@link DEFAULT_APP_ID}. */
  appId?: string | null;
  /** Default {@link DEFAULT_TEMPLATE_ID}. */
  templateId?: string;
  /** Failure events' `error_message`. Default: the first reason 100ms documents for the type. */
  errorMessage?: string;
  /** track.* only. Default `audio`. */
  trackType?: "audio" | "video";
  /** track.* only. Default: false, true for track.update. */
  mute?: boolean;
  /** room.end only. Default false. */
  lockRoom?: boolean;
}

/** A built event: the exact body to send (and sign) plus what was put in it. */
export interface BuiltEvent {
  /** The type name as requested (put verbatim in `type` / `event`). */
  type: string;
  /** The 100ms event whose data shape was used. */
  canonical: CanonicalType;
  format: Format;
  /** Envelope id; `null` for the flat format (use {@link eventIdOf}). */
  id: string | null;
  /** The JSON value; `body` is its serialisation. */
  payload: Record<string, unknown>;
  /** The exact request body. Sign these bytes, not a re-serialisation. */
  body: string;
}

/** The sample room of the 100ms reference story. */
export const DEFAULT_ROOM_ID = "6501c1d2e3f4a5b6c7d8e9f0";
export const DEFAULT_ACCOUNT_ID = "64f1a2b3c4d5e6f708192a3b";
export const DEFAULT_APP_ID = "64f1a2b3c4d5e6f708192a3d";
export const DEFAULT_TEMPLATE_ID = "6501c0ffee0123456789abcd";

const MINUTE_NS = 60n * NS_PER_S;

const DEFAULT_ERRORS: Partial<Record<CanonicalType, string>> = {
  "peer.join.failure": "role not allowed",
  "peer.leave.failure": "Peer not joined",
  "role.change.failure": "role limit reached",
  "room.end.failure": "session not found",
};

interface Resolved {
  at: bigint;
  roomId: string;
  roomName: string;
  sessionId: string;
  peerId: string;
  userId: string;
  userName: string;
  userData: string;
  templateId: string;
  peerType: string;
  joinedAt: bigint;
  sessionStartedAt: bigint;
}

function resolve(canonical: CanonicalType, o: EventOptions): Resolved {
  const at = o.at === undefined ? nowNanos() : toNanos(o.at);
  const roomId = o.roomId ?? DEFAULT_ROOM_ID;
  const peerId = o.peerId ?? uuid();
  const userId = o.userId ?? `usr_${peerId.replace(/-/g, "").slice(0, 6)}`;
  const joinedAt = canonical === "peer.join.success"
    ? at
    : o.joinedAt === undefined
    ? at - MINUTE_NS
    : toNanos(o.joinedAt);
  const sessionStartedAt = o.sessionStartedAt !== undefined
    ? toNanos(o.sessionStartedAt)
    : canonical === "session.open.success"
    ? at
    : (joinedAt < at ? joinedAt : at) - 5n * MINUTE_NS;
  return {
    at,
    roomId,
    roomName: o.roomName ?? `audio-room-${roomId.slice(-6)}`,
    sessionId: o.sessionId ?? sessionIdFor(roomId),
    peerId,
    userId,
    userName: o.userName ?? userNameFor(userId),
    userData: o.userData ?? "",
    templateId: o.templateId ?? DEFAULT_TEMPLATE_ID,
    peerType: o.peerType ?? "regular",
    joinedAt,
    sessionStartedAt,
  };
}

function secondsBetween(from: bigint, to: bigint): number {
  const d = to - from;
  return d <= 0n ? 0 : Number(d / NS_PER_S);
}

function roomFields(r: Resolved): Record<string, unknown> {
  return {
    room_id: r.roomId,
    room_name: r.roomName,
    session_id: r.sessionId,
    template_id: r.templateId,
  };
}

function peerFields(r: Resolved, role: string): Record<string, unknown> {
  return {
    peer_id: r.peerId,
    user_id: r.userId,
    user_name: r.userName,
    user_data: r.userData,
    role,
  };
}

/** The `data` object of a 100ms event, with every field the documented event has. */
function dataFor(
  canonical: CanonicalType,
  r: Resolved,
  o: EventOptions,
): Record<string, unknown> {
  const started = dataTime(r.sessionStartedAt);
  const error = o.errorMessage ?? DEFAULT_ERRORS[canonical] ?? "";
  switch (canonical) {
    case "session.open.success":
      return { ...roomFields(r), session_started_at: started };
    case "session.close.success":
      return {
        ...roomFields(r),
        session_duration: secondsBetween(r.sessionStartedAt, r.at),
        session_started_at: started,
        session_stopped_at: dataTime(r.at),
      };
    case "peer.join.success":
      return {
        ...roomFields(r),
        ...peerFields(r, o.role ?? "listener"),
        type: r.peerType,
        joined_at: dataTime(r.at),
        session_started_at: started,
      };
    case "peer.leave.success":
      return {
        ...roomFields(r),
        ...peerFields(r, o.role ?? "listener"),
        type: r.peerType,
        reason: o.reason ?? "client request",
        message: o.message ?? "",
        duration: secondsBetween(r.joinedAt, r.at),
        joined_at: dataTime(r.joinedAt),
        left_at: dataTime(r.at),
        session_started_at: started,
      };
    case "role.change.success":
    case "role.change.failure": {
      const role = o.role ?? "speaker";
      const data: Record<string, unknown> = {
        ...roomFields(r),
        ...peerFields(r, role),
      };
      if (canonical === "role.change.success") {
        data.previous_role = o.previousRole ??
          (role === "listener" ? "speaker" : "listener");
      }
      if (o.requestedBy !== null) {
        data.role_change_requested_by = o.requestedBy ?? uuid();
      }
      data.joined_at = dataTime(r.joinedAt);
      data.session_started_at = started;
      if (canonical === "role.change.success") {
        data.role_changed_at = dataTime(r.at);
      } else data.error_message = error;
      return data;
    }
    case "room.end.success":
    case "room.end.failure": {
      const data: Record<string, unknown> = {
        ...roomFields(r),
        peer_id: r.peerId,
        user_id: r.userId,
        user_name: o.userName ?? "Host",
        role: o.role ?? "host",
        lock_room: o.lockRoom ?? false,
        reason: o.reason ?? "Show is over",
        source: "peer",
        session_started_at: started,
      };
      if (canonical === "room.end.failure") {
        data.error_message = error;
        data.error_code = 404;
      }
      return data;
    }
    case "track.add.success":
    case "track.update.success":
    case "track.remove.success": {
      // Track events exist only in 100ms's Analytics API, with these fields; the function
      // treats them as activity.
      const data: Record<string, unknown> = {
        room_id: r.roomId,
        session_id: r.sessionId,
        room_name: r.roomName,
        peer_id: r.peerId,
        user_id: r.userId,
        user_name: r.userName,
        joined_at: dataTime(r.joinedAt),
        role: o.role ?? "speaker",
        track_id: `${r.peerId.slice(0, 8)}-audio-track`,
        stream_id: `${r.peerId.slice(0, 8)}-stream`,
        type: o.trackType ?? "audio",
        source: "regular",
        mute: o.mute ?? canonical === "track.update.success",
        started_at: dataTime(
          canonical === "track.add.success" ? r.at : r.joinedAt,
        ),
      };
      if (canonical === "track.remove.success") {
        data.stopped_at = dataTime(r.at);
      }
      return data;
    }
    case "peer.join.failure":
    case "peer.leave.failure":
      // One shape; a failed leave adds `duration` and `left_at` (Go's zero time: it never left)
      // and keeps the real `joined_at`.
      return {
        room_id: r.roomId,
        room_name: r.roomName,
        ...peerFields(r, o.role ?? "listener"),
        template_id: r.templateId,
        type: r.peerType,
        ...(canonical === "peer.leave.failure"
          ? {
            duration: 0,
            joined_at: dataTime(r.joinedAt),
            left_at: GO_ZERO_TIME,
          }
          : { joined_at: GO_ZERO_TIME }),
        error_message: error,
      };
    case "recording.success":
      return {
        ...roomFields(r),
        duration: secondsBetween(r.sessionStartedAt, r.at),
        recording_path: `s3://hms-recordings/${r.roomId}/${r.sessionId}.mp4`,
        recording_presigned_url:
          `https://hms-recordings.s3.amazonaws.com/${r.roomId}/${r.sessionId}.mp4`,
        chat_recording_path:
          `s3://hms-recordings/${r.roomId}/${r.sessionId}-chat.csv`,
        chat_recording_presigned_url:
          `https://hms-recordings.s3.amazonaws.com/${r.roomId}/${r.sessionId}-chat.csv`,
        size: 13933649,
        session_started_at: started,
        session_stopped_at: dataTime(r.at),
      };
    case "recording.failed":
      return {
        ...roomFields(r),
        error: o.errorMessage ?? "INTERNAL_ERROR",
        error_type: "CONFIG_ERROR",
        session_started_at: started,
        session_stopped_at: dataTime(r.at),
      };
  }
}

/** Types whose legacy flat form carries a `peer` object. */
function hasPeer(canonical: CanonicalType): boolean {
  return canonical.startsWith("peer.") ||
    canonical.startsWith("role.change.") ||
    canonical.startsWith("track.");
}

/**
 * Builds one event. `type` is a 100ms name or a spec alias (see {@link EVENT_TYPES}); it is put
 * verbatim in `type` (envelope) or `event` (flat), the data shape is that of the 100ms event.
 * Throws {@link UnknownEventTypeError} or {@link InvalidTimeError}.
 */
export function buildEvent(
  type: string,
  options: EventOptions = {},
): BuiltEvent {
  const canonical = canonicalType(type);
  if (canonical === undefined) throw new UnknownEventTypeError(type);
  const format = options.format ?? "100ms";
  const r = resolve(canonical, options);
  const data = dataFor(canonical, r, options);
  if (format === "flat") {
    const payload: Record<string, unknown> = { event: type, room_id: r.roomId };
    if (hasPeer(canonical)) payload.peer = { id: r.peerId, role: data.role };
    payload.timestamp = epochMillis(r.at);
    return {
      type,
      canonical,
      format,
      id: null,
      payload,
      body: JSON.stringify(payload),
    };
  }
  const id = options.id ?? uuid();
  const payload: Record<string, unknown> = {
    // 100ms documents recording.* with envelope version 1.0 and everything else with 2.0.
    version: canonical.startsWith("recording.") ? "1.0" : "2.0",
    id,
    account_id: options.accountId ?? DEFAULT_ACCOUNT_ID,
  };
  if (options.appId !== null) payload.app_id = options.appId ?? DEFAULT_APP_ID;
  payload.timestamp = envelopeTime(options.deliveredAt ?? r.at);
  payload.type = type;
  payload.data = data;
  return {
    type,
    canonical,
    format,
    id,
    payload,
    body: JSON.stringify(payload),
  };
}

/** The event id the function records: the envelope `id`, or `sha256:<hex of the body>` for flat. */
export async function eventIdOf(event: BuiltEvent): Promise<string> {
  if (event.id !== null) return event.id;
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(event.body),
  );
  return `sha256:${toHex(new Uint8Array(digest))}`;
}

// ---------------------------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------------------------

/** The header 100ms (HIPAA workspaces) puts the body's HMAC in. */
export const SIGNATURE_HEADER = "x-100ms-signature";
/** The function's default name for the dashboard's static secret header. */
export const DEFAULT_SECRET_HEADER = "x-webhook-secret";

/** Which proof a request carries: the HMAC signature, the static secret header, or both. */
export type Auth = "signature" | "header" | "both";

/** Options of {@link headersFor}. */
export interface AuthOptions {
  secret: string;
  /** Default `both`, which every `HMS_WEBHOOK_AUTH` mode accepts. */
  auth?: Auth;
  /** Name of the static secret header. Default {@link DEFAULT_SECRET_HEADER}. */
  headerName?: string;
}

/** HMAC-SHA256 of the exact body bytes with the secret, lowercase hex (no `sha256=` prefix). */
export async function sign(
  body: string | Uint8Array,
  secret: string,
): Promise<string> {
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey(
    "raw",
    enc.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const bytes = typeof body === "string" ? enc.encode(body) : body;
  return toHex(
    new Uint8Array(
      await crypto.subtle.sign("HMAC", key, bytes as BufferSource),
    ),
  );
}

/** Request headers for a body: content type plus the chosen proof(s), names lower-case. */
export async function headersFor(
  body: string | Uint8Array,
  options: AuthOptions,
): Promise<Record<string, string>> {
  const auth = options.auth ?? "both";
  const headers: Record<string, string> = {
    "content-type": "application/json",
  };
  if (auth === "signature" || auth === "both") {
    headers[SIGNATURE_HEADER] = await sign(body, options.secret);
  }
  if (auth === "header" || auth === "both") {
    headers[(options.headerName ?? DEFAULT_SECRET_HEADER).toLowerCase()] =
      headerValue(options.secret);
  }
  return headers;
}

/**
 * A header value that goes out as the UTF-8 bytes of `text`: header values are byte strings
 * (Fetch), one character per byte, so a non-ASCII secret is sent the way 100ms sends it.
 */
export function headerValue(text: string): string {
  return String.fromCharCode(...new TextEncoder().encode(text));
}

// ---------------------------------------------------------------------------------------------
// Sessions: consistent event sequences
// ---------------------------------------------------------------------------------------------

interface PeerState {
  peerId: string;
  userId: string;
  userName: string;
  role: string;
  joinedAt: bigint;
}

/** Per-event overrides a {@link SessionTimeline} accepts (it fills in the session fields). */
export type TimelineOptions = Omit<
  EventOptions,
  "roomId" | "roomName" | "sessionId" | "sessionStartedAt"
>;

/**
 * Builds the events of one 100ms session so that they agree with each other the way real ones
 * do: one session id and start time, a leave or role change carries its peer's join time, user
 * and current role. Only builds; sending is the caller's business.
 */
export class SessionTimeline {
  readonly roomId: string;
  readonly roomName: string;
  readonly sessionId: string;
  readonly startedAt: bigint;
  readonly #peers = new Map<string, PeerState>();

  constructor(
    options: {
      roomId: string;
      roomName?: string;
      sessionId?: string;
      startedAt: TimeInput;
    },
  ) {
    this.roomId = options.roomId;
    this.roomName = options.roomName ??
      `audio-room-${options.roomId.slice(-6)}`;
    this.startedAt = toNanos(options.startedAt);
    this.sessionId = options.sessionId ?? objectId(this.startedAt);
  }

  #build(type: string, options: EventOptions): BuiltEvent {
    return buildEvent(type, {
      ...options,
      roomId: this.roomId,
      roomName: this.roomName,
      sessionId: this.sessionId,
      sessionStartedAt: this.startedAt,
    });
  }

  /** session.open.success at the session's start time (or `at`). */
  open(options: TimelineOptions = {}): BuiltEvent {
    return this.#build("session.open.success", {
      at: this.startedAt,
      ...options,
    });
  }

  /** peer.join.success; remembers the peer for later leave / role change events. */
  join(options: TimelineOptions & { at: TimeInput }): BuiltEvent {
    const peerId = options.peerId ?? uuid();
    const userId = options.userId ??
      `usr_${peerId.replace(/-/g, "").slice(0, 6)}`;
    const userName = options.userName ?? userNameFor(userId);
    const role = options.role ?? "listener";
    const event = this.#build("peer.join.success", {
      ...options,
      peerId,
      userId,
      userName,
      role,
    });
    this.#peers.set(peerId, {
      peerId,
      userId,
      userName,
      role,
      joinedAt: toNanos(options.at),
    });
    return event;
  }

  #peer(peerId: string): PeerState {
    const peer = this.#peers.get(peerId);
    if (!peer) {
      throw new Error(
        `peer ${peerId} has not joined session ${this.sessionId}`,
      );
    }
    return peer;
  }

  /** role.change.success for a joined peer; previous role and join time come from its state. */
  changeRole(
    peerId: string,
    role: string,
    options: TimelineOptions & { at: TimeInput },
  ): BuiltEvent {
    const peer = this.#peer(peerId);
    const event = this.#build("role.change.success", {
      userId: peer.userId,
      userName: peer.userName,
      joinedAt: peer.joinedAt,
      previousRole: peer.role,
      ...options,
      peerId,
      role,
    });
    peer.role = role;
    return event;
  }

  /** peer.leave.success for a joined peer, with its current role and join time. */
  leave(
    peerId: string,
    options: TimelineOptions & { at: TimeInput },
  ): BuiltEvent {
    const peer = this.#peer(peerId);
    return this.#build("peer.leave.success", {
      userId: peer.userId,
      userName: peer.userName,
      joinedAt: peer.joinedAt,
      role: peer.role,
      ...options,
      peerId,
    });
  }

  /** session.close.success at `at`. */
  close(options: TimelineOptions & { at: TimeInput }): BuiltEvent {
    return this.#build("session.close.success", options);
  }

  /** Any other type, in this session (e.g. room.end.success, track.update.success). */
  event(type: string, options: TimelineOptions = {}): BuiltEvent {
    return this.#build(type, options);
  }
}
