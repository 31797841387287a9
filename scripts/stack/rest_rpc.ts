/**
 * RPC endpoints of the REST stand-in (`/rest/v1/rpc/<fn>`): picks the overload by argument
 * names as PostgREST does, binds the JSON arguments with `json_to_record` (PostgREST's own
 * conversion, so `"2024-…Z"` becomes a timestamptz and `true` a boolean), and shapes the
 * result: scalar or object as that JSON value, `void` as 204, sets as an array that accepts
 * select/filters/order/limit/offset.
 */

import { jsonRows, type Queryable } from "./rest_db.ts";
import { RestError } from "./rest_errors.ts";
import {
  ident,
  pageSql,
  Params,
  parseQuery,
  readSql,
  RESERVED_KEYS,
} from "./rest_query.ts";
import {
  emptyResponse,
  isObject,
  type RestRequest,
  rowsResponse,
} from "./rest_request.ts";
import type { Fn, SchemaCache } from "./rest_schema.ts";

function singleJsonArgument(fn: Fn): boolean {
  return fn.args.length === 1 && fn.args[0].name === "" &&
    (fn.args[0].type === "json" || fn.args[0].type === "jsonb");
}

/** The function's arguments from the body (POST) or the query string (GET). */
function argumentsOf(request: RestRequest): Record<string, unknown> {
  if (request.method === "POST") {
    if (request.body === undefined) return {};
    if (!isObject(request.body)) {
      throw new RestError(
        400,
        "PGRST102",
        "Empty or invalid json",
        "the body must be a JSON object of named arguments",
      );
    }
    return request.body;
  }
  const args: Record<string, unknown> = {};
  for (const [key, value] of request.params) {
    if (!RESERVED_KEYS.has(key)) args[key] = value;
  }
  return args;
}

/** Finds the one overload these arguments call; 404 PGRST202 or 300 PGRST203 otherwise. */
async function resolve(
  schema: SchemaCache,
  name: string,
  request: RestRequest,
  args: Record<string, unknown>,
): Promise<{ fn: Fn; used: string[] }> {
  const keys = Object.keys(args);
  // A GET may mix arguments with filters on the result, so only POST must use every key.
  const accepts = (fn: Fn) => {
    if (singleJsonArgument(fn)) return request.method === "POST";
    const names = new Set(fn.args.map((a) => a.name));
    const given = keys.filter((k) => names.has(k));
    return (request.method !== "POST" || given.length === keys.length) &&
      fn.args.every((a) => a.hasDefault || given.includes(a.name));
  };
  const candidates = await schema.functions(name, accepts);
  const usedBy = (fn: Fn) =>
    keys.filter((k) => fn.args.some((a) => a.name === k));
  const best = Math.max(-1, ...candidates.map((fn) => usedBy(fn).length));
  const chosen = candidates.filter((fn) => usedBy(fn).length === best);
  if (chosen.length === 0) {
    const list = [...keys].sort().join(", ");
    throw new RestError(
      404,
      "PGRST202",
      `Could not find the function public.${name}(${list}) in the schema cache`,
      `Searched for the function public.${name} with parameters ${
        list || "(none)"
      } or with ` +
        "a single unnamed json/jsonb parameter, but no matches were found in the schema cache.",
    );
  }
  if (chosen.length > 1) {
    throw new RestError(
      300,
      "PGRST203",
      `Could not choose the best candidate function between: ${
        chosen.map((fn) =>
          `public.${name}(${
            fn.args.map((a) => `${a.name} => ${a.type}`).join(", ")
          })`
        )
          .join(", ")
      }`,
    );
  }
  return { fn: chosen[0], used: usedBy(chosen[0]) };
}

/** A resolved call: the overload and the arguments it takes from the request. */
export interface PreparedRpc {
  fn: Fn;
  used: string[];
  args: Record<string, unknown>;
}

/**
 * Checks the method and picks the overload. Runs before the request's transaction: a cache
 * reload needs a pool connection of its own, and waiting for one while holding another can
 * deadlock the pool under load.
 */
export async function prepareRpc(
  schema: SchemaCache,
  name: string,
  request: RestRequest,
): Promise<PreparedRpc> {
  if (!["GET", "HEAD", "POST"].includes(request.method)) {
    throw new RestError(
      405,
      "PGRST101",
      "Only GET and POST verbs are allowed for functions",
    );
  }
  const args = argumentsOf(request);
  const { fn, used } = await resolve(schema, name, request, args);
  return { fn, used, args };
}

/** Runs a prepared call inside the caller's transaction and shapes its result. */
export async function runRpc(
  tx: Queryable,
  { fn, used, args }: PreparedRpc,
  request: RestRequest,
): Promise<Response> {
  const params = new Params();
  // `from` supplies the arguments as typed columns `_a."name"`; the call names each one.
  let from = "";
  let call: string;
  if (singleJsonArgument(fn)) {
    call = `public.${ident(fn.name)}(${params.add(JSON.stringify(args))}::${
      fn.args[0].type
    })`;
  } else if (used.length === 0) {
    call = `public.${ident(fn.name)}()`;
  } else {
    const chosen = fn.args.filter((a) => used.includes(a.name));
    const values = Object.fromEntries(
      chosen.map((a) => [a.name, args[a.name]]),
    );
    from =
      `json_to_record(${params.add(JSON.stringify(values))}::json) as _a(` +
      chosen.map((a) => `${ident(a.name)} ${a.type}`).join(", ") + ")";
    call = `public.${ident(fn.name)}(` +
      chosen.map((a) => `${ident(a.name)} := _a.${ident(a.name)}`).join(", ") +
      ")";
  }
  const fromClause = from === "" ? "" : ` from ${from}`;

  if (fn.returns === "void" && !fn.returnsSet) {
    await tx.query(`select ${call}${fromClause}`, params.values);
    return emptyResponse(204);
  }
  if (!fn.returnsSet) {
    const [row] = await tx.query(
      `select to_json(${call})::text as j${fromClause}`,
      params.values,
    );
    return new Response(row.j ?? "null", {
      status: 200,
      headers: { "content-type": "application/json; charset=utf-8" },
    });
  }
  const source = from === ""
    ? `${call} as _r`
    : `${from} cross join lateral ${call} as _r`;
  let sql: string;
  if (fn.returns === "composite") {
    const query = parseQuery(
      request.params,
      fn.columns,
      fn.name,
      new Set(used),
    );
    sql = readSql(query, source, params);
  } else {
    const query = parseQuery(
      request.params,
      new Map(),
      fn.name,
      new Set([...used, "select"]),
    );
    if (query.filters.length > 0 || query.order.length > 0) {
      throw new RestError(
        400,
        "PGRST100",
        "filters and order need a function that returns rows",
      );
    }
    sql = `select to_json(_s.j)::text as j from (select _r as j from ${source}${
      pageSql(query, "_r")
    }) _s`;
  }
  const rows = await jsonRows(tx, sql, params.values);
  return rowsResponse(request, rows, 200);
}
