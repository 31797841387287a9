/**
 * The public webhook URL under attack, end to end: forged, replayed, oversized and malformed
 * requests, and broken configurations. Each refusal must have the documented status and JSON
 * error, show no internals or secrets, and write nothing (every table's rows and the room row are
 * compared before and after); the instance must keep applying valid events afterwards, and its
 * log must have exactly one JSON line per request without secrets, header values or the body.
 */

import {
  buildEvent,
  type BuiltEvent,
  type EventOptions,
  headersFor,
  nowNanos,
  objectId,
  sign,
  SIGNATURE_HEADER,
  uuid,
} from "../scripts/lib/hms.ts";
import { generateSecret } from "../scripts/stack/main.ts";
import type { FunctionProcess } from "../scripts/stack/function.ts";
import { assert } from "./helpers/assert.ts";
import {
  assertNothingWritten,
  createRoom,
  roomRow,
  snapshot,
} from "./helpers/db.ts";
import {
  assertNoLeak,
  assertRefused,
  type Body,
  changeHexDigit,
  chunkedBody,
  type Outgoing,
  type Refusal,
  type Reply,
  send,
  swapCase,
  TABLES,
  waitForLogs,
} from "./helpers/security.ts";
import { shuffle } from "./helpers/histories.ts";
import { stackTest, type TestStack } from "./helpers/stack.ts";
import { assertOutcome, deliver, S } from "./helpers/webhook.ts";

const MINUTE = 60n * S;
const LIMIT = 65_536;

// Secrets that no configured instance of this file knows, except where a test says so.
const OLD_SECRET = generateSecret();
const THIRD_SECRET = generateSecret();

/** Everything a response or log line must never contain. */
function secretsOf(stack: TestStack): string[] {
  return [
    stack.secret,
    stack.serviceKey,
    stack.anonKey,
    OLD_SECRET,
    THIRD_SECRET,
  ];
}

/** A join for a fresh peer in `roomId`, happening now unless `options` say otherwise. */
function join(roomId: string, options: EventOptions = {}): BuiltEvent {
  return buildEvent("peer.join.success", {
    roomId,
    role: "listener",
    at: nowNanos() - S,
    ...options,
  });
}

/** Headers proving the body by signature only (so a bad signature is not rescued by the header). */
async function signed(
  body: string | Uint8Array,
  secret: string,
): Promise<Record<string, string>> {
  return await headersFor(body, { secret, auth: "signature" });
}

/** Sends `request` and asserts a clean refusal that wrote nothing. */
async function refused(
  stack: TestStack,
  url: string,
  label: string,
  roomIds: string[],
  request: Outgoing,
  expected: Refusal,
): Promise<Reply> {
  return await assertNothingWritten(stack.sql, roomIds, label, async () => {
    const reply = await send(url, request);
    assertRefused(reply, expected, secretsOf(stack), label);
    return reply;
  });
}

/** `event` as a request proven by signature only. */
async function signedRequest(
  event: BuiltEvent,
  secret: string,
): Promise<Outgoing> {
  return { headers: await signed(event.body, secret), body: event.body };
}

/**
 * Sends a valid event (by default signed with the stack's secret) and asserts it was applied:
 * one more listener in its room.
 */
async function applied(
  stack: TestStack,
  url: string,
  label: string,
  event: BuiltEvent,
  request?: Outgoing,
): Promise<void> {
  request ??= await signedRequest(event, stack.secret);
  const roomId = event.payload.data
    ? (event.payload.data as Record<string, string>).room_id
    : event.payload.room_id as string;
  const before = await roomRow(stack.sql, roomId);
  assert.ok(before !== null, `${label}: room ${roomId} exists`);
  const reply = await send(url, request);
  assert.equal(reply.status, 200, `${label}: ${reply.text}`);
  assert.equal(reply.json?.status, "applied", `${label}: ${reply.text}`);
  assert.equal(reply.json?.event_id, event.id, label);
  assertNoLeak(reply.text, secretsOf(stack), label);
  const after = await roomRow(stack.sql, roomId);
  assert.equal(after?.listeners, before.listeners + 1, `${label}: listeners`);
}

/** The instance is not poisoned: a valid signed join for a new room still applies. */
async function stillApplies(
  stack: TestStack,
  url: string,
  secret = stack.secret,
): Promise<void> {
  const event = join(await createRoom(stack.sql));
  await applied(
    stack,
    url,
    `valid event after the refusals (${url})`,
    event,
    await signedRequest(event, secret),
  );
}

/** Starts extra instances at once (each is a Deno process; starting them serially is slow). */
async function instances(
  stack: TestStack,
  envs: Record<string, string | undefined>[],
): Promise<FunctionProcess[]> {
  return await Promise.all(envs.map((env) => stack.startFunction({ env })));
}

// ---------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------

interface AuthCase {
  name: string;
  /** Headers for the (valid, fresh) event body. */
  headers: (body: string, s: TestStack) => Promise<Record<string, string>>;
  /** What goes on the wire instead of the signed body (a change in transit). */
  transit?: (body: string) => string;
  /** A refusal, or "applied" for the positive controls. */
  expect: Refusal | "applied";
}

const UNAUTHORIZED: Refusal = { status: 401, code: "unauthorized" };
const JSON_TYPE = { "content-type": "application/json" };

