/**
 * The REST stand-in's schema cache: tables/views and functions of schema `public` with their
 * columns and argument names/types, read from the catalogs once and re-read on a miss (as
 * PostgREST reloads its cache), so every identifier in generated SQL comes from the catalog.
 */

import type { Queryable } from "./rest_db.ts";

/** A column of a table, view or function result. */
export interface Column {
  name: string;
  /** `format_type` text, safe to put after `::` or in a column definition list. */
  type: string;
}

/** A table, view or materialized view in `public`. */
export interface Table {
  name: string;
  columns: Map<string, Column>;
}

/** An input argument of a function. */
export interface FnArg {
  /** Empty for an unnamed argument. */
  name: string;
  type: string;
  hasDefault: boolean;
}

/** What a function returns, as the response shape depends on it. */
export type FnReturn = "void" | "scalar" | "composite";

/** One function (one overload) in `public`. */
export interface Fn {
  name: string;
  args: FnArg[];
  returnsSet: boolean;
  returns: FnReturn;
  /** Result columns of composite results (table rows, OUT/TABLE parameters). */
  columns: Map<string, Column>;
}

const TABLES_SQL = `
select c.relname as name,
       json_agg(json_build_object('name', a.attname,
                                  'type', format_type(a.atttypid, a.atttypmod))
                order by a.attnum) as columns
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
where n.nspname = 'public' and c.relkind in ('r', 'v', 'm', 'f', 'p')
group by c.relname`;

const FUNCTIONS_SQL = `
select p.proname as name,
       p.proretset as returns_set,
       p.prorettype = 'void'::regtype as returns_void,
       rt.typtype = 'c' or (p.prorettype = 'record'::regtype and p.proallargtypes is not null)
         as returns_composite,
       p.pronargdefaults as n_defaults,
       coalesce((select json_agg(json_build_object('name', a.attname,
                                                   'type', format_type(a.atttypid, a.atttypmod))
                                 order by a.attnum)
                 from pg_attribute a
                 where a.attrelid = rt.typrelid and a.attnum > 0 and not a.attisdropped),
                '[]') as type_columns,
       coalesce((select json_agg(json_build_object('name', coalesce(x.name, ''),
                                                   'type', format_type(x.type, null),
                                                   'mode', x.mode) order by x.ord)
                 from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]),
                             coalesce(p.proargmodes::text[],
                                      array_fill('i'::text, array[p.pronargs::int])),
                             p.proargnames)
                      with ordinality as x(type, mode, name, ord)
                 where x.type is not null),
                '[]') as args
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
join pg_type rt on rt.oid = p.prorettype
where n.nspname = 'public' and p.prokind = 'f'`;

interface RawColumn {
  name: string;
  type: string;
}

interface RawArg extends RawColumn {
  mode: string;
}

function columnMap(columns: RawColumn[]): Map<string, Column> {
  return new Map(columns.map((c) => [c.name, { name: c.name, type: c.type }]));
}

/** Reads the catalogs lazily and again whenever a lookup misses. */
export class SchemaCache {
  #tables = new Map<string, Table>();
  #functions = new Map<string, Fn[]>();
  #loading: Promise<void> | null = null;
  #loaded = false;

  constructor(private readonly sql: Queryable) {}

  /** Re-reads the catalogs (one load at a time; concurrent callers share it). */
  reload(): Promise<void> {
    this.#loading ??= this.#load().finally(() => {
      this.#loading = null;
    });
    return this.#loading;
  }

  async #load(): Promise<void> {
    const [tables, functions] = await Promise.all([
      this.sql.query(TABLES_SQL),
      this.sql.query(FUNCTIONS_SQL),
    ]);
    const tableMap = new Map<string, Table>();
    for (const row of tables) {
      tableMap.set(row.name, {
        name: row.name,
        columns: columnMap(row.columns),
      });
    }
    const fnMap = new Map<string, Fn[]>();
    for (const row of functions) {
      const all = row.args as RawArg[];
      const inputs = all.filter((a) =>
        a.mode === "i" || a.mode === "b" || a.mode === "v"
      );
      const outputs = all.filter((a) =>
        a.mode === "o" || a.mode === "b" || a.mode === "t"
      );
      const firstDefault = inputs.length - Number(row.n_defaults);
      const fn: Fn = {
        name: row.name,
        args: inputs.map((a, i) => ({
          name: a.name,
          type: a.type,
          hasDefault: i >= firstDefault,
        })),
        returnsSet: row.returns_set,
        returns: row.returns_void
          ? "void"
          : row.returns_composite
          ? "composite"
          : "scalar",
        columns: columnMap(outputs.length > 0 ? outputs : row.type_columns),
      };
      fnMap.set(fn.name, [...(fnMap.get(fn.name) ?? []), fn]);
    }
    this.#tables = tableMap;
    this.#functions = fnMap;
    this.#loaded = true;
  }

  async #ensure(): Promise<void> {
    if (!this.#loaded) await this.reload();
  }

  /** The table or view, reloading once on a miss; undefined if it does not exist. */
  async table(name: string): Promise<Table | undefined> {
    await this.#ensure();
    if (!this.#tables.has(name)) await this.reload();
    return this.#tables.get(name);
  }

  /** The overloads of a function that `accepts`, reloading once when none does. */
  async functions(name: string, accepts: (fn: Fn) => boolean): Promise<Fn[]> {
    await this.#ensure();
    let found = (this.#functions.get(name) ?? []).filter(accepts);
    if (found.length === 0) {
      await this.reload();
      found = (this.#functions.get(name) ?? []).filter(accepts);
    }
    return found;
  }
}
