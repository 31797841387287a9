/**
 * Counting rules v2 (docs/counting.md) end to end through the function URL, one step per numbered case,
 * each refusal with the before/after check that nothing was written; and the snapshot-facts RPC
 * (docs/design.md §6.1) and the 12-hour rule through the REST stand-in with the service role. Expected
 * values are stated here directly (docs/design.md §5 and §7 say why).
 */

import {
  buildEvent,
  type BuiltEvent,
  dataTime,
  headerValue,
  nowNanos,
  objectId,
  sign,
  uuid,
} from "../scripts/lib/hms.ts";
import { assert } from "./helpers/assert.ts";
import { assertNothingWritten, createRoom, roomRow } from "./helpers/db.ts";
import { stackTest, type TestStack } from "./helpers/stack.ts";
import {
  assertError,
  assertOutcome,
  deliver,
  post,
  S,
} from "./helpers/webhook.ts";

/** [is_live, listeners, speakers] of the room's row. */
async function counts(stack: TestStack, roomId: string) {
  const row = await roomRow(stack.sql, roomId);
  assert.ok(row, `room ${roomId}`);
  return [row.isLive, row.listeners, row.speakers];
}

/** Sends `event` and requires a 200 `applied`. */
async function applied(
  stack: TestStack,
  event: BuiltEvent | string,
  url = stack.functionUrl,
) {
  const answer = await deliver(url, event, {
    secret: stack.secret,
    headerName: stack.secretHeader,
  });
  assertOutcome(answer, "applied");
  return answer;
}

/** A room with an open session S and one listener; returns what the story needs. */
async function openRoom(stack: TestStack) {
  const roomId = await createRoom(stack.sql);
  const sessionId = objectId();
  const t0 = nowNanos() - 60n * S;
  const base = { roomId, sessionId, sessionStartedAt: t0 };
  await applied(
    stack,
    buildEvent("session.open.success", { ...base, at: t0 }),
  );
  await applied(
    stack,
    buildEvent("peer.join.success", {
      ...base,
      peerId: uuid(),
      role: "listener",
      at: t0 + S,
    }),
  );
  return { roomId, sessionId, t0, base };
}

