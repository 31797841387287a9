/**
 * Runs the Edge Function the way it is deployed: the shim under the edge runtime's Deno (2.1.4,
 * the npm package `deno-edge`, the real binary) with `--allow-net --allow-env`, the function
 * environment (SUPABASE_URL = the gateway, SUPABASE_SECRET_KEYS, HMS_WEBHOOK_SECRET,
 * passed-through HMS_* / SUPABASE_DEBUG, per-instance overrides), and the listener owned by the
 * runtime as on Supabase: edge_serve.ts binds the port the stack picked and the shim's
 * `Deno.serve(handler)` only registers its handler. `STACK_FUNCTION_DENO=newest` (or a path)
 * runs the function on another Deno, e.g. the newest one the tools run on. Several instances
 * can run side by side.
 */

import { toFileUrl } from "../lib/file_url.ts";
import { LISTEN_FLAG } from "./edge_serve.ts";
import { freePort, HOST, waitUntil } from "./net.ts";
import { tail } from "./proc.ts";

/** Options of {@link startFunction}. */
export interface FunctionOptions {
  /** Repository root (for node_modules/.bin/deno and the default entry). */
  root: string;
  /** `SUPABASE_URL` the function calls (normally the gateway). */
  supabaseUrl: string;
  /** Goes into `SUPABASE_SECRET_KEYS` as `{"default": key}`. */
  serviceKey: string;
  /** `HMS_WEBHOOK_SECRET`. */
  secret: string;
  /** Overrides last; `undefined` removes a variable (e.g. to test a misconfigured instance). */
  env?: Record<string, string | undefined>;
  /** Default: supabase/functions/hms-webhook/index.ts under `root`. */
  entry?: string;
  /** Working directory (default `root`). */
  cwd?: string;
  /** Called with every output line (stdout and stderr). */
  onLog?: (line: string) => void;
  /** Default true: copy HMS_* and SUPABASE_DEBUG from this process's environment. */
  passThrough?: boolean;
  /** The Deno binary (default {@link functionDenoBinary}). */
  deno?: string;
  /** How long to wait for the listener (default 30 s). */
  startTimeoutMs?: number;
}

/** A running function process. */
export interface FunctionProcess {
  /** Base URL of the process itself (not through the gateway). */
  url: string;
  port: number;
  pid: number;
  /** The most recent output lines (up to 5000). */
  logs(): string[];
  /** Resolves when the process has exited. */
  exited: Promise<Deno.CommandStatus>;
  /** SIGTERM, then SIGKILL after 5 s; safe to call twice. */
  stop(): Promise<void>;
  /** SIGKILL without waiting, for exit handlers. */
  stopSync(): void;
}

const MAX_LOG_LINES = 5000;

const SETPRIV = (() => {
  try {
    Deno.statSync("/usr/bin/setpriv");
    return "/usr/bin/setpriv";
  } catch {
    return null;
  }
})();

/** The Deno binary the tools and tests run on (the newest; npm's `deno` package). */
export function denoBinary(root: string): string {
  const local = `${root}/node_modules/.bin/deno`;
  try {
    Deno.statSync(local);
    return local;
  } catch {
    return Deno.execPath();
  }
}

/** The Deno version Supabase's edge runtime embeds (its deno/Cargo.toml). */
export const EDGE_DENO_VERSION = "2.1.4";

/**
 * The edge runtime's Deno: the ELF binary of the npm package `deno-edge` (an alias of
 * `@deno/linux-x64-glibc@2.1.4`), run directly so that signals and `--pdeathsig` reach the
 * runtime itself rather than a wrapper.
 */
export function edgeDenoBinary(root: string): string {
  const binary = `${root}/node_modules/deno-edge/deno`;
  try {
    Deno.statSync(binary);
  } catch {
    throw new Error(
      `${binary} is missing: run \`npm ci\` (Deno ${EDGE_DENO_VERSION} ships for linux-x64-glibc)`,
    );
  }
  return binary;
}

/**
 * The Deno the function processes run on: the edge runtime's, or what `STACK_FUNCTION_DENO`
 * names (`newest`: the Deno running the stack; else a path).
 */
export function functionDenoBinary(root: string): string {
  const chosen = Deno.env.get("STACK_FUNCTION_DENO");
  if (chosen === undefined || chosen === "" || chosen === "edge") {
    return edgeDenoBinary(root);
  }
  return chosen === "newest" ? Deno.execPath() : chosen;
}

/** The function process environment (without overrides applied). */
export function functionEnv(
  options: FunctionOptions,
): Record<string, string> {
  const env: Record<string, string> = {};
  // Only what Deno itself needs from the parent, so the function sees what it would deployed.
  for (const name of ["PATH", "HOME", "DENO_DIR", "TMPDIR", "NO_COLOR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  if (options.passThrough ?? true) {
    for (const [name, value] of Object.entries(Deno.env.toObject())) {
      if (name.startsWith("HMS_") || name === "SUPABASE_DEBUG") {
        env[name] = value;
      }
    }
  }
  env.SUPABASE_URL = options.supabaseUrl;
  env.SUPABASE_SECRET_KEYS = JSON.stringify({ default: options.serviceKey });
  env.HMS_WEBHOOK_SECRET = options.secret;
  env.NO_COLOR = "1";
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  sink: (line: string) => void,
): Promise<void> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      sink(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
    }
  }
  if (buffered !== "") sink(buffered);
}