const AUTH_CASES: AuthCase[] = [
  {
    name: "no auth headers",
    headers: () => Promise.resolve({ ...JSON_TYPE }),
    expect: { ...UNAUTHORIZED, mentions: ["missing"] },
  },
  {
    name: "wrong secret header",
    headers: (_, s) =>
      Promise.resolve({ ...JSON_TYPE, [s.secretHeader]: THIRD_SECRET }),
    expect: { ...UNAUTHORIZED, mentions: ["invalid"] },
  },
  {
    name: "right header name, value in the wrong case",
    headers: (_, s) => {
      const value = swapCase(s.secret);
      assert.notEqual(value, s.secret, "the stack secret has letters");
      return Promise.resolve({ ...JSON_TYPE, [s.secretHeader]: value });
    },
    expect: { ...UNAUTHORIZED, mentions: ["invalid"] },
  },
  {
    name: "empty secret header",
    headers: (_, s) => Promise.resolve({ ...JSON_TYPE, [s.secretHeader]: "" }),
    expect: UNAUTHORIZED,
  },
  {
    name: "secret sent as a bearer token",
    headers: (_, s) =>
      Promise.resolve({ ...JSON_TYPE, authorization: `Bearer ${s.secret}` }),
    expect: { ...UNAUTHORIZED, mentions: ["missing"] },
  },
  {
    name: "Supabase anon key as bearer token and apikey",
    headers: (_, s) =>
      Promise.resolve({
        ...JSON_TYPE,
        authorization: `Bearer ${s.anonKey}`,
        apikey: s.anonKey,
      }),
    expect: { ...UNAUTHORIZED, mentions: ["missing"] },
  },
  {
    name: "signature of another body",
    headers: async (body, s) => ({
      ...JSON_TYPE,
      [SIGNATURE_HEADER]: await sign(
        body.replace("listener", "speaker"),
        s.secret,
      ),
    }),
    expect: { ...UNAUTHORIZED, mentions: ["invalid"] },
  },
  {
    name: "signature with one hex digit changed",
    headers: async (body, s) => ({
      ...JSON_TYPE,
      [SIGNATURE_HEADER]: changeHexDigit(await sign(body, s.secret), 17),
    }),
    expect: { ...UNAUTHORIZED, mentions: ["invalid"] },
  },
  {
    name: "truncated signature",
    headers: async (body, s) => ({
      ...JSON_TYPE,
      [SIGNATURE_HEADER]: (await sign(body, s.secret)).slice(0, 62),
    }),
    expect: { ...UNAUTHORIZED, mentions: ["invalid"] },
  },
  {
    name: "empty signature",
    headers: () => Promise.resolve({ ...JSON_TYPE, [SIGNATURE_HEADER]: "" }),
    expect: UNAUTHORIZED,
  },
  {
    name: "two signatures in one header",
    headers: async (body, s) => {
      const sig = await sign(body, s.secret);
      return { ...JSON_TYPE, [SIGNATURE_HEADER]: `${sig}, ${sig}` };
    },
    expect: { ...UNAUTHORIZED, mentions: ["invalid"] },
  },
  {
    name: "signature by a secret the function does not know",
    headers: (body) => signed(body, THIRD_SECRET),
    expect: { ...UNAUTHORIZED, mentions: ["invalid"] },
  },
  {
    name: "valid signature, body gained a trailing newline in transit",
    headers: (body, s) => signed(body, s.secret),
    transit: (body) => `${body}\n`,
    expect: { ...UNAUTHORIZED, mentions: ["invalid"] },
  },
  {
    name: "valid signature with a sha256= prefix (accepted)",
    headers: async (body, s) => ({
      ...JSON_TYPE,
      [SIGNATURE_HEADER]: `sha256=${await sign(body, s.secret)}`,
    }),
    expect: "applied",
  },
  {
    name: "valid signature in uppercase hex (accepted)",
    headers: async (body, s) => ({
      ...JSON_TYPE,
      [SIGNATURE_HEADER]: (await sign(body, s.secret)).toUpperCase(),
    }),
    expect: "applied",
  },
];

stackTest({
  name:
    "auth: forged or missing credentials are refused, valid variants accepted",
  async fn(stack, t) {
    const snap = await snapshot(stack.sql);
    for (const table of TABLES) {
      assert.ok(table in snap, `the write guard covers ${table}`);
    }
    const roomId = await createRoom(stack.sql);
    for (const c of AUTH_CASES) {
      await t.step(c.name, async () => {
        const event = join(roomId);
        const headers = await c.headers(event.body, stack);
        const body = c.transit ? c.transit(event.body) : event.body;
        if (c.expect === "applied") {
          await applied(stack, stack.functionUrl, c.name, event, {
            headers,
            body,
          });
        } else {
          await refused(stack, stack.functionUrl, c.name, [roomId], {
            headers,
            body,
          }, c.expect);
        }
      });
    }
    await t.step(
      "the instance still applies valid events",
      () => stillApplies(stack, stack.functionUrl),
    );
  },
});

