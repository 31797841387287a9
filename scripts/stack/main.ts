/**
 * The local stack (`npm start`): PostgreSQL with the migrations, the REST stand-in, the function
 * process and the gateway, started in that order and stopped together. Importers (tests,
 * benchmarks) use {@link startStack}; run as a program it also rebuilds a stale Wasm module,
 * seeds the sample room, prints how to use the stack, writes `.stack/stack.json`, and on
 * Ctrl-C / SIGTERM stops everything and removes `.stack/pg-*`.
 */

import { FUNCTION_NAME, type Gateway, startGateway } from "./gateway.ts";
import { type FunctionProcess, startFunction } from "./function.ts";
import {
  migrate,
  pauseCronJobs,
  type Postgres,
  startPostgres,
} from "./postgres.ts";
import { type DatabaseWatch, watchDatabase } from "./db_watch.ts";
import { HOST } from "./net.ts";
import { createRest, type Rest } from "./rest.ts";
import { fromFileUrl } from "../lib/file_url.ts";
import { run, settleWithin } from "./proc.ts";
import { type HmsApi, startHmsApi } from "./hms_api.ts";
import { reconcileOnce, type Summary } from "../tools/reconcile.ts";

/** The repository root (two levels above this file). */
export const REPO_ROOT = fromFileUrl(new URL("../../", import.meta.url))
  .replace(/\/$/, "");

/** The 100ms sample room (`npm run send` targets it by default); `npm start` creates it. */
export const DEMO_ROOM_ID = "6501c1d2e3f4a5b6c7d8e9f0";

/** Options of {@link startStack}; everything has a default. */
export interface StackOptions {
  root?: string;
  /** Gateway port; 0 or absent picks a free one. */
  port?: number;
  /** `HMS_WEBHOOK_SECRET`; default a random one. */
  secret?: string;
  serviceKey?: string;
  anonKey?: string;
  /** Extra environment for the main function process (`undefined` removes a variable). */
  functionEnv?: Record<string, string | undefined>;
  /** Receives the main function process's output lines. */
  onFunctionLog?: (line: string) => void;
  /** The function's entry module (default: the shim); e.g. the TypeScript baseline. */
  functionEntry?: string;
  /**
   * postgresql.conf settings over the stack's own (postgres.ts `STACK_SETTINGS`: a Supabase
   * database's durability). For benchmarks that measure a setting; never used by `npm start`
   * or the tests.
   */
  postgresSettings?: Record<string, string>;
  /** Receives a line when the database stops answering and when it is back (db_watch.ts). */
  onDatabaseEvent?: (line: string) => void;
  /**
   * Leave the pg_cron jobs the migrations schedule inactive (`cron.job.active = false`): for test
   * stacks, where a scheduled refresh would rewrite rows under a test that checks nothing was
   * written. tests/cron.test.ts activates the one it runs. `npm start` keeps them running.
   */
  pauseCronJobs?: boolean;
}

/** Per-instance options of {@link Stack.startFunction}. */
export interface ExtraFunctionOptions {
  env?: Record<string, string | undefined>;
  /** Default: the stack's gateway. */
  supabaseUrl?: string;
  entry?: string;
  cwd?: string;
  onLog?: (line: string) => void;
}

/** What other tools need to find and use a running stack (`.stack/stack.json`). */
export interface StackFile {
  functionUrl: string;
  supabaseUrl: string;
  restUrl: string;
  databaseUrl: string;
  webhookSecret: string;
  secretHeader: string;
  serviceRoleKey: string;
  anonKey: string;
  /** The function process itself, bypassing the gateway. */
  functionDirectUrl: string;
  /** The entry module the function processes run. */
  functionEntry: string;
  root: string;
  dataDir: string;
  /** postgresql.conf settings the stack wrote (durability, wal_level, …). */
  postgresSettings: Record<string, string>;
  /** At start; the stand-in runs in the stack process. PostgreSQL's changes when it restarts. */
  pids: { stack: number; postgres: number; function: number };
  startedAt: string;
  /** The local 100ms API stand-in, when `npm start` runs one (no real keys were set). */
  hmsApi?: { url: string; accessKey: string; appSecret: string };
}

