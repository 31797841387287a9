/**
 * The stack under database faults, on the real thing: `npm start` (scripts/stack/main.ts) in its
 * own process — PostgreSQL, the REST stand-in in the stack process, the real Deno function with
 * the real Wasm — takes a steady stream of signed events on several connections while the
 * database is (a) restarted fast, (b) shut down immediately and started again, (c) loses one
 * backend to SIGKILL (crash recovery), (d) is paused (SIGSTOP) for 4 s and resumed. For each fault: every answer
 * is 200 (applied or duplicate) or 503, never a dropped connection or another status; every
 * event answered 200 is in the ledger afterwards (checked before anything is sent again); the
 * same processes serve before and after; `npm start` logs the database stopping and coming
 * back. Then every delivery is sent again and every room must equal the counts computed here
 * from the events sent. Finally the stack is SIGKILLed: its function dies with it and the next
 * start's sweep stops its PostgreSQL and removes its data dir. Also: the durability settings.
 */

import pg from "pg";
import {
  buildEvent,
  type BuiltEvent,
  nowNanos,
  objectId,
  uuid,
} from "../scripts/lib/hms.ts";
import type { StackFile } from "../scripts/stack/main.ts";
import {
  pgBin,
  processAlive,
  stopDataDirSync,
  sweepStale,
} from "../scripts/stack/postgres.ts";
import { asPostgresUser, run } from "../scripts/stack/proc.ts";
import { REST_APPLICATION_NAME } from "../scripts/stack/rest.ts";
import { assert } from "./helpers/assert.ts";
import { npmStart } from "./helpers/npm_start.ts";
import { stackTest } from "./helpers/stack.ts";
import { deliver } from "./helpers/webhook.ts";

const WORKERS = 8;
const ROOMS = 4;
/** Pause between two sends of one worker: a steady stream, not a flood the resend must repeat. */
const SEND_GAP_MS = 15;

/** What Supabase runs with (and what this stack must too); stated here, not read from the stack. */
const EXPECTED_SETTINGS: Record<string, string> = {
  fsync: "on",
  synchronous_commit: "on",
  full_page_writes: "on",
  wal_level: "logical",
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One query on a fresh connection (the test's own client must not care about earlier faults),
 * retried while the server cannot take connections yet (starting up, in crash recovery).
 */
async function query(url: string, text: string, values: unknown[] = []) {
  const deadline = Date.now() + 30_000;
  while (true) {
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: 10_000,
    });
    client.on("error", () => {});
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => {});
      if (Date.now() > deadline) throw error;
      await sleep(200);
      continue;
    }
    try {
      return (await client.query(text, values)).rows;
    } finally {
      await client.end().catch(() => {});
    }
  }
}

