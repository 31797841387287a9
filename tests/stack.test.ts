/**
 * `npm start` as a user runs it: scripts/stack/main.ts in its own process on a free PORT prints
 * the URLs and a generated secret, serves a signed event for the seeded sample room, and after
 * SIGINT leaves no PostgreSQL or function process, no `.stack/pg-*` dir and no stack file behind;
 * the function process is the edge runtime's Deno binary, which a SIGKILL of the stack takes down.
 */

import postgres from "postgres";
import { buildEvent, nowNanos } from "../scripts/lib/hms.ts";
import {
  EDGE_DENO_VERSION,
  edgeDenoBinary,
} from "../scripts/stack/function.ts";
import { DEMO_ROOM_ID, type StackFile } from "../scripts/stack/main.ts";
import { processAlive, stopDataDirSync } from "../scripts/stack/postgres.ts";
import { fromFileUrl, toFileUrl } from "../scripts/lib/file_url.ts";
import { assert } from "./helpers/assert.ts";
import { type NpmStart, npmStart } from "./helpers/npm_start.ts";
import { stackTest } from "./helpers/stack.ts";
import { assertOutcome, deliver } from "./helpers/webhook.ts";

/** True when `path` exists. */
function exists(path: string): Promise<boolean> {
  return Deno.stat(path).then(() => true, () => false);
}

/** The stack removed its data dir and the dir's owner file. */
async function assertDataDirRemoved(dataDir: string): Promise<void> {
  assert.equal(await exists(dataDir), false, "data dir removed");
  assert.equal(
    await exists(`${dataDir}.owner.json`),
    false,
    "owner file removed",
  );
}

/** Every process below `pid` (children, grandchildren, …). */
function descendants(pid: number): number[] {
  const found: number[] = [];
  let tasks: string[];
  try {
    tasks = [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => e.name);
  } catch {
    return found;
  }
  for (const task of tasks) {
    let children = "";
    try {
      children = Deno.readTextFileSync(`/proc/${pid}/task/${task}/children`);
    } catch {
      continue;
    }
    for (const child of children.trim().split(/\s+/).filter((c) => c !== "")) {
      found.push(Number(child), ...descendants(Number(child)));
    }
  }
  return found;
}

/** A process's command line, for messages. */
function commandLine(pid: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ")
      .trim();
  } catch {
    return "(gone)";
  }
}

/** Pids whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`)
        .replaceAll("\0", " ");
      if (cmdline.includes(text)) pids.push(Number(entry.name));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

function printed(output: string, label: string): string {
  const m = new RegExp(`^\\s*${label}\\s+(\\S+)`, "m").exec(output);
  assert.ok(m, `"${label}" not printed:\n${output}`);
  return m[1];
}

stackTest({
  name:
    "npm start: prints the stack, serves an event, and SIGINT leaves nothing behind",
  async fn(shared) {
    const started = await npmStart(
      shared.root,
      shared.functionEntry.endsWith("/supabase/functions/hms-webhook/index.ts")
        ? []
        : ["--function-entry", shared.functionEntry],
      90_000,
    );
    const { child, port, stackFile } = started;
    const output = started.stdout();
    let exited = false;
    try {
      const functionUrl = printed(output, "Function URL");
      const databaseUrl = printed(output, "Database URL");
      const secret = printed(output, "Webhook secret");
      assert.equal(
        functionUrl,
        `http://127.0.0.1:${port}/functions/v1/hms-webhook`,
      );
      assert.equal(
        printed(output, "REST URL"),
        `http://127.0.0.1:${port}/rest/v1`,
      );
      assert.match(secret, /^[0-9a-f]{64}$/, "a generated secret");
      assert.match(
        output,
        /npm run send -- /,
        "tells how to send a test event",
      );

      const file: StackFile = JSON.parse(await Deno.readTextFile(stackFile));
      assert.equal(file.functionUrl, functionUrl);
      assert.equal(file.webhookSecret, secret);
      assert.equal(file.databaseUrl, databaseUrl);

      const event = buildEvent("peer.join.success", {
        roomId: DEMO_ROOM_ID,
        role: "listener",
        at: nowNanos(),
      });
      const answer = await deliver(functionUrl, event, {
        secret,
        auth: "signature",
      });
      assertOutcome(answer, "applied");
      const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
      try {
        const rows =
          await sql`select listener_count from public.rooms where hms_room_id = ${DEMO_ROOM_ID}`;
        assert.equal(rows[0]?.listener_count, 1);
      } finally {
        await sql.end();
      }

      const owned = [
        file.pids.function,
        file.pids.postgres,
        ...descendants(child.pid),
      ];
      assert.ok(
        processAlive(file.pids.postgres) && processAlive(file.pids.function),
      );
      child.kill("SIGINT");
      const status = await Promise.race([
        child.status,
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 60_000)),
      ]);
      assert.ok(
        status !== null,
        "npm start did not exit within 60 s of SIGINT",
      );
      exited = true;
      assert.equal(status.code, 0);
      const rest = await started.waitFor(/stopped/, 5_000, output.length)
        .catch((e) => String(e));
      assert.match(rest, /stopped/);

      const survivors = owned.filter(processAlive).map((pid) =>
        `${pid}: ${commandLine(pid)}`
      );
      assert.deepEqual(survivors, [], "processes left behind");
      assert.deepEqual(
        processesMentioning(file.dataDir),
        [],
        "a postgres still uses the data dir",
      );
      await assertDataDirRemoved(file.dataDir);
      assert.equal(await exists(stackFile), false, "stack file removed");
    } finally {
      // The test failed midway: do what npm start should have done.
      if (!exited) await started.kill();
      await started.drained;
      await Deno.remove(started.dir, { recursive: true }).catch(() => {});
    }
  },
});

/** The postmaster of a data dir and every process it forked (backends, checkpointer, …). */
function serverProcesses(dataDir: string): number[] {
  const postmaster = Number(
    Deno.readTextFileSync(`${dataDir}/postmaster.pid`).split("\n")[0],
  );
  return [postmaster, ...descendants(postmaster)];
}

