/**
 * A stand-in for PostgREST (Supabase's `/rest/v1`) over a connection pool (rest_db.ts): API key
 * check, one transaction per request as `service_role` or `anon`, and routing to the RPC and
 * table handlers. While the database is away it answers as PostgREST does (503 PGRST000 /
 * PGRST001, see rest_errors.ts) and the pool reconnects by itself. It follows PostgREST's contract for what this project and supabase-js use;
 * see rest_query.ts for the supported URL grammar.
 */

import { createDb, type Queryable } from "./rest_db.ts";
import { type DbRole, errorResponse, RestError } from "./rest_errors.ts";
import {
  negotiate,
  parsePrefer,
  readJson,
  type RestRequest,
  Rollback,
} from "./rest_request.ts";
import { prepareRpc, runRpc } from "./rest_rpc.ts";
import { SchemaCache } from "./rest_schema.ts";
import { handleTable } from "./rest_tables.ts";

/** Options of {@link createRest}. */
export interface RestOptions {
  databaseUrl: string;
  /** Runs as `service_role` (bypasses RLS). */
  serviceKey: string;
  /** Runs as `anon`. */
  anonKey: string;
  /** Pooled connections (default 20). */
  poolSize?: number;
}

/** The REST stand-in: a request handler plus its connection pool. */
export interface Rest {
  /** Answers a request whose path below `/rest/v1` is `path` (e.g. `/rpc/fn`, `/rooms`). */
  handle(request: Request, path: string): Promise<Response>;
  close(): Promise<void>;
}

const STATEMENT_TIMEOUT = "30s";

/** The stand-in's `application_name` (PostgREST sets `PostgREST <version>`); tests find its backends by it. */
export const REST_APPLICATION_NAME = "hms-rest-stand-in";

/** Builds the handler; the pool connects lazily on the first request. */
export function createRest(options: RestOptions): Rest {
  const sql = createDb({
    url: options.databaseUrl,
    max: options.poolSize ?? 20,
    applicationName: REST_APPLICATION_NAME,
  });
  const schema = new SchemaCache(sql);

  // Every key failure is PostgREST's 401 PGRST301; only the message and hint differ.
  const unauthorized = (
    message: string,
    hint: string | null,
    headers?: Record<string, string>,
  ) => new RestError(401, "PGRST301", message, null, hint, headers);
  const roleFor = (headers: Headers): DbRole => {
    const keys: Record<string, DbRole> = {
      [options.serviceKey]: "service_role",
      [options.anonKey]: "anon",
    };
    const apikey = headers.get("apikey");
    if (apikey === null || apikey === "") {
      throw unauthorized(
        "No API key found in request",
        "No `apikey` request header was found.",
      );
    }
    if (!Object.hasOwn(keys, apikey)) {
      throw unauthorized(
        "Invalid API key",
        "Double check your Supabase `anon` or `service_role` API key.",
      );
    }
    // As on Supabase, the Authorization header (when it carries a key) decides the role.
    const bearer = /^Bearer\s+(.+)$/i.exec(headers.get("authorization") ?? "")
      ?.[1];
    if (bearer === undefined) return keys[apikey];
    if (!Object.hasOwn(keys, bearer)) {
      throw unauthorized("Invalid JWT in the Authorization header", null, {
        "www-authenticate": 'Bearer error="invalid_token"',
      });
    }
    return keys[bearer];
  };

  async function handle(request: Request, path: string): Promise<Response> {
    let role: DbRole = "anon";
    try {
      role = roleFor(request.headers);
      const profile = request.headers.get("accept-profile") ??
        request.headers.get("content-profile");
      if (profile !== null && profile !== "public") {
        throw new RestError(
          406,
          "PGRST106",
          "The schema must be one of the following: public",
          null,
          null,
        );
      }
      const url = new URL(request.url);
      const restRequest: RestRequest = {
        method: request.method.toUpperCase(),
        role,
        params: url.searchParams,
        single: negotiate(request.headers),
        prefer: parsePrefer(request.headers),
        body: ["GET", "HEAD", "DELETE"].includes(request.method.toUpperCase())
          ? undefined
          : await readJson(request),
      };
      const rpc = /^\/rpc\/([^/]+)$/.exec(path);
      const table = /^\/([^/]+)$/.exec(path);
      if (rpc === null && table === null) {
        throw new RestError(
          404,
          "PGRST125",
          "Invalid path specified in request URL",
        );
      }
      const readOnly = restRequest.method === "GET" ||
        restRequest.method === "HEAD";
      // Catalog lookups happen before the transaction (see prepareRpc).
      if (rpc !== null) {
        const prepared = await prepareRpc(
          schema,
          decodeURIComponent(rpc[1]),
          restRequest,
        );
        return await inTransaction(
          role,
          readOnly,
          restRequest.prefer.rollback,
          (tx) => runRpc(tx, prepared, restRequest),
        );
      }
      const name = decodeURIComponent(table![1]);
      const found = await schema.table(name);
      if (found === undefined) {
        throw new RestError(
          404,
          "PGRST205",
          `Could not find the table 'public.${name}' in the schema cache`,
        );
      }
      return await inTransaction(
        role,
        readOnly,
        restRequest.prefer.rollback,
        (tx) => handleTable(tx, found, restRequest),
      );
    } catch (error) {
      return errorResponse(error, role);
    }
  }

  /** Runs `body` in one transaction as `role`, as PostgREST does for every request. */
  async function inTransaction(
    role: DbRole,
    readOnly: boolean,
    rollback: boolean,
    body: (tx: Queryable) => Promise<Response>,
  ): Promise<Response> {
    try {
      return await sql.transaction(
        readOnly ? "read only" : "read write",
        async (tx) => {
          await tx.query(
            "select set_config('role', $1, true), set_config('request.jwt.claims', $2, true), " +
              "set_config('search_path', 'public, extensions', true), " +
              "set_config('statement_timeout', $3, true)",
            [role, JSON.stringify({ role }), STATEMENT_TIMEOUT],
          );
          const response = await body(tx);
          if (rollback) throw new Rollback(response);
          return response;
        },
      );
    } catch (error) {
      if (error instanceof Rollback) return error.response;
      throw error;
    }
  }

  return {
    handle,
    async close() {
      await sql.end();
    },
  };
}
