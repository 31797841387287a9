/**
 * The REST API down or broken: a function instance whose SUPABASE_URL is a proxy this test
 * controls (closed port, 500s, a non-RPC 200, then forwarding to the real gateway). While the
 * upstream is unusable the function answers 503 `upstream_unavailable` and nothing is written;
 * once it is back, the retried event applies exactly once and a further retry is a duplicate.
 */

import { buildEvent, nowNanos, objectId } from "../scripts/lib/hms.ts";
import { freePort } from "../scripts/stack/net.ts";
import { assert } from "./helpers/assert.ts";
import { assertNothingWritten, createRoom, roomRow } from "./helpers/db.ts";
import { stackTest } from "./helpers/stack.ts";
import { assertError, assertOutcome, deliver } from "./helpers/webhook.ts";

type Mode = "refuse" | "error500" | "not-rpc" | "forward";

/** An HTTP proxy on a fixed port that can stop listening, fail, or forward to `target`. */
class Upstream {
  mode: Mode = "refuse";
  hits = 0;
  #server: Deno.HttpServer | null = null;
  #controller: AbortController | null = null;

  constructor(readonly port: number, readonly target: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Switches behaviour; `refuse` closes the port so that connections are refused. */
  async set(mode: Mode): Promise<void> {
    this.mode = mode;
    if (mode === "refuse") await this.#close();
    else if (this.#server === null) this.#listen();
  }

  #listen() {
    this.#controller = new AbortController();
    this.#server = Deno.serve({
      hostname: "127.0.0.1",
      port: this.port,
      signal: this.#controller.signal,
      onListen: () => {},
    }, async (request) => {
      this.hits++;
      if (this.mode === "error500") {
        return Response.json({ message: "upstream exploded" }, { status: 500 });
      }
      if (this.mode === "not-rpc") {
        return new Response("<html>maintenance</html>", {
          headers: { "content-type": "text/html" },
        });
      }
      const url = new URL(request.url);
      const upstream = await fetch(
        `${this.target}${url.pathname}${url.search}`,
        {
          method: request.method,
          headers: request.headers,
          body: request.body,
        },
      );
      return new Response(upstream.body, {
        status: upstream.status,
        headers: upstream.headers,
      });
    });
  }

  async #close() {
    if (this.#server === null) return;
    this.#controller!.abort();
    await this.#server.finished;
    this.#server = null;
  }

  close(): Promise<void> {
    return this.#close();
  }
}

stackTest({
  name:
    "REST down -> 503 upstream_unavailable and no write; back up -> applied once, then duplicate",
  async fn(stack, t) {
    const upstream = new Upstream(freePort(), stack.supabaseUrl);
    const instance = await stack.startFunction({ supabaseUrl: upstream.url });
    const options = { secret: stack.secret, headerName: stack.secretHeader };
    try {
      const roomId = await createRoom(stack.sql);
      const event = buildEvent("peer.join.success", {
        roomId,
        sessionId: objectId(),
        role: "listener",
        at: nowNanos() - 5_000_000_000n,
      });

      for (const mode of ["refuse", "error500", "not-rpc"] as const) {
        await t.step(`upstream ${mode} -> 503, nothing written`, async () => {
          await upstream.set(mode);
          const hitsBefore = upstream.hits;
          await assertNothingWritten(stack.sql, [roomId], mode, async () => {
            const answer = await deliver(instance.url, event, options);
            assertError(answer, 503, "upstream_unavailable");
          });
          if (mode !== "refuse") {
            assert.ok(
              upstream.hits > hitsBefore,
              "the function did call upstream",
            );
          }
        });
      }

      await t.step(
        "upstream back: the retry applies exactly once, the next retry is a duplicate",
        async () => {
          await upstream.set("forward");
          const applied = await deliver(instance.url, event, options);
          assertOutcome(applied, "applied");
          assert.equal((await roomRow(stack.sql, roomId))?.listeners, 1);
          const again = await deliver(instance.url, event, options);
          assertOutcome(again, "duplicate");
          assert.equal((await roomRow(stack.sql, roomId))?.listeners, 1);
          const ledger = await stack
            .sql`select count(*)::int as n from hms_private.events where event_id = ${event.id}`;
          assert.equal(ledger[0].n, 1, "one ledger row");
        },
      );
    } finally {
      await instance.stop();
      await upstream.close();
    }
  },
});