stackTest({
  name: "auth: signature-only mode, rotation, and fail-closed configurations",
  async fn(stack, t) {
    const [sigOnly, rotating, unset, spaced, newline] = await instances(stack, [
      { HMS_WEBHOOK_AUTH: "signature" },
      { HMS_WEBHOOK_SECRET_PREVIOUS: OLD_SECRET },
      { HMS_WEBHOOK_SECRET: undefined },
      { HMS_WEBHOOK_SECRET: `${stack.secret} ` },
      { HMS_WEBHOOK_SECRET: `${stack.secret}\n` },
    ]);
    try {
      const roomId = await createRoom(stack.sql);

      await t.step(
        "HMS_WEBHOOK_AUTH=signature: the secret header alone is refused",
        async () => {
          const event = join(roomId);
          await refused(stack, sigOnly.url, "header only", [roomId], {
            headers: await headersFor(event.body, {
              secret: stack.secret,
              auth: "header",
              headerName: stack.secretHeader,
            }),
            body: event.body,
          }, { ...UNAUTHORIZED, mentions: ["missing"] });
          const good = join(roomId);
          await applied(stack, sigOnly.url, "signed", good);
        },
      );

      await t.step(
        "rotation: the previous secret works by header and signature, a third does not",
        async () => {
          for (const auth of ["header", "signature"] as const) {
            const old = join(roomId);
            await applied(
              stack,
              rotating.url,
              `previous secret by ${auth}`,
              old,
              {
                headers: await headersFor(old.body, {
                  secret: OLD_SECRET,
                  auth,
                  headerName: stack.secretHeader,
                }),
                body: old.body,
              },
            );
            const third = join(roomId);
            await refused(stack, rotating.url, `third secret by ${auth}`, [
              roomId,
            ], {
              headers: await headersFor(third.body, {
                secret: THIRD_SECRET,
                auth,
                headerName: stack.secretHeader,
              }),
              body: third.body,
            }, { ...UNAUTHORIZED, mentions: ["invalid"] });
          }
          // The stack's own instance does not know the old secret.
          const old = join(roomId);
          await refused(
            stack,
            stack.functionUrl,
            "previous secret, no rotation configured",
            [roomId],
            {
              headers: await signed(old.body, OLD_SECRET),
              body: old.body,
            },
            UNAUTHORIZED,
          );
        },
      );

      const misconfigured: Refusal = {
        status: 500,
        code: "misconfigured",
        mentions: ["HMS_WEBHOOK_SECRET"],
      };
      // Each broken instance with the value it was given: signing with exactly that value
      // must not help, nor must the value the operator meant.
      const cases: [string, FunctionProcess, string][] = [
        ["secret unset", unset, stack.secret],
        ["secret with a trailing space", spaced, `${stack.secret} `],
        ["secret with a trailing newline", newline, `${stack.secret}\n`],
      ];
      for (const [name, fn, configured] of cases) {
        await t.step(
          `${name}: every request gets 500 misconfigured`,
          async () => {
            const e1 = join(roomId);
            const e2 = join(roomId);
            const requests: [string, Outgoing][] = [
              ["event signed with the intended secret", {
                headers: await headersFor(e1.body, {
                  secret: stack.secret,
                  headerName: stack.secretHeader,
                }),
                body: e1.body,
              }],
              ["event signed with the configured value", {
                headers: await signed(e2.body, configured),
                body: e2.body,
              }],
              ["unauthenticated garbage", { headers: JSON_TYPE, body: "{" }],
              ["GET", { method: "GET" }],
              ["OPTIONS", { method: "OPTIONS" }],
            ];
            for (const [label, request] of requests) {
              await refused(
                stack,
                fn.url,
                `${name}, ${label}`,
                [roomId],
                request,
                misconfigured,
              );
            }
            const logs = await waitForLogs(fn, requests.length);
            for (const [i, entry] of logs.entries.entries()) {
              assert.equal(entry.code, "misconfigured", logs.raw[i]);
              assert.equal(entry.status, 500, logs.raw[i]);
              assert.ok(
                logs.raw[i].includes("HMS_WEBHOOK_SECRET"),
                `the log line names the variable: ${logs.raw[i]}`,
              );
              assertNoLeak(logs.raw[i], secretsOf(stack), `${name} log`);
            }
            for (const line of logs.other) {
              assertNoLeak(line, secretsOf(stack), `${name} output`);
            }
          },
        );
      }

      await t.step(
        "the working instances still apply valid events",
        async () => {
          await stillApplies(stack, sigOnly.url);
          await stillApplies(stack, rotating.url);
          await stillApplies(stack, rotating.url, OLD_SECRET);
        },
      );
    } finally {
      await Promise.all(
        [sigOnly, rotating, unset, spaced, newline].map((f) => f.stop()),
      );
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Freshness (replays)
// ---------------------------------------------------------------------------------------------

stackTest({
  name:
    "freshness: stale and future events are refused, the tolerance is honoured",
  async fn(stack, t) {
    const [noTolerance] = await instances(stack, [
      { HMS_TIMESTAMP_TOLERANCE_SECONDS: "0" },
    ]);
    try {
      const roomId = await createRoom(stack.sql);
      const stale: Refusal = { status: 401, code: "stale_timestamp" };
      const refusedAt: [string, EventOptions][] = [
        ["16 minutes old", { at: nowNanos() - 16n * MINUTE }],
        ["3 minutes in the future", { at: nowNanos() + 3n * MINUTE }],
        ["legacy flat format, 16 minutes old", {
          format: "flat",
          at: nowNanos() - 16n * MINUTE,
        }],
      ];
      for (const [name, options] of refusedAt) {
        await t.step(`${name} -> 401 stale_timestamp`, async () => {
          const event = join(roomId, options);
          await refused(stack, stack.functionUrl, name, [roomId], {
            headers: await signed(event.body, stack.secret),
            body: event.body,
          }, stale);
        });
      }

      await t.step("14 minutes old -> applied", async () => {
        const event = join(roomId, { at: nowNanos() - 14n * MINUTE });
        await applied(stack, stack.functionUrl, "14 minutes old", event);
      });

      await t.step(
        "a captured request replayed within the tolerance -> duplicate, nothing written",
        async () => {
          const event = join(roomId, { at: nowNanos() - 5n * MINUTE });
          const request = await signedRequest(event, stack.secret);
          await applied(stack, stack.functionUrl, "original", event, request);
          const replay = await assertNothingWritten(
            stack.sql,
            [roomId],
            "replay",
            () => send(stack.functionUrl, request),
          );
          assertOutcome(replay, "duplicate");
        },
      );

      await t.step(
        "a 30-day-old event: refused by default, applied with tolerance 0",
        async () => {
          const event = join(roomId, {
            at: nowNanos() - 30n * 24n * 60n * MINUTE,
          });
          const request = await signedRequest(event, stack.secret);
          await refused(
            stack,
            stack.functionUrl,
            "30 days old",
            [roomId],
            request,
            stale,
          );
          await applied(
            stack,
            noTolerance.url,
            "30 days old, tolerance 0",
            event,
            request,
          );
        },
      );

      await t.step("the instances still apply valid events", async () => {
        await stillApplies(stack, stack.functionUrl);
        await stillApplies(stack, noTolerance.url);
      });
    } finally {
      await noTolerance.stop();
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Limits: method and size
// ---------------------------------------------------------------------------------------------

/** A valid join whose body is exactly `size` bytes (padded in `user_data`, which is not read). */
function joinOfSize(roomId: string, size: number): BuiltEvent {
  // Same ids and time for both builds, so that only the padding changes the length.
  const fixed = { id: uuid(), peerId: uuid(), at: nowNanos() - S };
  const bare = join(roomId, { ...fixed, userData: "" });
  const padding = size - new TextEncoder().encode(bare.body).length;
  assert.ok(padding >= 0, `a join fits in ${size} bytes`);
  const event = join(roomId, { ...fixed, userData: "x".repeat(padding) });
  assert.equal(
    new TextEncoder().encode(event.body).length,
    size,
    "padded size",
  );
  return event;
}

stackTest({
  name:
    "limits: methods other than POST, oversized and endless bodies are refused",
  async fn(stack, t) {
    const url = stack.functionUrl;
    const roomId = await createRoom(stack.sql);

    for (const method of ["GET", "PUT", "DELETE", "PATCH"]) {
      await t.step(`${method} -> 405 with Allow: POST`, async () => {
        const event = join(roomId);
        const body = method === "GET" ? undefined : event.body;
        const reply = await refused(stack, url, method, [roomId], {
          method,
          headers: body ? await signed(body, stack.secret) : {},
          body,
        }, { status: 405, code: "method_not_allowed", mentions: ["POST"] });
        assert.equal(reply.headers.get("allow"), "POST", `${method} Allow`);
      });
    }

    await t.step("OPTIONS -> 204 with Allow", async () => {
      const reply = await assertNothingWritten(
        stack.sql,
        [roomId],
        "OPTIONS",
        () => send(url, { method: "OPTIONS" }),
      );
      assert.equal(reply.status, 204, reply.text);
      assert.equal(reply.text, "", "no body");
      assert.match(reply.headers.get("allow") ?? "", /\bPOST\b/);
    });

    const tooLarge: Refusal = {
      status: 413,
      code: "payload_too_large",
      mentions: [String(LIMIT)],
    };

    await t.step("64 KiB + 1, signed -> 413", async () => {
      const event = joinOfSize(roomId, LIMIT + 1);
      await refused(stack, url, "64 KiB + 1", [roomId], {
        headers: await signed(event.body, stack.secret),
        body: event.body,
      }, tooLarge);
    });

    await t.step(
      "chunked body over the limit (no Content-Length), signed -> 413",
      async () => {
        const event = joinOfSize(roomId, 2 * LIMIT);
        const bytes = new TextEncoder().encode(event.body);
        await refused(stack, url, "chunked", [roomId], {
          headers: await signed(bytes, stack.secret),
          body: chunkedBody(bytes),
        }, tooLarge);
      },
    );

    await t.step(
      "a body that never ends -> 413 without reading it all",
      async () => {
        // Endless until the answer arrives, then closed so that it does not run on; paced so
        // that pumping it does not starve the other processes on a small machine.
        let sent = 0;
        let answered = false;
        const endless = new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (answered) return controller.close();
            await new Promise((r) => setTimeout(r, 1));
            sent += 16_384;
            controller.enqueue(new Uint8Array(16_384).fill(0x20));
          },
        });
        try {
          await refused(stack, url, "endless", [roomId], {
            headers: { ...JSON_TYPE, [SIGNATURE_HEADER]: "0".repeat(64) },
            body: endless,
          }, tooLarge);
        } finally {
          answered = true;
        }
        assert.ok(sent > LIMIT, "the stream went past the limit");
      },
    );

    await t.step(
      "exactly 64 KiB, signed -> applied (not refused for size)",
      async () => {
        const event = joinOfSize(roomId, LIMIT);
        await applied(stack, url, "exactly at the limit", event);
      },
    );

    await t.step(
      "the instance still applies valid events",
      () => stillApplies(stack, url),
    );
  },
});

// ---------------------------------------------------------------------------------------------
// Malformed bodies (signed correctly, so that parsing is what refuses them)
// ---------------------------------------------------------------------------------------------

type Payload = Record<string, unknown>;
type Data = Record<string, unknown>;

/** A fresh valid join's JSON value for `roomId`, changed by `edit`. */
function edited(roomId: string, edit: (p: Payload, d: Data) => void): string {
  const payload = structuredClone(join(roomId).payload);
  edit(payload, payload.data as Data);
  return JSON.stringify(payload);
}

/** `text` as bytes with `bytes` spliced in where `marker` was. */
function splice(text: string, marker: string, bytes: number[]): Uint8Array {
  const at = text.indexOf(marker);
  assert.ok(at >= 0, `marker ${marker} present`);
  const enc = new TextEncoder();
  return new Uint8Array([
    ...enc.encode(text.slice(0, at)),
    ...bytes,
    ...enc.encode(text.slice(at + marker.length)),
  ]);
}

const nested = (depth: number) => `${"[".repeat(depth)}${"]".repeat(depth)}`;
const bad = (code: string, ...mentions: string[]): Refusal => ({
  status: 400,
  code,
  mentions,
});

interface MalformedCase {
  name: string;
  body: (roomId: string) => string | Uint8Array;
  expect: Refusal | { ignored: string };
}

const MALFORMED: MalformedCase[] = [
  { name: "empty body", body: () => "", expect: bad("empty_body", "empty") },
  {
    name: "not JSON",
    body: () => "room_id=1&type=peer.join.success",
    expect: bad("invalid_json", "JSON"),
  },
  {
    name: "invalid UTF-8 bytes",
    body: (r) =>
      splice(edited(r, (_, d) => (d.user_name = "@@")), "@@", [0xff, 0xfe]),
    expect: bad("invalid_utf8", "UTF-8"),
  },
  {
    name: "JSON array",
    body: (r) => `[${join(r).body}]`,
    expect: bad("not_an_object", "object"),
  },
  {
    name: "JSON string",
    body: (r) => JSON.stringify(join(r).body),
    expect: bad("not_an_object", "object"),
  },
  {
    name: "missing type",
    body: (r) => edited(r, (p) => delete p.type),
    expect: bad("missing_field", "type"),
  },
  {
    name: "missing id",
    body: (r) => edited(r, (p) => delete p.id),
    expect: bad("missing_field", "id"),
  },
  {
    name: "missing data",
    body: (r) => edited(r, (p) => delete p.data),
    expect: bad("missing_field", "data"),
  },
  {
    name: "data is not an object",
    body: (r) => edited(r, (p) => (p.data = r)),
    expect: bad("invalid_field", "data"),
  },
  {
    name: "missing data.room_id on a handled type",
    body: (r) => edited(r, (_, d) => delete d.room_id),
    expect: bad("missing_field", "data.room_id"),
  },
  {
    name: "room_id is a number",
    body: (r) => edited(r, (_, d) => (d.room_id = 12345)),
    expect: bad("invalid_field", "data.room_id"),
  },
  {
    name: "id of 257 bytes",
    body: (r) => edited(r, (p) => (p.id = "a".repeat(257))),
    expect: bad("field_too_long", "id"),
  },
  {
    name: 'timestamp "yesterday"',
    body: (r) => edited(r, (p) => (p.timestamp = "yesterday")),
    expect: bad("invalid_timestamp", "timestamp"),
  },
  {
    name: "joined_at is an impossible date",
    body: (r) => edited(r, (_, d) => (d.joined_at = "2024-02-30T10:00:00Z")),
    expect: bad("invalid_timestamp", "data.joined_at"),
  },
  // Nesting beyond the parser's depth limit may be refused for its depth (invalid_json) or,
  // by a parser that skips it, for its shape: both are clean 400s.
  {
    name: "10,000 nested arrays as the body",
    body: () => nested(10_000),
    expect: { status: 400, code: ["invalid_json", "not_an_object"] },
  },
  {
    name: "10,000 unclosed [",
    body: () => "[".repeat(10_000),
    expect: bad("invalid_json", "JSON"),
  },
  {
    name: "10,000 nested arrays as data.room_id",
    body: (r) =>
      edited(r, (_, d) => (d.room_id = "@@")).replace('"@@"', nested(10_000)),
    expect: { status: 400, code: ["invalid_json", "invalid_field"] },
  },
  {
    name: "10,000 nested arrays in a field the function does not read",
    body: (r) =>
      edited(r, (_, d) => (d.user_data = "@@")).replace('"@@"', nested(10_000)),
    expect: { status: 400, code: "invalid_json", mentions: ["JSON"] },
  },
  {
    name: "duplicate keys (a second data.room_id)",
    body: (r) =>
      edited(r, (_, d) => (d.room_id = "@@")).replace(
        '"room_id":"@@"',
        `"room_id":"${r}","room_id":"${objectId()}"`,
      ),
    expect: bad("invalid_json", "room_id"),
  },
  {
    name: "a 60 KB string in data.peer_id",
    body: (r) => edited(r, (_, d) => (d.peer_id = "p".repeat(60_000))),
    expect: bad("field_too_long", "data.peer_id"),
  },
  {
    name: "a raw NUL byte inside a string",
    body: (r) => splice(edited(r, (_, d) => (d.peer_id = "a@@b")), "@@", [0]),
    expect: bad("invalid_json", "JSON"),
  },
  // PostgreSQL text cannot hold NUL: a string the function passes on must be refused here,
  // not turned into a database error (503, which 100ms would retry for ever).
  ...([
    ["id", (p: Payload) => (p.id = `${p.id}\u0000`)],
    [
      "data.room_id",
      (_: Payload, d: Data) => (d.room_id = `${d.room_id}\u0000`),
    ],
    ["data.peer_id", (_: Payload, d: Data) => (d.peer_id = "peer\u0000one")],
    ["data.session_id", (_: Payload, d: Data) => (d.session_id = "\u0000")],
    ["data.role", (_: Payload, d: Data) => (d.role = "listener\u0000")],
  ] as const).map(([field, edit]): MalformedCase => ({
    name: `an escaped NUL (\\u0000) in ${field}`,
    body: (r) => edited(r, edit),
    expect: bad("invalid_field", field),
  })),
  {
    name: "a lone surrogate escape (\\ud800) in data.peer_id",
    body: (r) =>
      edited(r, (_, d) => (d.peer_id = "@@")).replace("@@", "a\\ud800b"),
    expect: bad("invalid_json", "JSON"),
  },
  {
    name: "a byte order mark before the JSON",
    body: (r) => `\ufeff${join(r).body}`,
    expect: bad("invalid_json", "JSON"),
  },
  {
    name: "two JSON documents in one body",
    body: (r) => `${join(r).body}${join(r).body}`,
    expect: bad("invalid_json", "JSON"),
  },
  {
    name: "legacy flat format without peer.id",
    body: (r) => {
      const flat = join(r, { format: "flat" }).payload;
      delete (flat.peer as Data).id;
      return JSON.stringify(flat);
    },
    expect: bad("missing_field", "peer.id"),
  },
  {
    name: "unknown event type with a valid envelope",
    body: (r) => edited(r, (p) => (p.type = "beam.started.success")),
    expect: { ignored: "event type not handled" },
  },
  {
    name: "failure event",
    body: (r) => edited(r, (p) => (p.type = "peer.join.failure")),
    expect: { ignored: "failure event" },
  },
];

stackTest({
  name:
    "malformed: every broken body is a 400 naming the field, and writes nothing",
  async fn(stack, t) {
    const url = stack.functionUrl;
    const roomId = await createRoom(stack.sql);
    for (const c of MALFORMED) {
      await t.step(c.name, async () => {
        const body: Body = c.body(roomId);
        const request = { headers: await signed(body, stack.secret), body };
        const expect = c.expect;
        if ("ignored" in expect) {
          const reply = await assertNothingWritten(
            stack.sql,
            [roomId],
            c.name,
            () => send(url, request),
          );
          assertOutcome(reply, "ignored");
          assert.equal(reply.json?.reason, expect.ignored, reply.text);
          assertNoLeak(reply.text, secretsOf(stack), c.name);
        } else {
          await refused(stack, url, c.name, [roomId], request, expect);
        }
      });
    }
    await t.step(
      "the instance still applies valid events",
      () => stillApplies(stack, url),
    );
  },
});

// ---------------------------------------------------------------------------------------------
// Robustness: garbage and valid traffic at once
// ---------------------------------------------------------------------------------------------

/**
 * Garbage aimed at `roomId`: every kind would add a listener if it were wrongly applied (a new
 * peer each time), so the final count proves none was.
 */
async function garbage(
  stack: TestStack,
  roomId: string,
  sessionId: string,
  i: number,
): Promise<{ request: Outgoing; status: number }> {
  const event = join(roomId, { sessionId });
  const body = event.body;
  switch (i % 6) {
    case 0:
      return { request: { headers: JSON_TYPE, body }, status: 401 };
    case 1:
      return {
        request: { headers: await signed(body, THIRD_SECRET), body },
        status: 401,
      };
    case 2: {
      const broken = body.replace('"room_id"', '"room_idx"');
      return {
        request: { headers: await signed(broken, stack.secret), body: broken },
        status: 400,
      };
    }
    case 3: {
      const big = joinOfSize(roomId, LIMIT + 1 + i);
      return {
        request: {
          headers: await signed(big.body, stack.secret),
          body: big.body,
        },
        status: 413,
      };
    }
    case 4: {
      const old = join(roomId, { sessionId, at: nowNanos() - 20n * MINUTE });
      return {
        request: {
          headers: await signed(old.body, stack.secret),
          body: old.body,
        },
        status: 401,
      };
    }
    default:
      return {
        request: { method: "PUT", headers: JSON_TYPE, body },
        status: 405,
      };
  }
}

stackTest({
  name:
    "robustness: 50 garbage requests interleaved with 20 valid ones -> the 20 apply exactly",
  async fn(stack) {
    const url = stack.functionUrl;
    const roomId = await createRoom(stack.sql);
    const sessionId = objectId();
    const valid = Array.from({ length: 20 }, () => join(roomId, { sessionId }));
    const junk = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) => garbage(stack, roomId, sessionId, i),
      ),
    );
    const requests = shuffle([
      ...await Promise.all(valid.map(async (e) => ({
        request: await signedRequest(e, stack.secret),
        status: 200,
      }))),
      ...junk,
    ], Math.random);
    const before = await snapshot(stack.sql);
    const replies = await Promise.all(
      requests.map((r) => send(url, r.request)),
    );
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.status, requests[i].status, reply.text);
      if (reply.status === 200) {
        assert.equal(reply.json?.status, "applied", reply.text);
      } else {
        assert.equal(reply.json?.status, "error", reply.text);
        assertNoLeak(reply.text, secretsOf(stack), `garbage ${i}`);
      }
    }
    const row = await roomRow(stack.sql, roomId);
    assert.equal(row?.listeners, 20, "exactly the 20 valid joins count");
    assert.equal(row?.speakers, 0);
    const ledger = await stack.sql<{ event_id: string }[]>`
      select e.event_id from hms_private.events e join public.rooms r on r.id = e.room_id
      where r.hms_room_id = ${roomId}`;
    assert.deepEqual(
      ledger.map((r) => r.event_id).sort(),
      valid.map((e) => e.id).sort(),
      "the ledger holds exactly the valid events",
    );
    const after = await snapshot(stack.sql);
    assert.equal(
      after["hms_private.events"].rows,
      before["hms_private.events"].rows + 20,
      "ledger rows",
    );
    assert.equal(
      after["hms_private.presence"].rows,
      before["hms_private.presence"].rows + 20,
      "presence rows",
    );
    assert.equal(
      after["hms_private.sessions"].rows,
      before["hms_private.sessions"].rows + 1,
      "session rows",
    );
    assert.equal(after.rooms.rows, before.rooms.rows, "no room created");
    assert.deepEqual(
      after.hms_settings,
      before.hms_settings,
      "settings untouched",
    );
  },
});

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

