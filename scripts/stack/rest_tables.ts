/**
 * Table endpoints of the REST stand-in (`/rest/v1/<table>`): GET/HEAD reads with select,
 * filters, order and paging; POST inserts (one object or an array); PATCH updates and DELETE
 * deletes with filters; `Prefer: return=representation` returns the rows.
 */

import { jsonRows, type Queryable } from "./rest_db.ts";
import { RestError } from "./rest_errors.ts";
import {
  columnOf,
  ident,
  Params,
  parseQuery,
  type Query,
  readSql,
  selectSql,
  whereSql,
} from "./rest_query.ts";
import {
  emptyResponse,
  isObject,
  type RestRequest,
  rowsResponse,
} from "./rest_request.ts";
import type { Column, Table } from "./rest_schema.ts";

/** What answers one HTTP method on a table (see `HANDLERS`). */
type Handler = (
  tx: Queryable,
  table: Table,
  request: RestRequest,
  query: Query,
) => Promise<Response>;

/** Answers one table request inside the caller's transaction. */
export async function handleTable(
  tx: Queryable,
  table: Table,
  request: RestRequest,
): Promise<Response> {
  const query = parseQuery(request.params, table.columns, table.name);
  const handler = Object.hasOwn(HANDLERS, request.method)
    ? HANDLERS[request.method]
    : undefined;
  if (handler === undefined) {
    throw new RestError(
      405,
      "PGRST117",
      `Unsupported HTTP method: ${request.method}`,
    );
  }
  return await handler(tx, table, request, query);
}

/** The answer to a PATCH or DELETE: the changed rows if asked for, else 204. */
function changed(request: RestRequest, rows: string[]): Response {
  return request.prefer.representation
    ? rowsResponse(request, rows, 200)
    : emptyResponse(204);
}

const read: Handler = async (tx, table, request, query) => {
  const params = new Params();
  const rows = await jsonRows(
    tx,
    readSql(query, `public.${ident(table.name)} _r`, params),
    params.values,
  );
  const offset = query.offset ?? 0;
  const range = rows.length === 0
    ? "*/*"
    : `${offset}-${offset + rows.length - 1}/*`;
  const response = rowsResponse(request, rows, 200, { "content-range": range });
  return request.method === "HEAD"
    ? new Response(null, { status: response.status, headers: response.headers })
    : response;
};

/** The columns named by `columns=` ("a","b" or a,b), or else every key of every object. */
function insertColumns(
  table: Table,
  request: RestRequest,
  objects: Record<string, unknown>[],
): Column[] {
  const listed = request.params.get("columns");
  const names = listed !== null
    ? listed.split(",").map((n) => n.trim().replace(/^"(.*)"$/, "$1")).filter((
      n,
    ) => n !== "")
    : [...new Set(objects.flatMap((o) => Object.keys(o)))];
  return names.map((name) => {
    const column = table.columns.get(name);
    if (column === undefined) {
      throw new RestError(
        400,
        "PGRST204",
        `Could not find the '${name}' column of '${table.name}' in the schema cache`,
      );
    }
    return column;
  });
}

function recordDefinition(columns: Column[]): string {
  return columns.map((c) => `${ident(c.name)} ${c.type}`).join(", ");
}

const insert: Handler = async (tx, table, request, query) => {
  const body = request.body;
  const objects = Array.isArray(body) ? body : [body];
  if (body === undefined || !objects.every(isObject)) {
    throw new RestError(400, "PGRST102", "Empty or invalid json");
  }
  const columns = insertColumns(table, request, objects);
  // With missing=default an absent key means DEFAULT, so rows with different key sets are
  // inserted separately; otherwise absent keys are NULL, as in PostgREST.
  const groups: { columns: Column[]; rows: Record<string, unknown>[] }[] = [];
  if (request.prefer.missingDefault) {
    const byKeys = new Map<string, Record<string, unknown>[]>();
    for (const object of objects) {
      const key = columns.filter((c) => c.name in object).map((c) => c.name)
        .join("\u0000");
      byKeys.set(key, [...(byKeys.get(key) ?? []), object]);
    }
    for (const rows of byKeys.values()) {
      groups.push({ columns: columns.filter((c) => c.name in rows[0]), rows });
    }
  } else groups.push({ columns, rows: objects });

  const rows: string[] = [];
  for (const group of groups) {
    const statements = group.columns.length === 0
      ? group.rows.map(() =>
        `insert into public.${ident(table.name)} as _r default values`
      )
      : [
        `insert into public.${ident(table.name)} as _r ` +
        `(${group.columns.map((c) => ident(c.name)).join(", ")}) ` +
        `select ${
          group.columns.map((c) => `_b.${ident(c.name)}`).join(", ")
        } ` +
        `from json_to_recordset($1::text::json) as _b(${
          recordDefinition(group.columns)
        })`,
      ];
    for (const statement of statements) {
      const params = new Params();
      if (group.columns.length > 0) params.add(JSON.stringify(group.rows));
      rows.push(
        ...await jsonRows(tx, written(statement, query), params.values),
      );
    }
  }
  return request.prefer.representation
    ? rowsResponse(request, rows, 201, { "content-range": "*/*" })
    : emptyResponse(201, { "content-range": "*/*" });
};

/** Wraps a data-changing statement so that it returns the selected columns as JSON rows. */
function written(statement: string, query: Query): string {
  return `with _w as (${statement} returning _r.*) ` +
    `select to_json(_s)::text as j from (select ${
      selectSql(query.select, "_r")
    } from _w _r) _s`;
}

const update: Handler = async (tx, table, request, query) => {
  if (!isObject(request.body)) {
    throw new RestError(400, "PGRST102", "Empty or invalid json");
  }
  const body = request.body;
  const columns = Object.keys(body).map((name) =>
    columnOf(table.columns, name, table.name)
  );
  let rows: string[] = [];
  if (columns.length > 0) {
    const params = new Params();
    const values = params.add(JSON.stringify(body));
    const statement = `update public.${ident(table.name)} as _r set ` +
      columns.map((c) => `${ident(c.name)} = _b.${ident(c.name)}`).join(", ") +
      ` from json_to_record(${values}::json) as _b(${
        recordDefinition(columns)
      })` +
      whereSql(query.filters, "_r", params);
    rows = await jsonRows(tx, written(statement, query), params.values);
  }
  return changed(request, rows);
};

const remove: Handler = async (tx, table, request, query) => {
  const params = new Params();
  const statement = `delete from public.${ident(table.name)} as _r` +
    whereSql(query.filters, "_r", params);
  return changed(
    request,
    await jsonRows(tx, written(statement, query), params.values),
  );
};

const HANDLERS: Record<string, Handler> = {
  GET: read,
  HEAD: read,
  POST: insert,
  PATCH: update,
  DELETE: remove,
};
