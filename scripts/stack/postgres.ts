/**
 * An ephemeral PostgreSQL 15 for the local stack: initdb into `.stack/pg-<port>/`, start on a
 * free 127.0.0.1 port (socket in the data dir), apply the Supabase roles and the migrations,
 * and on stop shut it down and delete the directory.
 */

import { freePort, HOST } from "./net.ts";
import { asPostgresUser, CommandError, isRoot, run, tail } from "./proc.ts";

/** Where the PostgreSQL 15 binaries live (`PG_BIN` overrides). */
export function pgBin(): string {
  return Deno.env.get("PG_BIN") ?? "/usr/lib/postgresql/15/bin";
}

/** A running throwaway PostgreSQL. */
export interface Postgres {
  port: number;
  dataDir: string;
  /** Superuser URL (`postgres`, trust auth, TCP). */
  url: string;
  /** The postmaster's pid (from postmaster.pid). */
  pid: number;
  /** Stops the server (fast, then immediate) and removes the data dir; safe to call twice. */
  stop(): Promise<void>;
  /** The same without awaiting anything, for exit handlers that cannot wait. */
  stopSync(): void;
}

/** Options of {@link startPostgres}. */
export interface PostgresOptions {
  /** Repository root; the data dir goes to `<root>/.stack/pg-<port>`. */
  root: string;
  /** Fixed port; default a free one. */
  port?: number;
  /** Default 250: the end-to-end tests open a few hundred concurrent requests. */
  maxConnections?: number;
}

/** A dir without a server is only left alone this long (it may be in initdb right now). */
const STALE_AFTER_MS = 10 * 60 * 1000;

/**
 * Removes `.stack/pg-*` dirs that no server uses any more: their postmaster is dead (the owner
 * was killed), or they never got one and are old (startup was interrupted). Live stacks,
 * including other users' of this checkout, are left alone. Returns the dirs removed.
 */
export async function sweepStale(stackDir: string): Promise<string[]> {
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(stackDir));
  } catch {
    return removed;
  }
  for (const entry of entries) {
    if (!entry.isDirectory || !/^pg-\d+$/.test(entry.name)) continue;
    const dir = `${stackDir}/${entry.name}`;
    const pidText = await Deno.readTextFile(`${dir}/postmaster.pid`).catch(() =>
      null
    );
    let stale: boolean;
    if (pidText !== null) {
      stale = !processAlive(Number(pidText.split("\n")[0]));
    } else {
      const modified = (await Deno.stat(dir).catch(() => null))?.mtime
        ?.getTime();
      stale = modified !== undefined && Date.now() - modified > STALE_AFTER_MS;
    }
    if (stale) {
      await Deno.remove(dir, { recursive: true }).then(
        () => removed.push(dir),
        () => {},
      );
    }
  }
  return removed;
}

