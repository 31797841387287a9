/**
 * `npm start` (scripts/stack/main.ts) as a user runs it, in its own process on a free PORT, for
 * the tests that start, fault and stop whole stacks: keeps what it prints, waits for lines, and
 * cleans up what a failed test leaves.
 */

import { denoBinary } from "../../scripts/stack/function.ts";
import type { StackFile } from "../../scripts/stack/main.ts";
import { freePort } from "../../scripts/stack/net.ts";
import { stopDataDirSync } from "../../scripts/stack/postgres.ts";
import { assert } from "./assert.ts";

/** A running `npm start`. */
export interface NpmStart {
  child: Deno.ChildProcess;
  /** The PORT it was given. */
  port: number;
  /** A temporary folder for this start (the test removes it), holding `stackFile`. */
  dir: string;
  stackFile: string;
  /** Its stdout so far. */
  stdout(): string;
  /** Its stdout and stderr so far, as they came. */
  log(): string;
  /** Its exit status once it has exited. */
  exited(): Deno.CommandStatus | null;
  /** Both streams read to their end (after the process exited). */
  drained: Promise<void>;
  /**
   * Waits until the stdout printed after the first `from` characters matches `pattern`, and
   * returns that part; throws when the deadline passes or npm start exits first.
   */
  waitFor(pattern: RegExp, timeoutMs: number, from?: number): Promise<string>;
  /** What npm start should have done when a test stops it midway: SIGKILL, then its leftovers. */
  kill(): Promise<void>;
}

/** How npm start (or its function) reports a port that another process holds. */
const PORT_TAKEN =
  /AddrInUse|Address already in use|another stack on this port/;

/** "Then look at the row": the last line npm start prints once its stack is up. */
const UP = /Then look at the row/;

/**
 * Starts `npm start --skip-build` with `args` on a free PORT and waits (up to `timeoutMs`) until
 * it has printed its stack. A port is only free when picked: npm start binds it seconds later
 * (after PostgreSQL is up), and a stack starting beside it may take it first. Then npm start says
 * so and exits, and this starts it again on another port; any other failure cleans up and
 * throws.
 */
export async function npmStart(
  root: string,
  args: string[],
  timeoutMs: number,
): Promise<NpmStart> {
  const dir = await Deno.makeTempDir({ prefix: "hms-start-" });
  for (let attempt = 1;; attempt++) {
    const started = spawn(root, args, dir);
    try {
      await started.waitFor(UP, timeoutMs);
      return started;
    } catch (error) {
      await started.kill();
      if (attempt < 3 && PORT_TAKEN.test(started.log())) continue;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw error;
    }
  }
}

function spawn(root: string, args: string[], dir: string): NpmStart {
  const port = freePort();
  const stackFile = `${dir}/stack.json`;
  const child = new Deno.Command(denoBinary(root), {
    args: [
      "run",
      "-A",
      `${root}/scripts/stack/main.ts`,
      "--skip-build",
      ...args,
    ],
    cwd: root,
    env: { PORT: String(port), HMS_STACK_FILE: stackFile },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stdout = "";
  let log = "";
  const drained = Promise.all(
    [child.stdout, child.stderr].map(async (stream) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        if (stream === child.stdout) stdout += chunk;
        log += chunk;
      }
    }),
  ).then(() => {}, () => {});
  let status: Deno.CommandStatus | null = null;
  child.status.then((s) => status = s);
  const started: NpmStart = {
    child,
    port,
    dir,
    stackFile,
    stdout: () => stdout,
    log: () => log,
    exited: () => status,
    drained,
    async waitFor(pattern, timeoutMs, from = 0) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(stdout.slice(from))) {
        if (status !== null) {
          // What it printed last may still be in the pipe.
          await drained;
          assert.ok(
            pattern.test(stdout.slice(from)),
            `npm start exited early:\n${log}`,
          );
          break;
        }
        assert.ok(
          Date.now() < deadline,
          `npm start did not print ${pattern}:\n${log}`,
        );
        await new Promise((r) => setTimeout(r, 50));
      }
      return stdout.slice(from);
    },
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch {
        // Exited.
      }
      await child.status;
      await drained;
      const file: StackFile | null = await Deno.readTextFile(stackFile).then(
        JSON.parse,
        () => null,
      );
      if (file === null) return;
      try {
        Deno.kill(file.pids.function, "SIGKILL");
      } catch {
        // Already gone.
      }
      stopDataDirSync(file.dataDir);
      await Deno.remove(`${file.dataDir}.owner.json`).catch(() => {});
    },
  };
  return started;
}
