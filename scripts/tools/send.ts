/**
 * `npm run send -- <event-type> [options]`: builds one realistic, correctly signed 100ms webhook,
 * posts it to the function (the local stack by default) and prints what came back, like
 * `stripe trigger` does for Stripe. `--dry-run` prints the exact request instead of sending it.
 */

import {
  type Auth,
  buildEvent,
  type BuiltEvent,
  CANONICAL_TYPES,
  canonicalType,
  DEFAULT_ROOM_ID,
  DEFAULT_SECRET_HEADER,
  eventIdOf,
  type EventOptions,
  type Format,
  headersFor,
  parseTime,
  SPEC_ALIASES,
} from "../lib/hms.ts";
import {
  readStackInfo,
  requireStack,
  type StackInfo,
  StackNotRunningError,
} from "./stack_info.ts";

/** Exit codes: 0 every answer was 200 (or dry run), 1 a non-200 answer or no answer, 2 usage. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

const LOCAL_FUNCTION_URL = "http://127.0.0.1:54321/functions/v1/hms-webhook";
const MAX_REPEAT = 1000;

export const USAGE = `Usage: npm run send -- <event-type> [options]

Builds a realistic 100ms webhook, signs it and POSTs it to the hms-webhook function
(the local stack from \`npm start\` unless --url is given), then prints the status,
the response and the time taken.

Event types (100ms names):
  ${CANONICAL_TYPES.join("\n  ")}
Spec names (same data as the 100ms event they stand for):
  ${
  Object.entries(SPEC_ALIASES).map(([a, c]) => `${a.padEnd(14)} -> ${c}`).join(
    "\n  ",
  )
}

Options:
  --room R           100ms room id (rooms.hms_room_id)        [${DEFAULT_ROOM_ID}]
  --peer P           peer id                                   [a new UUID, as 100ms does per join]
  --role ROLE        role (new role for role.change)           [listener; speaker for role.change]
  --previous-role R  role.change.success previous_role   [listener; speaker if --role listener]
  --session S        session id            [derived from the room id, so separate sends share it]
  --user U           user id                                   [derived from the peer id]
  --at TIME          the event's own time, RFC 3339            [now]
  --joined-at TIME   join time on leave / role change events   [60 s before --at]
  --reason TEXT      peer.leave reason / room.end reason       [client request / Show is over]
  --id EVENT_ID      envelope id; repeat it to test dedup      [a new UUID]
  --format F         100ms (envelope) or flat (legacy)         [100ms]
  --url URL          function URL                              [the local stack's]
  --auth A           signature, header or both                 [both]
  --secret S         webhook secret     [the local stack's; with --url: $HMS_WEBHOOK_SECRET]
  --header-name H    secret header name [the local stack's; with --url: $HMS_WEBHOOK_SECRET_HEADER,
                     else ${DEFAULT_SECRET_HEADER}]
  --repeat N         send the same bytes N times, like 100ms retries   [1]
  --dry-run          print the request (method, URL, headers, body); send nothing
  --lost             do not send: the local 100ms stand-in records it as a failed delivery
                     (an outage to recover with npm run replay / npm run reconcile)
  --json             machine-readable output: one JSON object (npm run -s drops npm's banner)
  -h, --help         this text

Exit status: 0 every answer was 200 (or --dry-run), 1 an answer was not 200 or the URL
did not answer, 2 bad usage.

Examples (the room ${DEFAULT_ROOM_ID} is the one \`npm start\` creates):
  npm run send -- session.open.success
  npm run send -- peer.join.success --peer p-1                 # a listener joins
  npm run send -- role.change.success --peer p-1 --role speaker
  npm run send -- peer.leave.success --peer p-1 --role speaker
  npm run send -- peer.joined --format flat --peer p-2          # legacy flat format
  npm run send -- peer.join.success --id 11111111-2222-4333-8444-555555555555 --repeat 3
  npm run send -- peer.join.failure                            # answered "ignored"
  npm run send -- session.close.success --dry-run
  npm run -s send -- peer.join.success --json | jq .responses[0].body
  HMS_WEBHOOK_SECRET=... npm run send -- peer.join.success --room <id> \\
    --url https://<ref>.supabase.co/functions/v1/hms-webhook
`;

/** Thrown for bad command lines; the message is shown with a pointer to --help. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A parsed command line. */
export interface SendOptions {
  type: string;
  event: EventOptions;
  url?: string;
  auth: Auth;
  secret?: string;
  headerName?: string;
  repeat: number;
  dryRun: boolean;
  /** Record it in the local 100ms stand-in as a failed delivery instead of sending it. */
  lost?: boolean;
  json: boolean;
  help: boolean;
}

