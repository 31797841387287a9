/**
 * The gateway's upstream leg (scripts/stack/http1.ts) against raw HTTP/1.1 servers: an answer
 * sent before the body was read, by a server that then closes with the body unread (so the
 * kernel resets the connection under the upload), is still the answer; chunked answers and
 * interim 100s are read as RFC 9112 frames them; the bytes come back as sent. Pure: no stack.
 */

import { exchange, UpstreamError } from "../scripts/stack/http1.ts";
import { HOST } from "../scripts/stack/net.ts";
import { assert } from "./helpers/assert.ts";

const encoder = new TextEncoder();

/** A one-port server that hands each connection to `serve`; `stop` closes it. */
function rawServer(serve: (conn: Deno.Conn) => Promise<void>) {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const handled: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const conn of listener) {
      handled.push(
        serve(conn).catch(() => {}).finally(() => {
          try {
            conn.close();
          } catch {
            // Closed by `serve`.
          }
        }),
      );
    }
  })();
  return {
    origin: `http://${HOST}:${listener.addr.port}`,
    async stop() {
      listener.close();
      await accepting.catch(() => {});
      await Promise.all(handled);
    },
  };
}

/** Reads until the request head is complete; returns it (and whatever body bytes came along). */
async function readHead(conn: Deno.Conn): Promise<string> {
  let text = "";
  const buffer = new Uint8Array(16_384);
  while (!text.includes("\r\n\r\n")) {
    const n = await conn.read(buffer);
    if (n === null) break;
    text += new TextDecoder().decode(buffer.subarray(0, n));
  }
  return text;
}

async function writeAll(conn: Deno.Conn, text: string): Promise<void> {
  const bytes = encoder.encode(text);
  for (let at = 0; at < bytes.length;) {
    at += await conn.write(bytes.subarray(at));
  }
}

/** A body that never ends until cancelled, and how much of it was pulled. */
function endless() {
  const state = { pulled: 0, cancelled: false };
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      state.pulled += 65_536;
      controller.enqueue(new Uint8Array(65_536).fill(0x20));
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { body, state };
}

Deno.test("an answer before the body is read, then a close with the body unread, is the answer", async () => {
  const answer = '{"code":"payload_too_large"}';
  const server = rawServer(async (conn) => {
    await readHead(conn);
    // Some body arrived (or not): the answer goes out and the connection closes unread.
    await writeAll(
      conn,
      `HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\n` +
        `content-length: ${answer.length}\r\nconnection: close\r\n\r\n${answer}`,
    );
  });
  try {
    // Many times: the reset races the answer's bytes on every round.
    for (let round = 0; round < 50; round++) {
      const { body, state } = endless();
      const request = new Request("http://gateway.invalid/hms-webhook", {
        method: "POST",
        body,
        headers: { "content-type": "application/json" },
      });
      const got = await exchange(server.origin, "/hms-webhook", request);
      assert.equal(got.status, 413, `round ${round}`);
      assert.equal(new TextDecoder().decode(got.body), answer);
      assert.equal(got.headers.get("content-type"), "application/json");
      assert.ok(state.cancelled, "the client's body is cancelled");
    }
  } finally {
    await server.stop();
  }
});

Deno.test("chunked framing both ways, an interim 100 skipped, content bytes untouched", async () => {
  const gzipped = new Uint8Array(
    await new Response(
      new Blob(["hello"]).stream().pipeThrough(new CompressionStream("gzip")),
    ).arrayBuffer(),
  );
  let requestText = "";
  const server = rawServer(async (conn) => {
    let text = "";
    const buffer = new Uint8Array(16_384);
    // The request ends with the zero chunk: chunked, as the client sent no length.
    while (!text.endsWith("0\r\n\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    requestText = text;
    const half = gzipped.length >> 1;
    const head = "HTTP/1.1 100 Continue\r\n\r\n" +
      "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n";
    const chunk = (bytes: Uint8Array<ArrayBuffer>): BlobPart[] => [
      encoder.encode(`${bytes.length.toString(16)}\r\n`),
      bytes,
      encoder.encode("\r\n"),
    ];
    const out = new Blob([
      encoder.encode(head),
      ...chunk(gzipped.subarray(0, half)),
      ...chunk(gzipped.subarray(half)),
      encoder.encode("0\r\n\r\n"),
    ]);
    const bytes = new Uint8Array(await out.arrayBuffer());
    for (let at = 0; at < bytes.length;) {
      at += await conn.write(bytes.subarray(at));
    }
  });
  try {
    const parts = ["ab", "cde"];
    const request = new Request("http://gateway.invalid/hms-webhook?x=1", {
      method: "POST",
      body: new ReadableStream<Uint8Array>({
        pull(controller) {
          const part = parts.shift();
          if (part === undefined) controller.close();
          else controller.enqueue(encoder.encode(part));
        },
      }),
      headers: { "x-test": "1", connection: "keep-alive" },
    });
    const got = await exchange(server.origin, "/hms-webhook?x=1", request);
    assert.equal(got.status, 200);
    assert.equal(got.headers.get("content-encoding"), "gzip");
    assert.deepEqual([...got.body], [...gzipped]);
    assert.match(requestText, /^POST \/hms-webhook\?x=1 HTTP\/1\.1\r\n/);
    assert.match(requestText, /\r\nx-test: 1\r\n/);
    assert.match(requestText, /\r\nconnection: close\r\n/);
    assert.ok(!/keep-alive/.test(requestText), "hop-by-hop headers dropped");
    assert.match(requestText, /\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n$/);
  } finally {
    await server.stop();
  }
});

Deno.test("a connection closed before a complete answer is an UpstreamError", async () => {
  const server = rawServer(async (conn) => {
    await readHead(conn);
    await writeAll(conn, "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort");
  });
  try {
    const request = new Request("http://gateway.invalid/", {
      method: "POST",
      body: "{}",
    });
    let error: unknown = null;
    try {
      await exchange(server.origin, "/", request);
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof UpstreamError, String(error));
  } finally {
    await server.stop();
  }
});
