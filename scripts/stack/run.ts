/**
 * Runs one command against a fresh local stack and tears the stack down afterwards, whatever
 * happens: `deno run -A scripts/stack/run.ts [--function-entry F] -- <command> [args…]`.
 * The command gets `HMS_STACK_FILE` (the stack's JSON description) and `DATABASE_URL`; the exit
 * code is the command's. `npm test` uses it so that one PostgreSQL serves every stage.
 */

import { type Stack, startStack } from "./main.ts";
import { tail } from "./proc.ts";

const USAGE = "usage: run.ts [--function-entry FILE] -- <command> [args...]";

async function main(args: string[]): Promise<number> {
  const dashes = args.indexOf("--");
  if (dashes < 0 || dashes === args.length - 1) {
    console.error(USAGE);
    return 2;
  }
  const own = args.slice(0, dashes);
  const command = args.slice(dashes + 1);
  const entryAt = own.indexOf("--function-entry");
  const functionEntry = entryAt >= 0 ? own[entryAt + 1] : undefined;

  const logLines: string[] = [];
  const started = performance.now();
  let stack: Stack | null = null;
  let stackFile: string | null = null;
  let child: Deno.ChildProcess | null = null;
  // One shutdown, awaited by everyone who asks (the signal handler and the normal exit path
  // race when a signal ends the command).
  let stopping: Promise<void> | null = null;
  const stopAll = () => {
    stopping ??= (async () => {
      await stack?.stop();
      if (stackFile !== null) await Deno.remove(stackFile).catch(() => {});
    })();
    return stopping;
  };
  // Registered before the stack starts; a signal during startup is acted on once it is up.
  let signalled: number | null = null;
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    Deno.addSignalListener(signal, async () => {
      if (stack === null) {
        if (signalled !== null) Deno.exit(code);
        signalled = code;
        return;
      }
      try {
        child?.kill("SIGTERM");
      } catch {
        // Already exited.
      }
      await stopAll();
      Deno.exit(code);
    });
  }
  stack = await startStack({
    pauseCronJobs: true,
    functionEntry,
    onFunctionLog: (line) => {
      logLines.push(line);
      if (logLines.length > 2000) logLines.shift();
    },
    // A database that stops answering during a run is worth knowing when a test fails.
    onDatabaseEvent: (line) =>
      console.error(`[database] ${new Date().toISOString()} ${line}`),
  });
  if (signalled !== null) {
    await stopAll();
    return signalled;
  }
  stackFile = await Deno.makeTempFile({
    prefix: "hms-stack-",
    suffix: ".json",
  });
  try {
    await Deno.writeTextFile(stackFile, JSON.stringify(stack.file(), null, 2));
    console.log(
      `local stack up in ${
        ((performance.now() - started) / 1000).toFixed(1)
      } s ` +
        `(gateway ${stack.supabaseUrl}, database ${stack.databaseUrl}, function on ` +
        `${Deno.readLinkSync(`/proc/${stack.fn.pid}/exe`)})`,
    );
    child = new Deno.Command(command[0], {
      args: command.slice(1),
      env: { HMS_STACK_FILE: stackFile, DATABASE_URL: stack.databaseUrl },
      stdin: "null",
    }).spawn();
    const status = await child.status;
    if (status.code !== 0 && logLines.length > 0) {
      console.error(
        `\n--- last function log lines ---\n${tail(logLines.join("\n"), 40)}\n`,
      );
    }
    return status.code;
  } finally {
    await stopAll();
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (error) {
    console.error(`run.ts: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