/** Waits until none of `pids` runs (bounded), and returns those still running. */
async function waitGone(pids: number[], ms: number): Promise<string[]> {
  const deadline = Date.now() + ms;
  while (pids.some(processAlive) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return pids.filter(processAlive).map((p) => `${p}: ${commandLine(p)}`);
}

/** Stops whatever a killed `npm start` left behind (process, server, output), whatever happened. */
async function cleanUp(started: NpmStart, file: StackFile | null) {
  try {
    started.child.kill("SIGKILL");
  } catch {
    // Exited.
  }
  await started.child.status;
  if (file !== null) stopDataDirSync(file.dataDir);
  await started.drained;
  await Deno.remove(started.dir, { recursive: true }).catch(() => {});
}

for (
  const [first, kill] of [
    [
      "the function",
      (file: StackFile) => Deno.kill(file.pids.function, "SIGKILL"),
    ],
    [
      "PostgreSQL",
      (file: StackFile) => Deno.kill(file.pids.postgres, "SIGKILL"),
    ],
  ] as const
) {
  stackTest({
    name: `npm start: ${first} killed first, then nothing is left behind`,
    async fn(shared) {
      const started = await npmStart(shared.root, [], 90_000);
      const { child, stackFile } = started;
      const up = started.stdout().length;
      let file: StackFile | null = null;
      try {
        file = JSON.parse(await Deno.readTextFile(stackFile)) as StackFile;
        const owned = [
          file.pids.function,
          ...serverProcesses(file.dataDir),
          ...descendants(child.pid),
        ];
        kill(file);
        if (first === "PostgreSQL") {
          // The stack keeps serving (503 while the database is away) until it is stopped.
          await started.waitFor(/stopped answering/, 10_000, up);
          child.kill("SIGINT");
        }
        // A dead function stops the whole stack by itself.
        const status = await Promise.race([
          child.status,
          new Promise<null>((r) => setTimeout(() => r(null), 60_000)),
        ]);
        assert.ok(status !== null, "npm start did not exit");
        assert.deepEqual(await waitGone(owned, 10_000), [], "left running");
        await assertDataDirRemoved(file.dataDir);
      } finally {
        await cleanUp(started, file);
      }
    },
  });
}

stackTest({
  name:
    "npm start killed by SIGKILL: the function runs on the edge runtime's Deno binary itself, which dies with it",
  async fn(shared) {
    const started = await npmStart(shared.root, [], 90_000);
    const { child, stackFile } = started;
    let file: StackFile | null = null;
    try {
      file = JSON.parse(await Deno.readTextFile(stackFile)) as StackFile;
      const fn = file.pids.function;
      // The process the stack started is the runtime (no node wrapper, no setpriv left).
      assert.equal(
        Deno.realPathSync(`/proc/${fn}/exe`),
        Deno.realPathSync(edgeDenoBinary(shared.root)),
      );
      const version = await new Deno.Command(`/proc/${fn}/exe`, {
        args: ["--version"],
        stdout: "piped",
      }).output();
      assert.match(
        new TextDecoder().decode(version.stdout),
        new RegExp(`^deno ${EDGE_DENO_VERSION.replaceAll(".", "\\.")} `),
      );
      // No exit handler runs on SIGKILL: only the kernel's parent-death signal stops the function.
      child.kill("SIGKILL");
      await child.status;
      assert.deepEqual(await waitGone([fn], 10_000), [], "left running");
    } finally {
      await cleanUp(started, file);
    }
  },
});

/** One raw HTTP/1.1 exchange (`connection: close`): the answer's head and its bytes as sent. */
async function rawExchange(
  url: string,
  head: string[],
  body: string,
): Promise<
  { status: number; headers: Headers; body: Uint8Array<ArrayBuffer> }
> {
  const { hostname, port, pathname, host } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const bytes = new TextEncoder().encode(body);
  const request = [
    `POST ${pathname} HTTP/1.1`,
    `host: ${host}`,
    ...head,
    `content-length: ${bytes.length}`,
    "connection: close",
    "",
    "",
  ].join("\r\n");
  await new Blob([request, bytes]).stream().pipeTo(conn.writable, {
    preventClose: true,
  });
  const raw = new Uint8Array(await new Response(conn.readable).arrayBuffer());
  const split = raw.findIndex((_, i) =>
    raw[i] === 13 && raw[i + 1] === 10 && raw[i + 2] === 13 && raw[i + 3] === 10
  );
  assert.ok(split > 0, "a complete head");
  const [statusLine, ...lines] = new TextDecoder().decode(
    raw.subarray(0, split),
  )
    .split("\r\n");
  const headers = new Headers();
  for (const line of lines) {
    const colon = line.indexOf(":");
    headers.append(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  return {
    status: Number(statusLine.split(" ")[1]),
    headers,
    body: raw.subarray(split + 4),
  };
}

stackTest({
  name:
    "the gateway passes the function's content coding through with the bytes it describes",
  async fn(stack) {
    const head = {
      "accept-encoding": "gzip",
      "content-type": "application/json",
    };
    const ask = (url: string) =>
      fetch(url, { method: "POST", headers: head, body: "{" });
    const answer = {
      status: "error",
      code: "unauthorized",
      message: "missing webhook credentials",
    };
    await stack.withFunction({}, async (instance) => {
      // The function's own answer is compressed (Deno.serve does it when the client accepts gzip).
      const direct = await ask(`${instance.url}/hms-webhook`);
      assert.equal(direct.headers.get("content-encoding"), "gzip");
      assert.deepEqual(await direct.json(), answer);
    });
    // On the wire: still gzip, its length the compressed bytes', which decompress to the answer.
    const raw = await rawExchange(
      stack.functionUrl,
      Object.entries(head).map(([name, value]) => `${name}: ${value}`),
      "{",
    );
    assert.equal(raw.status, 401);
    assert.equal(raw.headers.get("content-encoding"), "gzip");
    assert.equal(raw.headers.get("content-length"), String(raw.body.length));
    const decoded = new Response(
      new Blob([raw.body]).stream().pipeThrough(
        new DecompressionStream("gzip"),
      ),
    );
    assert.deepEqual(await decoded.json(), answer);
    // A client that asked for gzip reads the answer.
    const through = await ask(stack.functionUrl);
    assert.equal(through.status, 401);
    assert.equal(through.headers.get("content-encoding"), "gzip");
    assert.deepEqual(await through.json(), answer);
  },
});

stackTest({
  name:
    "a function entry whose path has `#`, `?`, `%` and spaces is the module that runs",
  async fn(stack) {
    // Concatenated into a URL, `#…` becomes a fragment, `?…` a query and `%41` an `A`.
    const dir = await Deno.makeTempDir();
    const entry = `${dir}/entry #1?q=%41 /index.ts`;
    try {
      await Deno.mkdir(`${dir}/entry #1?q=%41 `);
      await Deno.writeTextFile(
        entry,
        "Deno.serve(() => new Response(import.meta.url));\n",
      );
      const url = await stack.withFunction({ entry }, async (instance) => {
        const response = await fetch(`${instance.url}/hms-webhook`);
        assert.equal(response.status, 200);
        return await response.text();
      });
      assert.equal(url, toFileUrl(entry));
      assert.equal(fromFileUrl(url), entry);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
