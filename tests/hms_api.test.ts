/**
 * The 100ms API stand-in (scripts/stack/hms_api.ts) against the contract it follows
 * (https://www.100ms.live/docs/server-side/v2/api-reference/ and
 * https://www.100ms.live/docs/get-started/v2/get-started/security-and-tokens): tokens are checked like 100ms checks them (tokens minted here with
 * `jose`, an independent JWT implementation), the documented shapes and pagination, the truth
 * derived from a history, faults on demand, and the replay workflow re-sending failed
 * deliveries marked `is_replay`.
 */

import { SignJWT } from "jose";
import { assert } from "./helpers/assert.ts";
import { buildEvent, dataTime } from "../scripts/lib/hms.ts";
import { type HmsApi, startHmsApi } from "../scripts/stack/hms_api.ts";
import { HOST } from "../scripts/stack/net.ts";

const ACCESS_KEY = "64f1a2b3c4d5e6f708192a3c";
const APP_SECRET = "app-secret-for-tests-0123456789";

/** A management token as 100ms's docs mint it, with overrides to break it. */
async function token(
  overrides: Record<string, unknown> = {},
  secret = APP_SECRET,
  expiresIn = 3600,
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return await new SignJWT({
    access_key: ACCESS_KEY,
    type: "management",
    version: 2,
    ...overrides,
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + expiresIn)
    .setJti(crypto.randomUUID())
    .sign(new TextEncoder().encode(secret));
}

async function get(
  api: HmsApi,
  path: string,
  bearer?: string,
): Promise<{ status: number; body: unknown; text: string }> {
  const response = await fetch(`${api.url}${path}`, {
    headers: { authorization: `Bearer ${bearer ?? await token()}` },
  });
  const text = await response.text();
  let body: unknown = undefined;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: response.status, body, text };
}

async function withApi(
  fn: (api: HmsApi) => Promise<void>,
  options: Partial<Parameters<typeof startHmsApi>[0]> = {},
): Promise<void> {
  const api = await startHmsApi({
    accessKey: ACCESS_KEY,
    appSecret: APP_SECRET,
    ...options,
  });
  try {
    await fn(api);
  } finally {
    await api.stop();
  }
}

const ROOM = "6501c1d2e3f4a5b6c7d8e9f0";
const SESSION = "6501c1d2e3f4a5b6c7d8e9aa";

/** A small live session: p1 joins as listener and becomes speaker, p2 joins and leaves. */
function story(at: number) {
  const t = (s: number) => new Date(at + s * 1000);
  const common = { roomId: ROOM, sessionId: SESSION, sessionStartedAt: t(0) };
  return [
    buildEvent("session.open.success", { ...common, at: t(0) }),
    buildEvent("peer.join.success", {
      ...common,
      at: t(10),
      peerId: "p1",
      role: "listener",
    }),
    buildEvent("peer.join.success", {
      ...common,
      at: t(20),
      peerId: "p2",
      role: "host",
    }),
    buildEvent("role.change.success", {
      ...common,
      at: t(30),
      peerId: "p1",
      role: "speaker",
      joinedAt: t(10),
    }),
    buildEvent("peer.leave.success", {
      ...common,
      at: t(40),
      peerId: "p2",
      joinedAt: t(20),
    }),
  ];
}

Deno.test("every request needs a valid management token", async () => {
  await withApi(async (api) => {
    assert.equal((await get(api, "/v2/sessions?limit=10")).status, 200);
    for (
      const [bad, why] of [
        [await token({}, "other-secret"), "bad signature"],
        [await token({}, APP_SECRET, -10), "expired"],
        [await token({ type: "app" }), "type is not management"],
        [await token({ version: 1 }), "version is not 2"],
        [await token({ access_key: "other" }), "wrong access_key"],
        ["not-a-jwt", "no bearer JWT"],
      ] as const
    ) {
      const answer = await get(api, "/v2/sessions?limit=10", bad);
      assert.equal(answer.status, 401, why);
      assert.equal(api.served().at(-1)!.tokenProblem, why);
    }
    const none = await fetch(`${api.url}/v2/sessions`);
    assert.equal(none.status, 401);
    await none.body?.cancel();
  });
});