/** One request of the log scenario and what its log line must say. */
interface Logged {
  label: string;
  reply: Reply;
  outcome: string;
  code: string | null;
  /** The event the line must name (ids, type, room), when the body got that far. */
  event?: BuiltEvent;
}

/** A mix of valid and invalid requests; returns them with the expected log facts. */
async function logScenario(
  stack: TestStack,
  fn: FunctionProcess,
  canaries: { header: string; body: string },
): Promise<{ sent: Logged[]; values: string[] }> {
  const roomId = await createRoom(stack.sql);
  const extra = {
    "x-request-canary": canaries.header,
    "user-agent": canaries.header,
  };
  const event = join(roomId, { userData: canaries.body });
  const both = {
    ...await headersFor(event.body, {
      secret: stack.secret,
      headerName: stack.secretHeader,
    }),
    ...extra,
  };
  const unknown = buildEvent("recording.success", { roomId });
  const forged = join(roomId, { userData: canaries.body });
  const forgedSig = await sign(forged.body, THIRD_SECRET);
  const broken = edited(roomId, (_, d) => {
    delete d.room_id;
    d.user_data = canaries.body;
  });
  const stale = join(roomId, {
    at: nowNanos() - 30n * MINUTE,
    userData: canaries.body,
  });
  const big = joinOfSize(roomId, LIMIT + 100);
  const withExtra = async (body: string) => ({
    ...await signed(body, stack.secret),
    ...extra,
  });

  const plan: [string, Outgoing, string, string | null, BuiltEvent?][] = [
    ["applied", { headers: both, body: event.body }, "applied", null, event],
    [
      "duplicate",
      { headers: both, body: event.body },
      "duplicate",
      null,
      event,
    ],
    [
      "ignored",
      { headers: await withExtra(unknown.body), body: unknown.body },
      "ignored",
      null,
      unknown,
    ],
    [
      "forged",
      {
        headers: { ...JSON_TYPE, [SIGNATURE_HEADER]: forgedSig, ...extra },
        body: forged.body,
      },
      "rejected",
      "unauthorized",
    ],
    [
      "malformed",
      { headers: await withExtra(broken), body: broken },
      "rejected",
      "missing_field",
    ],
    [
      "stale",
      { headers: await withExtra(stale.body), body: stale.body },
      "rejected",
      "stale_timestamp",
      stale,
    ],
    [
      "GET",
      { method: "GET", headers: extra },
      "rejected",
      "method_not_allowed",
    ],
    [
      "too large",
      { headers: await withExtra(big.body), body: big.body },
      "rejected",
      "payload_too_large",
    ],
  ];
  const sent: Logged[] = [];
  for (const [label, request, outcome, code, named] of plan) {
    const reply = await send(fn.url, request);
    sent.push({ label, reply, outcome, code, event: named });
  }
  const headerValues = plan.flatMap(([, request]) =>
    Object.entries(request.headers ?? {})
      .filter(([name]) => name !== "content-type")
      .map(([, value]) => value as string)
  );
  return {
    sent,
    values: [
      ...secretsOf(stack),
      ...headerValues,
      forgedSig,
      canaries.body,
      event.body,
    ],
  };
}

