/**
 * The REST stand-in's PostgREST contract as the product and its tools use it, exercised with
 * `@supabase/supabase-js` itself: the RPCs (`hms_apply_event`, `trending_rooms` POST and GET),
 * the calls `npm run demo` makes (insert, select with `.in()`, update with `.eq()`), and
 * PostgREST-shaped errors (auth, unknown function, RAISE).
 */

import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import { objectId } from "../scripts/lib/hms.ts";
import { assert } from "./helpers/assert.ts";
import { roomRow } from "./helpers/db.ts";
import { stackTest } from "./helpers/stack.ts";
import { REQUEST_TIMEOUT_MS } from "./helpers/webhook.ts";

/** Every request of these tests is bounded: a hung stand-in fails the test instead. */
function timedFetch(
  input: RequestInfo | URL,
  init?: RequestInit,
): Promise<Response> {
  return fetch(input, {
    ...init,
    signal: init?.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}

function client(url: string, key: string): SupabaseClient {
  return createClient(url, key, {
    auth: {
      persistSession: false,
      autoRefreshToken: false,
      detectSessionInUrl: false,
    },
    global: { fetch: timedFetch },
  });
}
/** A PostgREST error body: exactly code, message, details, hint. */
function assertErrorShape(error: unknown, code: string) {
  assert.ok(
    error !== null && typeof error === "object",
    `expected an error, got ${error}`,
  );
  const e = error as Record<string, unknown>;
  assert.equal(e.code, code, JSON.stringify(e));
  assert.equal(typeof e.message, "string");
  assert.ok(
    "details" in e && "hint" in e,
    `not PostgREST-shaped: ${JSON.stringify(e)}`,
  );
}

stackTest({
  name: "supabase-js against the REST stand-in",
  async fn(stack, t) {
    const service = client(stack.supabaseUrl, stack.serviceKey);
    const anon = client(stack.supabaseUrl, stack.anonKey);
    const ids = [objectId(), objectId(), objectId()];

    await t.step(
      ".insert() one object (minimal) and an array (with .select())",
      async () => {
        const one = await service.from("rooms").insert({ hms_room_id: ids[0] });
        assert.equal(one.error, null, JSON.stringify(one.error));
        assert.equal(one.status, 201);
        assert.equal(one.data, null);
        assert.ok(await roomRow(stack.sql, ids[0]), "the inserted row exists");

        const many = await service.from("rooms")
          .insert([{ hms_room_id: ids[1], featured: false }, {
            hms_room_id: ids[2],
            featured: true,
          }])
          .select("hms_room_id, featured, trending_score");
        assert.equal(many.error, null, JSON.stringify(many.error));
        assert.equal(many.status, 201);
        assert.deepEqual(many.data, [
          { hms_room_id: ids[1], featured: false, trending_score: 0 },
          { hms_room_id: ids[2], featured: true, trending_score: 5 },
        ]);

        const duplicate = await service.from("rooms").insert({
          hms_room_id: ids[0],
        });
        assert.equal(duplicate.status, 409);
        assertErrorShape(duplicate.error, "23505");
      },
    );

    // Distinct counts the reads can check (written as the superuser, like the RPC would).
    // last_active_at = now() keeps the decay out of the expected scores below.
    await stack
      .sql`update public.rooms set listener_count = 7, last_active_at = now()
                    where hms_room_id = ${ids[0]}`;
    await stack
      .sql`update public.rooms set listener_count = 3, last_active_at = now()
                    where hms_room_id = ${ids[1]}`;

    await t.step(".select(...).in(...) (demo's read)", async () => {
      const { data, error, status } = await service.from("rooms")
        .select("hms_room_id, listener_count").in("hms_room_id", ids);
      assert.equal(error, null, JSON.stringify(error));
      assert.equal(status, 200);
      const byId = (x: { hms_room_id: string }, y: { hms_room_id: string }) =>
        x.hms_room_id < y.hms_room_id ? -1 : 1;
      assert.deepEqual(
        (data ?? []).sort(byId),
        [
          { hms_room_id: ids[0], listener_count: 7 },
          { hms_room_id: ids[1], listener_count: 3 },
          { hms_room_id: ids[2], listener_count: 0 },
        ].sort(byId),
      );
    });

    await t.step(
      ".update({featured: true}).eq(...) (demo's write)",
      async () => {
        const plain = await service.from("rooms").update({ featured: true }).eq(
          "hms_room_id",
          ids[0],
        );
        assert.equal(plain.error, null, JSON.stringify(plain.error));
        assert.equal(plain.status, 204);
        assert.equal(plain.data, null);
        const row = await roomRow(stack.sql, ids[0]);
        assert.equal(row?.featured, true);
        // The rooms trigger rescored it at once: 7 listeners + the featured bonus of 5.
        assert.equal(row?.trendingScore, 12);

        const denied = await anon.from("rooms").update({ featured: true }).eq(
          "hms_room_id",
          ids[1],
        );
        assert.equal(denied.status, 401);
        assertErrorShape(denied.error, "42501");
        assert.equal(
          (await roomRow(stack.sql, ids[1]))?.featured,
          false,
          "anon changed nothing",
        );
      },
    );

    await t.step(
      ".rpc('trending_rooms', {p_limit: 5}), POST and GET",
      async () => {
        const expected =
          (await stack.sql`select hms_room_id from public.trending_rooms(5)`)
            .map((r) => r.hms_room_id);
        assert.ok(expected.length > 0, "the feed has rooms");
        for (const options of [{}, { get: true }]) {
          const { data, error, status } = await anon.rpc("trending_rooms", {
            p_limit: 5,
          }, options);
          assert.equal(error, null, JSON.stringify(error));
          assert.equal(status, 200);
          assert.ok(Array.isArray(data));
          assert.deepEqual(
            data.map((r: Record<string, unknown>) => r.hms_room_id),
            expected,
          );
          assert.ok(
            data.every((r: Record<string, unknown>) =>
              typeof r.trending_score === "number"
            ),
          );
        }
        const projected = await anon.rpc("trending_rooms", { p_limit: 5 })
          .select("hms_room_id").limit(1);
        assert.deepEqual(projected.data, [{ hms_room_id: expected[0] }]);
      },
    );

    await t.step(
      "hms_apply_event: service role yes, anon no (PostgREST error shape)",
      async () => {
        const args = {
          p_event_id: crypto.randomUUID(),
          p_event_type: "peer.join.success",
          p_action: "peer_join",
          p_room_id: objectId(),
          p_session_id: "s",
          p_peer_id: "p",
          p_role: "listener",
          p_role_class: "listener",
          p_event_at: new Date().toISOString(),
        };
        const denied = await anon.rpc("hms_apply_event", args);
        assert.ok(
          denied.status === 401 || denied.status === 403,
          `status ${denied.status}`,
        );
        assertErrorShape(denied.error, "42501");

        const allowed = await service.rpc("hms_apply_event", args);
        assert.equal(allowed.error, null, JSON.stringify(allowed.error));
        assert.deepEqual(allowed.data, {
          status: "ignored",
          reason: "unknown room",
          room: null,
        });
      },
    );

    await t.step(
      "wrong apikey -> 401; unknown function -> 404 PGRST202; RAISE -> 400 P0001",
      async () => {
        const stranger = client(
          stack.supabaseUrl,
          "sb_secret_not-a-key-of-this-stack",
        );
        const wrong = await stranger.from("rooms").select("hms_room_id").limit(
          1,
        );
        assert.equal(wrong.status, 401);
        assertErrorShape(wrong.error, "PGRST301");
        const wrongRpc = await stranger.rpc("trending_rooms", { p_limit: 1 });
        assert.equal(wrongRpc.status, 401);

        const unknown = await service.rpc("no_such_function", { p_x: 1 });
        assert.equal(unknown.status, 404);
        assertErrorShape(unknown.error, "PGRST202");
        const wrongArgs = await service.rpc("trending_rooms", {
          p_no_such_argument: 1,
        });
        assert.equal(wrongArgs.status, 404);
        assertErrorShape(wrongArgs.error, "PGRST202");

        // A throwaway function that raises, created and dropped by this test.
        const name = `hms_test_raise_${
          crypto.randomUUID().replaceAll("-", "")
        }`;
        await stack.sql.unsafe(`
        create function public.${name}(p_message text) returns void language plpgsql as $$
        begin
          raise exception '%', p_message using detail = 'the detail', hint = 'the hint';
        end $$`);
        try {
          const raised = await service.rpc(name, { p_message: "nope" });
          assert.equal(raised.status, 400);
          assert.deepEqual(raised.error, {
            code: "P0001",
            message: "nope",
            details: "the detail",
            hint: "the hint",
          });
        } finally {
          await stack.sql.unsafe(`drop function public.${name}(text)`);
        }
      },
    );
  },
});