Deno.test("sessions, active rooms and peers follow the documented shapes", async () => {
  await withApi(async (api) => {
    const start = Date.now() - 600_000;
    for (const e of story(start)) api.record(e.body, true);
    const list = await get(
      api,
      `/v2/sessions?room_id=${ROOM}&active=true&limit=10`,
    );
    const page = list.body as Record<string, unknown>;
    assert.deepEqual(Object.keys(page).sort(), ["data", "last", "limit"]);
    const [session] = page.data as Record<string, unknown>[];
    assert.deepEqual(
      Object.keys(session).sort(),
      [
        "active",
        "created_at",
        "customer_id",
        "id",
        "peers",
        "room_id",
        "updated_at",
      ],
    );
    assert.equal(session.active, true);
    assert.equal(session.created_at, new Date(start).toISOString());
    const peers = session.peers as Record<string, Record<string, unknown>>;
    assert.equal(peers.p1.role, "speaker", "the latest role");
    assert.equal(peers.p1.left_at, undefined);
    assert.equal(peers.p2.left_at, new Date(start + 40_000).toISOString());
    assert.deepEqual(
      Object.keys(peers.p2).sort(),
      ["id", "joined_at", "left_at", "name", "role", "session_id", "user_id"],
    );
    const one = await get(api, `/v2/sessions/${SESSION}`);
    assert.deepEqual(one.body, session);
    assert.equal((await get(api, "/v2/sessions/nope")).status, 404);

    const room = (await get(api, `/v2/active-rooms/${ROOM}`)).body as Record<
      string,
      unknown
    >;
    assert.deepEqual(room.session, {
      id: SESSION,
      created_at: new Date(start).toISOString(),
      peers: ["p1"],
    });
    const present = (await get(api, `/v2/active-rooms/${ROOM}/peers`)).body as {
      peers: Record<string, Record<string, unknown>>;
    };
    assert.deepEqual(Object.keys(present.peers), ["p1"]);
    assert.deepEqual(
      Object.keys(present.peers.p1).sort(),
      ["id", "joined_at", "metadata", "name", "role", "user_id"],
    );

    // The close ends the session: not active, everyone left, the room 404s.
    api.record(
      buildEvent("session.close.success", {
        roomId: ROOM,
        sessionId: SESSION,
        at: new Date(start + 60_000),
      }).body,
      true,
    );
    const closed = (await get(api, `/v2/sessions/${SESSION}`)).body as Record<
      string,
      unknown
    >;
    assert.equal(closed.active, false);
    assert.equal(
      (closed.peers as Record<string, Record<string, unknown>>).p1.left_at,
      new Date(start + 60_000).toISOString(),
    );
    assert.equal((await get(api, `/v2/active-rooms/${ROOM}`)).status, 404);
    assert.equal(
      ((await get(api, "/v2/sessions?limit=10")).body as { data: unknown[] })
        .data.length,
      0,
      "active defaults to true",
    );
    assert.equal(
      ((await get(api, "/v2/sessions?active=false&limit=10")).body as {
        data: unknown[];
      }).data
        .length,
      1,
    );
    assert.equal((await get(api, "/v2/sessions?limit=5")).status, 400);
  });
});

Deno.test("a session past 12 hours is inactive; only a room's latest session is active", async () => {
  await withApi(async (api) => {
    const old = Date.now() - 13 * 3600_000;
    api.record(
      buildEvent("session.open.success", {
        roomId: "r-old",
        sessionId: "s-old",
        at: new Date(old),
      })
        .body,
      true,
    );
    for (const [id, ago] of [["s-a", 7200_000], ["s-b", 3600_000]] as const) {
      api.record(
        buildEvent("session.open.success", {
          roomId: "r-two",
          sessionId: id,
          at: new Date(Date.now() - ago),
        }).body,
        true,
      );
    }
    const active = ((await get(api, "/v2/sessions?limit=10")).body as {
      data: { id: string }[];
    }).data.map((s) => s.id);
    assert.deepEqual(active, ["s-b"]);
  });
});

Deno.test("pagination: last is the cursor, newest first, inclusive or not", async () => {
  for (const cursorInclusive of [false, true]) {
    await withApi(async (api) => {
      const base = Date.now() - 3600_000;
      for (let i = 0; i < 25; i++) {
        api.record(
          buildEvent("session.open.success", {
            roomId: `room-${i}`,
            sessionId: `s-${String(i).padStart(2, "0")}`,
            at: new Date(base + i * 1000),
          }).body,
          true,
        );
      }
      const seen: string[] = [];
      let start = "";
      for (let pages = 0; pages < 5; pages++) {
        const answer = (await get(
          api,
          `/v2/sessions?limit=10${start ? `&start=${start}` : ""}`,
        )).body as { data: { id: string }[]; last: string };
        for (const s of answer.data) if (!seen.includes(s.id)) seen.push(s.id);
        if (answer.data.length < 10 || answer.last === start) break;
        start = answer.last;
      }
      assert.equal(seen.length, 25, `inclusive=${cursorInclusive}`);
      assert.equal(seen[0], "s-24", "newest first");
    }, { cursorInclusive });
  }
});