const AUTHS: readonly Auth[] = ["signature", "header", "both"];
const FORMATS: readonly Format[] = ["100ms", "flat"];

function checkTime(
  flag: string,
  value: string | undefined,
): string | undefined {
  if (value === undefined) return undefined;
  try {
    parseTime(value);
  } catch {
    throw new UsageError(
      `${flag} "${value}" is not an RFC 3339 time (e.g. 2024-10-04T18:03:10Z)`,
    );
  }
  return value;
}

function nonEmpty(flag: string, value: string | undefined): string | undefined {
  if (value !== undefined && value.trim() === "") {
    throw new UsageError(`${flag} must not be empty`);
  }
  return value;
}

/** Flag kinds for {@link parseFlags}: `string` takes a value, `boolean` does not. */
export type FlagSpec = Record<string, "string" | "boolean">;

/** What {@link parseFlags} found: valued flags, present boolean flags, the rest. */
export interface ParsedFlags {
  strings: Partial<Record<string, string>>;
  booleans: Set<string>;
  positionals: string[];
}

/**
 * A small strict flag parser shared by the tools (`--name value`, `--name=value`, `-h`, `--`),
 * because `node:util`'s needs `@types/node`, which this repo does not install for `deno check`.
 * Unknown, repeated or value-less flags throw {@link UsageError}.
 */
export function parseFlags(
  argv: string[],
  spec: FlagSpec,
): ParsedFlags {
  const strings: Partial<Record<string, string>> = {};
  const booleans = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    let name = arg.startsWith("--")
      ? arg.slice(2, eq < 0 ? undefined : eq)
      : arg.slice(1);
    if (name === "h") name = "help";
    const kind = arg.startsWith("--") || name === "help"
      ? spec[name]
      : undefined;
    if (kind === undefined || !Object.hasOwn(spec, name)) {
      throw new UsageError(`unknown option ${arg.split("=")[0]}`);
    }
    if (Object.hasOwn(strings, name) || booleans.has(name)) {
      throw new UsageError(`--${name} given twice`);
    }
    if (kind === "boolean") {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      booleans.add(name);
    } else if (eq >= 0) {
      strings[name] = arg.slice(eq + 1);
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
      strings[name] = argv[++i];
    } else {
      throw new UsageError(`--${name} needs a value`);
    }
  }
  return { strings, booleans, positionals };
}

const SEND_FLAGS: FlagSpec = {
  room: "string",
  peer: "string",
  role: "string",
  "previous-role": "string",
  session: "string",
  user: "string",
  at: "string",
  "joined-at": "string",
  reason: "string",
  id: "string",
  format: "string",
  url: "string",
  auth: "string",
  secret: "string",
  "header-name": "string",
  repeat: "string",
  "dry-run": "boolean",
  lost: "boolean",
  json: "boolean",
  help: "boolean",
};

