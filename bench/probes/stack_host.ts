/**
 * Hosts the local stack (startStack) in its own process for the end-to-end bench, so the gateway
 * and REST stand-in get their own event loop instead of sharing the load generator's. Prints one
 * JSON line when ready; then obeys stdin lines: `target rust|baseline` (which function the
 * gateway routes to) and `stop`. Exits (stopping everything) on `stop`, stdin EOF or SIGTERM.
 */

import { startStack } from "../../scripts/stack/main.ts";

const withBaseline = Deno.args.includes("--baseline");
const stack = await startStack({ onFunctionLog: () => {} });
let stopping = false;
const stop = async (code: number) => {
  if (stopping) return;
  stopping = true;
  await stack.stop();
  Deno.exit(code);
};
Deno.addSignalListener("SIGTERM", () => void stop(0));
Deno.addSignalListener("SIGINT", () => void stop(0));

try {
  const baseline = withBaseline
    ? await stack.startFunction({
      entry: new URL("../baseline_function.ts", import.meta.url).pathname,
      onLog: () => {},
    })
    : null;
  const targets: Record<string, string> = { rust: stack.fn.url };
  if (baseline !== null) targets.baseline = baseline.url;
  console.log(JSON.stringify({
    ready: true,
    functionUrl: stack.functionUrl,
    functionDirectUrl: stack.fn.url,
    supabaseUrl: stack.supabaseUrl,
    databaseUrl: stack.databaseUrl,
    secret: stack.secret,
    serviceKey: stack.serviceKey,
    pids: {
      host: Deno.pid,
      function: stack.fn.pid,
      baseline: baseline?.pid ?? null,
      postgres: stack.postgres.pid,
    },
  }));

  const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
  let buffered = "";
  for await (const chunk of lines) {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf("\n")) >= 0) {
      const [command, arg] = buffered.slice(0, newline).trim().split(/\s+/);
      buffered = buffered.slice(newline + 1);
      if (command === "stop") await stop(0);
      if (command === "target" && targets[arg] !== undefined) {
        stack.gateway.setFunctionTarget(targets[arg]);
        console.log(JSON.stringify({ target: arg }));
      } else if (command === "target") {
        console.log(JSON.stringify({ error: `unknown target ${arg}` }));
      }
    }
  }
  await stop(0);
} catch (error) {
  console.error(error instanceof Error ? error.stack : error);
  await stop(1);
}
