/**
 * Hosts the local stack (startStack) in its own process for the end-to-end bench, so the gateway
 * and REST stand-in get their own event loop instead of sharing the load generator's. Prints one
 * JSON line when ready (with the database's durability settings as the server reports them);
 * then obeys stdin lines: `target rust|baseline` (which function the gateway routes to) and
 * `stop`. Exits (stopping everything) on `stop`, stdin EOF or SIGTERM.
 * `--pg-setting name=value` (repeatable) overrides a postgresql.conf setting of the stack's
 * (e.g. `full_page_writes=off` to measure what it costs); without it the stack runs with a
 * Supabase database's durability, as `npm start` does.
 */

import pg from "pg";
import { startStack } from "../../scripts/stack/main.ts";
import { fromFileUrl } from "../../scripts/lib/file_url.ts";

const withBaseline = Deno.args.includes("--baseline");
const postgresSettings: Record<string, string> = {};
Deno.args.forEach((arg, i) => {
  if (arg !== "--pg-setting") return;
  const [name, ...value] = (Deno.args[i + 1] ?? "").split("=");
  if (name === "" || value.length === 0) {
    throw new Error(`--pg-setting needs name=value, got "${Deno.args[i + 1]}"`);
  }
  postgresSettings[name] = value.join("=");
});
const stack = await startStack({ onFunctionLog: () => {}, postgresSettings });

/** What the server runs with, as it says (SHOW), so a result states its settings. */
async function durability(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query(
      "select name, setting from pg_settings where name = any($1) order by name",
      [["fsync", "synchronous_commit", "full_page_writes", "wal_level"]],
    );
    return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
  } finally {
    await client.end();
  }
}
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
      entry: fromFileUrl(new URL("../baseline_function.ts", import.meta.url)),
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
    postgresSettings: await durability(stack.databaseUrl),
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
