/**
 * PostgREST's URL grammar for the REST stand-in: `select`, horizontal filters
 * (`col=[not.]op.value`), `order`, `limit` and `offset`, checked against the schema cache and
 * turned into SQL fragments whose values are always bind parameters.
 *
 * Supported: `select=a,alias:b` or `*`; operators eq, neq, gt, gte, lt, lte, like, ilike (`*` as
 * wildcard), is (null, true, false, unknown), in.(…) with optional double quotes, each with an
 * optional `not.` prefix; `order=a.desc.nullslast,b`; integer `limit`/`offset`. Not supported
 * (answered 400 PGRST100): resource embedding, JSON paths, casts, `or`/`and` trees, full-text
 * and range operators.
 */

import { RestError } from "./rest_errors.ts";
import type { Column } from "./rest_schema.ts";

/** Query keys that are never filters. */
export const RESERVED_KEYS = new Set([
  "select",
  "order",
  "limit",
  "offset",
  "columns",
  "on_conflict",
]);

/**
 * Collects bind parameters and hands out their placeholders, typed `text` so that the driver
 * sends the string as is (it would JSON-encode a string bound to a json parameter again).
 */
export class Params {
  readonly values: (string | null)[] = [];

  /** Adds a value and returns its placeholder, e.g. `$2::text`. */
  add(value: string | null): string {
    this.values.push(value);
    return `$${this.values.length}::text`;
  }
}

/** A quoted SQL identifier (only ever used for names that came from the catalog). */
export function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** One output column, optionally renamed. */
export interface SelectItem {
  column: Column;
  alias: string | null;
}

/** One horizontal filter. */
export interface Filter {
  column: Column;
  negate: boolean;
  operator: string;
  value: string;
}

/** One ORDER BY term. */
export interface OrderTerm {
  column: Column;
  descending: boolean;
  nulls: "first" | "last" | null;
}

/** A parsed read: which columns, which rows, which order, which page. */
export interface Query {
  /** `null` means `*`. */
  select: SelectItem[] | null;
  filters: Filter[];
  order: OrderTerm[];
  limit: number | null;
  offset: number | null;
}

const COMPARISONS: Record<string, string> = {
  eq: "=",
  neq: "<>",
  gt: ">",
  gte: ">=",
  lt: "<",
  lte: "<=",
  like: "like",
  ilike: "ilike",
};

function parseError(message: string, details: string | null = null): RestError {
  return new RestError(400, "PGRST100", message, details);
}

/** Looks a column up; an unknown one is PostgreSQL's 42703, as PostgREST reports it. */
export function columnOf(
  columns: Map<string, Column>,
  name: string,
  relation: string,
): Column {
  const column = columns.get(name);
  if (column === undefined) {
    throw new RestError(
      400,
      "42703",
      `column ${relation}.${name} does not exist`,
    );
  }
  return column;
}

/**
 * Parses the query string of a read (or the filters of a write). Keys in `argumentKeys` are
 * function arguments (GET /rpc) and are skipped.
 */
export function parseQuery(
  params: URLSearchParams,
  columns: Map<string, Column>,
  relation: string,
  argumentKeys: Set<string> = new Set(),
): Query {
  const query: Query = {
    select: null,
    filters: [],
    order: [],
    limit: null,
    offset: null,
  };
  for (const [key, raw] of params) {
    if (argumentKeys.has(key)) continue;
    switch (key) {
      case "select":
        query.select = parseSelect(raw, columns, relation);
        break;
      case "order":
        query.order = parseOrder(raw, columns, relation);
        break;
      case "limit":
        query.limit = parseCount("limit", raw);
        break;
      case "offset":
        query.offset = parseCount("offset", raw);
        break;
      case "columns":
      case "on_conflict":
        break;
      case "or":
      case "and":
      case "not.or":
      case "not.and":
        throw parseError(
          `logical "${key}" filters are not supported by the local REST stand-in`,
        );
      default:
        query.filters.push(parseFilter(key, raw, columns, relation));
    }
  }
  return query;
}

function parseCount(name: string, raw: string): number {
  if (!/^\d{1,9}$/.test(raw)) {
    throw parseError(`"${name}" must be a non-negative integer`, raw);
  }
  return Number(raw);
}

function parseSelect(
  raw: string,
  columns: Map<string, Column>,
  relation: string,
): SelectItem[] | null {
  const items = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (items.length === 0 || (items.length === 1 && items[0] === "*")) {
    return null;
  }
  return items.map((item) => {
    if (/[()]|->|::|!/.test(item)) {
      throw parseError(
        'embedding, JSON paths and casts in "select" are not supported by the local REST stand-in',
        item,
      );
    }
    const colon = item.indexOf(":");
    const alias = colon >= 0 ? item.slice(0, colon) : null;
    const name = colon >= 0 ? item.slice(colon + 1) : item;
    if (name === "*") throw parseError('"*" cannot be renamed', item);
    return { column: columnOf(columns, name, relation), alias };
  });
}

