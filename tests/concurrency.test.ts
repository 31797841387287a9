/**
 * Exact counts under concurrency: many joins, leaves and role changes for one room, each also
 * delivered twice, fired at the function URL all at once in random order; then the same for 20
 * rooms at once (half of them closed, each with a late join after its close that must not count).
 * Each story states the row it must end with (design §7). And the queue in front of a room: a
 * webhook and reconcile's facts wait for the room's turn (hms_private.take_turn), other rooms'
 * calls do not.
 */

import {
  buildEvent,
  type BuiltEvent,
  eventIdOf,
  nowNanos,
  objectId,
  uuid,
} from "../scripts/lib/hms.ts";
import { assert } from "./helpers/assert.ts";
import { createRoom, roomRow } from "./helpers/db.ts";
import { shuffle } from "./helpers/histories.ts";
import { stackTest, type TestStack } from "./helpers/stack.ts";
import { assertOutcome, deliver, S } from "./helpers/webhook.ts";

const ROLES = ["listener", "speaker", "host", "Listener", "moderator", "beam"];
/** The class of each role above under the default HMS_SPEAKER_ROLES / HMS_IGNORED_ROLES. */
const CLASS: Record<string, "listener" | "speaker" | "ignored"> = {
  listener: "listener",
  Listener: "listener",
  speaker: "speaker",
  host: "speaker",
  moderator: "speaker",
  beam: "ignored",
};

/** One session's events and the room they must leave behind. */
interface Story {
  events: BuiltEvent[];
  isLive: boolean;
  listeners: number;
  speakers: number;
  /** The latest event time, in microseconds. */
  lastActiveUs: bigint;
}

/**
 * One session's events: an open, `peers` joins with mixed roles, some role changes, some leaves,
 * optionally a close after everything and one late join after the close.
 */
function sessionEvents(
  roomId: string,
  peers: number,
  close: boolean,
): Story {
  const t0 = nowNanos() - 200n * S;
  const sessionId = objectId();
  const base = { roomId, sessionId, sessionStartedAt: t0 };
  const jitter = () => BigInt(Math.floor(Math.random() * 1e9));
  const events = [buildEvent("session.open.success", { ...base, at: t0 })];
  let latest = t0;
  const count = { listener: 0, speaker: 0, ignored: 0 };
  for (let i = 0; i < peers; i++) {
    const peerId = uuid();
    const joinedAt = t0 + BigInt(1 + i) * S + jitter();
    const role = ROLES[i % ROLES.length];
    events.push(
      buildEvent("peer.join.success", { ...base, peerId, role, at: joinedAt }),
    );
    latest = joinedAt > latest ? joinedAt : latest;
    let finalRole = role;
    if (i % 3 === 1) {
      finalRole = role.toLowerCase() === "listener" ? "speaker" : "listener";
      const at = joinedAt + 40n * S + jitter();
      events.push(buildEvent("role.change.success", {
        ...base,
        peerId,
        role: finalRole,
        previousRole: role,
        joinedAt,
        at,
      }));
      latest = at > latest ? at : latest;
    }
    if (i % 4 === 2) {
      const at = joinedAt + 80n * S + jitter();
      events.push(buildEvent("peer.leave.success", {
        ...base,
        peerId,
        role,
        joinedAt,
        at,
      }));
      latest = at > latest ? at : latest;
    } else {
      count[CLASS[finalRole]]++;
    }
  }
  if (close) {
    // A closed session stays closed: the join 5 s after the close counts nobody.
    const closedAt = t0 + 150n * S;
    events.push(buildEvent("session.close.success", { ...base, at: closedAt }));
    events.push(buildEvent("peer.join.success", {
      ...base,
      peerId: uuid(),
      role: "listener",
      at: closedAt + 5n * S,
    }));
    latest = closedAt + 5n * S;
  }
  return {
    events,
    isLive: !close,
    listeners: close ? 0 : count.listener,
    speakers: close ? 0 : count.speaker,
    lastActiveUs: latest / 1000n,
  };
}

/** Runs `tasks` with at most `limit` in flight. */
async function pool<T>(
  tasks: (() => Promise<T>)[],
  limit: number,
): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, worker),
  );
  return results;
}

/** Delivers every event twice, all shuffled together; checks applied-once/duplicate-once. */
async function fire(
  stack: TestStack,
  events: BuiltEvent[],
  limit: number,
): Promise<void> {
  const deliveries = shuffle([...events, ...events], Math.random);
  const answers = await pool(
    deliveries.map((event) => async () => ({
      id: await eventIdOf(event),
      answer: await deliver(stack.functionUrl, event, {
        secret: stack.secret,
        headerName: stack.secretHeader,
        auth: Math.random() < 0.5 ? "signature" : "header",
      }),
    })),
    limit,
  );
  const outcomes = new Map<string, string[]>();
  for (const { id, answer } of answers) {
    assert.equal(answer.status, 200, answer.text);
    outcomes.set(id, [
      ...(outcomes.get(id) ?? []),
      String(answer.json?.status),
    ]);
  }
  for (const [id, statuses] of outcomes) {
    assert.deepEqual(statuses.sort(), ["applied", "duplicate"], `event ${id}`);
  }
}