/** The checks shared by the plain and the debug log. */
function checkLines(
  sent: Logged[],
  values: string[],
  logs: Awaited<ReturnType<typeof waitForLogs>>,
  debug: boolean,
) {
  for (const line of logs.other) {
    // Deno's own startup line is the only non-JSON output allowed.
    assert.match(line, /^Listening on https?:\/\//, "unexpected output");
  }
  for (const [i, entry] of logs.entries.entries()) {
    const { label, reply, outcome, code, event } = sent[i];
    const raw = logs.raw[i];
    assert.equal(entry.msg, "webhook", raw);
    for (
      const key of [
        "event_id",
        "type",
        "room_id",
        "outcome",
        "status",
        "code",
        "ms",
      ]
    ) {
      assert.ok(key in entry, `${label}: log line has ${key}: ${raw}`);
    }
    assert.equal(entry.status, reply.status, `${label}: ${raw}`);
    assert.equal(entry.outcome, outcome, `${label}: ${raw}`);
    assert.equal(entry.code, code, `${label}: ${raw}`);
    assert.ok(
      typeof entry.ms === "number" && entry.ms >= 0,
      `${label}: ms ${raw}`,
    );
    if (event !== undefined) {
      assert.equal(entry.event_id, event.id, `${label}: ${raw}`);
      assert.equal(entry.type, event.type, `${label}: ${raw}`);
      assert.equal(
        entry.room_id,
        (event.payload.data as Data).room_id,
        `${label}: ${raw}`,
      );
    } else {
      // Refused before the body was parsed: nothing from it reaches the log.
      assert.equal(entry.event_id, null, `${label}: ${raw}`);
    }
    assert.equal("debug" in entry, debug, `${label}: debug detail ${raw}`);
    assertNoLeak(raw, values, `log line of ${label}`);
  }
  if (debug) {
    const detail = logs.entries[0].debug as Record<string, unknown>;
    assert.equal(detail.plan, "peer_join", logs.raw[0]);
    assert.equal(detail.role_class, "listener", logs.raw[0]);
    assert.ok(
      detail.auth === "signature" || detail.auth === "header",
      logs.raw[0],
    );
    assert.equal(detail.upstream_status, 200, logs.raw[0]);
  }
}

stackTest({
  name:
    "logs: one JSON line per request, no secrets, header values or body; debug adds detail",
  async fn(stack, t) {
    const [plain, debug] = await instances(stack, [
      { SUPABASE_DEBUG: "false" },
      { SUPABASE_DEBUG: "true" },
    ]);
    try {
      for (
        const [name, fn, isDebug] of [["plain", plain, false], [
          "SUPABASE_DEBUG=true",
          debug,
          true,
        ]] as const
      ) {
        await t.step(name, async () => {
          const canaries = {
            header: `hdr-canary-${uuid()}`,
            body: `body-canary-${uuid()}`,
          };
          const { sent, values } = await logScenario(stack, fn, canaries);
          const logs = await waitForLogs(fn, sent.length);
          checkLines(sent, values, logs, isDebug);
          await stillApplies(stack, fn.url);
        });
      }
    } finally {
      await Promise.all([plain.stop(), debug.stop()]);
    }
  },
});

stackTest({
  name:
    "room and session ids '.' and '..' (URL dot segments) are refused at the webhook: 400, nothing written",
  async fn(stack) {
    const roomId = await createRoom(stack.sql);
    const cases: [string, EventOptions, string][] = [
      ["room .", { roomId: "." }, "data.room_id"],
      ["room ..", { roomId: ".." }, "data.room_id"],
      ["session .", { roomId, sessionId: "." }, "data.session_id"],
      ["session ..", { roomId, sessionId: ".." }, "data.session_id"],
    ];
    for (const [name, options, field] of cases) {
      const event = buildEvent("peer.join.success", {
        role: "listener",
        ...options,
      });
      const answer = await assertNothingWritten(
        stack.sql,
        [roomId],
        name,
        () => deliver(stack.functionUrl, event.body, { secret: stack.secret }),
      );
      assert.equal(answer.status, 400, `${name}: ${answer.text}`);
      assert.equal(answer.json?.code, "invalid_field", name);
      assert.ok(answer.text.includes(field), answer.text);
    }
  },
});

/** Room ids (`rooms.id`) in a text. */
function roomUuids(text: string): string[] {
  return text.match(
    /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g,
  ) ?? [];
}

stackTest({
  name:
    "nothing exposed shows anon or authenticated more rooms than the rooms read policy: every readable relation and callable function of public, with the policy narrowed to featured rooms",
  async fn(stack) {
    class Rollback extends Error {}
    const shown = await stack.sql.begin(async (tx) => {
      await tx`alter policy rooms_public_read on public.rooms using (featured)`;
      // Two live rooms with listeners; only one is featured.
      const ids: Record<string, string> = {};
      for (const featured of [true, false]) {
        const hmsId = `policy-${featured}-${uuid()}`;
        const [row] = await tx`
          insert into public.rooms (hms_room_id, featured, is_live, listener_count)
          values (${hmsId}, ${featured}, true, 7) returning id`;
        ids[String(featured)] = row.id;
        ids[`hms-${featured}`] = hmsId;
      }
      const all = new Set(
        (await tx`select id from public.rooms`).map((r) => String(r.id)),
      );
      const results: Record<string, string[]> = {};
      for (const role of ["anon", "authenticated"]) {
        const relations = await tx`
          select format('%I.%I', n.nspname, c.relname) as name
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f')
            and has_table_privilege(${role}, c.oid, 'select')
          order by 1`;
        const functions = await tx`
          select p.oid::regproc::text as name,
            (select string_agg(format('null::%s', t::regtype), ', ' order by i)
             from unnest(p.proargtypes) with ordinality as a(t, i)
             where i <= p.pronargs - p.pronargdefaults) as args
          from pg_proc p
          where p.pronamespace = 'public'::regnamespace and p.prokind = 'f'
            and p.prorettype not in ('trigger'::regtype, 'event_trigger'::regtype)
            and has_function_privilege(${role}, p.oid, 'execute')
          order by 1`;
        const reads = [
          ...relations.map((r) => `select * from ${r.name}`),
          ...functions.map((f) =>
            `select * from ${f.name}(${f.args ?? ""}) as result`
          ),
        ];
        assert.ok(
          reads.some((q) => q.includes("public.rooms")),
          "rooms is among what is read",
        );
        for (const query of reads) {
          // Each read as the role, in a savepoint: a function may refuse nulls.
          const text = await tx.savepoint(async (sp) => {
            await sp.unsafe(`set local role ${role}`);
            const rows = await sp.unsafe(
              `select coalesce(json_agg(q)::text, '') as t from (${query}) q`,
            );
            await sp.unsafe("reset role");
            return String(rows[0].t);
          }).catch((e: Error) => `refused: ${e.message}`);
          results[`${role}: ${query}`] = roomUuids(text).filter((id) =>
            all.has(id)
          ).concat(text.includes(ids["hms-false"]) ? [ids["hms-false"]] : []);
        }
      }
      throw new Rollback(JSON.stringify({ ids, results }));
    }).catch((e) => {
      if (!(e instanceof Rollback)) throw e;
      return JSON.parse(e.message) as {
        ids: Record<string, string>;
        results: Record<string, string[]>;
      };
    });
    const { ids, results } = shown;
    for (const role of ["anon", "authenticated"]) {
      const viaRooms = new Set(results[`${role}: select * from public.rooms`]);
      assert.ok(viaRooms.has(ids["true"]), "the featured room is readable");
      assert.ok(!viaRooms.has(ids["false"]), "the policy hides the other");
      for (const [read, rooms] of Object.entries(results)) {
        if (!read.startsWith(`${role}: `)) continue;
        assert.deepEqual(
          rooms.filter((id) => !viaRooms.has(id)),
          [],
          `${read} shows rooms the rooms policy hides`,
        );
      }
    }
    assert.ok(Object.keys(results).length > 4, Object.keys(results).join("\n"));
  },
});

stackTest({
  name: "after the whole suite the stack's function still applies valid events",
  async fn(stack) {
    await stillApplies(stack, stack.functionUrl);
  },
});