function parseOrder(
  raw: string,
  columns: Map<string, Column>,
  relation: string,
): OrderTerm[] {
  return raw.split(",").filter((s) => s !== "").map((term) => {
    const [name, ...modifiers] = term.split(".");
    const result: OrderTerm = {
      column: columnOf(columns, name, relation),
      descending: false,
      nulls: null,
    };
    for (const modifier of modifiers) {
      if (modifier === "asc" || modifier === "desc") {
        result.descending = modifier === "desc";
      } else if (modifier === "nullsfirst") result.nulls = "first";
      else if (modifier === "nullslast") result.nulls = "last";
      else throw parseError(`failed to parse order (${raw})`, term);
    }
    return result;
  });
}

function parseFilter(
  key: string,
  raw: string,
  columns: Map<string, Column>,
  relation: string,
): Filter {
  const column = columnOf(columns, key, relation);
  let rest = raw;
  let negate = false;
  if (rest.startsWith("not.")) {
    negate = true;
    rest = rest.slice(4);
  }
  const dot = rest.indexOf(".");
  if (dot < 0) {
    throw parseError(`failed to parse filter (${raw})`, `${key}=${raw}`);
  }
  const operator = rest.slice(0, dot);
  if (!(operator in COMPARISONS) && operator !== "is" && operator !== "in") {
    throw parseError(
      `failed to parse filter (${raw})`,
      `unknown operator "${operator}"`,
    );
  }
  return { column, negate, operator, value: rest.slice(dot + 1) };
}

/** Splits `(a,"b,c",d)` into its values, honouring double quotes and backslash escapes. */
export function parseList(raw: string): string[] {
  if (!raw.startsWith("(") || !raw.endsWith(")")) {
    throw parseError(
      `failed to parse filter (in.${raw})`,
      "expected in.(a,b,…)",
    );
  }
  const inner = raw.slice(1, -1);
  const values: string[] = [];
  let current = "";
  let quoted = false;
  let wasQuoted = false;
  for (let i = 0; i < inner.length; i++) {
    const ch = inner[i];
    if (quoted) {
      if (ch === "\\" && i + 1 < inner.length) current += inner[++i];
      else if (ch === '"') quoted = false;
      else current += ch;
    } else if (ch === '"') {
      quoted = true;
      wasQuoted = true;
    } else if (ch === ",") {
      values.push(wasQuoted ? current : current.trim());
      current = "";
      wasQuoted = false;
    } else current += ch;
  }
  if (quoted) {
    throw parseError(
      `failed to parse filter (in.${raw})`,
      "unterminated quote",
    );
  }
  if (inner !== "" || wasQuoted) {
    values.push(wasQuoted ? current : current.trim());
  }
  return values;
}

function filterSql(filter: Filter, alias: string, params: Params): string {
  const column = `${alias}.${ident(filter.column.name)}`;
  const type = filter.column.type;
  let sql: string;
  if (filter.operator === "is") {
    const value = filter.value.toLowerCase();
    if (!["null", "true", "false", "unknown"].includes(value)) {
      throw parseError(
        `failed to parse filter (is.${filter.value})`,
        "expected null, true, false or unknown",
      );
    }
    sql = `${column} is ${value}`;
  } else if (filter.operator === "in") {
    const values = parseList(filter.value);
    sql = values.length === 0
      ? "false"
      : `${column} in (${
        values.map((v) => `${params.add(v)}::${type}`).join(", ")
      })`;
  } else if (filter.operator === "like" || filter.operator === "ilike") {
    const pattern = filter.value.replaceAll("*", "%");
    sql = `${column}::text ${COMPARISONS[filter.operator]} ${
      params.add(pattern)
    }`;
  } else {
    sql = `${column} ${COMPARISONS[filter.operator]} ${
      params.add(filter.value)
    }::${type}`;
  }
  return filter.negate ? `not (${sql})` : sql;
}

/** ` where …` for the filters (empty when there are none). */
export function whereSql(
  filters: Filter[],
  alias: string,
  params: Params,
): string {
  if (filters.length === 0) return "";
  return ` where ${
    filters.map((f) => filterSql(f, alias, params)).join(" and ")
  }`;
}

/** The select list over `alias`. */
export function selectSql(select: SelectItem[] | null, alias: string): string {
  if (select === null) return `${alias}.*`;
  return select.map((item) => {
    const column = `${alias}.${ident(item.column.name)}`;
    return item.alias === null ? column : `${column} as ${ident(item.alias)}`;
  }).join(", ");
}

/** ` order by … limit … offset …` (each part only when asked for). */
export function pageSql(query: Query, alias: string): string {
  let sql = "";
  if (query.order.length > 0) {
    sql += " order by " +
      query.order.map((term) =>
        `${alias}.${ident(term.column.name)} ${
          term.descending ? "desc" : "asc"
        }` +
        (term.nulls === null ? "" : ` nulls ${term.nulls}`)
      ).join(", ");
  }
  if (query.limit !== null) sql += ` limit ${query.limit}`;
  if (query.offset !== null) sql += ` offset ${query.offset}`;
  return sql;
}

/**
 * The query's rows of `source` (which names its rows `_r`) as one JSON text `j` each: selected,
 * filtered and paged. Table reads and set-returning RPCs read rows the same way.
 */
export function readSql(query: Query, source: string, params: Params): string {
  return `select to_json(_s)::text as j from (select ${
    selectSql(query.select, "_r")
  } from ${source}${whereSql(query.filters, "_r", params)}${
    pageSql(query, "_r")
  }) _s`;
}
