/**
 * End to end through the local function URL: every event of design §5 in each spelling (100ms
 * envelope, envelope with the spec's names, legacy flat format), authenticated by signature and
 * by secret header, checked against the database row and the response after every event; the
 * 100ms samples; unknown rooms, auto-create, ignored types, duplicates and refused requests,
 * each proven to write nothing.
 */

import {
  type Auth,
  buildEvent,
  type BuiltEvent,
  dataTime,
  envelopeTime,
  eventIdOf,
  type EventOptions,
  nowNanos,
  objectId,
  sign,
  uuid,
} from "../scripts/lib/hms.ts";
import { assert } from "./helpers/assert.ts";
import {
  assertNothingWritten,
  createRoom,
  micros,
  roomRow,
} from "./helpers/db.ts";
import { SAMPLE_STORY, sampleBody } from "./helpers/fixtures.ts";
import { stackTest, type TestStack } from "./helpers/stack.ts";
import {
  type Answer,
  assertError,
  assertOutcome,
  deliver,
  post,
  S,
} from "./helpers/webhook.ts";

/**
 * Tracks one room. The stories below state the counts they expect after each event; here every
 * answer is checked against the row it left, and last_active_at only ever moves forward and never
 * past the clock + 120 s.
 */
class RoomUnderTest {
  lastActiveUs: bigint;
  constructor(
    readonly stack: TestStack,
    readonly roomId: string,
    readonly initialLastActiveUs: bigint,
  ) {
    this.lastActiveUs = initialLastActiveUs;
  }

  static async create(stack: TestStack): Promise<RoomUnderTest> {
    const roomId = await createRoom(stack.sql);
    const row = await roomRow(stack.sql, roomId);
    return new RoomUnderTest(stack, roomId, row!.lastActiveUs);
  }

  /** Sends an event that must be applied, then checks the answer against the row. */
  async apply(
    event: BuiltEvent | string,
    auth: Auth = "both",
    url = this.stack.functionUrl,
  ) {
    const body = typeof event === "string" ? event : event.body;
    const payload = JSON.parse(body);
    const answer = await deliver(url, body, {
      secret: this.stack.secret,
      auth,
      headerName: this.stack.secretHeader,
    });
    const type = payload.type ?? payload.event;
    assert.equal(answer.status, 200, `${type}: ${answer.text}`);
    assert.match(answer.contentType ?? "", /^application\/json/);
    assert.equal(answer.json?.status, "applied", `${type}: ${answer.text}`);
    assert.equal(answer.json?.type, type);
    const eventId = typeof event === "string"
      ? payload.id
      : await eventIdOf(event);
    assert.equal(answer.json?.event_id, eventId);
    await this.check(answer, type);
    return answer;
  }

  /** The answer's `room` must equal the row. */
  async check(answer: Answer, label: string) {
    const row = await roomRow(this.stack.sql, this.roomId);
    assert.ok(row, `room ${this.roomId} missing`);
    assert.ok(
      row.lastActiveUs >= this.lastActiveUs,
      `${label}: last_active_at moved back`,
    );
    assert.ok(
      row.lastActiveUs <= BigInt(Date.now() + 120_000) * 1000n,
      `${label}: last_active_at ahead of the clock + 120 s`,
    );
    this.lastActiveUs = row.lastActiveUs;
    const room = answer.json?.room as Record<string, unknown>;
    assert.equal(room.hms_room_id, this.roomId);
    assert.equal(room.is_live, row.isLive);
    assert.equal(room.listener_count, row.listeners);
    assert.equal(room.speaker_count, row.speakers);
    assert.equal(room.trending_score, row.trendingScore);
    assert.equal(
      micros(room.last_active_at),
      row.lastActiveUs,
      `${label}: last_active_at`,
    );
  }
}

type Spelling = "100ms" | "spec" | "flat";

/** The event names of one spelling. */
interface Names {
  open: string;
  join: string;
  leave: string;
  roleChange: string;
  activity: string[];
  close: string;
}

