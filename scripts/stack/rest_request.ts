/**
 * What the REST stand-in needs from one HTTP request besides the path: the caller's role, the
 * negotiated response shape (array or single object), the `Prefer` options, and the JSON body;
 * plus how a list of JSON rows becomes PostgREST's response.
 */

import { type DbRole, jsonResponse, RestError } from "./rest_errors.ts";

/** Everything about a request that the table and RPC handlers look at. */
export interface RestRequest {
  method: string;
  role: DbRole;
  params: URLSearchParams;
  /** `Accept: application/vnd.pgrst.object+json`: exactly one row, answered as an object. */
  single: boolean;
  prefer: Prefer;
  /** The parsed JSON body; undefined when there is none. */
  body: unknown;
}

/** The `Prefer` options the stand-in honours. */
export interface Prefer {
  /** `return=representation` (rows back) or the default `minimal`. */
  representation: boolean;
  /** `missing=default`: keys absent from an inserted object take the column default. */
  missingDefault: boolean;
  /** `tx=rollback`: answer as usual, then roll the transaction back. */
  rollback: boolean;
}

/** Thrown inside a transaction to roll it back and still answer `response`. */
export class Rollback extends Error {
  constructor(readonly response: Response) {
    super("rollback");
    this.name = "Rollback";
  }
}

const OBJECT_TYPE = "application/vnd.pgrst.object+json";

/** Reads `Prefer` headers (several may be present, each a comma list). */
export function parsePrefer(headers: Headers): Prefer {
  const tokens = (headers.get("prefer") ?? "").split(",").map((t) =>
    t.trim().toLowerCase()
  );
  return {
    representation: tokens.includes("return=representation"),
    missingDefault: tokens.includes("missing=default"),
    rollback: tokens.includes("tx=rollback"),
  };
}

/** Array or single object; anything but JSON is 406 PGRST107, as PostgREST answers it. */
export function negotiate(headers: Headers): boolean {
  const accept = headers.get("accept");
  if (accept === null || accept.trim() === "") return false;
  const types = accept.split(",").map((t) =>
    t.split(";")[0].trim().toLowerCase()
  );
  if (types.includes(OBJECT_TYPE)) return true;
  const arrayTypes = [
    "*/*",
    "application/*",
    "application/json",
    "application/vnd.pgrst.array+json",
  ];
  if (types.some((t) => arrayTypes.includes(t))) return false;
  throw new RestError(
    406,
    "PGRST107",
    `None of these media types are available: ${accept}`,
  );
}

/** The JSON body, or undefined for an empty one; malformed JSON is 400 PGRST102. */
export async function readJson(request: Request): Promise<unknown> {
  const text = await request.text();
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw new RestError(400, "PGRST102", "Empty or invalid json");
  }
}

/** True for a plain JSON object (not an array, not null). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Rows (each already JSON text from PostgreSQL, so numbers keep their exact spelling) as the
 * response: an array, or the single object when it was asked for (406 PGRST116 otherwise).
 */
export function rowsResponse(
  request: RestRequest,
  rows: string[],
  status: number,
  headers: Record<string, string> = {},
): Response {
  if (request.single) {
    if (rows.length !== 1) {
      throw new RestError(
        406,
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        `The result contains ${rows.length} rows`,
      );
    }
    return jsonResponse(status, rows[0], {
      "content-type": `${OBJECT_TYPE}; charset=utf-8`,
      ...headers,
    });
  }
  return jsonResponse(status, `[${rows.join(",")}]`, headers);
}

/** A bodiless answer (204, or 201 for a minimal insert). */
export function emptyResponse(
  status: number,
  headers: Record<string, string> = {},
): Response {
  return new Response(null, { status, headers });
}