stackTest({
  name: "counting rules v2, case by case, through the function URL",
  async fn(stack, t) {
    const options = { secret: stack.secret, headerName: stack.secretHeader };

    await t.step(
      "1. a closed 100ms session stays closed: a join 5 ms after the close, a beam join",
      async () => {
        const { roomId, t0, base } = await openRoom(stack);
        const closedAt = t0 + 10n * S;
        await applied(
          stack,
          buildEvent("session.close.success", { ...base, at: closedAt }),
        );
        for (
          const [role, at] of [["listener", closedAt + 5_000_000n], [
            "beam",
            closedAt + S,
          ]] as const
        ) {
          await applied(
            stack,
            buildEvent("peer.join.success", {
              ...base,
              peerId: uuid(),
              role,
              at,
            }),
          );
          assert.deepEqual(
            await counts(stack, roomId),
            [false, 0, 0],
            `${role} join after the close`,
          );
        }
      },
    );

    await t.step(
      "2. the flat format: a reused peer id counts again after a rejoin, in the next epoch too",
      async () => {
        const roomId = await createRoom(stack.sql);
        const t0 = nowNanos() - 60n * S;
        const flat = { format: "flat" as const, roomId };
        const peer = { ...flat, peerId: "user-7", role: "listener" };
        for (
          const event of [
            buildEvent("room.started", { ...flat, at: t0 }),
            buildEvent("peer.joined", { ...peer, at: t0 + S }),
            buildEvent("peer.left", { ...peer, at: t0 + 2n * S }),
            buildEvent("peer.joined", { ...peer, at: t0 + 3n * S }),
          ]
        ) await applied(stack, event);
        assert.deepEqual(await counts(stack, roomId), [true, 1, 0], "rejoin");
        await applied(
          stack,
          buildEvent("room.ended", { ...flat, at: t0 + 4n * S }),
        );
        assert.deepEqual(await counts(stack, roomId), [false, 0, 0], "ended");
        for (
          const event of [
            buildEvent("room.started", { ...flat, at: t0 + 5n * S }),
            buildEvent("peer.joined", { ...peer, at: t0 + 6n * S }),
          ]
        ) await applied(stack, event);
        assert.deepEqual(
          await counts(stack, roomId),
          [true, 1, 0],
          "next epoch",
        );
      },
    );

    await t.step(
      "3. no single event pins a room: far data times refused, last_active_at and score_now bounded",
      async () => {
        const { roomId, base } = await openRoom(stack);
        const now = nowNanos();
        for (
          const [label, field, time] of [
            ["year 9999", "joined_at", "9999-12-31T23:59:59.999999Z"],
            ["one day ahead", "joined_at", dataTime(now + 86_400n * S)],
            ["three minutes ahead", "joined_at", dataTime(now + 180n * S)],
            ["two days back", "joined_at", dataTime(now - 2n * 86_400n * S)],
            ["a start in 2030", "session_started_at", "2030-01-01T00:00:00Z"],
          ]
        ) {
          const event = buildEvent("peer.join.success", {
            ...base,
            peerId: uuid(),
            role: "listener",
            at: now,
          });
          (event.payload.data as Record<string, unknown>)[field] = time;
          await assertNothingWritten(stack.sql, [], label, async () => {
            const answer = await deliver(
              stack.functionUrl,
              JSON.stringify(event.payload),
              options,
            );
            assertError(answer, 400, "invalid_timestamp");
            assert.match(
              String(answer.json?.message),
              new RegExp(`data\\.${field}`),
            );
          });
        }
        // Within the bounds but ahead of the clock: last_active_at stops at received + 120 s.
        const ahead = buildEvent("peer.join.success", {
          ...base,
          peerId: uuid(),
          role: "speaker",
          at: now + 200n * S,
          deliveredAt: now + 100n * S,
        });
        const sentUs = BigInt(Date.now()) * 1000n;
        await applied(stack, ahead.body);
        const row = await roomRow(stack.sql, roomId);
        assert.ok(
          row!.lastActiveUs <= BigInt(Date.now()) * 1000n + 120_000_000n,
          "last_active_at",
        );
        assert.ok(
          row!.lastActiveUs >= sentUs + 119_000_000n,
          "moved up to the bound",
        );
        const [feed] = await stack.sql`
          select score_now::float8 as score from public.trending_rooms(1000) where hms_room_id = ${roomId}`;
        assert.ok(
          feed.score <= 1 + 3,
          `score_now ${feed.score} over the base score 4`,
        );
        // The envelope timestamp's own future bound holds with the age check off too.
        await stack.withFunction({
          env: { HMS_TIMESTAMP_TOLERANCE_SECONDS: "0" },
        }, async (instance) => {
          const future = buildEvent("peer.join.success", {
            ...base,
            peerId: uuid(),
            role: "listener",
            at: now + 300n * S,
          });
          await assertNothingWritten(
            stack.sql,
            [],
            "a future envelope with tolerance 0",
            async () => {
              const answer = await deliver(instance.url, future.body, options);
              assertError(answer, 401, "stale_timestamp");
            },
          );
        });
      },
    );

    await t.step(
      "4. every 100ms session event needs its session: missing or empty session_id is a 400",
      async () => {
        const { roomId, base, t0 } = await openRoom(stack);
        for (
          const type of [
            "peer.join.success",
            "session.open.success",
            "peer.leave.success",
            "room.end.success",
          ]
        ) {
          for (const value of [undefined, ""]) {
            const event = buildEvent(type, {
              ...base,
              sessionStartedAt: t0 + 5n * S,
              peerId: uuid(),
              role: "listener",
              at: t0 + 6n * S,
            });
            const data = event.payload.data as Record<string, unknown>;
            if (value === undefined) delete data.session_id;
            else data.session_id = value;
            await assertNothingWritten(
              stack.sql,
              [],
              `${type} session_id ${JSON.stringify(value)}`,
              async () => {
                const answer = await deliver(
                  stack.functionUrl,
                  JSON.stringify(event.payload),
                  options,
                );
                assertError(
                  answer,
                  400,
                  value === undefined ? "missing_field" : "invalid_field",
                );
                assert.match(String(answer.json?.message), /data\.session_id/);
              },
            );
          }
        }
        assert.deepEqual(await counts(stack, roomId), [true, 1, 0]);
      },
    );

    await t.step(
      "5. one sub-second rule: a whole-second envelope time means the end of its second",
      async () => {
        const roomId = await createRoom(stack.sql);
        await stack
          .sql`update public.rooms set last_active_at = now() - interval '1 hour'
                        where hms_room_id = ${roomId}`;
        const sessionId = objectId();
        const second = (nowNanos() / S - 30n) * S;
        const base = { roomId, sessionId, sessionStartedAt: second - 10n * S };
        const peerId = uuid();
        await applied(
          stack,
          buildEvent("peer.join.success", {
            ...base,
            peerId,
            role: "listener",
            at: second + S / 2n,
          }),
        );
        const promotion = buildEvent("role.change.success", {
          ...base,
          peerId,
          role: "speaker",
          previousRole: "listener",
          joinedAt: second + S / 2n,
          at: second,
        });
        delete (promotion.payload.data as Record<string, unknown>)
          .role_changed_at;
        await applied(stack, JSON.stringify(promotion.payload));
        assert.deepEqual(
          await counts(stack, roomId),
          [true, 0, 1],
          "the promotion wins",
        );
        const row = await roomRow(stack.sql, roomId);
        assert.equal(
          row!.lastActiveUs,
          second / 1000n + 999_999n,
          "last_active_at",
        );
        // A close without its stop time, and a room end, both stand for the end of the second.
        const close = buildEvent("session.close.success", {
          ...base,
          at: second + S,
        });
        delete (close.payload.data as Record<string, unknown>)
          .session_stopped_at;
        await applied(stack, JSON.stringify(close.payload));
        const closed = await roomRow(stack.sql, roomId);
        assert.equal(closed!.lastActiveUs, (second + S) / 1000n + 999_999n);
      },
    );

    await t.step(
      "6a. a non-ASCII HMS_WEBHOOK_SECRET works with both auth methods",
      async () => {
        const secret = "sécret-ключ-🔑-0123456789";
        await stack.withFunction({
          env: { HMS_WEBHOOK_SECRET: secret },
        }, async (instance) => {
          const roomId = await createRoom(stack.sql);
          const base = { roomId, sessionId: objectId() };
          for (const auth of ["header", "signature"] as const) {
            const event = buildEvent("peer.join.success", {
              ...base,
              peerId: uuid(),
              role: "listener",
            });
            const answer = await deliver(instance.url, event.body, {
              secret,
              auth,
              headerName: stack.secretHeader,
            });
            assert.equal(answer.status, 200, `${auth}: ${answer.text}`);
            assert.equal(answer.json?.status, "applied", answer.text);
          }
          assert.deepEqual(await counts(stack, roomId), [true, 2, 0]);
          const forged = buildEvent("peer.join.success", {
            ...base,
            peerId: uuid(),
            role: "listener",
          });
          await assertNothingWritten(
            stack.sql,
            [],
            "a wrong non-ASCII secret",
            async () => {
              const wrongHeader = await post(instance.url, forged.body, {
                "content-type": "application/json",
                [stack.secretHeader]: headerValue("sécret-ключ-🔑-0123456788"),
              });
              assertError(wrongHeader, 401, "unauthorized");
              const wrongSignature = await post(instance.url, forged.body, {
                "content-type": "application/json",
                "x-100ms-signature": await sign(forged.body, "secret-kljuch"),
              });
              assertError(wrongSignature, 401, "unauthorized");
            },
          );
        });
      },
    );

    await t.step(
      "6b. a duplicate writes nothing, also with auto-create (no room created)",
      async () => {
        await stack.withFunction({
          env: { HMS_AUTO_CREATE_ROOMS: "true" },
        }, async (instance) => {
          const roomId = await createRoom(stack.sql);
          const event = buildEvent("peer.join.success", {
            roomId,
            peerId: uuid(),
            role: "listener",
          });
          await applied(stack, event.body, instance.url);
          const other = objectId();
          const payload = JSON.parse(event.body);
          payload.data.room_id = other;
          await assertNothingWritten(
            stack.sql,
            [],
            "the duplicate for an unknown room",
            async () => {
              const answer = await deliver(
                instance.url,
                JSON.stringify(payload),
                options,
              );
              assertOutcome(answer, "duplicate");
            },
          );
          assert.equal(
            await roomRow(stack.sql, other),
            null,
            "no room created",
          );
        });
      },
    );
  },
});

