/**
 * `npm start` as a user runs it: scripts/stack/main.ts in its own process on a free PORT prints
 * the URLs and a generated secret, serves a signed event for the seeded sample room, and after
 * SIGINT leaves no PostgreSQL or function process, no `.stack/pg-*` dir and no stack file behind.
 */

import postgres from "postgres";
import { buildEvent, nowNanos } from "../scripts/lib/hms.ts";
import { denoBinary } from "../scripts/stack/function.ts";
import { DEMO_ROOM_ID, type StackFile } from "../scripts/stack/main.ts";
import { freePort } from "../scripts/stack/net.ts";
import { processAlive, stopDataDirSync } from "../scripts/stack/postgres.ts";
import { assert } from "./helpers/assert.ts";
import { stackTest } from "./helpers/stack.ts";
import { deliver } from "./helpers/webhook.ts";

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

/** Reads stdout until `done(text)` says so or the deadline passes. */
async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  done: (text: string) => boolean,
  timeoutMs: number,
): Promise<string> {
  let text = "";
  const deadline = Date.now() + timeoutMs;
  while (!done(text)) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new Error(`timed out; output so far:\n${text}`);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const chunk = await Promise.race([
      reader.read(),
      new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), remaining);
      }),
    ]);
    clearTimeout(timer);
    if (chunk === null) continue;
    if (chunk.done) throw new Error(`npm start exited early; output:\n${text}`);
    text += chunk.value;
  }
  return text;
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
    const root = shared.root;
    const port = freePort();
    const stackFile = `${await Deno.makeTempDir({
      prefix: "hms-start-",
    })}/stack.json`;
    const env: Record<string, string> = {
      PORT: String(port),
      HMS_STACK_FILE: stackFile,
    };
    const child = new Deno.Command(denoBinary(root), {
      args: [
        "run",
        "-A",
        `${root}/scripts/stack/main.ts`,
        "--skip-build",
        ...(shared.functionEntry.endsWith(
            "/supabase/functions/hms-webhook/index.ts",
          )
          ? []
          : ["--function-entry", shared.functionEntry]),
      ],
      cwd: root,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream())
      .getReader();
    let exited = false;
    try {
      const output = await readUntil(
        reader,
        (text) => /Then look at the row/.test(text),
        90_000,
      );
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
      assert.equal(answer.status, 200, answer.text);
      assert.equal(answer.json?.status, "applied", answer.text);
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
      const rest = await readUntil(
        reader,
        (text) => /stopped/.test(text),
        5_000,
      ).catch((e) => String(e));
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
      if (!exited) {
        // The test failed midway: do what npm start should have done.
        child.kill("SIGKILL");
        await child.status;
        const file = await Deno.readTextFile(stackFile).then(
          JSON.parse,
          () => null,
        );
        if (file !== null) {
          for (const pid of [file.pids.function]) {
            try {
              Deno.kill(pid, "SIGKILL");
            } catch {
              // Already gone.
            }
          }
          stopDataDirSync(file.dataDir);
        }
      }
      await reader.cancel().catch(() => {});
      await Deno.remove(stackFile.replace(/\/stack\.json$/, ""), {
        recursive: true,
      }).catch(() => {});
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
      const root = shared.root;
      const dir = await Deno.makeTempDir({ prefix: "hms-start-" });
      const stackFile = `${dir}/stack.json`;
      const child = new Deno.Command(denoBinary(root), {
        args: ["run", "-A", `${root}/scripts/stack/main.ts`, "--skip-build"],
        cwd: root,
        env: { PORT: String(freePort()), HMS_STACK_FILE: stackFile },
        stdin: "null",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream())
        .getReader();
      let file: StackFile | null = null;
      try {
        await readUntil(reader, (t) => /Then look at the row/.test(t), 90_000);
        file = JSON.parse(await Deno.readTextFile(stackFile)) as StackFile;
        const owned = [
          file.pids.function,
          ...serverProcesses(file.dataDir),
          ...descendants(child.pid),
        ];
        kill(file);
        if (first === "PostgreSQL") {
          // The stack keeps serving (503 while the database is away) until it is stopped.
          await readUntil(reader, (t) => /stopped answering/.test(t), 10_000);
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
        try {
          child.kill("SIGKILL");
        } catch {
          // Exited.
        }
        await child.status;
        if (file !== null) stopDataDirSync(file.dataDir);
        await reader.cancel().catch(() => {});
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  });
}