/** A running stack. */
export interface Stack {
  /** The gateway base URL, i.e. `SUPABASE_URL`. */
  supabaseUrl: string;
  functionUrl: string;
  restUrl: string;
  databaseUrl: string;
  secret: string;
  serviceKey: string;
  anonKey: string;
  postgres: Postgres;
  gateway: Gateway;
  /** The function process behind the gateway. */
  fn: FunctionProcess;
  /** The description written to stack.json. */
  file(): StackFile;
  /** Starts another function process against this stack; stop() stops it too. */
  startFunction(options?: ExtraFunctionOptions): Promise<FunctionProcess>;
  /** Stops every process and removes the data dir; safe to call twice. */
  stop(): Promise<void>;
  /** Kills everything without awaiting (for exit handlers). */
  stopSync(): void;
}

function randomToken(bytes: number): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  // base64url without padding, as Supabase's keys are spelled.
  const base64 = btoa(String.fromCharCode(...raw));
  return base64.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** A random webhook secret (64 hex characters). */
export function generateSecret(): string {
  const raw = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(raw, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Starts a whole stack on free ports; on any failure stops what already started. */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const root = options.root ?? REPO_ROOT;
  const entry = options.functionEntry ??
    `${root}/supabase/functions/hms-webhook/index.ts`;
  const secret = options.secret ?? generateSecret();
  const serviceKey = options.serviceKey ?? `sb_secret_${randomToken(24)}`;
  const anonKey = options.anonKey ?? `sb_publishable_${randomToken(24)}`;
  const startedAt = new Date().toISOString();
  const extra: FunctionProcess[] = [];
  let postgres: Postgres | undefined;
  let rest: Rest | undefined;
  let gateway: Gateway | undefined;
  let fn: FunctionProcess | undefined;
  let watch: DatabaseWatch | undefined;
  let stopping: Promise<void> | null = null;

  // Every step is bounded, so PostgreSQL is always stopped and its directory removed.
  const stop = () => {
    stopping ??= (async () => {
      await settleWithin(watch?.stop() ?? Promise.resolve(), 5_000);
      await settleWithin(
        Promise.all([fn, ...extra].map((f) => f?.stop())),
        10_000,
      );
      for (const f of [fn, ...extra]) f?.stopSync();
      await settleWithin(gateway?.stop() ?? Promise.resolve(), 5_000);
      await settleWithin(rest?.close() ?? Promise.resolve(), 8_000);
      await postgres?.stop();
    })();
    return stopping;
  };
  const stopSync = () => {
    for (const f of [fn, ...extra]) f?.stopSync();
    postgres?.stopSync();
  };

  // Safety net: if the importer exits without stop() (an uncaught error, Deno.exit), the
  // server and the function processes still go away.
  globalThis.addEventListener("unload", stopSync);

  try {
    // A taken gateway port should fail in a millisecond, not after PostgreSQL is up.
    if (options.port) {
      Deno.listen({ hostname: HOST, port: options.port }).close();
    }
    postgres = await startPostgres({
      root,
      settings: options.postgresSettings,
    });
    await migrate(postgres.url, root);
    if (options.pauseCronJobs) await pauseCronJobs(postgres.url);
    const server = postgres;
    watch = watchDatabase({
      url: server.url,
      postmasterPid: () => server.pid,
      onEvent: options.onDatabaseEvent ?? (() => {}),
    });
    rest = createRest({ databaseUrl: postgres.url, serviceKey, anonKey });
    gateway = await startGateway({ port: options.port ?? 0, rest });
    const supabaseUrl = gateway.url;
    fn = await startFunction({
      root,
      supabaseUrl,
      serviceKey,
      secret,
      env: options.functionEnv,
      entry,
      onLog: options.onFunctionLog,
    });
    await postgres.adopt(fn.pid);
    gateway.setFunctionTarget(fn.url);
    const pg = postgres;
    const gw = gateway;
    const main = fn;
    const secretHeader = options.functionEnv?.HMS_WEBHOOK_SECRET_HEADER ??
      Deno.env.get("HMS_WEBHOOK_SECRET_HEADER") ?? "x-webhook-secret";
    const stack: Stack = {
      supabaseUrl,
      functionUrl: `${supabaseUrl}/functions/v1/${FUNCTION_NAME}`,
      restUrl: `${supabaseUrl}/rest/v1`,
      databaseUrl: pg.url,
      secret,
      serviceKey,
      anonKey,
      postgres: pg,
      gateway: gw,
      fn: main,
      file: () => ({
        functionUrl: stack.functionUrl,
        supabaseUrl,
        restUrl: stack.restUrl,
        databaseUrl: pg.url,
        webhookSecret: secret,
        secretHeader,
        serviceRoleKey: serviceKey,
        anonKey,
        functionDirectUrl: main.url,
        functionEntry: entry,
        root,
        dataDir: pg.dataDir,
        postgresSettings: pg.settings,
        pids: { stack: Deno.pid, postgres: pg.pid, function: main.pid },
        startedAt,
      }),
      async startFunction(extraOptions: ExtraFunctionOptions = {}) {
        const started = await startFunction({
          root,
          supabaseUrl: extraOptions.supabaseUrl ?? supabaseUrl,
          serviceKey,
          secret,
          env: extraOptions.env,
          entry: extraOptions.entry ?? entry,
          cwd: extraOptions.cwd,
          onLog: extraOptions.onLog,
        });
        extra.push(started);
        await pg.adopt(started.pid);
        return started;
      },
      stop,
      stopSync,
    };
    return stack;
  } catch (error) {
    await stop();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// `npm start`
// ---------------------------------------------------------------------------------------------

const USAGE =
  `Usage: npm start [-- --port N] [--skip-build] [--function-entry FILE]
                 [--reconcile-every SECONDS | --no-reconcile]

Starts the local stack: PostgreSQL 15 (migrations applied), the REST stand-in, the
hms-webhook function and one gateway on http://127.0.0.1:\${PORT:-54321}; without
HMS_APP_ACCESS_KEY/HMS_APP_SECRET also a local 100ms API stand-in the function reconciles
against. Ctrl-C stops it all.

  --port N       gateway port (default: $PORT, else 54321)
  --skip-build   do not rebuild a stale Wasm module
  --function-entry FILE
                 serve another entry module (e.g. bench/baseline_function.ts)
  --reconcile-every SECONDS
                 run a reconcile pass this often (default 300)
  --no-reconcile no reconcile timer (npm run reconcile still runs one pass)
Environment: HMS_WEBHOOK_SECRET (else generated); every HMS_* variable and SUPABASE_DEBUG
are passed to the function (HMS_APP_ACCESS_KEY, HMS_APP_SECRET, HMS_API_URL for a real
100ms workspace), HMS_STACK_FILE (default .stack/stack.json).`;

/** One line per timed reconcile pass. */
function passLine(
  status: number,
  summary: Summary | null,
  text: string,
): string {
  if (summary === null) return `[reconcile] ${status} ${text.slice(0, 200)}`;
  return `[reconcile] ${summary.status}${
    summary.stopped ? ` (${summary.stopped})` : ""
  }: ` +
    `api ${summary.api}, ${summary.rooms_checked} checked, ${summary.rooms_corrected.length} ` +
    `corrected, ${summary.sessions_closed} sessions closed, ${summary.api_errors.length} API ` +
    `errors, ${summary.db_errors.length} database errors, ${summary.not_reached.length} not ` +
    `reached (${summary.ms} ms)`;
}

/** `bash scripts/build.sh` only when `--check` says the committed module is stale or missing. */
async function buildIfStale(root: string): Promise<void> {
  const script = `${root}/scripts/build.sh`;
  try {
    await Deno.stat(script);
  } catch {
    throw new Error(`${script} is missing; cannot check the Wasm module`);
  }
  const check = await run(["bash", script, "--check"], {
    cwd: root,
    check: false,
    timeoutMs: 600_000,
  });
  if (check.code === 0) return;
  console.log("Wasm module is stale or missing: running scripts/build.sh …");
  const build = await new Deno.Command("bash", {
    args: [script],
    cwd: root,
    stdin: "null",
  }).output();
  if (build.code !== 0) {
    throw new Error(`scripts/build.sh failed (exit ${build.code})`);
  }
}

async function seedDemoRoom(
  databaseUrl: string,
  root: string,
): Promise<boolean> {
  const result = await run([
    "psql",
    "-X",
    "-q",
    "-v",
    "ON_ERROR_STOP=1",
    "-d",
    databaseUrl,
    "-c",
    `insert into public.rooms (hms_room_id) values ('${DEMO_ROOM_ID}') on conflict do nothing`,
  ], { cwd: root, check: false, timeoutMs: 30_000 });
  if (result.code !== 0) {
    console.error(`(could not create the demo room: ${result.stderr.trim()})`);
  }
  return result.code === 0;
}

function banner(
  file: StackFile,
  generatedSecret: boolean,
  seeded: boolean,
): string {
  const curl = [
    `curl -sS -X POST ${file.functionUrl} \\`,
    `    -H 'content-type: application/json' -H '${file.secretHeader}: ${file.webhookSecret}' \\`,
    `    -d '{"version":"2.0","id":"'$(cat /proc/sys/kernel/random/uuid)'",` +
    `"type":"peer.join.success","timestamp":"'$(date -u +%Y-%m-%dT%H:%M:%SZ)'",` +
    `"data":{"room_id":"${DEMO_ROOM_ID}","session_id":"demo-session","peer_id":"demo-peer-1",` +
    `"role":"listener"}}'`,
  ].join("\n  ");
  return `
hms-webhook local stack is running (Ctrl-C stops everything)

  Function URL   ${file.functionUrl}
  REST URL       ${file.restUrl}
  Database URL   ${file.databaseUrl}
  Webhook secret ${file.webhookSecret}${
    generatedSecret ? "   (generated; set HMS_WEBHOOK_SECRET to choose)" : ""
  }
  Secret header  ${file.secretHeader}
  Service key    ${file.serviceRoleKey}
  Anon key       ${file.anonKey}
  Stack file     ${
    Deno.env.get("HMS_STACK_FILE") ?? `${file.root}/.stack/stack.json`
  }

Send a test event${seeded ? ` (room ${DEMO_ROOM_ID} exists)` : ""}:
  npm run send -- peer.join.success --room ${DEMO_ROOM_ID}
or with curl:
  ${curl}
Then look at the row:
  psql ${file.databaseUrl} -c "select * from rooms"
`;
}

async function main(args: string[]): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    console.log(USAGE);
    return 0;
  }
  const portArg = args.indexOf("--port");
  const portText = portArg >= 0
    ? args[portArg + 1]
    : Deno.env.get("PORT") ?? "54321";
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`invalid port "${portText}"\n\n${USAGE}`);
    return 2;
  }
  const root = REPO_ROOT;
  const entryArg = args.indexOf("--function-entry");
  const functionEntry = entryArg >= 0 ? args[entryArg + 1] : undefined;
  if (!args.includes("--skip-build") && functionEntry === undefined) {
    await buildIfStale(root);
  }

  let reconcileEvery = 300;
  const everyArg = args.indexOf("--reconcile-every");
  if (everyArg >= 0) {
    reconcileEvery = Number(args[everyArg + 1]);
    if (!Number.isInteger(reconcileEvery) || reconcileEvery < 5) {
      console.error(`--reconcile-every needs whole seconds (>= 5)\n\n${USAGE}`);
      return 2;
    }
  }
  if (args.includes("--no-reconcile")) reconcileEvery = 0;

  const stackFile = Deno.env.get("HMS_STACK_FILE") ??
    `${root}/.stack/stack.json`;
  let stack: Stack | null = null;
  let hmsApi: HmsApi | null = null;
  let exiting = false;
  const shutdown = async (reason: string, code: number) => {
    exiting = true;
    console.log(
      `\n${reason}: stopping the function, the gateway and PostgreSQL …`,
    );
    await stack?.stop();
    await hmsApi?.stop();
    await Deno.remove(stackFile).catch(() => {});
    console.log("stopped; .stack/pg-* removed");
    Deno.exit(code);
  };
  // Listening before anything starts: a Ctrl-C during startup stops what has started so far
  // once startStack returns (it cannot be interrupted halfway).
  let signalled: string | null = null;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => {
      if (!exiting && stack !== null) return void shutdown(signal, 0);
      if (!exiting && signalled === null) {
        signalled = signal;
        console.log(`\n${signal}: stopping as soon as startup finishes …`);
        return;
      }
      // A second Ctrl-C: stop without waiting for anything.
      stack?.stopSync();
      Deno.exit(130);
    });
  }

  const envSecret = Deno.env.get("HMS_WEBHOOK_SECRET");
  // No real 100ms workspace configured: reconcile against a local stand-in instead.
  let functionEnv: Record<string, string> | undefined;
  if (!Deno.env.get("HMS_APP_ACCESS_KEY") && !Deno.env.get("HMS_APP_SECRET")) {
    const accessKey = generateSecret().slice(0, 24);
    const appSecret = generateSecret();
    hmsApi = await startHmsApi({ accessKey, appSecret });
    functionEnv = {
      HMS_API_URL: hmsApi.url,
      HMS_APP_ACCESS_KEY: accessKey,
      HMS_APP_SECRET: appSecret,
    };
  }
  const started = await startStack({
    root,
    port,
    secret: envSecret || undefined,
    functionEntry,
    functionEnv,
    onFunctionLog: (line) => console.log(`[function] ${line}`),
    onDatabaseEvent: (line) =>
      console.log(`[database] ${new Date().toISOString()} ${line}`),
  });
  stack = started;
  hmsApi?.setWebhook(
    started.functionUrl,
    started.secret,
    started.file().secretHeader,
  );
  if (signalled !== null) await shutdown(signalled, 0);
  started.fn.exited.then((status) => {
    // Expected while shutting down; otherwise the stack is useless without it.
    if (!exiting) {
      void shutdown(`the function process exited (code ${status.code})`, 1);
    }
  });

  const seeded = await seedDemoRoom(started.databaseUrl, root);
  const file: StackFile = started.file();
  if (hmsApi !== null && functionEnv !== undefined) {
    file.hmsApi = {
      url: hmsApi.url,
      accessKey: functionEnv.HMS_APP_ACCESS_KEY,
      appSecret: functionEnv.HMS_APP_SECRET,
    };
  }
  await Deno.mkdir(stackFile.replace(/\/[^/]*$/, ""), { recursive: true });
  await Deno.writeTextFile(stackFile, JSON.stringify(file, null, 2) + "\n");
  console.log(banner(file, !envSecret, seeded));
  if (reconcileEvery > 0) {
    console.log(
      `Reconcile runs every ${reconcileEvery} s (npm run reconcile runs one pass now; ` +
        `--no-reconcile turns the timer off).`,
    );
    let running = false;
    setInterval(async () => {
      if (running || exiting) return;
      running = true;
      try {
        const { status, summary, text } = await reconcileOnce({
          functionUrl: file.functionUrl,
          secret: file.webhookSecret,
          headerName: file.secretHeader,
        });
        console.log(passLine(status, summary, text));
      } catch (error) {
        console.log(
          `[reconcile] the function did not answer: ${
            (error as Error).message
          }`,
        );
      } finally {
        running = false;
      }
    }, reconcileEvery * 1000);
  }
  // Serve until a signal arrives.
  await new Promise(() => {});
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    const hint = error instanceof Deno.errors.AddrInUse
      ? " (another stack on this port? choose one with PORT=... or --port)"
      : "";
    console.error(
      `npm start failed: ${
        error instanceof Error ? error.message : error
      }${hint}`,
    );
    Deno.exit(1);
  }
}
