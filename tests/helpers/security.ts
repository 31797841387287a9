/**
 * What the security tests need beyond the shared helpers: raw deliveries (any method, bytes or
 * streams, hand-made headers), the shape of a clean refusal (JSON error with the documented
 * code and no internals or secrets) and the function's log lines. The "nothing was written"
 * guard is in db.ts, shared with the other tests.
 */

import type { FunctionProcess } from "../../scripts/stack/function.ts";
import { assert, show } from "./assert.ts";

/** A request body as a client can send it. */
export type Body = string | Uint8Array | ReadableStream<Uint8Array>;

/** What the function answered. */
export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  /** The parsed body, or undefined when it was not JSON. */
  json: Record<string, unknown> | undefined;
}

/** One request to send. */
export interface Outgoing {
  method?: string;
  headers?: Record<string, string> | Headers;
  body?: Body;
}

/** Sends one request and reads the whole answer (a 10 s cap keeps a hung server from hanging us). */
export async function send(url: string, request: Outgoing): Promise<Reply> {
  const response = await fetch(url, {
    method: request.method ?? "POST",
    headers: request.headers,
    body: request.body as BodyInit | undefined,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    const value = JSON.parse(text);
    json = typeof value === "object" && value !== null && !Array.isArray(value)
      ? value
      : undefined;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}

/**
 * Text that must never reach a response body or a log line: runtime internals, SQL, file paths
 * and every value the caller passes as secret (webhook secrets, the service key, header values).
 */
const INTERNALS: [string, RegExp][] = [
  ["a panic", /panic/i],
  ["a Wasm trap", /RuntimeError|unreachable executed|wasm-function/i],
  ["a stack frame", /\bat \S+ \(|\bat (?:file|https?):\/\/|:\d+:\d+\)/],
  ["SQL", /\b(?:select|insert|update|delete|returning)\b|sqlstate|PGRST/i],
  ["a service key", /sb_secret/i],
  [
    "a file path",
    /\/(?:work|tmp|home|root|build|cargo)\/|file:\/\/|\.rs\b|\.ts:\d/,
  ],
];

/** Fails if `text` shows an internal detail or contains any of `secrets`. */
export function assertNoLeak(
  text: string,
  secrets: readonly string[],
  where: string,
): void {
  for (const [what, pattern] of INTERNALS) {
    assert.ok(!pattern.test(text), `${where} shows ${what}: ${text}`);
  }
  for (const secret of secrets) {
    assert.ok(
      secret === "" || !text.includes(secret),
      `${where} contains a secret or request value (${secret.slice(0, 12)}…): ${
        text.slice(0, 300)
      }`,
    );
  }
}

/** What a refusal must look like. */
export interface Refusal {
  status: number;
  /** The code, or the codes that are all correct answers (e.g. for nesting beyond the limit). */
  code: string | readonly string[];
  /** Words the message must contain, e.g. the offending field's path. */
  mentions?: readonly string[];
}

/**
 * Asserts a clean refusal: the exact status, `content-type: application/json`, a body that is
 * exactly `{"status":"error","code":…,"message":…}` with the documented code, and no leak.
 */
export function assertRefused(
  reply: Reply,
  expected: Refusal,
  secrets: readonly string[],
  label: string,
): void {
  const where = `${label}: ${reply.status} ${reply.text.slice(0, 300)}`;
  assert.equal(reply.status, expected.status, where);
  assert.match(
    reply.headers.get("content-type") ?? "",
    /^application\/json\b/,
    where,
  );
  assert.ok(reply.json !== undefined, `${where}: body is not a JSON object`);
  assert.deepEqual(
    Object.keys(reply.json).sort(),
    ["code", "message", "status"],
    where,
  );
  assert.equal(reply.json.status, "error", where);
  const codes = typeof expected.code === "string"
    ? [expected.code]
    : expected.code;
  assert.ok(
    codes.includes(reply.json.code as string),
    `${where}: code is not ${codes.join(" or ")}`,
  );
  const message = reply.json.message;
  assert.ok(
    typeof message === "string" && message.length > 0,
    `${where}: no message`,
  );
  for (const word of expected.mentions ?? []) {
    // As a whole word: `id` must not be found inside "invalid", nor `data` in `data.room_id`.
    const escaped = word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    assert.match(
      message,
      new RegExp(`(?:^|[^\\w.])${escaped}(?:$|[^\\w.])`),
      `${where}: message does not name ${word}`,
    );
  }
  // A refusal is short: a body that echoes the request would be long.
  assert.ok(reply.text.length < 512, `${where}: answer is suspiciously long`);
  assertNoLeak(reply.text, secrets, label);
}

/** The tables the "nothing written" guard must cover (design §6-§8). */
export const TABLES = [
  "hms_private.events",
  "hms_private.presence",
  "hms_private.sessions",
  "hms_settings",
  "rooms",
] as const;

/** The function's log after `requests` requests: the JSON lines and everything else it printed. */
export interface Logs {
  /** Parsed JSON lines, in order. */
  entries: Record<string, unknown>[];
  /** The raw JSON lines, in order. */
  raw: string[];
  /** Lines that are not JSON. */
  other: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the process has printed `count` JSON lines (output arrives through pipes, after
 * the answer), then a little longer so that any extra line would show up too.
 */
export async function waitForLogs(
  fn: FunctionProcess,
  count: number,
  timeoutMs = 5000,
): Promise<Logs> {
  const deadline = Date.now() + timeoutMs;
  const read = (): Logs => {
    const logs: Logs = { entries: [], raw: [], other: [] };
    for (const line of fn.logs()) {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        logs.other.push(line);
        continue;
      }
      if (typeof value === "object" && value !== null) {
        logs.entries.push(value as Record<string, unknown>);
        logs.raw.push(line);
      } else logs.other.push(line);
    }
    return logs;
  };
  while (read().entries.length < count && Date.now() < deadline) {
    await sleep(20);
  }
  await sleep(200);
  const logs = read();
  assert.equal(
    logs.entries.length,
    count,
    `expected ${count} JSON log lines, got ${logs.entries.length}:\n${
      show(fn.logs())
    }`,
  );
  return logs;
}

/** Swaps the case of every letter (a secret "with the right header name, wrong case"). */
export function swapCase(text: string): string {
  return [...text].map((c) =>
    c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()
  ).join("");
}

/** `hex` with the digit at `index` replaced by a different hex digit. */
export function changeHexDigit(hex: string, index: number): string {
  const digit = hex[index];
  const other = digit === "0" ? "1" : "0";
  return hex.slice(0, index) + other + hex.slice(index + 1);
}

/** A stream of `total` bytes in chunks, without a Content-Length (sent chunked). */
export function chunkedBody(
  bytes: Uint8Array,
  chunkSize = 8192,
): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) {
        controller.close();
        return;
      }
      controller.enqueue(bytes.slice(offset, offset + chunkSize));
      offset += chunkSize;
    },
  });
}
