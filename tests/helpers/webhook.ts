/**
 * Delivers webhook bodies to a function URL the way 100ms does (POST, JSON, signature and/or
 * secret header over the exact bytes) and returns the parsed answer for assertions.
 */

import { assert } from "./assert.ts";
import {
  type Auth,
  type BuiltEvent,
  headersFor,
} from "../../scripts/lib/hms.ts";

/** One second in nanoseconds, the unit of the events' times (`60n * S` is a minute). */
export const S = 1_000_000_000n;

/** Longest a test waits for one answer (the function itself gives up upstream after 10 s). */
export const REQUEST_TIMEOUT_MS = 30_000;

/** A function's answer. */
export interface Answer {
  status: number;
  contentType: string | null;
  headers: Headers;
  /** Parsed JSON, or undefined when the body was not JSON. */
  json: Record<string, unknown> | undefined;
  text: string;
}

/** How a delivery authenticates: one of the proofs, both, or none at all. */
export interface DeliveryOptions {
  secret: string;
  auth?: Auth | "none";
  headerName?: string;
  /** Added last (e.g. a forged signature). */
  headers?: Record<string, string>;
}

/** POSTs raw bytes with the given headers and reads the JSON answer. */
export async function post(
  url: string,
  body: string,
  headers: Record<string, string>,
): Promise<Answer> {
  // Bounded: a hung function must fail the test, not stall the run.
  const response = await fetch(url, {
    method: "POST",
    headers,
    body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return {
    status: response.status,
    contentType: response.headers.get("content-type"),
    headers: response.headers,
    json,
    text,
  };
}

/** Sends one event (a built event or a raw body), authenticated as asked (default: both proofs). */
export async function deliver(
  url: string,
  event: BuiltEvent | string,
  options: DeliveryOptions,
): Promise<Answer> {
  const body = typeof event === "string" ? event : event.body;
  const auth = options.auth ?? "both";
  const headers = auth === "none"
    ? { "content-type": "application/json" }
    : await headersFor(body, {
      secret: options.secret,
      auth,
      headerName: options.headerName,
    });
  return await post(url, body, { ...headers, ...options.headers });
}

/** What a 200 says happened to the event. */
export type Outcome = "applied" | "duplicate" | "ignored";

/** The answer is a 200 with this outcome. */
export function assertOutcome(
  answer: Pick<Answer, "status" | "json" | "text">,
  outcome: Outcome,
) {
  assert.equal(answer.status, 200, answer.text);
  assert.equal(answer.json?.status, outcome, answer.text);
}

/** The answer is the documented JSON error: this status and code, and a message. */
export function assertError(answer: Answer, status: number, code: string) {
  assert.equal(answer.status, status, answer.text);
  assert.match(answer.contentType ?? "", /^application\/json/);
  assert.equal(answer.json?.status, "error", answer.text);
  assert.equal(answer.json?.code, code, answer.text);
  assert.equal(typeof answer.json?.message, "string");
}