Deno.test("faults on demand: 429, 500, malformed, timeout, refused token", async () => {
  await withApi(async (api) => {
    api.fault({ path: "/v2/sessions", kind: "429" });
    const limited = await get(api, "/v2/sessions?limit=10");
    assert.equal(limited.status, 429);
    assert.match(limited.text, /retry after 45 seconds/);
    assert.equal(
      (await get(api, "/v2/sessions?limit=10")).status,
      200,
      "only once",
    );
    api.fault({ path: /^\/v2\/active-rooms\//, kind: "500", times: 2 });
    assert.equal((await get(api, "/v2/active-rooms/x")).status, 500);
    assert.equal((await get(api, "/v2/active-rooms/x")).status, 500);
    assert.equal((await get(api, "/v2/active-rooms/x")).status, 404);
    api.fault({ path: "/v2/sessions", kind: "malformed" });
    const malformed = await get(api, "/v2/sessions?limit=10");
    assert.equal(malformed.status, 200);
    assert.equal(malformed.body, undefined, "not JSON");
    api.fault({ path: "/v2/sessions", kind: "401" });
    assert.equal((await get(api, "/v2/sessions?limit=10")).status, 401);
    api.fault({ path: "/v2/sessions", kind: "timeout" });
    const started = Date.now();
    const slow = await get(api, "/v2/sessions?limit=10");
    assert.ok(Date.now() - started >= 150, "it hung");
    assert.equal(slow.status, 504);
  }, { hangMs: 200 });
});

Deno.test("replay re-sends failed replayable deliveries, marked, and only once", async () => {
  for (const replayMark of ["top", "data"] as const) {
    const received: Record<string, unknown>[] = [];
    const headers: Headers[] = [];
    const receiver = Deno.serve(
      { hostname: HOST, port: 0, onListen() {} },
      async (r) => {
        received.push(await r.json());
        headers.push(r.headers);
        return new Response("{}", { status: 200 });
      },
    );
    try {
      await withApi(async (api) => {
        const at = Date.now() - 3600_000;
        const events = story(at);
        api.record(events[0].body, true, at);
        api.record(events[1].body, false, at + 10_000); // join: failed
        api.record(events[3].body, false, at + 30_000); // role change: not replayable
        api.record(events[4].body, false, at + 40_000); // leave: failed
        const post = async (body: Record<string, unknown>) => {
          const response = await fetch(
            `${api.url}/v2/analytics/webhooks/replay`,
            {
              method: "POST",
              headers: {
                authorization: `Bearer ${await token()}`,
                "content-type": "application/json",
              },
              body: JSON.stringify(body),
            },
          );
          return await response.json();
        };
        const filters = { start_time: dataTime(new Date(at - 1000)) };
        const first = await post(filters);
        assert.equal(first.status, "started");
        assert.deepEqual(
          Object.keys(first).sort(),
          ["filters", "message", "status", "workflow_id"],
        );
        const again = await post(filters);
        assert.equal(again.status, "already_running");
        assert.equal(again.workflow_id, first.workflow_id);
        await api.replaysDone();
        assert.deepEqual(
          received.map((b) => (b as { type: string }).type),
          ["peer.join.success", "peer.leave.success"],
        );
        for (const body of received) {
          const mark = replayMark === "top"
            ? body.is_replay
            : (body.data as Record<string, unknown>).is_replay;
          assert.equal(mark, true);
        }
        assert.equal(headers[0].get("x-webhook-secret"), "whsec");
        assert.match(
          headers[0].get("x-100ms-signature") ?? "",
          /^[0-9a-f]{64}$/,
        );
        // Delivered now: a second replay of failed deliveries has nothing to send.
        const second = await post(filters);
        assert.equal(second.status, "started");
        await api.replaysDone();
        assert.equal(received.length, 2);
        const tooOld = await post({
          start_time: dataTime(new Date(Date.now() - 31 * 86_400_000)),
        });
        assert.equal(tooOld.code, 400);
      }, {
        webhookUrl: `http://${HOST}:${receiver.addr.port}/`,
        webhookSecret: "whsec",
        replayRate: 200,
        replayMark,
      });
    } finally {
      await receiver.shutdown();
    }
  }
});

Deno.test("fetch resolves a room id '..' or '.' out of its path, percent-encoded or not, so the client must never send one", async () => {
  await withApi(async (api) => {
    // An active room named "..": the stand-in would answer for it at its own path, but no
    // request can reach that path (WHATWG URL: "%2e%2e" is a double-dot segment too).
    for (const body of story(Date.now() - 60_000)) {
      api.record(body.body.replaceAll(ROOM, ".."), false);
    }
    assert.ok(api.sessions().some((s) => s.roomId === ".." && s.active));
    for (const segment of ["..", "%2e%2e", "%2E%2E", ".%2e"]) {
      const answer = await get(api, `/v2/active-rooms/${segment}`);
      assert.equal(answer.status, 404, segment);
      const served = api.served().at(-1)!;
      assert.equal(served.path, "/v2/", segment);
    }
    for (const segment of [".", "%2e"]) {
      await get(api, `/v2/active-rooms/${segment}/peers`);
      assert.equal(
        api.served().at(-1)!.path,
        "/v2/active-rooms/peers",
        segment,
      );
    }
  });
});