/** POST /rest/v1/rpc/<fn> with a key. */
async function rpc(
  stack: TestStack,
  fn: string,
  args: unknown,
  key = stack.serviceKey,
) {
  const response = await fetch(`${stack.restUrl}/rpc/${fn}`, {
    method: "POST",
    headers: {
      apikey: key,
      authorization: `Bearer ${key}`,
      "content-type": "application/json",
    },
    body: JSON.stringify(args),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: response.status, json: await response.json() };
}

stackTest({
  name:
    "hms_apply_facts and hms_close_expired_sessions through the REST stand-in",
  async fn(stack, t) {
    const { roomId, sessionId, t0 } = await openRoom(stack);
    const observed = dataTime(t0 + 30n * S);
    const received = dataTime(t0 + 90n * S);
    const listed = uuid();

    await t.step(
      "a snapshot corrects the room; applying it again changes nothing",
      async () => {
        const args = {
          p_room_id: roomId,
          p_observed_at: observed,
          p_received_at: received,
          p_facts: [
            {
              kind: "session",
              session_id: sessionId,
              started_at: dataTime(t0),
            },
            {
              kind: "peer",
              session_id: sessionId,
              peer_id: listed,
              role: "host",
              role_class: "speaker",
              joined_at: dataTime(t0 + 2n * S),
            },
            // The webhook listener's leave was lost: it is not listed any more.
            { kind: "present_set", session_id: sessionId, peer_ids: [listed] },
          ],
        };
        const first = await rpc(stack, "hms_apply_facts", args);
        assert.equal(first.status, 200, JSON.stringify(first.json));
        assert.equal(first.json.status, "applied");
        assert.deepEqual(first.json.before, {
          is_live: true,
          listener_count: 1,
          speaker_count: 0,
        });
        assert.equal(first.json.changed, true);
        assert.equal(first.json.sessions_closed, 0);
        assert.equal(first.json.room.hms_room_id, roomId);
        assert.deepEqual(
          [
            first.json.room.is_live,
            first.json.room.listener_count,
            first.json.room.speaker_count,
          ],
          [true, 0, 1],
        );
        await assertNothingWritten(
          stack.sql,
          [],
          "the same facts again",
          async () => {
            const again = await rpc(stack, "hms_apply_facts", args);
            assert.equal(again.json.changed, false, JSON.stringify(again.json));
          },
        );
      },
    );

    await t.step(
      "anon may not call it; an unknown room is ignored; bad facts are a 400",
      async () => {
        await assertNothingWritten(stack.sql, [], "refused calls", async () => {
          const denied = await rpc(stack, "hms_apply_facts", {
            p_room_id: roomId,
            p_observed_at: observed,
            p_facts: [],
          }, stack.anonKey);
          assert.ok(
            denied.status === 401 || denied.status === 403,
            String(denied.status),
          );
          assert.equal(denied.json.code, "42501");
          const unknown = await rpc(stack, "hms_apply_facts", {
            p_room_id: objectId(),
            p_observed_at: observed,
            p_facts: [],
          });
          assert.deepEqual(unknown.json, {
            status: "ignored",
            reason: "unknown room",
            room: null,
          });
          const bad = await rpc(stack, "hms_apply_facts", {
            p_room_id: roomId,
            p_observed_at: observed,
            p_facts: [{ kind: "session", session_id: "" }],
          });
          assert.equal(bad.status, 400, JSON.stringify(bad.json));
          assert.equal(bad.json.code, "22023");
        });
      },
    );

    await t.step(
      "100ms reports the session inactive: closed, and no join brings it back",
      async () => {
        const closed = await rpc(stack, "hms_apply_facts", {
          p_room_id: roomId,
          p_observed_at: dataTime(t0 + 50n * S),
          p_received_at: dataTime(t0 + 110n * S),
          p_facts: [{
            kind: "session",
            session_id: sessionId,
            started_at: dataTime(t0),
            closed_at: dataTime(t0 + 40n * S),
          }],
        });
        assert.equal(
          closed.json.sessions_closed,
          1,
          JSON.stringify(closed.json),
        );
        assert.equal(closed.json.room.is_live, false);
        await applied(
          stack,
          buildEvent("peer.join.success", {
            roomId,
            sessionId,
            sessionStartedAt: t0,
            peerId: uuid(),
            role: "listener",
            at: t0 + 45n * S,
          }),
        );
        assert.deepEqual(await counts(stack, roomId), [false, 0, 0]);
      },
    );

    await t.step("the 12-hour rule through the REST stand-in", async () => {
      const room = await createRoom(stack.sql);
      const session = objectId();
      // A start far in the past (tolerance off), so that nothing else here is older.
      const instance = await stack.startFunction({
        env: { HMS_TIMESTAMP_TOLERANCE_SECONDS: "0" },
      });
      const start = nowNanos() - 2000n * 86_400n * S;
      try {
        const open = buildEvent("session.open.success", {
          roomId: room,
          sessionId: session,
          sessionStartedAt: start,
          at: start,
        });
        await applied(stack, open.body, instance.url);
      } finally {
        await instance.stop();
      }
      const pNow = dataTime(start + 12n * 3600n * S + S);
      const answer = await rpc(stack, "hms_close_expired_sessions", {
        p_now: pNow,
      });
      assert.equal(answer.status, 200, JSON.stringify(answer.json));
      const entry = answer.json.rooms.find((r: { hms_room_id: string }) =>
        r.hms_room_id === room
      );
      assert.ok(entry, JSON.stringify(answer.json));
      assert.equal(entry.before.is_live, true);
      assert.equal(entry.room.is_live, false);
      const again = await rpc(stack, "hms_close_expired_sessions", {
        p_now: pNow,
      });
      assert.ok(
        !again.json.rooms.some((r: { hms_room_id: string }) =>
          r.hms_room_id === room
        ),
      );
    });
  },
});
