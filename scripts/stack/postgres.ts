/**
 * An ephemeral PostgreSQL 15 for the local stack: initdb into `.stack/pg-<port>/`, start on a
 * free 127.0.0.1 port (socket in the data dir) with a Supabase database's durability settings and
 * pg_cron loaded, apply the Supabase roles, the extensions and the migrations (with the Supabase
 * CLI's `db push`), and on stop shut it down and delete the directory.
 * `.stack/pg-<port>.owner.json` names the process that owns it (and the processes it started),
 * so the next start cleans up after an owner that was killed.
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
  /** The postmaster's pid now (postmaster.pid; it changes when the server is restarted). */
  readonly pid: number;
  /** The settings written to postgresql.conf (name -> value). */
  settings: Record<string, string>;
  /** Records a process this stack started (a function), for the clean-up after a killed owner. */
  adopt(pid: number): Promise<void>;
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
  /**
   * postgresql.conf settings over {@link STACK_SETTINGS}, e.g. full-page writes turned off for a
   * benchmark that measures what they cost. `npm start` and the tests never pass any:
   * they run with a Supabase database's durability.
   */
  settings?: Record<string, string>;
}

/**
 * What a commit survives, as on a Supabase database (PostgreSQL's defaults; Supabase changes
 * none of them): a commit is flushed to the WAL on disk before the server says it committed, and
 * full pages are logged so a crash mid-write cannot tear one. Without synchronous commit, a
 * killed backend can lose events the function already answered 200
 * (https://www.postgresql.org/docs/15/wal-async-commit.html).
 */
export const SUPABASE_DURABILITY: Readonly<Record<string, string>> = {
  fsync: "on",
  synchronous_commit: "on",
  full_page_writes: "on",
};

/** The database the stack creates everything in (and pg_cron runs its jobs in). */
export const STACK_DATABASE = "postgres";

/**
 * Everything the stack sets besides connection settings: the durability above, logical
 * decoding as Supabase runs it (`wal_level = logical`; Realtime reads changes through a
 * replication slot), and pg_cron, which must be preloaded and runs its jobs in one database
 * (https://github.com/citusdata/pg_cron#setting-up-pg_cron). Its jobs run in background workers
 * rather than over a libpq connection, so they need no password or host setting.
 */
export const STACK_SETTINGS: Readonly<Record<string, string>> = {
  ...SUPABASE_DURABILITY,
  shared_preload_libraries: "'pg_cron'",
  "cron.database_name": `'${STACK_DATABASE}'`,
  "cron.use_background_workers": "on",
  max_worker_processes: "32",
  wal_level: "logical",
  max_replication_slots: "10",
  max_wal_senders: "10",
  shared_buffers: "64MB",
  log_min_messages: "warning",
  timezone: "'UTC'",
};

/** A dir without a server or owner is only left alone this long (it may be in initdb right now). */
const STALE_AFTER_MS = 10 * 60 * 1000;

/** A process, told apart from a later one with the same pid by its start time. */
interface ProcessRef {
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot). */
  start: string;
}

/** Who owns a data dir: the stack process and the processes it started. */
interface OwnerFile {
  owner: ProcessRef;
  children: ProcessRef[];
}

function processRef(pid: number): ProcessRef | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { pid, start: fields[19] };
  } catch {
    return null;
  }
}

/** True while the very process `ref` names still runs (not a later one that reused its pid). */
function stillRuns(ref: ProcessRef): boolean {
  return processAlive(ref.pid) && processRef(ref.pid)?.start === ref.start;
}

function ownerPath(dataDir: string): string {
  return `${dataDir}.owner.json`;
}

async function readOwner(dataDir: string): Promise<OwnerFile | null> {
  try {
    return JSON.parse(await Deno.readTextFile(ownerPath(dataDir)));
  } catch {
    return null;
  }
}