/** Initialises and starts a server; throws with the server log's tail when it cannot start. */
export async function startPostgres(
  options: PostgresOptions,
): Promise<Postgres> {
  await sweepStale(`${options.root}/.stack`);
  // A port can be taken between the probe and the bind; a few fresh tries cover that race.
  const attempts = options.port === undefined ? 4 : 1;
  let lastError: unknown;
  for (let i = 0; i < attempts; i++) {
    const port = options.port ?? freePort();
    try {
      return await startOn(options, port);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

async function startOn(
  options: PostgresOptions,
  port: number,
): Promise<Postgres> {
  const stackDir = `${options.root}/.stack`;
  const dataDir = `${stackDir}/pg-${port}`;
  await Deno.mkdir(stackDir, { recursive: true });
  try {
    await Deno.mkdir(dataDir);
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new Error(
        `${dataDir} already exists (another stack on port ${port}?)`,
      );
    }
    throw error;
  }
  const removeDir = () =>
    Deno.remove(dataDir, { recursive: true }).catch(() => {});
  try {
    if (isRoot()) await run(["chown", "postgres:postgres", dataDir]);
    await run(
      asPostgresUser([
        `${pgBin()}/initdb`,
        "-D",
        dataDir,
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
      ]),
      { timeoutMs: 120_000 },
    );
    // Durability is pointless for a throwaway database; speed is what tests need.
    const settings = [
      `port = ${port}`,
      `listen_addresses = '${HOST}'`,
      `unix_socket_directories = '${dataDir.replaceAll("'", "''")}'`,
      `max_connections = ${options.maxConnections ?? 250}`,
      "fsync = off",
      "synchronous_commit = off",
      "full_page_writes = off",
      // As on Supabase: Realtime reads changes through logical decoding (tests/realtime.test.ts).
      "wal_level = logical",
      "shared_buffers = 64MB",
      "log_min_messages = warning",
      "timezone = 'UTC'",
    ];
    await Deno.writeTextFile(
      `${dataDir}/postgresql.conf`,
      `\n# hms-webhook local stack\n${settings.join("\n")}\n`,
      { append: true },
    );
    const logFile = `${dataDir}/server.log`;
    try {
      await run(
        asPostgresUser([
          `${pgBin()}/pg_ctl`,
          "start",
          "-D",
          dataDir,
          "-l",
          logFile,
          "-w",
          "-t",
          "60",
        ]),
        { timeoutMs: 90_000 },
      );
    } catch (error) {
      const log = await Deno.readTextFile(logFile).catch(() => "");
      throw new Error(
        `PostgreSQL did not start on port ${port}: ${
          error instanceof Error ? error.message : error
        }\n${tail(log, 20)}`,
      );
    }
  } catch (error) {
    await removeDir();
    throw error;
  }
  const pid = Number(
    (await Deno.readTextFile(`${dataDir}/postmaster.pid`)).split("\n")[0],
  );
  let stopping: Promise<void> | null = null;
  let gone = false;
  return {
    port,
    dataDir,
    pid,
    url: `postgres://postgres@${HOST}:${port}/postgres`,
    stop() {
      stopping ??= (async () => {
        const fast = await run(pgCtlStop(dataDir, "fast"), {
          check: false,
          timeoutMs: 30_000,
        });
        if (fast.code !== 0 && processAlive(pid)) {
          await run(pgCtlStop(dataDir, "immediate"), {
            check: false,
            timeoutMs: 30_000,
          });
        }
        await removeDir();
        gone = true;
      })();
      return stopping;
    },
    stopSync() {
      // Also when an async stop() is still running: the process may be exiting under it.
      if (gone) return;
      gone = true;
      stopDataDirSync(dataDir);
    },
  };
}

function pgCtlStop(dataDir: string, mode: string): string[] {
  return asPostgresUser([
    `${pgBin()}/pg_ctl`,
    "stop",
    "-D",
    dataDir,
    "-m",
    mode,
    "-w",
    "-t",
    "20",
  ]);
}

/**
 * Stops whatever server runs on a data dir (immediate mode) and deletes the dir, without
 * awaiting: for exit handlers and for cleaning up after a stack whose owner was killed.
 */
export function stopDataDirSync(dataDir: string): void {
  const [program, ...args] = pgCtlStop(dataDir, "immediate");
  try {
    new Deno.Command(program, { args, stdout: "null", stderr: "null" })
      .outputSync();
  } catch {
    // Best effort: the process is exiting.
  }
  try {
    Deno.removeSync(dataDir, { recursive: true });
  } catch {
    // Already gone.
  }
}

/**
 * True while a process with this pid runs. A zombie counts as gone: it has exited, and a
 * reparented one may wait for a PID 1 that never reaps (as in some containers).
 */
export function processAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(
      stat.lastIndexOf(")") + 2,
      stat.lastIndexOf(")") + 3,
    );
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Runs one SQL file with psql, stopping at the first error. */
export async function applySqlFile(url: string, file: string): Promise<void> {
  try {
    await run(
      [
        `${pgBin()}/psql`,
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        url,
        "-f",
        file,
      ],
      {
        timeoutMs: 120_000,
        env: { PGOPTIONS: "-c client_min_messages=warning" },
      },
    );
  } catch (error) {
    if (error instanceof CommandError) {
      throw new Error(
        `applying ${file} failed:\n${tail(error.result.stderr, 20)}`,
      );
    }
    throw error;
  }
}

/**
 * Applies `scripts/stack/supabase_roles.sql` (the roles PostgREST and Supabase expect) and then
 * every `supabase/migrations/*.sql` in file-name order. Returns the files applied.
 */
export async function migrate(url: string, root: string): Promise<string[]> {
  const roles = `${root}/scripts/stack/supabase_roles.sql`;
  try {
    await Deno.stat(roles);
  } catch {
    throw new Error(
      `${roles} is missing: it creates anon/authenticated/service_role`,
    );
  }
  const dir = `${root}/supabase/migrations`;
  const migrations: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) {
      if (entry.isFile && entry.name.endsWith(".sql")) {
        migrations.push(`${dir}/${entry.name}`);
      }
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  migrations.sort();
  const files = [roles, ...migrations];
  for (const file of files) await applySqlFile(url, file);
  return files;
}