/** The spec's names, which the legacy flat format uses too. */
const SPEC_NAMES: Names = {
  open: "room.started",
  join: "peer.joined",
  leave: "peer.left",
  roleChange: "role.change.success",
  activity: ["track.updated"],
  close: "room.ended",
};

/** The names each spelling uses (role changes and track events exist only under some names). */
const NAMES: Record<Spelling, Names> = {
  "100ms": {
    open: "session.open.success",
    join: "peer.join.success",
    leave: "peer.leave.success",
    roleChange: "role.change.success",
    activity: [
      "track.add.success",
      "track.update.success",
      "track.remove.success",
    ],
    close: "session.close.success",
  },
  spec: SPEC_NAMES,
  flat: SPEC_NAMES,
};

/** A whole session in one spelling: open, two joins, a promotion, activity, a leave, close. */
function lifecycle(
  spelling: Spelling,
  roomId: string,
  closeWith?: string,
): BuiltEvent[] {
  const names = NAMES[spelling];
  const t0 = nowNanos() - 90n * S;
  const sessionId = objectId();
  const listener = uuid();
  const host = uuid();
  const common = (at: bigint): EventOptions => ({
    format: spelling === "flat" ? "flat" : "100ms",
    roomId,
    sessionId,
    sessionStartedAt: t0,
    at,
  });
  const at = (seconds: number) =>
    t0 + BigInt(seconds) * S + BigInt(Math.floor(Math.random() * 1e9));
  const joinA = at(1);
  const joinB = at(2);
  const events = [
    buildEvent(names.open, { ...common(t0) }),
    buildEvent(names.join, {
      ...common(joinA),
      peerId: listener,
      role: "listener",
    }),
    buildEvent(names.join, { ...common(joinB), peerId: host, role: "host" }),
    buildEvent(names.roleChange, {
      ...common(at(3)),
      peerId: listener,
      role: "speaker",
      previousRole: "listener",
      joinedAt: joinA,
    }),
    ...names.activity.map((type, i) =>
      buildEvent(type, {
        ...common(at(4 + i)),
        peerId: host,
        role: "host",
        joinedAt: joinB,
      })
    ),
    buildEvent(names.leave, {
      ...common(at(8)),
      peerId: host,
      role: "host",
      joinedAt: joinB,
    }),
    buildEvent(closeWith ?? names.close, { ...common(at(9)) }),
  ];
  return events;
}

stackTest({
  name:
    "every event type, in every spelling, signed both ways, moves the room exactly",
  async fn(stack, t) {
    const cases: [Spelling, string | undefined][] = [
      ["100ms", undefined],
      ["100ms", "room.end.success"],
      ["spec", undefined],
      ["flat", undefined],
    ];
    for (const [spelling, closeWith] of cases) {
      for (const auth of ["signature", "header"] as const) {
        const label = `${spelling} names${
          closeWith ? ` closed by ${closeWith}` : ""
        }, ${auth}`;
        await t.step(label, async () => {
          const room = await RoomUnderTest.create(stack);
          const events = lifecycle(spelling, room.roomId, closeWith);
          const answers: Answer[] = [];
          for (const event of events) {
            answers.push(await room.apply(event, auth));
          }
          // The story's counts after each event (design §7).
          const counts = answers.map((a) => {
            const r = a.json?.room as Record<string, number>;
            return [r.listener_count, r.speaker_count];
          });
          assert.deepEqual(
            counts[1],
            [1, 0],
            "the listener join counts a listener",
          );
          assert.deepEqual(counts[2], [1, 1], "the host join counts a speaker");
          assert.deepEqual(
            counts[3],
            [0, 2],
            "the promotion moves listener -> speaker",
          );
          assert.deepEqual(counts.at(-2), [0, 1], "the leave removes the host");
          assert.deepEqual(
            counts.at(-1),
            [0, 0],
            "the close zeroes the counts",
          );
          assert.equal(
            (answers[0].json?.room as Record<string, unknown>).is_live,
            true,
          );
          assert.equal(
            (answers.at(-1)!.json?.room as Record<string, unknown>).is_live,
            false,
          );
          // Every event is in the past, so last_active_at is the room's own (it was created just
          // now) or the latest event time: the close's (its stop time; the end of the envelope's
          // second for room.end.success; the flat format's milliseconds).
          const close = events.at(-1)!.payload;
          const data = close.data as Record<string, unknown> | undefined;
          const closedUs = spelling === "flat"
            ? BigInt(close.timestamp as number) * 1000n
            : closeWith === "room.end.success"
            ? micros(close.timestamp)! + 999_999n
            : micros(data?.session_stopped_at)!;
          const initial = room.initialLastActiveUs;
          assert.equal(
            room.lastActiveUs,
            closedUs > initial ? closedUs : initial,
            "last_active_at",
          );
        });
      }
    }
  },
});