/** Parses and validates argv; throws {@link UsageError}. */
export function parseSendArgs(argv: string[]): SendOptions {
  const parsed = parseFlags(argv, SEND_FLAGS);
  const v = parsed.strings;
  const help = parsed.booleans.has("help");
  if (help) {
    return {
      type: "",
      event: {},
      auth: "both",
      repeat: 1,
      dryRun: false,
      json: false,
      help,
    };
  }
  if (parsed.positionals.length === 0) {
    throw new UsageError("missing the event type");
  }
  if (parsed.positionals.length > 1) {
    throw new UsageError(
      `one event type per call, got: ${parsed.positionals.join(" ")}`,
    );
  }
  const type = parsed.positionals[0];
  if (canonicalType(type) === undefined) {
    throw new UsageError(
      `unknown event type "${type}" (see --help for the list)`,
    );
  }
  const auth = (v.auth ?? "both") as Auth;
  if (!AUTHS.includes(auth)) {
    throw new UsageError(
      `--auth must be one of ${AUTHS.join(", ")}, got "${v.auth}"`,
    );
  }
  const format = (v.format ?? "100ms") as Format;
  if (!FORMATS.includes(format)) {
    throw new UsageError(
      `--format must be one of ${FORMATS.join(", ")}, got "${v.format}"`,
    );
  }
  if (format === "flat" && v.id !== undefined) {
    throw new UsageError(
      "--id does not apply to --format flat (its id is sha256 of the body)",
    );
  }
  let repeat = 1;
  if (v.repeat !== undefined) {
    repeat = Number(v.repeat);
    if (!/^\d+$/.test(v.repeat) || repeat < 1 || repeat > MAX_REPEAT) {
      throw new UsageError(
        `--repeat must be a whole number from 1 to ${MAX_REPEAT}`,
      );
    }
  }
  if (v.url !== undefined) {
    let u: URL;
    try {
      u = new URL(v.url);
    } catch {
      throw new UsageError(`--url "${v.url}" is not a URL`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      throw new UsageError(`--url must be http(s), got "${v.url}"`);
    }
  }
  const event: EventOptions = {
    format,
    id: nonEmpty("--id", v.id),
    at: checkTime("--at", v.at),
    joinedAt: checkTime("--joined-at", v["joined-at"]),
    roomId: nonEmpty("--room", v.room),
    sessionId: nonEmpty("--session", v.session),
    peerId: nonEmpty("--peer", v.peer),
    userId: nonEmpty("--user", v.user),
    role: nonEmpty("--role", v.role),
    previousRole: nonEmpty("--previous-role", v["previous-role"]),
    reason: v.reason,
  };
  // Leave unset options out so the library's defaults apply.
  for (const key of Object.keys(event) as (keyof EventOptions)[]) {
    if (event[key] === undefined) delete event[key];
  }
  return {
    type,
    event,
    url: v.url,
    auth,
    secret: nonEmpty("--secret", v.secret),
    headerName: nonEmpty("--header-name", v["header-name"]),
    repeat,
    dryRun: parsed.booleans.has("dry-run"),
    lost: parsed.booleans.has("lost"),
    json: parsed.booleans.has("json"),
    help,
  };
}

/** A request ready to send: the exact bytes and headers. */
export interface PreparedRequest {
  method: "POST";
  url: string;
  headers: Record<string, string>;
  body: string;
  event: BuiltEvent;
  /** The id the function will record (envelope id, or sha256:… for flat). */
  eventId: string;
}

/** One answer from the function. */
export interface Attempt {
  attempt: number;
  status: number | null;
  ms: number;
  /** Parsed JSON when the body was JSON, else the text; the error text when nothing answered. */
  body: unknown;
  error?: string;
}

/**
 * Where to send and with which secret. Without --url the target is the local stack, which must be
 * up (a dry run only needs its file), and its own secret and header name are the right ones.
 * With --url pointing elsewhere the secret comes from --secret or HMS_WEBHOOK_SECRET, never from
 * the local stack, so a deployment is not silently sent the local secret.
 */
export async function resolveTarget(
  options: SendOptions,
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): Promise<Omit<Target, "auth"> & { stack: StackInfo | null }> {
  let stack: StackInfo | null = null;
  if (options.url === undefined) {
    stack = options.dryRun ? await readStackInfo() : await requireStack();
  } else {
    // Only to recognise --url as the local stack's own URL; a broken file does not matter here.
    stack = await readStackInfo().catch(() => null);
  }
  // A dry run sends nothing, so without a stack the usual local URL is a fine stand-in.
  const url = options.url ?? stack?.functionUrl ?? LOCAL_FUNCTION_URL;
  const local = stack !== null && url === stack.functionUrl;
  const secret = options.secret ??
    (local ? stack?.webhookSecret : env("HMS_WEBHOOK_SECRET"));
  if (secret === undefined || secret === "") {
    throw new UsageError(
      `no webhook secret for ${url}: pass --secret or set HMS_WEBHOOK_SECRET`,
    );
  }
  const headerName = options.headerName ??
    (local ? stack?.secretHeader : env("HMS_WEBHOOK_SECRET_HEADER")) ??
    DEFAULT_SECRET_HEADER;
  return { url, secret, headerName, stack };
}

/** Builds and signs the event. */
export function prepare(
  type: string,
  event: EventOptions,
  target: Target,
): Promise<PreparedRequest> {
  return signRequest(buildEvent(type, event), target);
}

/** Where and how to deliver: URL, secret, secret-header name and which proofs to attach. */
export interface Target {
  url: string;
  secret: string;
  headerName: string;
  auth: Auth;
}

/** Signs an already built event for the target. */
export async function signRequest(
  built: BuiltEvent,
  target: Target,
): Promise<PreparedRequest> {
  const headers = await headersFor(built.body, {
    secret: target.secret,
    auth: target.auth,
    headerName: target.headerName,
  });
  return {
    method: "POST",
    url: target.url,
    headers,
    body: built.body,
    event: built,
    eventId: await eventIdOf(built),
  };
}

/** POSTs the prepared bytes once; never throws (a dead URL is an attempt with `status: null`). */
export async function post(
  request: PreparedRequest,
  attempt = 1,
): Promise<Attempt> {
  const started = performance.now();
  try {
    const response = await fetch(request.url, {
      method: request.method,
      headers: request.headers,
      body: request.body,
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    const ms = round(performance.now() - started);
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON (e.g. a proxy's HTML error page): show it as text
    }
    return { attempt, status: response.status, ms, body };
  } catch (error) {
    const ms = round(performance.now() - started);
    return {
      attempt,
      status: null,
      ms,
      body: null,
      error: (error as Error).message,
    };
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

/**
 * The request as an HTTP message: request line, headers, blank line, the exact body (one line:
 * the JSON is compact; the newline `console.log` adds after it is not part of it).
 */
export function formatRequest(request: PreparedRequest): string {
  const headers = Object.entries(request.headers).map(([k, v]) => `${k}: ${v}`)
    .join("\n");
  return `${request.method} ${request.url}\n${headers}\n\n${request.body}`;
}

const REASONS: Record<number, string> = {
  200: "OK",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Payload Too Large",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
};

/** A hint for answers a developer is likely to misread; empty when none applies. */
export function hintFor(attempt: Attempt): string {
  const body = attempt.body as Record<string, unknown> | null;
  if (attempt.status === null) return "is the function running? (`npm start`)";
  if (body?.code === "stale_timestamp") {
    return "the event time is outside HMS_TIMESTAMP_TOLERANCE_SECONDS; use a recent --at";
  }
  if (body?.code === "unauthorized") {
    return "the secret or header name differs from the function's (--secret / --header-name / --auth)";
  }
  if (body?.reason === "unknown room") {
    return "no rooms row has this hms_room_id: insert one (npm run demo seeds some) or set HMS_AUTO_CREATE_ROOMS=true";
  }
  return "";
}

function summary(request: PreparedRequest, auth: Auth): string {
  const data = (request.event.payload.data ?? request.event.payload) as Record<
    string,
    unknown
  >;
  const peer = request.event.payload.peer as { id?: string } | undefined;
  const parts = [
    request.event.type,
    `id ${request.eventId}`,
    `room ${data.room_id}`,
  ];
  const peerId = data.peer_id ?? peer?.id;
  if (peerId !== undefined && request.event.canonical !== "room.end.success") {
    parts.push(`peer ${peerId}`);
  }
  if (typeof data.role === "string") parts.push(`role ${data.role}`);
  parts.push(`${request.event.format} format`, `auth ${auth}`);
  return parts.join("  ");
}

function printAttempt(attempt: Attempt, total: number): void {
  const label = total > 1 ? `#${attempt.attempt} ` : "";
  if (attempt.status === null) {
    console.log(`${label}no answer after ${attempt.ms} ms: ${attempt.error}`);
  } else {
    console.log(
      `${label}${attempt.status} ${
        REASONS[attempt.status] ?? ""
      } in ${attempt.ms} ms`,
    );
    console.log(
      typeof attempt.body === "string"
        ? attempt.body
        : JSON.stringify(attempt.body, null, 2),
    );
  }
  const hint = hintFor(attempt);
  if (hint) console.log(`hint: ${hint}`);
}

/** Runs the command; returns the exit code. Output goes to stdout, problems to stderr. */
export async function main(argv: string[]): Promise<number> {
  let options: SendOptions;
  try {
    options = parseSendArgs(argv);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(
      `send: ${error.message}\nRun \`npm run send -- --help\` for the options.`,
    );
    return EXIT_USAGE;
  }
  if (options.help) {
    console.log(USAGE);
    return EXIT_OK;
  }
  let request: PreparedRequest;
  let standIn: string | undefined;
  try {
    const target = await resolveTarget(options);
    // The local stack's 100ms stand-in learns what "happened", so reconcile and replay have
    // 100ms's side of the story (only for the local stack's own URL).
    if (target.stack !== null && target.url === target.stack.functionUrl) {
      standIn = target.stack.hmsApi?.url;
    }
    if (options.lost && standIn === undefined) {
      throw new UsageError(
        "--lost needs the local stack's 100ms stand-in (npm start without HMS_APP_* keys)",
      );
    }
    request = await prepare(options.type, options.event, {
      ...target,
      auth: options.auth,
    });
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`send: ${error.message}`);
      return EXIT_USAGE;
    }
    if (error instanceof StackNotRunningError) {
      console.error(`send: ${error.message}`);
      return EXIT_FAILED;
    }
    throw error;
  }
  const requestJson = {
    method: request.method,
    url: request.url,
    headers: request.headers,
    body: request.body,
  };
  if (options.dryRun) {
    if (options.json) {
      console.log(
        JSON.stringify({
          dry_run: true,
          event_id: request.eventId,
          request: requestJson,
        }),
      );
    } else {
      console.log(formatRequest(request));
    }
    return EXIT_OK;
  }
  if (options.lost) {
    await recordInStandIn(standIn!, request.body, false);
    console.log(
      `recorded as a failed delivery in the local 100ms stand-in (nothing sent):\n  ` +
        `${summary(request, options.auth)}\n  ` +
        "recover with `npm run replay -- --since 10m` or `npm run reconcile`",
    );
    return EXIT_OK;
  }
  if (!options.json) {
    console.log(`→ POST ${request.url}\n  ${summary(request, options.auth)}`);
  }
  const attempts: Attempt[] = [];
  for (let i = 1; i <= options.repeat; i++) {
    const attempt = await post(request, i);
    attempts.push(attempt);
    if (!options.json) printAttempt(attempt, options.repeat);
  }
  const ok = attempts.every((a) => a.status === 200);
  if (standIn !== undefined && !options.dryRun) {
    await recordInStandIn(standIn, request.body, ok).catch(() => {});
  }
  if (options.json) {
    console.log(JSON.stringify({
      ok,
      event_id: request.eventId,
      type: request.event.type,
      request: requestJson,
      responses: attempts,
    }));
  }
  return ok ? EXIT_OK : EXIT_FAILED;
}

/** Tells the local 100ms stand-in that this event happened (scripts/stack/hms_api.ts). */
async function recordInStandIn(
  url: string,
  body: string,
  delivered: boolean,
): Promise<void> {
  const response = await fetch(`${url}/_local/record`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ body, delivered }),
    signal: AbortSignal.timeout(5_000),
  });
  await response.body?.cancel();
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