/**
 * Removes `.stack/pg-*` dirs that no live stack owns: their owner process is gone (killed, even
 * by SIGKILL: its functions are killed and its server stopped here), or, without an owner file,
 * their postmaster is dead or they never got one and are old. Live stacks, including other
 * users' of this checkout, are left alone. Returns the dirs removed.
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
    const owned = /^(pg-\d+)\.owner\.json$/.exec(entry.name);
    if (owned !== null && !entries.some((e) => e.name === owned[1])) {
      // The dir went first (a stop interrupted between the two removals).
      const owner = await readOwner(`${stackDir}/${owned[1]}`);
      if (owner === null || !stillRuns(owner.owner)) {
        await Deno.remove(`${stackDir}/${entry.name}`).catch(() => {});
      }
      continue;
    }
    if (!entry.isDirectory || !/^pg-\d+$/.test(entry.name)) continue;
    const dir = `${stackDir}/${entry.name}`;
    const owner = await readOwner(dir);
    let stale: boolean;
    if (owner !== null) {
      stale = !stillRuns(owner.owner);
      if (stale) {
        for (const child of owner.children) {
          if (stillRuns(child)) {
            try {
              Deno.kill(child.pid, "SIGKILL");
            } catch {
              // Gone meanwhile.
            }
          }
        }
      }
    } else {
      const pidText = await Deno.readTextFile(`${dir}/postmaster.pid`).catch(
        () => null,
      );
      if (pidText !== null) {
        stale = !processAlive(Number(pidText.split("\n")[0]));
      } else {
        const modified = (await Deno.stat(dir).catch(() => null))?.mtime
          ?.getTime();
        stale = modified !== undefined &&
          Date.now() - modified > STALE_AFTER_MS;
      }
    }
    if (stale) {
      // Stops a server still running there (the owner was killed), then removes the dir.
      stopDataDirSync(dir);
      await Deno.remove(ownerPath(dir)).catch(() => {});
      if (await Deno.stat(dir).then(() => false, () => true)) removed.push(dir);
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
  const owner: OwnerFile = {
    owner: processRef(Deno.pid) ?? { pid: Deno.pid, start: "" },
    children: [],
  };
  const writeOwner = () =>
    Deno.writeTextFile(ownerPath(dataDir), JSON.stringify(owner) + "\n");
  await writeOwner();
  const removeDir = async () => {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await Deno.remove(ownerPath(dataDir)).catch(() => {});
  };
  const settings: Record<string, string> = {
    ...STACK_SETTINGS,
    ...options.settings,
  };
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
    const lines = [
      `port = ${port}`,
      `listen_addresses = '${HOST}'`,
      `unix_socket_directories = '${dataDir.replaceAll("'", "''")}'`,
      `max_connections = ${options.maxConnections ?? 250}`,
      ...Object.entries(settings).map(([name, value]) => `${name} = ${value}`),
    ];
    await Deno.writeTextFile(
      `${dataDir}/postgresql.conf`,
      `\n# hms-webhook local stack\n${lines.join("\n")}\n`,
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
  let pid = Number(
    (await Deno.readTextFile(`${dataDir}/postmaster.pid`)).split("\n")[0],
  );
  let stopping: Promise<void> | null = null;
  let gone = false;
  const server: Postgres = {
    port,
    dataDir,
    get pid() {
      try {
        pid = Number(
          Deno.readTextFileSync(`${dataDir}/postmaster.pid`).split("\n")[0],
        );
      } catch {
        // Stopped right now: the last known pid.
      }
      return pid;
    },
    settings,
    url: `postgres://postgres@${HOST}:${port}/${STACK_DATABASE}`,
    async adopt(child: number) {
      const ref = processRef(child);
      if (ref === null) return;
      owner.children.push(ref);
      await writeOwner();
    },
    stop() {
      stopping ??= (async () => {
        const fast = await run(pgCtlStop(dataDir, "fast"), {
          check: false,
          timeoutMs: 30_000,
        });
        if (fast.code !== 0 && processAlive(server.pid)) {
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
      try {
        Deno.removeSync(ownerPath(dataDir));
      } catch {
        // Already gone.
      }
    },
  };
  return server;
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

/** psql on `url`, without ~/.psqlrc, quiet, stopping at the first error; `args` says what to run. */
function psql(url: string, args: string[]): string[] {
  return [
    `${pgBin()}/psql`,
    "-X",
    "-q",
    "-v",
    "ON_ERROR_STOP=1",
    "-d",
    url,
    ...args,
  ];
}

/** Runs one SQL file with psql, stopping at the first error. */
export async function applySqlFile(url: string, file: string): Promise<void> {
  try {
    await run(psql(url, ["-f", file]), {
      timeoutMs: 120_000,
      env: { PGOPTIONS: "-c client_min_messages=warning" },
    });
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
 * Sets a database up as the stack runs it: `scripts/stack/supabase_roles.sql` (the roles PostgREST
 * and Supabase expect), `scripts/stack/supabase_extensions.sql` (pg_cron, and the Vault and pg_net
 * stand-ins), then the project's migrations with `supabase db push --db-url`, the command a
 * user deploys them with; it records them in `supabase_migrations.schema_migrations` and applies
 * only those not recorded yet. `cli`: the CLI to run (default: the one in `root`'s node_modules).
 * Returns the CLI's output.
 */
export async function migrate(
  url: string,
  root: string,
  cli = supabaseCli(root),
): Promise<string> {
  for (const name of ["supabase_roles.sql", "supabase_extensions.sql"]) {
    const file = `${root}/scripts/stack/${name}`;
    try {
      await Deno.stat(file);
    } catch {
      throw new Error(`${file} is missing`);
    }
    await applySqlFile(url, file);
  }
  return await dbPush(url, root, cli);
}

/** Makes every pg_cron job inactive (main.ts `pauseCronJobs`). */
export async function pauseCronJobs(url: string): Promise<void> {
  await run(
    psql(url, [
      "-c",
      "select cron.alter_job(jobid, active := false) from cron.job",
    ]),
    { timeoutMs: 30_000 },
  );
}

/** The Supabase CLI of the repository (npm's `supabase` package). */
export function supabaseCli(root: string): string {
  return `${root}/node_modules/.bin/supabase`;
}

/**
 * A database URL as the Supabase CLI takes it for a local server: `postgresql://` and TLS off
 * (the stack's server has no certificate; the CLI otherwise insists on TLS).
 */
export function cliDbUrl(url: string): string {
  const parsed = new URL(url.replace(/^postgres:/, "postgresql:"));
  parsed.searchParams.set("sslmode", "disable");
  return parsed.href;
}

/** `supabase db push --db-url … --yes` from the repository root (it reads supabase/migrations). */
export async function dbPush(
  url: string,
  root: string,
  cli = supabaseCli(root),
): Promise<string> {
  const result = await run(
    [cli, "db", "push", "--db-url", cliDbUrl(url), "--yes"],
    { cwd: root, check: false, timeoutMs: 300_000 },
  );
  const output = `${result.stdout}${result.stderr}`;
  if (result.code !== 0) {
    throw new Error(
      `supabase db push failed (exit ${result.code}):\n${tail(output, 30)}`,
    );
  }
  return output;
}
