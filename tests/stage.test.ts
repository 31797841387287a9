/**
 * Who is on stage and how a session went (design §9.1), end to end: signed deliveries through
 * the function URL, in order and shuffled with duplicates, give the same participants and recap;
 * `room_participants` follows the privacy defaults for `authenticated` and `anon`.
 */

import { buildEvent, type BuiltEvent } from "../scripts/lib/hms.ts";
import { assert } from "./helpers/assert.ts";
import { createRoom } from "./helpers/db.ts";
import { seeded, shuffle } from "./helpers/histories.ts";
import { stackTest, type TestStack } from "./helpers/stack.ts";
import { deliver, S } from "./helpers/webhook.ts";

/** One session: A speaks, B and C listen, B is promoted, C and A leave, a recorder bot joins
 * (ignored), then the session closes. Times in whole seconds after `t0`. */
function story(roomId: string, t0: bigint): BuiltEvent[] {
  const sessionId = `stage-${roomId}`;
  const at = (s: number) => t0 + BigInt(s) * S;
  const common = { roomId, sessionId, sessionStartedAt: at(0) };
  const peer = (name: string) => ({
    peerId: `${name}-${roomId}`,
    userId: `user-${name}`,
    userName: `Name ${name}`,
  });
  return [
    buildEvent("session.open.success", { ...common, at: at(0) }),
    buildEvent("peer.join.success", {
      ...common,
      ...peer("a"),
      role: "host",
      at: at(1),
    }),
    buildEvent("peer.join.success", {
      ...common,
      ...peer("b"),
      role: "listener",
      at: at(2),
    }),
    buildEvent("peer.join.success", {
      ...common,
      ...peer("c"),
      role: "listener",
      at: at(3),
    }),
    buildEvent("peer.join.success", {
      ...common,
      ...peer("bot"),
      role: "__internal_recorder",
      at: at(4),
    }),
    buildEvent("role.change.success", {
      ...common,
      ...peer("b"),
      role: "speaker",
      previousRole: "listener",
      joinedAt: at(2),
      at: at(10),
    }),
    buildEvent("peer.leave.success", {
      ...common,
      ...peer("c"),
      role: "listener",
      joinedAt: at(3),
      at: at(20),
    }),
    buildEvent("peer.leave.success", {
      ...common,
      ...peer("a"),
      role: "host",
      joinedAt: at(1),
      at: at(30),
    }),
    buildEvent("session.close.success", { ...common, at: at(60) }),
  ];
}

async function send(stack: TestStack, events: BuiltEvent[]): Promise<void> {
  for (const e of events) {
    const answer = await deliver(stack.functionUrl, e, {
      secret: stack.secret,
    });
    assert.equal(answer.status, 200, answer.text);
  }
}

interface Recap {
  peak_listeners: number;
  peak_speakers: number;
  unique_participants: number;
  participant_seconds: number;
  ended: boolean;
}

async function recap(stack: TestStack, roomId: string): Promise<Recap[]> {
  return await stack.sql<Recap[]>`
    select peak_listeners, peak_speakers, unique_participants,
      participant_seconds::float8 as participant_seconds, ended_at is not null as ended
    from public.room_sessions where hms_room_id = ${roomId}`;
}

/** The stage as a role sees it (a read-only transaction as that role). */
async function stageAs(
  stack: TestStack,
  role: "authenticated" | "anon" | "service_role",
  roomId: string,
): Promise<string[]> {
  let seen: string[] = [];
  await stack.sql.begin(async (tx) => {
    await tx.unsafe(`set local role ${role}`);
    const rows = await tx<{ who: string }[]>`
      select user_name || ':' || role_class as who from public.room_participants
      where hms_room_id = ${roomId} order by user_name`;
    seen = rows.map((r) => r.who);
  }).catch((e) => {
    if (!(e instanceof Error) || !/permission denied/.test(e.message)) throw e;
    seen = ["permission denied"];
  });
  return seen;
}

stackTest({
  name:
    "stage and recap: in order and shuffled with duplicates, the same participants and recap",
  async fn(stack, t) {
    const t0 = BigInt(Date.now() - 120_000) * 1_000_000n / S * S;
    const ordered = await createRoom(stack.sql);
    const events = story(ordered, t0);

    await t.step("on stage before the close, by role", async () => {
      await send(stack, events.slice(0, -1));
      assert.deepEqual(await stageAs(stack, "service_role", ordered), [
        "Name b:speaker",
      ]);
      // Before B's promotion and the leaves: the stage and the listeners separately.
      const early = await createRoom(stack.sql);
      await send(stack, story(early, t0).slice(0, 5));
      assert.deepEqual(await stageAs(stack, "authenticated", early), [
        "Name a:speaker",
      ]);
      assert.deepEqual(await stageAs(stack, "service_role", early), [
        "Name a:speaker",
        "Name b:listener",
        "Name c:listener",
      ]);
      assert.deepEqual(await stageAs(stack, "anon", early), [
        "permission denied",
      ]);
      await stack
        .sql`update public.hms_settings set listeners_visible = true where id`;
      try {
        assert.deepEqual(await stageAs(stack, "authenticated", early), [
          "Name a:speaker",
          "Name b:listener",
          "Name c:listener",
        ]);
      } finally {
        await stack
          .sql`update public.hms_settings set listeners_visible = false where id`;
      }
    });

    await t.step("the close empties the stage; the recap", async () => {
      await send(stack, events.slice(-1));
      assert.deepEqual(await stageAs(stack, "service_role", ordered), []);
      // A 1..30 s, B 2..60 s (the close), C 3..20 s; the recorder never counts.
      assert.deepEqual(await recap(stack, ordered), [{
        peak_listeners: 2,
        peak_speakers: 2,
        unique_participants: 3,
        participant_seconds: 29 + 58 + 17,
        ended: true,
      }]);
    });

    await t.step(
      "shuffled, with duplicates: the same participants and seconds",
      async () => {
        const shuffled = await createRoom(stack.sql);
        const again = story(shuffled, t0);
        const deliveries = shuffle(
          [...again, ...again.slice(1, 6)],
          seeded(23),
        );
        await send(stack, deliveries);
        assert.deepEqual(await stageAs(stack, "service_role", shuffled), []);
        const [r] = await recap(stack, shuffled);
        assert.equal(r.unique_participants, 3);
        assert.equal(r.participant_seconds, 29 + 58 + 17);
        assert.equal(r.ended, true);
      },
    );
  },
});