/** A function that could not bind its port because another process took it first. */
class PortTaken extends Error {}

/** Times {@link startFunction} picks another port when the one it picked was taken. */
const PORT_TRIES = 3;

/**
 * Starts one function process and waits until it listens. `freePort()` only finds a port that
 * was free a moment ago, and any other process (another stack, an outgoing connection) may take
 * it before the function binds it; the function then exits with AddrInUse and starts again on
 * another port.
 */
export async function startFunction(
  options: FunctionOptions,
): Promise<FunctionProcess> {
  for (let attempt = 1;; attempt++) {
    try {
      return await startOn(options, freePort());
    } catch (error) {
      if (!(error instanceof PortTaken) || attempt === PORT_TRIES) throw error;
    }
  }
}

async function startOn(
  options: FunctionOptions,
  port: number,
): Promise<FunctionProcess> {
  const entry = options.entry ??
    `${options.root}/supabase/functions/hms-webhook/index.ts`;
  const lines: string[] = [];
  const sink = (line: string) => {
    lines.push(line);
    if (lines.length > MAX_LOG_LINES) {
      lines.splice(0, lines.length - MAX_LOG_LINES);
    }
    options.onLog?.(line);
  };
  const main = await writeMain(
    options.root,
    options.cwd ?? options.root,
    entry,
    port,
  );
  const deno = [
    options.deno ?? functionDenoBinary(options.root),
    "run",
    "--allow-net",
    "--allow-env",
    main,
    `${LISTEN_FLAG}${HOST}:${port}`,
  ];
  // setpriv (util-linux) asks the kernel to kill the function when the stack process dies, even
  // by SIGKILL, which no exit handler sees; it execs the Deno binary, so the signal reaches the
  // runtime itself. The next start's sweep covers machines without it.
  const command = SETPRIV === null
    ? deno
    : [SETPRIV, "--pdeathsig", "KILL", "--", ...deno];
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    cwd: options.cwd ?? options.root,
    env: functionEnv(options),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const pumps = Promise.all([
    pumpLines(child.stdout, sink),
    pumpLines(child.stderr, sink),
  ]);
  let exitedWith: Deno.CommandStatus | null = null;
  const exited = child.status.then(async (status) => {
    exitedWith = status;
    await pumps.catch(() => {});
    return status;
  });

  let stopping: Promise<void> | null = null;
  const kill = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // Already exited.
    }
  };
  const process: FunctionProcess = {
    url: `http://${HOST}:${port}`,
    port,
    pid: child.pid,
    logs: () => [...lines],
    exited,
    stop() {
      stopping ??= (async () => {
        if (exitedWith !== null) return;
        kill("SIGTERM");
        const timer = setTimeout(() => kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
    stopSync() {
      if (exitedWith === null) kill("SIGKILL");
    },
  };

  // Deno.serve's own line, printed once it has bound the port: a listener found by probing the
  // port could be whoever took it.
  const listening = `Listening on http://${HOST}:${port}/`;
  try {
    await waitUntil(
      () => lines.some((line) => line.includes(listening)),
      `${listening} (the function's own line)`,
      options.startTimeoutMs ?? 30_000,
      () =>
        exitedWith === null
          ? null
          : `the function exited with code ${exitedWith.code} before listening`,
    );
  } catch (error) {
    await process.stop();
    await exited;
    await Deno.remove(main).catch(() => {});
    const log = lines.join("\n");
    if (/AddrInUse/.test(log)) throw new PortTaken(`port ${port} was taken`);
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`${entry}: ${message}\n${tail(log, 30)}`);
  }
  // Listening means the whole module graph is loaded: the generated main is no longer read.
  await Deno.remove(main).catch(() => {});
  return process;
}

/**
 * Writes the process's main module under `.stack/`: edge_serve.ts first (it takes `Deno.serve`
 * over before the entry runs), then the entry. Static imports need no read permission, unlike a
 * computed `import()`.
 */
async function writeMain(
  root: string,
  cwd: string,
  entry: string,
  port: number,
): Promise<string> {
  const dir = `${root}/.stack`;
  await Deno.mkdir(dir, { recursive: true });
  const file = `${dir}/function-${port}-${crypto.randomUUID().slice(0, 8)}.ts`;
  const serve = new URL("./edge_serve.ts", import.meta.url).href;
  const entryUrl = toFileUrl(entry, cwd);
  await Deno.writeTextFile(
    file,
    `import { requireServed } from ${JSON.stringify(serve)};\n` +
      `import ${JSON.stringify(entryUrl)};\n` +
      `requireServed(${JSON.stringify(entry)});\n`,
  );
  return file;
}
