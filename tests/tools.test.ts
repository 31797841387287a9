/**
 * Tests of the developer tools: the event/signing library (scripts/lib/hms.ts) against fixed
 * vectors and the documented 100ms field sets, the CLIs' usage errors, and, against a live stack,
 * `send` (its dry-run output is accepted by the real verifier, a wrong secret is refused, a real
 * send moves the count), `rooms` (prints the new room in feed order) and `demo` (exits 0).
 */

import {
  buildEvent,
  CANONICAL_TYPES,
  dataTime,
  envelopeTime,
  epochMillis,
  EVENT_TYPES,
  eventIdOf,
  GO_ZERO_TIME,
  headersFor,
  InvalidTimeError,
  parseTime,
  SessionTimeline,
  sign,
  SPEC_ALIASES,
  UnknownEventTypeError,
} from "../scripts/lib/hms.ts";
import { type Attempt, parseFlags, UsageError } from "../scripts/tools/send.ts";
import {
  type FeedRow,
  relativeTime,
  renderFeed,
} from "../scripts/tools/rooms.ts";
import { getStack, stackTest } from "./helpers/stack.ts";
import { fromFileUrl } from "../scripts/lib/file_url.ts";

// --- small assertions (node:assert needs @types/node for `deno check`, which the repo lacks) ---

function fail(message: string): never {
  throw new Error(message);
}

function assertEquals(
  actual: unknown,
  expected: unknown,
  what = "value",
): void {
  const a = JSON.stringify(
    actual,
    (_k, v) => typeof v === "bigint" ? `${v}n` : v,
  );
  const e = JSON.stringify(
    expected,
    (_k, v) => typeof v === "bigint" ? `${v}n` : v,
  );
  if (a !== e) fail(`${what}: expected ${e}, got ${a}`);
}

function assertMatch(text: string, pattern: RegExp, what = "text"): void {
  if (!pattern.test(text)) fail(`${what} does not match ${pattern}:\n${text}`);
}

function assertThrows(
  fn: () => unknown,
  type: new (...args: never[]) => Error,
  what: string,
) {
  try {
    fn();
  } catch (error) {
    if (error instanceof type) return error;
    fail(`${what}: threw ${error}, expected ${type.name}`);
  }
  fail(`${what}: did not throw`);
}

const ROOT = fromFileUrl(new URL("../", import.meta.url));
const DENO = Deno.execPath();

