/**
 * Runs short-lived commands for the local stack with a time limit, and runs them as the
 * `postgres` OS user when we are root (PostgreSQL refuses to run as root).
 */

/** What a finished command produced. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link run}. */
export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Kill the command after this long (default 120 s); a hang must never stall the stack. */
  timeoutMs?: number;
  /** Throw when the exit code is not 0 (default true). */
  check?: boolean;
}

/** Thrown for a failed or timed-out command; the message carries its stderr tail. */
export class CommandError extends Error {
  constructor(readonly command: string[], readonly result: RunResult) {
    super(
      `command failed (exit ${result.code}): ${command.join(" ")}\n${
        tail(result.stderr || result.stdout, 20)
      }`,
    );
    this.name = "CommandError";
  }
}

/** The last `lines` lines of a text, for error messages. */
export function tail(text: string, lines: number): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/** Runs a command to completion and returns its exit code and output. */
export async function run(
  command: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const [program, ...args] = command;
  const child = new Deno.Command(program, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timeoutMs = options.timeoutMs ?? 120_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }, timeoutMs);
  const output = await child.output();
  clearTimeout(timer);
  const decoder = new TextDecoder();
  const result: RunResult = {
    code: timedOut ? 124 : output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr) +
      (timedOut ? `\n(killed after ${timeoutMs} ms)` : ""),
  };
  if ((options.check ?? true) && result.code !== 0) {
    throw new CommandError(command, result);
  }
  return result;
}

/** True when this process runs as root (uid 0). */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

/** The command line that runs `command` as the `postgres` user when we are root. */
export function asPostgresUser(command: string[]): string[] {
  return isRoot() ? ["runuser", "-u", "postgres", "--", ...command] : command;
}

/**
 * Waits for `promise` at most `ms`, never throwing: shutdown steps use it so that one stuck
 * step (e.g. a hung in-flight request) cannot keep the next ones, like stopping PostgreSQL,
 * from running.
 */
export async function settleWithin(
  promise: Promise<unknown>,
  ms: number,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}