async function settingsOf(url: string): Promise<Record<string, string>> {
  const rows = await query(
    url,
    "select name, setting from pg_settings where name = any($1)",
    [Object.keys(EXPECTED_SETTINGS)],
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
}

function pgCtl(...args: string[]) {
  return run(asPostgresUser([`${pgBin()}/pg_ctl`, ...args]), {
    timeoutMs: 60_000,
  });
}

function postmasterPid(dataDir: string): number {
  return Number(
    Deno.readTextFileSync(`${dataDir}/postmaster.pid`).split("\n")[0],
  );
}

/** The postmaster and every process it forked (backends, checkpointer, …). */
function serverProcesses(dataDir: string): number[] {
  const postmaster = postmasterPid(dataDir);
  const children = Deno.readTextFileSync(
    `/proc/${postmaster}/task/${postmaster}/children`,
  ).trim().split(/\s+/).filter((p) => p !== "").map(Number);
  return [postmaster, ...children];
}

/** A tally of one phase: answers by status, acknowledged event ids, anything not allowed. */
class Tally {
  sent = 0;
  byStatus: Record<string, number> = {};
  acknowledged = new Set<string>();
  bad: string[] = [];

  record(event: BuiltEvent, status: string, ok: boolean, detail = "") {
    this.sent++;
    this.byStatus[status] = (this.byStatus[status] ?? 0) + 1;
    if (status.startsWith("200")) this.acknowledged.add(event.id!);
    if (!ok && this.bad.length < 10) {
      this.bad.push(`${status} ${detail}`.slice(0, 300));
    }
  }
}

/** A room's events so far, and what its row must say once all of them are applied. */
interface RoomPlan {
  roomId: string;
  sessionId: string;
  startedAt: bigint;
  /** Joined peers not yet sent a leave, with their class. */
  present: Map<string, "listener" | "speaker">;
  joined: { peerId: string; role: string }[];
}

stackTest({
  name:
    "faults: restart, immediate stop, killed backend, pause: nothing acknowledged is lost",
  async fn(shared, t) {
    const root = shared.root;
    const started = await npmStart(root, [], 120_000);
    const { child, stackFile } = started;
    let file: StackFile | null = null;
    try {
      file = JSON.parse(await Deno.readTextFile(stackFile)) as StackFile;
      const stack = file;
      const url = stack.databaseUrl;

      await t.step("the database runs with the stated durability", async () => {
        assert.deepEqual(await settingsOf(url), EXPECTED_SETTINGS, "npm start");
        // The stack that the acceptance tests (tests/*.test.ts) run against.
        assert.deepEqual(
          await settingsOf(shared.databaseUrl),
          EXPECTED_SETTINGS,
          "the tests' stack",
        );
        // Nothing overrides them per database or role.
        const overrides = await query(
          url,
          "select setconfig from pg_db_role_setting, unnest(setconfig) c " +
            "where split_part(c, '=', 1) = any($1)",
          [Object.keys(EXPECTED_SETTINGS)],
        );
        assert.deepEqual(overrides, []);
      });

      // Rooms with an open session each, then a stream of joins (listeners and speakers),
      // leaves of peers that joined earlier, and immediate redeliveries.
      const rooms: RoomPlan[] = [];
      for (let i = 0; i < ROOMS; i++) {
        const roomId = objectId();
        await query(url, "insert into public.rooms (hms_room_id) values ($1)", [
          roomId,
        ]);
        const startedAt = nowNanos();
        const room: RoomPlan = {
          roomId,
          sessionId: objectId(),
          startedAt,
          present: new Map(),
          joined: [],
        };
        const open = buildEvent("session.open.success", {
          roomId,
          sessionId: room.sessionId,
          at: startedAt,
        });
        const answer = await deliver(stack.functionUrl, open, {
          secret: stack.webhookSecret,
        });
        assert.equal(answer.status, 200, answer.text);
        rooms.push(room);
      }
      const sent: BuiltEvent[] = [];
      let counter = 0;
      const nextEvent = (): BuiltEvent => {
        const room = rooms[counter++ % rooms.length];
        const base = {
          roomId: room.roomId,
          sessionId: room.sessionId,
          sessionStartedAt: room.startedAt,
        };
        const present = [...room.present.keys()];
        if (present.length > 4 && Math.random() < 0.3) {
          const peerId = present[Math.floor(Math.random() * present.length)];
          room.present.delete(peerId);
          return buildEvent("peer.leave.success", {
            ...base,
            peerId,
            role: room.joined.find((j) => j.peerId === peerId)!.role,
          });
        }
        const peerId = uuid();
        const role = Math.random() < 0.25 ? "speaker" : "listener";
        room.present.set(peerId, role);
        room.joined.push({ peerId, role });
        return buildEvent("peer.join.success", { ...base, peerId, role });
      };

      const send = async (event: BuiltEvent, tally: Tally) => {
        try {
          const a = await deliver(stack.functionUrl, event, {
            secret: stack.webhookSecret,
          });
          const kind = a.status === 200
            ? `200 ${a.json?.status}`
            : `${a.status} ${a.json?.code}`;
          const ok = (a.status === 200 &&
            ["applied", "duplicate"].includes(String(a.json?.status))) ||
            (a.status === 503 && a.json?.code === "upstream_unavailable");
          tally.record(event, kind, ok, a.text);
        } catch (error) {
          tally.record(event, "dropped", false, String(error));
        }
      };

      // The stand-in itself, read as supabase-js would: what it answers meanwhile.
      const restAnswers: Record<string, number> = {};
      const restBad: string[] = [];
      const readRooms = async () => {
        try {
          const response = await fetch(
            `${stack.restUrl}/rooms?select=hms_room_id&limit=1`,
            {
              headers: {
                apikey: stack.serviceRoleKey,
                authorization: `Bearer ${stack.serviceRoleKey}`,
              },
              signal: AbortSignal.timeout(30_000),
            },
          );
          const body = await response.json();
          const kind = response.status === 200
            ? "200"
            : `${response.status} ${body.code}`;
          restAnswers[kind] = (restAnswers[kind] ?? 0) + 1;
          // PostgREST's bodies and statuses (src/PostgREST/Error.hs); server errors keep their
          // SQLSTATE: 57P01 (shutdown) is 503, 57P02 (another backend crashed) 500.
          const allowed = response.status === 200 ||
            (response.status === 503 &&
              ((body.code === "PGRST000" &&
                body.message ===
                  "Database connection error. Retrying the connection.") ||
                (body.code === "PGRST001" &&
                  body.message ===
                    "Database client error. Retrying the connection.")) &&
              typeof body.details === "string" && body.hint === null) ||
            (response.status === 503 && body.code === "57P01") ||
            (response.status === 500 && /^57P0[23]$/.test(body.code));
          if (!allowed && restBad.length < 10) {
            restBad.push(`${response.status} ${JSON.stringify(body)}`);
          }
        } catch (error) {
          restAnswers.dropped = (restAnswers.dropped ?? 0) + 1;
          if (restBad.length < 10) restBad.push(String(error));
        }
      };

      const stream = (tally: Tally) => {
        let stop = false;
        const reader = (async () => {
          while (!stop) {
            await readRooms();
            await sleep(SEND_GAP_MS);
          }
        })();
        const workers = Array.from({ length: WORKERS }, async () => {
          while (!stop) {
            const event = nextEvent();
            sent.push(event);
            await send(event, tally);
            if (Math.random() < 0.1) await send(event, tally);
            await sleep(SEND_GAP_MS);
          }
        });
        workers.push(reader);
        return async () => {
          stop = true;
          await Promise.all(workers);
        };
      };

      const pids = () => ({
        stack: processAlive(child.pid) ? child.pid : null,
        function: processAlive(stack.pids.function)
          ? stack.pids.function
          : null,
      });
      const before = pids();
      assert.deepEqual(before, {
        stack: child.pid,
        function: stack.pids.function,
      });

      // Each fault, and how npm start's log must tell its return: a new postmaster or the same.
      const faults: [string, () => Promise<void>][] = [
        ["(a) pg_ctl restart -m fast", async () => {
          await pgCtl(
            "restart",
            "-D",
            stack.dataDir,
            "-m",
            "fast",
            "-w",
            "-l",
            `${stack.dataDir}/server.log`,
          );
        }],
        ["(b) pg_ctl stop -m immediate, then start", async () => {
          await pgCtl("stop", "-D", stack.dataDir, "-m", "immediate", "-w");
          await sleep(1000); // connections are refused meanwhile
          await pgCtl(
            "start",
            "-D",
            stack.dataDir,
            "-w",
            "-l",
            `${stack.dataDir}/server.log`,
          );
        }],
        ["(c) SIGKILL of one stand-in backend (crash recovery)", async () => {
          const backends = await query(
            url,
            "select pid, state from pg_stat_activity where application_name = $1 " +
              "order by state = 'active' desc, pid limit 1",
            [REST_APPLICATION_NAME],
          );
          assert.ok(backends.length === 1, "no stand-in backend to kill");
          Deno.kill(backends[0].pid, "SIGKILL");
        }],
        ["(d) SIGSTOP of the server for 4 s, then SIGCONT", async () => {
          const processes = serverProcesses(stack.dataDir);
          try {
            for (const pid of processes) Deno.kill(pid, "SIGSTOP");
            // Longer than the watch's interval + timeout (1 s + 2 s), so npm start logs it.
            await sleep(4000);
          } finally {
            for (const pid of processes) Deno.kill(pid, "SIGCONT");
          }
        }],
      ];

      const report: string[] = [];
      const restarted = [true, true, false, false];
      for (const [index, [name, fault]] of faults.entries()) {
        await t.step(name, async () => {
          const tally = new Tally();
          const logBefore = started.log().length;
          const stop = stream(tally);
          await sleep(1500);
          await fault();
          // Back when npm start's log says so (bounded): its latest database line, after the
          // fault began, is "back after"; then a little more of the stream.
          const deadline = Date.now() + 30_000;
          const backNow = () => {
            const lines =
              started.log().slice(logBefore).match(/\[database\][^\n]*/g) ??
                [];
            return /back after/.test(lines.at(-1) ?? "");
          };
          while (!backNow()) {
            assert.ok(
              Date.now() < deadline,
              `no "back after" in the log:\n${started.log().slice(logBefore)}`,
            );
            await sleep(100);
          }
          await sleep(1500);
          await stop();
          const log = started.log().slice(logBefore);
          assert.match(log, /\[database\][^\n]*stopped answering/);
          assert.match(
            log,
            restarted[index]
              ? /\[database\][^\n]*back after [\d.]+ s \(restarted: postmaster pid \d+ -> \d+\)/
              : /\[database\][^\n]*back after [\d.]+ s \(same postmaster/,
          );

          const acked = [...tally.acknowledged];
          const found = Number(
            (await query(
              url,
              "select count(*) from hms_private.events where event_id = any($1)",
              [acked],
            ))[0].count,
          );
          report.push(
            `${name}: sent ${tally.sent}, ${JSON.stringify(tally.byStatus)}, ` +
              `acknowledged ${acked.length}, found afterwards ${found}`,
          );
          console.log(report.at(-1));
          assert.deepEqual(
            tally.bad,
            [],
            "answers other than 200/duplicate/503",
          );
          assert.ok(
            tally.byStatus["200 applied"] > 0,
            "the stream got through",
          );
          assert.equal(found, acked.length, "acknowledged events lost");
          assert.deepEqual(pids(), before, "the same processes serve");
        });
      }
      await t.step("the stand-in answered as PostgREST does meanwhile", () => {
        console.log(`REST stand-in answers: ${JSON.stringify(restAnswers)}`);
        assert.deepEqual(restBad, []);
        assert.ok(restAnswers["503 PGRST000"] > 0, "refused while stopped");
      });

      await t.step(
        "every delivery sent again: every room is exact",
        async () => {
          const tally = new Tally();
          const queue = [...sent];
          await Promise.all(
            Array.from({ length: WORKERS }, async () => {
              for (let e = queue.shift(); e !== undefined; e = queue.shift()) {
                await send(e, tally);
              }
            }),
          );
          console.log(
            `resend: sent ${tally.sent}, ${JSON.stringify(tally.byStatus)}`,
          );
          assert.deepEqual(tally.bad, []);
          assert.equal(tally.byStatus["503 upstream_unavailable"], undefined);
          for (const room of rooms) {
            const classes = [...room.present.values()];
            const [row] = await query(
              url,
              "select is_live, listener_count, speaker_count from public.rooms where hms_room_id = $1",
              [room.roomId],
            );
            assert.deepEqual(row, {
              is_live: true,
              listener_count: classes.filter((c) => c === "listener").length,
              speaker_count: classes.filter((c) => c === "speaker").length,
            }, room.roomId);
          }
          assert.deepEqual(pids(), before, "the same processes serve");
        },
      );

      await t.step(
        "SIGKILL of the stack: nothing is left after the next start's sweep",
        async () => {
          const postgres = postmasterPid(stack.dataDir);
          child.kill("SIGKILL");
          await child.status;
          // The kernel kills the function with its parent (setpriv --pdeathsig).
          const deadline = Date.now() + 10_000;
          while (processAlive(stack.pids.function) && Date.now() < deadline) {
            await sleep(50);
          }
          assert.equal(
            processAlive(stack.pids.function),
            false,
            "function left running",
          );
          assert.ok(
            processAlive(postgres),
            "PostgreSQL outlives a SIGKILLed stack",
          );
          const removed = await sweepStale(`${root}/.stack`);
          assert.ok(removed.includes(stack.dataDir), `swept: ${removed}`);
          assert.equal(processAlive(postgres), false, "PostgreSQL still runs");
          assert.equal(
            await Deno.stat(stack.dataDir).then(() => true, () => false),
            false,
          );
        },
      );
      console.log(report.join("\n"));
    } finally {
      if (started.exited() === null) {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
        await child.status;
      }
      await started.drained;
      if (file !== null) {
        try {
          // A failure mid-pause must not leave stopped processes that nothing can end.
          for (const pid of serverProcesses(file.dataDir)) {
            try {
              Deno.kill(pid, "SIGCONT");
            } catch {
              // Gone.
            }
          }
        } catch {
          // Not running.
        }
        if (processAlive(file.pids.function)) {
          Deno.kill(file.pids.function, "SIGKILL");
        }
        stopDataDirSync(file.dataDir);
        await Deno.remove(`${file.dataDir}.owner.json`).catch(() => {});
      }
      await Deno.remove(started.dir, { recursive: true }).catch(() => {});
    }
  },
});