/** Runs a tool as `npm run` does; returns exit code and output. */
async function runTool(
  tool: "send" | "rooms" | "demo",
  args: string[],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
  clearEnv = false,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(DENO, {
    args: ["run", "-A", `scripts/tools/${tool}.ts`, ...args],
    cwd: ROOT,
    env,
    clearEnv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

// ---------------------------------------------------------------------------------------------
// The library
// ---------------------------------------------------------------------------------------------

Deno.test("sign: HMAC-SHA256 lowercase hex (RFC 4231 test case 2)", async () => {
  assertEquals(
    await sign("what do ya want for nothing?", "Jefe"),
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    "signature",
  );
  // Bytes and their UTF-8 string sign the same; a different secret signs differently.
  const body = '{"type":"peer.join.success","data":{"user_name":"Zoë"}}';
  assertEquals(
    await sign(new TextEncoder().encode(body), "k"),
    await sign(body, "k"),
    "bytes",
  );
  if ((await sign(body, "k")) === (await sign(body, "k2"))) {
    fail("secret not used");
  }
});

Deno.test("headersFor: each auth mode carries exactly its proofs", async () => {
  const body = '{"a":1}';
  const mac = await sign(body, "s3");
  assertEquals(await headersFor(body, { secret: "s3", auth: "signature" }), {
    "content-type": "application/json",
    "x-100ms-signature": mac,
  }, "signature mode");
  assertEquals(
    await headersFor(body, {
      secret: "s3",
      auth: "header",
      headerName: "X-Hook",
    }),
    {
      "content-type": "application/json",
      "x-hook": "s3",
    },
    "header mode",
  );
  assertEquals(await headersFor(body, { secret: "s3" }), {
    "content-type": "application/json",
    "x-100ms-signature": mac,
    "x-webhook-secret": "s3",
  }, "default (both)");
});

Deno.test("time: 100ms formats round-trip at nanosecond precision", () => {
  for (
    const t of [
      "2021-08-08T07:04:15.001380432Z",
      "2021-11-30T12:58:49.97291247Z",
      "2021-11-30T12:58:34.051Z",
      "2023-10-16T12:35:08Z",
      GO_ZERO_TIME,
    ]
  ) assertEquals(dataTime(parseTime(t)), t, `round trip of ${t}`);
  assertEquals(
    dataTime("2024-10-04T20:03:10.5+02:00"),
    "2024-10-04T18:03:10.5Z",
    "offset",
  );
  assertEquals(
    dataTime("2024-10-04T18:03:10.500000000Z"),
    "2024-10-04T18:03:10.5Z",
    "zeros",
  );
  assertEquals(
    envelopeTime("2024-10-04T18:03:10.999999999Z"),
    "2024-10-04T18:03:10Z",
    "trunc",
  );
  assertEquals(
    epochMillis("2024-10-04T18:12:45.661907830Z"),
    1728065565661,
    "millis",
  );
  assertEquals(
    parseTime("1970-01-01T00:00:01.000000001Z"),
    1_000_000_001n,
    "ns",
  );
  assertEquals(
    parseTime("1969-12-31T23:59:59.5Z"),
    -500_000_000n,
    "before epoch",
  );
  assertEquals(
    dataTime(-500_000_000n),
    "1969-12-31T23:59:59.5Z",
    "negative formatting",
  );
  for (
    const bad of [
      "2024-02-30T00:00:00Z",
      "2024-10-04 18:03:10Z",
      "2024-10-04T24:00:00Z",
    ]
  ) {
    assertThrows(() => parseTime(bad), InvalidTimeError, bad);
  }
});

Deno.test("buildEvent: every type carries exactly the fields 100ms documents", async () => {
  const fields = JSON.parse(
    await Deno.readTextFile(`${ROOT}tests/fixtures/tools/event_fields.json`),
  ) as Record<string, string[]>;
  for (const type of CANONICAL_TYPES) {
    const event = buildEvent(type, {
      id: "e-1",
      at: "2024-10-04T18:12:45.661207830Z",
    });
    const p = event.payload;
    const envelope = [
      "version",
      "id",
      "account_id",
      "app_id",
      "timestamp",
      "type",
      "data",
    ];
    assertEquals(Object.keys(p), envelope, `${type} envelope keys`);
    assertEquals(
      p.version,
      type.startsWith("recording.") ? "1.0" : "2.0",
      `${type} version`,
    );
    assertEquals(
      p.timestamp,
      "2024-10-04T18:12:45Z",
      `${type} envelope timestamp`,
    );
    assertEquals(p.type, type, `${type} type`);
    const expected = fields[type] ?? fail(`fixture lacks ${type}`);
    assertEquals(
      Object.keys(p.data as object).sort(),
      [...expected].sort(),
      `${type} data keys`,
    );
    assertEquals(JSON.parse(event.body), p, `${type} body is the payload`);
  }
});

Deno.test("buildEvent: times, durations and failure markers are consistent", () => {
  const leave = buildEvent("peer.leave.success", {
    at: "2024-10-04T18:40:31.904117326Z",
    joinedAt: "2024-10-04T18:03:10.55810264Z",
    role: "speaker",
    reason: "websocket closed",
  }).payload.data as Record<string, unknown>;
  assertEquals(leave.left_at, "2024-10-04T18:40:31.904117326Z", "left_at");
  assertEquals(leave.joined_at, "2024-10-04T18:03:10.55810264Z", "joined_at");
  assertEquals(leave.duration, 2241, "duration in whole seconds");
  assertEquals([leave.role, leave.reason, leave.message], [
    "speaker",
    "websocket closed",
    "",
  ], "");

  const close = buildEvent("session.close.success", {
    at: "2024-10-04T19:01:59.512880041Z",
    sessionStartedAt: "2024-10-04T18:00:02.183742915Z",
  }).payload.data as Record<string, unknown>;
  assertEquals(close.session_duration, 3717, "session_duration");
  assertEquals(
    close.session_stopped_at,
    "2024-10-04T19:01:59.512880041Z",
    "stopped",
  );

  const failure = buildEvent("peer.join.failure", {}).payload.data as Record<
    string,
    unknown
  >;
  assertEquals(
    failure.joined_at,
    GO_ZERO_TIME,
    "failure joined_at is Go's zero time",
  );
  assertEquals(failure.error_message, "role not allowed", "error_message");

  const viaApi = buildEvent("role.change.success", {
    requestedBy: null,
    role: "listener",
  });
  const data = viaApi.payload.data as Record<string, unknown>;
  assertEquals(
    "role_change_requested_by" in data,
    false,
    "API role change has no requester",
  );
  assertEquals(
    [data.previous_role, data.role],
    ["speaker", "listener"],
    "demotion",
  );

  // One room's separately built events share a session unless told otherwise.
  const a = buildEvent("peer.join.success", { roomId: "r-1" }).payload.data as {
    session_id: string;
  };
  const b = buildEvent("peer.leave.success", { roomId: "r-1" }).payload
    .data as { session_id: string };
  const c = buildEvent("peer.join.success", { roomId: "r-2" }).payload.data as {
    session_id: string;
  };
  assertEquals(a.session_id, b.session_id, "same room, same default session");
  if (a.session_id === c.session_id) {
    fail("different rooms got the same default session");
  }
  assertMatch(a.session_id, /^[0-9a-f]{24}$/, "session id");
});

Deno.test("buildEvent: spec aliases keep their name and get the 100ms data shape", () => {
  for (const [alias, canonical] of Object.entries(SPEC_ALIASES)) {
    const aliased = buildEvent(alias, {
      at: "2024-10-04T18:00:00Z",
      peerId: "p",
    });
    const real = buildEvent(canonical, {
      at: "2024-10-04T18:00:00Z",
      peerId: "p",
    });
    assertEquals(aliased.payload.type, alias, `${alias} keeps its name`);
    assertEquals(aliased.canonical, canonical, `${alias} canonical`);
    assertEquals(
      Object.keys(aliased.payload.data as object),
      Object.keys(real.payload.data as object),
      `${alias} data keys`,
    );
  }
  assertEquals(EVENT_TYPES.length, CANONICAL_TYPES.length + 5, "type list");
  assertThrows(() => buildEvent("peer.joind"), UnknownEventTypeError, "typo");
});

Deno.test("buildEvent: the legacy flat format and its body-derived event id", async () => {
  const flat = buildEvent("peer.joined", {
    format: "flat",
    roomId: "room-1",
    peerId: "peer-1",
    at: "2024-10-04T18:12:45.661207830Z",
  });
  assertEquals(
    flat.body,
    '{"event":"peer.joined","room_id":"room-1","peer":{"id":"peer-1","role":"listener"},' +
      '"timestamp":1728065565661}',
    "flat body",
  );
  assertEquals(flat.id, null, "flat has no envelope id");
  // sha256sum of the body above, computed outside this code.
  assertEquals(
    await eventIdOf(flat),
    "sha256:c6f5348c2c05e5b0d0f85acdbe5d686fb1c8768c73e529cea406fdf6d291c2d5",
    "flat event id",
  );
  const open = buildEvent("room.started", {
    format: "flat",
    roomId: "room-1",
    at: 0n,
  });
  assertEquals(open.payload, {
    event: "room.started",
    room_id: "room-1",
    timestamp: 0,
  }, "no peer");
  assertEquals(
    await eventIdOf(buildEvent("peer.join.success", { id: "x" })),
    "x",
    "envelope id",
  );
});

Deno.test("SessionTimeline: leaves and role changes agree with the join", () => {
  const s = new SessionTimeline({
    roomId: "room-9",
    sessionId: "6702a7b8c9d0e1f2a3b4c5d6",
    startedAt: "2024-10-04T18:00:02.183742915Z",
  });
  const open = s.open().payload.data as Record<string, unknown>;
  assertEquals(
    open.session_started_at,
    "2024-10-04T18:00:02.183742915Z",
    "open time",
  );
  s.join({
    peerId: "ravi",
    userId: "usr_1907",
    at: "2024-10-04T18:03:10.55810264Z",
  });
  const promote = s.changeRole("ravi", "speaker", {
    at: "2024-10-04T18:12:45.66120783Z",
  })
    .payload.data as Record<string, unknown>;
  assertEquals(
    [promote.previous_role, promote.role],
    ["listener", "speaker"],
    "promotion",
  );
  assertEquals(
    promote.joined_at,
    "2024-10-04T18:03:10.55810264Z",
    "role change joined_at",
  );
  const leave = s.leave("ravi", { at: "2024-10-04T18:40:31.904117326Z" })
    .payload.data as Record<
      string,
      unknown
    >;
  assertEquals(
    [leave.role, leave.user_id, leave.session_id, leave.duration],
    ["speaker", "usr_1907", "6702a7b8c9d0e1f2a3b4c5d6", 2241],
    "leave fields",
  );
  assertThrows(
    () => s.leave("nobody", { at: 0n }),
    Error,
    "leave of an unknown peer",
  );
});

// ---------------------------------------------------------------------------------------------
// CLI plumbing (no stack needed)
// ---------------------------------------------------------------------------------------------

Deno.test("parseFlags: strict about unknown, repeated and value-less flags", () => {
  const spec = { room: "string", json: "boolean", help: "boolean" } as const;
  const parsed = parseFlags([
    "peer.join.success",
    "--room=r1",
    "--json",
    "--",
    "--x",
  ], spec);
  assertEquals(parsed.strings, { room: "r1" }, "strings");
  assertEquals([...parsed.booleans], ["json"], "booleans");
  assertEquals(parsed.positionals, ["peer.join.success", "--x"], "positionals");
  assertEquals([...parseFlags(["-h"], spec).booleans], ["help"], "-h");
  for (
    const argv of [["--nope"], ["--room"], ["--room", "a", "--room", "b"], [
      "--json=1",
    ]]
  ) {
    assertThrows(() => parseFlags(argv, spec), UsageError, argv.join(" "));
  }
});

Deno.test("send: usage errors exit 2 with a clear message; --help lists every type", async () => {
  const cases: [string[], RegExp][] = [
    [["peer.joind"], /unknown event type "peer\.joind"/],
    [[], /missing the event type/],
    [["peer.join.success", "--bogus"], /unknown option --bogus/],
    [
      ["peer.join.success", "--auth", "hmac"],
      /--auth must be one of signature, header, both/,
    ],
    [
      ["peer.join.success", "--format", "xml"],
      /--format must be one of 100ms, flat/,
    ],
    [
      ["peer.join.success", "--at", "yesterday"],
      /--at "yesterday" is not an RFC 3339 time/,
    ],
    [["peer.join.success", "--repeat", "0"], /--repeat must be a whole number/],
    [
      ["peer.joined", "--format", "flat", "--id", "x"],
      /--id does not apply to --format flat/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = await runTool("send", args);
    assertEquals(r.code, 2, `exit code of send ${args.join(" ")}`);
    assertMatch(r.stderr, message, `stderr of send ${args.join(" ")}`);
  }
  const help = await runTool("send", ["--help"]);
  assertEquals(help.code, 0, "--help exit code");
  for (const type of EVENT_TYPES) {
    assertMatch(help.stdout, new RegExp(`\\b${type}\\b`), type);
  }
  assertMatch(help.stdout, /--dry-run/, "help mentions --dry-run");
});

Deno.test("send: without a stack or --url it says how to start one", async () => {
  const r = await runTool("send", ["peer.join.success", "--secret", "x"], {
    HMS_STACK_FILE: "/nonexistent/stack.json",
  });
  assertEquals(r.code, 1, "exit code");
  assertMatch(r.stderr, /local stack is not running.*npm start/s, "stderr");
});

Deno.test("rooms: renders an aligned table with relative times", () => {
  const now = Date.parse("2024-10-04T18:10:00Z");
  const table = renderFeed([
    {
      hms_room_id: "jazz",
      is_live: true,
      listener_count: 12,
      speaker_count: 2,
      featured: true,
      last_active_at: "2024-10-04T18:07:00Z",
      score_now: 22.9,
    },
    {
      hms_room_id: "a-much-longer-room-id",
      is_live: false,
      listener_count: 0,
      speaker_count: 0,
      featured: false,
      last_active_at: null,
      score_now: 0,
    },
  ], now);
  const lines = table.split("\n");
  assertEquals(lines.length, 4, "header, rule, two rows");
  assertMatch(
    lines[2],
    /^ {3}1 {2}jazz +yes +12 +2 {2}yes +22\.90 {2}3m ago$/,
    "first row",
  );
  assertMatch(
    lines[3],
    /^ {3}2 {2}a-much-longer-room-id {2}no +0 +0 {2}no +0\.00 {2}never$/,
    "2nd",
  );
  // Columns line up: every line has the "live" column at the same offset.
  const col = lines[0].indexOf("live");
  for (const line of lines.slice(2)) {
    assertMatch(line.slice(col), /^(yes|no) /, "alignment");
  }
  assertEquals(relativeTime("2024-10-04T16:10:00Z", now), "2h ago", "hours");
  assertEquals(relativeTime("2024-10-04T18:09:59.5Z", now), "just now", "now");
});

// ---------------------------------------------------------------------------------------------
// Against a live stack (the one `npm test` started, else a private one)
// ---------------------------------------------------------------------------------------------

let stackFile: Promise<string> | null = null;

/** A stack file the CLIs can read: npm test's, or one written for the private stack. */
function cliStackFile(): Promise<string> {
  stackFile ??= (async () => {
    const existing = Deno.env.get("HMS_STACK_FILE");
    if (existing) return existing;
    const s = await getStack();
    const file = await Deno.makeTempFile({
      prefix: "hms-tools-stack-",
      suffix: ".json",
    });
    await Deno.writeTextFile(
      file,
      JSON.stringify({
        functionUrl: s.functionUrl,
        supabaseUrl: s.supabaseUrl,
        restUrl: s.restUrl,
        databaseUrl: s.databaseUrl,
        webhookSecret: s.secret,
        secretHeader: s.secretHeader,
        serviceRoleKey: s.serviceKey,
        anonKey: s.anonKey,
      }),
    );
    globalThis.addEventListener("unload", () => Deno.removeSync(file));
    return file;
  })();
  return stackFile;
}

/** Runs a tool against the test stack with a clean environment (no stray HMS_* settings). */
async function runOnStack(
  tool: "send" | "rooms" | "demo",
  args: string[],
  timeoutMs?: number,
) {
  const env: Record<string, string> = {
    HMS_STACK_FILE: await cliStackFile(),
    NO_COLOR: "1",
  };
  for (const name of ["PATH", "HOME", "DENO_DIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return await runTool(tool, args, env, timeoutMs, true);
}

/** A fresh room row (the function only updates rooms that exist). */
async function createRoom(prefix: string, featured = false): Promise<string> {
  const s = await getStack();
  const id = `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
  await s
    .sql`insert into public.rooms (hms_room_id, featured) values (${id}, ${featured})`;
  return id;
}

async function roomRow(id: string) {
  const s = await getStack();
  const [row] = await s.sql`
    select is_live, listener_count, speaker_count from public.rooms where hms_room_id = ${id}`;
  return row;
}

/** Splits `send --dry-run` output (an HTTP message) into URL, headers and the exact body. */
function parseDryRun(
  stdout: string,
): { url: string; headers: Record<string, string>; body: string } {
  const [head, ...rest] = stdout.split("\n\n");
  const [requestLine, ...headerLines] = head.split("\n");
  const [method, url] = requestLine.split(" ");
  assertEquals(method, "POST", "dry-run method");
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(": ");
    headers[line.slice(0, colon)] = line.slice(colon + 2);
  }
  // The body is everything after the blank line except the one newline console.log adds.
  return { url, headers, body: rest.join("\n\n").replace(/\n$/, "") };
}

async function postRaw(
  url: string,
  headers: Record<string, string>,
  body: string,
) {
  const response = await fetch(url, { method: "POST", headers, body });
  return {
    status: response.status,
    json: await response.json() as Record<string, unknown>,
  };
}

stackTest({
  name:
    "send --dry-run: the real function accepts what it prints, and refuses another secret",
  async fn(s) {
    for (
      const [auth, format] of [["both", "100ms"], ["signature", "100ms"], [
        "header",
        "flat",
      ]]
    ) {
      // A room per case: a flat event has no session id, so it lives in its own session.
      const room = await createRoom("tools-dry");
      const args = [
        "peer.join.success",
        "--room",
        room,
        "--auth",
        auth,
        "--format",
        format,
      ];
      const printed = await runOnStack("send", [...args, "--dry-run"]);
      assertEquals(
        printed.code,
        0,
        `dry-run exit (${auth}, ${format}): ${printed.stderr}`,
      );
      const request = parseDryRun(printed.stdout);
      assertEquals(
        request.url,
        s.functionUrl,
        "dry-run targets the stack's function",
      );
      assertEquals(
        Object.keys(request.headers).sort(),
        [
          "content-type",
          ...(auth !== "header" ? ["x-100ms-signature"] : []),
          ...(
            auth !== "signature" ? [s.secretHeader] : []
          ),
        ].sort(),
        `headers for auth=${auth}`,
      );
      const answer = await postRaw(request.url, request.headers, request.body);
      assertEquals(
        [answer.status, answer.json.status],
        [200, "applied"],
        `${auth}/${format}`,
      );

      const forged = await runOnStack("send", [
        ...args,
        "--secret",
        "not-the-stack-secret",
        "--dry-run",
      ]);
      const bad = parseDryRun(forged.stdout);
      const refused = await postRaw(bad.url, bad.headers, bad.body);
      assertEquals(
        [refused.status, refused.json.code],
        [401, "unauthorized"],
        `forged ${auth}`,
      );
      // The printed join was counted once; the forged one changed nothing.
      assertEquals(
        (await roomRow(room)).listener_count,
        1,
        `listeners (${auth})`,
      );
    }
    const room = await createRoom("tools-dry");

    // --json dry runs describe the same request as data.
    const asJson = await runOnStack("send", [
      "room.end.success",
      "--room",
      room,
      "--dry-run",
      "--json",
    ]);
    const parsed = JSON.parse(asJson.stdout);
    assertEquals(parsed.dry_run, true, "dry_run flag");
    assertEquals(
      JSON.parse(parsed.request.body).type,
      "room.end.success",
      "json body",
    );
    assertEquals(
      parsed.request.headers["x-100ms-signature"],
      await sign(parsed.request.body, s.secret),
      "mac",
    );
  },
});

stackTest({
  name:
    "send: a real send moves the count, a retry is a duplicate, a leave undoes it",
  async fn() {
    const room = await createRoom("tools-send");
    const peer = crypto.randomUUID();
    const join = await runOnStack("send", [
      "peer.join.success",
      "--room",
      room,
      "--peer",
      peer,
      "--repeat",
      "2",
      "--json",
    ]);
    assertEquals(join.code, 0, `join exit: ${join.stderr}`);
    const result = JSON.parse(join.stdout);
    assertEquals(result.ok, true, "ok");
    assertEquals(
      result.responses.map((r: Attempt) => r.status),
      [200, 200],
      "statuses",
    );
    assertEquals(
      result.responses.map((r: { body: { status: string } }) => r.body.status),
      ["applied", "duplicate"],
      "first applied, retry duplicate",
    );
    assertEquals(
      result.responses[0].body.room.listener_count,
      1,
      "answer's count",
    );
    assertEquals(await roomRow(room), {
      is_live: true,
      listener_count: 1,
      speaker_count: 0,
    }, "row");

    const leave = await runOnStack("send", [
      "peer.left",
      "--room",
      room,
      "--peer",
      peer,
    ]);
    assertEquals(leave.code, 0, `leave exit: ${leave.stderr}`);
    assertMatch(
      leave.stdout,
      /^→ POST http:\/\/\S+\/functions\/v1\/hms-webhook$/m,
      "request line",
    );
    assertMatch(leave.stdout, /^200 OK in \d+(\.\d)? ms$/m, "status and time");
    assertMatch(leave.stdout, /"status": "applied"/, "pretty JSON answer");
    assertEquals(
      (await roomRow(room)).listener_count,
      0,
      "count after the leave",
    );

    const unknown = await runOnStack("send", [
      "peer.join.success",
      "--room",
      `${room}-nope`,
    ]);
    assertEquals(unknown.code, 0, "ignored is still a 200");
    assertMatch(
      unknown.stdout,
      /"reason": "unknown room"[\s\S]*hint: no rooms row/,
      "hint",
    );

    const forged = await runOnStack("send", [
      "peer.join.success",
      "--room",
      room,
      "--secret",
      "wrong",
    ]);
    assertEquals(forged.code, 1, "a 401 exits 1");
    assertMatch(forged.stdout, /^401 Unauthorized in/m, "401 shown");
    assertEquals(
      (await roomRow(room)).listener_count,
      0,
      "forged join changed nothing",
    );
  },
});

stackTest({
  name:
    "rooms: prints the new rooms in trending order, via REST and via Postgres",
  async fn(s) {
    const featured = await createRoom("tools-featured", true); // base 5
    const busy = await createRoom("tools-busy"); // base 1 after one listener
    const sent = await runOnStack("send", [
      "peer.join.success",
      "--room",
      busy,
    ]);
    assertEquals(sent.code, 0, `send: ${sent.stderr}`);

    const table = await runOnStack("rooms", ["--limit", "1000"]);
    assertEquals(table.code, 0, `rooms exit: ${table.stderr}`);
    const lines = table.stdout.split("\n");
    assertMatch(
      lines[0],
      /^rank {2}room +live {2}listeners {2}speakers {2}featured {2}score now {2}last active$/,
      "header",
    );
    const at = (id: string) => lines.findIndex((l) => l.includes(` ${id} `));
    if (at(featured) < 0 || at(busy) < 0) {
      fail(`rooms output lacks the new rooms:\n${table.stdout}`);
    }
    if (at(featured) > at(busy)) {
      fail(`featured (5 points) should rank above busy (1 point)`);
    }
    assertMatch(
      lines[at(busy)],
      new RegExp(
        `^ *\\d+  ${busy} +yes +1 +0  no +1\\.00  (just now|\\d+s ago)$`,
      ),
      "busy row",
    );
    assertMatch(
      lines[at(featured)],
      new RegExp(`^ *\\d+  ${featured} +no +0 +0  yes +5\\.00  `),
      "featured row",
    );
    // Ranks are consecutive from 1 in printed order.
    const ranks = lines.slice(2).filter((l) => l.trim() !== "").map((l) =>
      Number(l.trim().split(/ +/)[0])
    );
    assertEquals(ranks, ranks.map((_, i) => i + 1), "ranks");

    const direct = await runOnStack("rooms", [
      "--url",
      s.databaseUrl,
      "--json",
      "--limit",
      "1000",
    ]);
    assertEquals(direct.code, 0, `rooms --url exit: ${direct.stderr}`);
    const rows = JSON.parse(direct.stdout) as FeedRow[];
    const ids = rows.map((r) => r.hms_room_id);
    if (
      ids.indexOf(featured) < 0 || ids.indexOf(featured) > ids.indexOf(busy)
    ) fail("postgres order");
    assertEquals(
      rows.find((r) => r.hms_room_id === busy)?.listener_count,
      1,
      "postgres row",
    );

    const live = await runOnStack("rooms", [
      "--live",
      "--json",
      "--limit",
      "1000",
    ]);
    const liveIds = (JSON.parse(live.stdout) as FeedRow[]).map((r) =>
      r.hms_room_id
    );
    assertEquals([liveIds.includes(busy), liveIds.includes(featured)], [
      true,
      false,
    ], "--live");
  },
});

stackTest({
  name:
    "demo: the whole story runs through the function and its final counts check out",
  async fn() {
    const started = performance.now();
    const demo = await runOnStack("demo", ["--fast"], 120_000);
    const seconds = (performance.now() - started) / 1000;
    if (demo.code !== 0) {
      fail(`demo exit ${demo.code}:\n${demo.stdout}\n${demo.stderr}`);
    }
    assertMatch(
      demo.stdout,
      /OK: every answer and the final counts match the story/,
      "verdict",
    );
    assertMatch(
      demo.stdout,
      /✓ Noor joins tech \(retry, same id\) +200 duplicate/,
      "duplicate",
    );
    assertMatch(
      demo.stdout,
      /✓ forged join \(wrong secret\) +401 unauthorized/,
      "forged",
    );
    assertMatch(demo.stdout, /\[10\/10\] The app features jazz/, "all steps");
    if (demo.stdout.includes("✗")) fail(`a step failed:\n${demo.stdout}`);
    if (seconds > 30) fail(`demo took ${seconds.toFixed(1)} s`);
  },
});