async function assertRoom(
  stack: TestStack,
  roomId: string,
  story: Story,
  initial: bigint,
) {
  const expected = {
    isLive: story.isLive,
    listeners: story.listeners,
    speakers: story.speakers,
    lastActiveUs: story.lastActiveUs > initial ? story.lastActiveUs : initial,
  };
  const row = await roomRow(stack.sql, roomId);
  assert.ok(row);
  assert.deepEqual(
    {
      isLive: row.isLive,
      listeners: row.listeners,
      speakers: row.speakers,
      lastActiveUs: row.lastActiveUs,
    },
    expected,
    `room ${roomId}`,
  );
}

stackTest({
  name: "concurrent deliveries with duplicates end with exact counts",
  async fn(stack, t) {
    await t.step(
      "one room: 40 peers, 2x every event, all in flight at once",
      async () => {
        const roomId = await createRoom(stack.sql);
        const initial = (await roomRow(stack.sql, roomId))!.lastActiveUs;
        const story = sessionEvents(roomId, 40, false);
        const events = story.events;
        assert.ok(events.length * 2 >= 64, `${events.length * 2} requests`);
        await fire(stack, events, events.length * 2);
        await assertRoom(stack, roomId, story, initial);
        const row = await roomRow(stack.sql, roomId);
        assert.ok(
          row!.listeners > 0 && row!.speakers > 0,
          "both classes are present",
        );
      },
    );

    await t.step(
      "20 rooms at once, half closed (a late join each that must not count)",
      async () => {
        const rooms = await Promise.all(
          Array.from({ length: 20 }, async (_, i) => {
            const roomId = await createRoom(stack.sql);
            const initial = (await roomRow(stack.sql, roomId))!.lastActiveUs;
            return {
              roomId,
              initial,
              story: sessionEvents(roomId, 10, i % 2 === 0),
            };
          }),
        );
        await fire(stack, rooms.flatMap((r) => r.story.events), 96);
        for (const room of rooms) {
          await assertRoom(stack, room.roomId, room.story, room.initial);
        }
      },
    );
  },
});

/**
 * Waits (bounded) until `n` calls wait for the turn that `holder` (a backend pid) holds: the
 * ungranted advisory locks with the same key as the holder's granted one.
 */
async function waitingForTurn(
  stack: TestStack,
  holder: number,
  n: number,
): Promise<void> {
  for (let i = 0;; i++) {
    const [{ waiting }] = await stack.sql`select count(*)::int as waiting
      from pg_locks as w join pg_locks as h
        on (w.database, w.classid, w.objid, w.objsubid)
          = (h.database, h.classid, h.objid, h.objsubid)
      where h.pid = ${holder} and h.locktype = 'advisory' and h.granted
        and w.locktype = 'advisory' and not w.granted`;
    if (waiting === n) return;
    if (i === 200) {
      throw new Error(`${waiting} calls wait for the turn, expected ${n}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

stackTest({
  name: "a room's calls take their turn; other rooms' calls do not wait",
  async fn(stack) {
    const roomId = await createRoom(stack.sql);
    const other = await createRoom(stack.sql);
    const sessionId = objectId();
    const t0 = nowNanos() - 100n * S;
    const base = { sessionId, sessionStartedAt: t0 };
    const send = (event: BuiltEvent) =>
      deliver(stack.functionUrl, event, {
        secret: stack.secret,
        headerName: stack.secretHeader,
      });
    // Another call holds the room's turn (here an open transaction that took it).
    const holder = await stack.sql.reserve();
    try {
      await holder`begin`;
      await holder`select hms_private.take_turn(${roomId})`;
      const [{ pid }] = await holder`select pg_backend_pid() as pid`;
      const queued = send(buildEvent("peer.join.success", {
        ...base,
        roomId,
        peerId: uuid(),
        role: "listener",
        at: t0 + S,
      }));
      await waitingForTurn(stack, pid, 1);
      // Reconcile's facts for the room queue behind it too.
      const facts = stack
        .sql`select public.hms_apply_facts(p_room_id => ${roomId},
        p_observed_at => now(), p_facts => '[]'::jsonb) as result`.execute();
      await waitingForTurn(stack, pid, 2);
      // Meanwhile another room is served, and the waiting room is untouched.
      assertOutcome(
        await send(buildEvent("peer.join.success", {
          ...base,
          roomId: other,
          peerId: uuid(),
          role: "listener",
          at: t0 + S,
        })),
        "applied",
      );
      assert.equal((await roomRow(stack.sql, other))!.listeners, 1);
      assert.equal((await roomRow(stack.sql, roomId))!.listeners, 0);
      await holder`commit`;
      assertOutcome(await queued, "applied");
      const [{ result }] = await facts;
      assert.equal(result.status, "applied", JSON.stringify(result));
      assert.equal((await roomRow(stack.sql, roomId))!.listeners, 1);
    } finally {
      await holder`rollback`.catch(() => {});
      holder.release();
    }
  },
});
