/** Child processes for the bench: run with a timeout, read JSON output, and sample /proc stats. */

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  wallMs: number;
}

export interface RunOptions {
  args: string[];
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs: number;
}

/** Runs a command to completion; kills it (and fails) when it outlives the timeout. */
export async function run(cmd: string, opts: RunOptions): Promise<RunResult> {
  const started = performance.now();
  const child = new Deno.Command(cmd, {
    args: opts.args,
    cwd: opts.cwd,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited between the timeout firing and the kill.
    }
  }, opts.timeoutMs);
  const out = await child.output();
  clearTimeout(timer);
  const wallMs = performance.now() - started;
  const decoder = new TextDecoder();
  const result = {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
    wallMs,
  };
  if (wallMs >= opts.timeoutMs) {
    throw new Error(
      `${cmd} ${opts.args.join(" ")} timed out after ${opts.timeoutMs} ms`,
    );
  }
  return result;
}

/** The last line of stdout that parses as a JSON object (probes print their result last). */
export function lastJson<T>(result: RunResult, what: string): T {
  const lines = result.stdout.trim().split("\n").reverse();
  for (const line of lines) {
    if (!line.startsWith("{")) continue;
    try {
      return JSON.parse(line) as T;
    } catch {
      // Not the result line; keep looking upwards.
    }
  }
  throw new Error(
    `${what} exited ${result.code} without a JSON result\n--- stdout\n${
      result.stdout.slice(-2000)
    }\n--- stderr\n${result.stderr.slice(-4000)}`,
  );
}

/** Runs a probe and returns its JSON result; a non-zero exit is an error with its stderr. */
export async function runJson<T>(
  cmd: string,
  opts: RunOptions,
  what: string,
): Promise<T> {
  const result = await run(cmd, opts);
  if (result.code !== 0) {
    throw new Error(
      `${what} failed (exit ${result.code}):\n${result.stderr.slice(-4000)}`,
    );
  }
  return lastJson<T>(result, what);
}

const CLOCK_TICKS = 100; // USER_HZ on Linux; /proc/<pid>/stat counts CPU time in these ticks.

/** User + system CPU milliseconds of one process so far, or null if it is gone. */
export function cpuMs(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** A field of /proc/<pid>/status in KiB (e.g. VmHWM, VmRSS), or null. */
export function statusKb(pid: number, field: string): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** Direct children of a process (from /proc/<pid>/task/<pid>/children). */
export function childrenOf(pid: number): number[] {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`)
      .trim();
    return text === "" ? [] : text.split(/\s+/).map(Number);
  } catch {
    return [];
  }
}

/** Summed CPU milliseconds of a process and all its descendants (e.g. a postmaster's backends). */
export function treeCpuMs(pid: number): number {
  let total = cpuMs(pid) ?? 0;
  for (const child of childrenOf(pid)) total += treeCpuMs(child);
  return total;
}

/** CPU milliseconds so far of named processes (a postmaster counts with its backends). */
export function cpuSnapshot(
  pids: Record<string, number | null>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, pid] of Object.entries(pids)) {
    if (pid !== null) {
      out[name] = name === "postgres" ? treeCpuMs(pid) : cpuMs(pid) ?? 0;
    }
  }
  return out;
}

/** Per-process CPU spent between two snapshots, in ms per event. */
export function cpuPerEvent(
  before: Record<string, number>,
  after: Record<string, number>,
  events: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const name of Object.keys(before)) {
    out[name] = Math.round(((after[name] - before[name]) / events) * 1000) /
      1000;
  }
  return out;
}

/** A Rust tool (cargo, rustc) from PATH, else from ~/.cargo/bin where rustup puts it. */
export function rustTool(name: string): string {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (dir !== "" && Deno.statSync(`${dir}/${name}`).isFile) {
        return `${dir}/${name}`;
      }
    } catch {
      // Not in this PATH entry.
    }
  }
  return `${Deno.env.get("HOME") ?? ""}/.cargo/bin/${name}`;
}