stackTest({
  name:
    "the 100ms samples: a join shaped exactly like §3 counts, and the whole story adds up",
  async fn(stack, t) {
    await t.step(
      "sample peer.join.success (times shifted to now) through the function URL",
      async () => {
        const room = await RoomUnderTest.create(stack);
        // The sample joins at 2024-10-04T18:03:10.55810264Z; move it to a few seconds ago.
        const shift =
          Math.floor((Date.now() - Date.parse("2024-10-04T18:03:10Z")) / 1000) -
          5;
        const body = await sampleBody("peer.join.success", {
          roomId: room.roomId,
          shiftSeconds: shift,
        });
        assert.match(
          body,
          /\n {2}"data": \{\n/,
          "sent as stored, pretty-printed",
        );
        const answer = await room.apply(body, "signature");
        assert.equal(
          (answer.json?.room as Record<string, unknown>).listener_count,
          1,
        );
        // The same bytes again, this time with the secret header: a duplicate, still one listener.
        const again = await deliver(stack.functionUrl, body, {
          secret: stack.secret,
          auth: "header",
          headerName: stack.secretHeader,
        });
        assert.equal(again.json?.status, "duplicate", again.text);
        assert.equal(
          (again.json?.room as Record<string, unknown>).listener_count,
          1,
        );
      },
    );

    await t.step(
      "the whole sample story verbatim (2024 times) with the age check off",
      async () => {
        await stack.withFunction({
          env: { HMS_TIMESTAMP_TOLERANCE_SECONDS: "0" },
        }, async (instance) => {
          const room = await RoomUnderTest.create(stack);
          const expected: Record<string, [boolean, number, number]> = {
            "session.open.success": [true, 0, 0],
            "peer.join.success": [true, 1, 0],
            "role.change.success": [true, 0, 1],
            "peer.leave.success": [true, 0, 0],
            "room.end.success": [false, 0, 0],
            "session.close.success": [false, 0, 0],
          };
          for (const type of SAMPLE_STORY) {
            const body = await sampleBody(type, { roomId: room.roomId });
            const answer = await room.apply(body, "signature", instance.url);
            const r = answer.json?.room as Record<string, unknown>;
            assert.deepEqual(
              [r.is_live, r.listener_count, r.speaker_count],
              expected[type],
              type,
            );
          }
        });
      },
    );
  },
});

stackTest({
  name:
    "unknown rooms are ignored without a write; the auto-create instance creates them",
  async fn(stack, t) {
    await t.step(
      "unknown room -> 200 ignored, nothing written in any table",
      async () => {
        for (const format of ["100ms", "flat"] as const) {
          const event = buildEvent("peer.join.success", {
            format,
            roomId: objectId(),
            role: "listener",
          });
          await assertNothingWritten(
            stack.sql,
            [],
            "an event for an unknown room",
            async () => {
              const answer = await deliver(stack.functionUrl, event, {
                secret: stack.secret,
                headerName: stack.secretHeader,
              });
              assertOutcome(answer, "ignored");
              assert.equal(answer.json?.reason, "unknown room");
              assert.equal(answer.json?.event_id, await eventIdOf(event));
              assert.equal(answer.json?.type, "peer.join.success");
            },
          );
        }
      },
    );

    await t.step(
      "HMS_AUTO_CREATE_ROOMS=true creates the room and applies the event",
      async () => {
        await stack.withFunction({
          env: { HMS_AUTO_CREATE_ROOMS: "true" },
        }, async (instance) => {
          const roomId = objectId();
          assert.equal(await roomRow(stack.sql, roomId), null);
          const event = buildEvent("peer.join.success", {
            roomId,
            role: "listener",
          });
          const answer = await deliver(instance.url, event, {
            secret: stack.secret,
            headerName: stack.secretHeader,
          });
          assertOutcome(answer, "applied");
          const row = await roomRow(stack.sql, roomId);
          assert.ok(row, "the room was created");
          assert.equal(row.listeners, 1);
          assert.equal(row.isLive, true);
          assert.equal(
            (answer.json?.room as Record<string, unknown>).listener_count,
            1,
          );
        });
      },
    );
  },
});

/** A 100ms-style envelope for a type hms.ts has no builder for. */
function envelope(
  type: string,
  roomId: string,
  data: Record<string, unknown> = {},
): string {
  const at = nowNanos();
  return JSON.stringify({
    version: "2.0",
    id: uuid(),
    account_id: "64f1a2b3c4d5e6f708192a3b",
    app_id: "64f1a2b3c4d5e6f708192a3d",
    timestamp: envelopeTime(at),
    type,
    data: { room_id: roomId, session_id: objectId(), ...data },
  });
}

stackTest({
  name: "ignored types, duplicates and refused requests write nothing",
  async fn(stack, t) {
    const room = await RoomUnderTest.create(stack);
    const opened = lifecycle("100ms", room.roomId).slice(0, 3);
    for (const event of opened) await room.apply(event);
    const options = { secret: stack.secret, headerName: stack.secretHeader };

    await t.step(
      "failure, recording, beam, hls, transcription and unknown types -> 200 ignored",
      async () => {
        const roomId = room.roomId;
        const bodies: [string, string][] = [
          [buildEvent("peer.join.failure", { roomId }).body, "failure event"],
          [buildEvent("peer.leave.failure", { roomId }).body, "failure event"],
          [buildEvent("role.change.failure", { roomId }).body, "failure event"],
          [buildEvent("room.end.failure", { roomId }).body, "failure event"],
          [buildEvent("recording.failed", { roomId }).body, "failure event"],
          [
            buildEvent("peer.join.failure", { roomId, format: "flat" }).body,
            "failure event",
          ],
          [
            buildEvent("recording.success", { roomId }).body,
            "event type not handled",
          ],
          [
            envelope("beam.started.success", roomId, { beam_id: uuid() }),
            "event type not handled",
          ],
          [
            envelope("hls.started.success", roomId, {
              url: "https://x/y.m3u8",
            }),
            "event type not handled",
          ],
          [
            envelope("transcription.success", roomId, {
              transcription_id: uuid(),
            }),
            "event type not handled",
          ],
          [envelope("room.exploded", roomId), "event type not handled"],
          [envelope("beam.failure", roomId), "failure event"],
          [envelope("hls.failure", roomId), "failure event"],
        ];
        for (const [body, reason] of bodies) {
          const type = JSON.parse(body).type ?? JSON.parse(body).event;
          await assertNothingWritten(stack.sql, [], type, async () => {
            const answer = await deliver(stack.functionUrl, body, options);
            assert.equal(answer.status, 200, `${type}: ${answer.text}`);
            assert.equal(
              answer.json?.status,
              "ignored",
              `${type}: ${answer.text}`,
            );
            assert.equal(answer.json?.reason, reason, type);
            assert.equal(answer.json?.type, type);
          });
        }
      },
    );

    await t.step(
      "a repeated event -> 200 duplicate, nothing changes",
      async () => {
        const rowBefore = await roomRow(stack.sql, room.roomId);
        for (const event of opened) {
          await assertNothingWritten(
            stack.sql,
            [],
            `the duplicate ${event.type}`,
            async () => {
              const answer = await deliver(stack.functionUrl, event, options);
              assertOutcome(answer, "duplicate");
              assert.equal(answer.json?.event_id, event.id);
              const r = answer.json?.room as Record<string, unknown>;
              assert.equal(r.listener_count, rowBefore!.listeners);
              assert.equal(r.speaker_count, rowBefore!.speakers);
            },
          );
        }
        const flat = buildEvent("peer.joined", {
          format: "flat",
          roomId: room.roomId,
          role: "listener",
        });
        await room.apply(flat);
        await assertNothingWritten(
          stack.sql,
          [],
          "the duplicate flat event",
          async () => {
            const answer = await deliver(stack.functionUrl, flat, options);
            assert.equal(answer.json?.status, "duplicate", answer.text);
            assert.equal(answer.json?.event_id, await eventIdOf(flat));
          },
        );
      },
    );

    await t.step(
      "bad signature, wrong or missing secret -> 401, nothing written",
      async () => {
        const event = buildEvent("peer.join.success", {
          roomId: room.roomId,
          role: "listener",
        });
        const other = buildEvent("peer.join.success", {
          roomId: room.roomId,
          role: "listener",
        });
        const forged: [string, Record<string, string>][] = [
          ["no proof at all", { "content-type": "application/json" }],
          ["a made-up signature", {
            "content-type": "application/json",
            "x-100ms-signature": "00".repeat(32),
          }],
          ["the signature of another body", {
            "content-type": "application/json",
            "x-100ms-signature": await sign(other.body, stack.secret),
          }],
          ["a signature made with another secret", {
            "content-type": "application/json",
            "x-100ms-signature": await sign(event.body, `${stack.secret}x`),
          }],
          ["a wrong secret header", {
            "content-type": "application/json",
            [stack.secretHeader]: "not-the-secret",
          }],
          ["an empty secret header", {
            "content-type": "application/json",
            [stack.secretHeader]: "",
          }],
        ];
        for (const [label, headers] of forged) {
          await assertNothingWritten(stack.sql, [], label, async () => {
            const answer = await post(stack.functionUrl, event.body, headers);
            assertError(answer, 401, "unauthorized");
          });
        }
        // The same event with a valid proof is then applied: the refusals were about auth only.
        await room.apply(event);
      },
    );

    await t.step(
      "HMS_WEBHOOK_AUTH=signature refuses the secret header alone",
      async () => {
        await stack.withFunction({
          env: { HMS_WEBHOOK_AUTH: "signature" },
        }, async (instance) => {
          const event = buildEvent("peer.join.success", {
            roomId: room.roomId,
            role: "listener",
            at: nowNanos(),
          });
          await assertNothingWritten(
            stack.sql,
            [],
            "header-only under signature mode",
            async () => {
              const answer = await deliver(instance.url, event, {
                ...options,
                auth: "header",
              });
              assertError(answer, 401, "unauthorized");
            },
          );
          await room.apply(event, "signature", instance.url);
        });
      },
    );

    await t.step(
      "a broken body is a 400 JSON error, nothing written",
      async () => {
        const broken: [string, string][] = [
          ["{not json", "invalid_json"],
          ["[1,2]", "not_an_object"],
          [
            JSON.stringify({
              version: "2.0",
              id: uuid(),
              type: "peer.join.success",
              timestamp: dataTime(nowNanos()),
            }),
            "missing_field",
          ],
        ];
        for (const [body, code] of broken) {
          await assertNothingWritten(
            stack.sql,
            [],
            `the body ${body.slice(0, 20)}`,
            async () => {
              const answer = await deliver(stack.functionUrl, body, options);
              assertError(answer, 400, code);
            },
          );
        }
      },
    );
  },
});
