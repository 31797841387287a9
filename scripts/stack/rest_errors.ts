/**
 * PostgREST-shaped errors for the REST stand-in: the `{code,message,details,hint}` body and
 * PostgREST's SQLSTATE -> HTTP status table (docs.postgrest.org, references/errors.rst).
 */

import { DbUnavailable } from "./rest_db.ts";

/** The role a request runs as; 42501 maps to 401 for anon and 403 for the service role. */
export type DbRole = "anon" | "service_role";

/** An error answered as a PostgREST error response. */
export class RestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: string | null = null,
    readonly hint: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = "RestError";
  }

  /** The HTTP response PostgREST would send. */
  toResponse(): Response {
    return jsonResponse(
      this.status,
      JSON.stringify({
        code: this.code,
        details: this.details,
        hint: this.hint,
        message: this.message,
      }),
      this.headers,
    );
  }
}

/** A JSON response with PostgREST's content type. */
export function jsonResponse(
  status: number,
  body: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
  });
}

/** PostgREST's HTTP status for a PostgreSQL SQLSTATE. */
export function statusForSqlState(code: string, role: DbRole): number {
  const exact: Record<string, number> = {
    "23503": 409,
    "23505": 409,
    "25006": 405,
    "42883": 404,
    "42P01": 404,
    "42P17": 500,
    "42501": role === "anon" ? 401 : 403,
    "53400": 500,
    // Not in the docs' table but in PostgREST's code (src/PostgREST/Error.hs): a shutdown that
    // ends a query is 503, like a lost connection.
    "57P01": 503,
    "P0001": 400,
  };
  if (code in exact) return exact[code];
  if (/^PT\d{3}$/.test(code)) return Number(code.slice(2));
  const byClass: Record<string, number> = {
    "08": 503,
    "09": 500,
    "0L": 403,
    "0P": 403,
    "25": 500,
    "28": 403,
    "2D": 500,
    "38": 500,
    "39": 500,
    "3B": 500,
    "40": 500,
    "53": 503,
    "54": 500,
    "55": 500,
    "57": 500,
    "58": 500,
    "F0": 500,
    "HV": 500,
    "P0": 500,
    "XX": 500,
  };
  return byClass[code.slice(0, 2)] ?? 400;
}

/** The fields postgres.js puts on a server error. */
interface PgErrorLike {
  code: string;
  message: string;
  detail?: string;
  hint?: string;
  severity?: string;
}

function isPgError(error: unknown): error is PgErrorLike {
  return typeof error === "object" && error !== null &&
    typeof (error as PgErrorLike).code === "string" &&
    typeof (error as PgErrorLike).severity === "string";
}

/**
 * Any error from running a request as a PostgREST response: server errors keep their SQLSTATE,
 * message, detail and hint (so `57P01` "terminating connection due to administrator command" is
 * 503, `57P02` "… because of crash of another server process" 500, as in PostgREST); `RAISE
 * SQLSTATE 'PGRST'` uses its JSON message/detail as
 * PostgREST does; a database that cannot be reached or a connection lost in use is 503 with
 * PostgREST's own body (see {@link unavailableError}).
 */
export function errorResponse(error: unknown, role: DbRole): Response {
  if (error instanceof RestError) return error.toResponse();
  if (error instanceof DbUnavailable) {
    return unavailableError(error).toResponse();
  }
  if (isPgError(error)) {
    if (error.code === "PGRST") return customError(error);
    return new RestError(
      statusForSqlState(error.code, role),
      error.code,
      error.message,
      error.detail ?? null,
      error.hint ?? null,
    ).toResponse();
  }
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof URIError) {
    return new RestError(
      400,
      "PGRST100",
      "malformed percent-encoding in the URL",
    )
      .toResponse();
  }
  return new RestError(
    500,
    "XX000",
    "internal error in the REST stand-in",
    message,
  )
    .toResponse();
}

/**
 * PostgREST's answers while the database is away (docs.postgrest.org, references/errors.rst,
 * "Group 0 - Connection"; the bodies as its src/PostgREST/Error.hs builds them): no connection
 * could be made (hasql's `ConnectionUsageError`) is 503 `PGRST000` "Database connection error.
 * Retrying the connection."; a connection that broke in use (`ClientError`) is 503 `PGRST001`
 * "Database client error. Retrying the connection."; `details` is the client library's text.
 */
export function unavailableError(error: DbUnavailable): RestError {
  return error.kind === "connect"
    ? new RestError(
      503,
      "PGRST000",
      "Database connection error. Retrying the connection.",
      error.message,
    )
    : new RestError(
      503,
      "PGRST001",
      "Database client error. Retrying the connection.",
      error.message,
    );
}

/** `RAISE SQLSTATE 'PGRST' USING message = '{json body}', detail = '{"status":..,"headers":..}'`. */
function customError(error: PgErrorLike): Response {
  try {
    const body = JSON.parse(error.message);
    const meta = JSON.parse(error.detail ?? "{}");
    const status = Number(meta.status ?? 400);
    const headers = typeof meta.headers === "object" && meta.headers !== null
      ? meta.headers as Record<string, string>
      : {};
    return jsonResponse(status, JSON.stringify(body), headers);
  } catch {
    return new RestError(
      500,
      "PGRST121",
      "Could not parse JSON in the \"RAISE SQLSTATE 'PGRST'\" error",
      error.message,
    ).toResponse();
  }
}
