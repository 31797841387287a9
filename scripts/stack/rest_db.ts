/**
 * The REST stand-in's connection pool: node-postgres (`npm:pg`) with every failure of the
 * database turned into an error the request path can answer, never a crash of this process.
 *
 * Why `pg` and not postgres.js (`npm:postgres`, used elsewhere for tests and tools): postgres.js
 * 3.4.9, its newest release, throws from a `setImmediate` callback when a connection closes with
 * a write queued (porsager/postgres#1154, #1208; the fixes, #1168 and #1209, are unmerged), and
 * that uncatchable TypeError killed this process on the first `pg_ctl restart -m fast` under
 * load. Its close path also leaves `nextWriteTimer` set, so a pooled connection can hang for
 * good instead. `pg` reports the same faults as rejected queries and `error` events, which this
 * file listens to (an `error` event without a listener would kill the process too). Measured:
 * see docs/design.md §9 and tests/faults.test.ts.
 */

import pg from "pg";

/** A result row, keyed by column name (json/jsonb, bool and int columns already parsed). */
// deno-lint-ignore no-explicit-any
export type Row = Record<string, any>;

/** Something that runs one statement with text parameters. */
export interface Queryable {
  query(text: string, values?: readonly (string | null)[]): Promise<Row[]>;
}

/** Runs a statement whose rows carry one JSON text column `j`, and returns those texts. */
export async function jsonRows(
  tx: Queryable,
  sql: string,
  values: readonly (string | null)[],
): Promise<string[]> {
  return (await tx.query(sql, values)).map((row) => row.j as string);
}

/** Runs `body` in one transaction; the pool outside transactions. */
export interface Db extends Queryable {
  transaction<T>(
    mode: "read only" | "read write",
    body: (tx: Queryable) => Promise<T>,
  ): Promise<T>;
  end(): Promise<void>;
}

/**
 * The database could not be used. `connect`: no connection could be made (refused, timed out,
 * refused during startup or recovery): PostgREST's `ConnectionUsageError`, PGRST000. `lost`: a
 * connection broke while in use without a server error: its `ClientError`, PGRST001.
 */
export class DbUnavailable extends Error {
  constructor(readonly kind: "connect" | "lost", cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = "DbUnavailable";
  }
}

/** Options of {@link createDb}. */
export interface DbOptions {
  url: string;
  max: number;
  /** `application_name`, so the stand-in's backends can be told apart (PostgREST sets one too). */
  applicationName: string;
  /** Longest wait for a connection (pool slot and connect), ms. */
  connectTimeoutMs?: number;
}

/** A server's ErrorResponse as `pg` reports it (SQLSTATE in `code`). */
function isServerError(error: unknown): boolean {
  return error instanceof pg.DatabaseError;
}

export function createDb(options: DbOptions): Db {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
    application_name: options.applicationName,
    keepAlive: true,
  });
  // An idle connection that dies (restart, killed backend) is reported here and dropped by the
  // pool; without a listener Node's EventEmitter would throw it at the top level.
  pool.on("error", () => {});
  // A checked-out client emits `error` when its connection breaks between two statements.
  pool.on("connect", (client) => client.on("error", () => {}));

  async function checkout(): Promise<pg.PoolClient> {
    try {
      return await pool.connect();
    } catch (error) {
      throw new DbUnavailable("connect", error);
    }
  }

  /** Server errors keep their SQLSTATE; anything else on a used connection means it is gone. */
  async function run(
    client: pg.PoolClient,
    text: string,
    values: readonly (string | null)[] | undefined,
  ): Promise<Row[]> {
    try {
      const result = await client.query(text, values as unknown[] | undefined);
      return result.rows;
    } catch (error) {
      throw isServerError(error) ? error : new DbUnavailable("lost", error);
    }
  }

  return {
    async query(text, values) {
      const client = await checkout();
      let broken: unknown = undefined;
      try {
        return await run(client, text, values);
      } catch (error) {
        if (!isServerError(error)) broken = error;
        throw error;
      } finally {
        client.release(broken !== undefined ? true : undefined);
      }
    },
    async transaction(mode, body) {
      const client = await checkout();
      // A client whose transaction did not end cleanly is destroyed, never handed out again.
      let clean = false;
      try {
        await run(client, `begin ${mode}`, undefined);
        const result = await body({
          query: (text, values) => run(client, text, values),
        });
        await run(client, "commit", undefined);
        clean = true;
        return result;
      } catch (error) {
        if (!(error instanceof DbUnavailable)) {
          clean = await run(client, "rollback", undefined).then(
            () => true,
            () => false,
          );
        }
        throw error;
      } finally {
        client.release(clean ? undefined : true);
      }
    },
    async end() {
      await pool.end();
    },
  };
}
