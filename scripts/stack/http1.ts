/**
 * The gateway's upstream leg: one HTTP/1.1 exchange over its own TCP connection that sends the
 * request body and reads the answer at the same time, as proxies that stream request bodies do
 * (nginx with `proxy_request_buffering off`,
 * https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_request_buffering).
 * A server may answer before it has read the whole body (413 after the limit) and close; the
 * client then stops sending and takes the answer (RFC 9112 §9.5,
 * https://www.rfc-editor.org/rfc/rfc9112#section-9.5), and the server's close with unread
 * input resets the connection, which can reach the client before it read the answer
 * (§9.6, https://www.rfc-editor.org/rfc/rfc9112#section-9.6). Deno's `fetch` fails the
 * whole exchange when its upload breaks, which would turn such an answer into a 502; here reads
 * never wait on writes, and the upload's failure is ignored once a complete answer is in.
 *
 * The answer is read whole (framed by Content-Length, chunked coding or the close, RFC 9112
 * §6.3) and handed over as the bytes sent: content codings are not decoded.
 */

/** An upstream answer read whole. */
export interface Answer {
  status: number;
  statusText: string;
  headers: Headers;
  /** The content as sent (still content-coded), without the chunked framing. */
  body: Uint8Array<ArrayBuffer>;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and Host belong to one connection, not to the message. */
export const HOP_HEADERS = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "host",
];

/** The largest answer read (the function answers with small JSON documents). */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

const CRLF = new Uint8Array([13, 10]);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The upstream broke the exchange before a complete answer. */
export class UpstreamError extends Error {}

/**
 * Sends `request` (method, `target` path, headers without hop-by-hop ones, body) to `origin`
 * (`http://host:port`) on a new connection and resolves with the complete answer. The body keeps
 * the client's framing: its Content-Length when it sent one, else the chunked coding. Once the
 * answer is complete the upload stops and the client's body is cancelled.
 */
export async function exchange(
  origin: string,
  target: string,
  request: Request,
): Promise<Answer> {
  const { hostname, port, host } = new URL(origin);
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname, port: Number(port) });
  } catch (error) {
    throw new UpstreamError(`connect ${host}: ${messageOf(error)}`);
  }
  let answered = false;
  const body = request.body;
  const reader = body?.getReader() ?? null;
  const length = request.headers.get("content-length");
  const chunked = reader !== null && length === null;

  const head = [`${request.method} ${target} HTTP/1.1`, `host: ${host}`];
  const headers = new Headers(request.headers);
  for (const name of [...HOP_HEADERS, "content-length"]) headers.delete(name);
  for (const [name, value] of headers) head.push(`${name}: ${value}`);
  if (reader !== null) {
    head.push(
      chunked ? "transfer-encoding: chunked" : `content-length: ${length}`,
    );
  }
  head.push("connection: close", "", "");

  // The upload: its failure is the reader's business (the server may have answered and closed).
  const upload = (async () => {
    await writeAll(conn, encoder.encode(head.join("\r\n")));
    if (reader === null) return;
    while (!answered) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch (error) {
        // The client went away mid-body: the upstream would wait for the rest forever.
        if (!answered) conn.close();
        throw error;
      }
      const { done, value } = next;
      if (done || answered) break;
      if (value.length === 0) continue;
      await writeAll(
        conn,
        chunked
          ? concat([
            encoder.encode(`${value.length.toString(16)}\r\n`),
            value,
            CRLF,
          ])
          : value,
      );
    }
    if (chunked && !answered) await writeAll(conn, encoder.encode("0\r\n\r\n"));
  })();
  upload.catch(() => {});

  try {
    const answer = await readAnswer(conn, request.method === "HEAD");
    answered = true;
    return answer;
  } finally {
    answered = true;
    try {
      conn.close();
    } catch {
      // Closed when the client went away.
    }
    await reader?.cancel().catch(() => {});
    await upload.catch(() => {});
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) {
    at += await conn.write(bytes.subarray(at));
  }
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/** Bytes read from a connection, consumed from the front. */
class Incoming {
  #buffer: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  #closed = false;
  #total = 0;
  constructor(private readonly conn: Deno.Conn) {}

  get buffered(): Uint8Array<ArrayBuffer> {
    return this.#buffer;
  }

  /** Reads more; false at the end of the stream. */
  async more(): Promise<boolean> {
    if (this.#closed) return false;
    const chunk = new Uint8Array(64 * 1024);
    let n: number | null;
    try {
      n = await this.conn.read(chunk);
    } catch (error) {
      throw new UpstreamError(
        `the connection broke before a complete answer: ${messageOf(error)}`,
      );
    }
    if (n === null) {
      this.#closed = true;
      return false;
    }
    this.#total += n;
    if (this.#total > MAX_ANSWER_BYTES) {
      throw new UpstreamError(`answer over ${MAX_ANSWER_BYTES} bytes`);
    }
    this.#buffer = concat([this.#buffer, chunk.subarray(0, n)]);
    return true;
  }

  /** Removes and returns the first `n` buffered bytes. */
  take(n: number): Uint8Array<ArrayBuffer> {
    const out = this.#buffer.slice(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  /** The next CRLF-terminated line (without it), reading as needed. */
  async line(what: string): Promise<string> {
    for (;;) {
      const at = indexOfCrlf(this.#buffer);
      if (at >= 0) {
        const text = decoder.decode(this.take(at));
        this.take(2);
        return text;
      }
      if (!(await this.more())) throw ended(what);
    }
  }

  /** Exactly `n` bytes, reading as needed. */
  async exactly(n: number, what: string): Promise<Uint8Array<ArrayBuffer>> {
    while (this.#buffer.length < n) {
      if (!(await this.more())) throw ended(what);
    }
    return this.take(n);
  }
}

function ended(what: string): UpstreamError {
  return new UpstreamError(`the connection closed in the answer's ${what}`);
}

function indexOfCrlf(bytes: Uint8Array): number {
  for (let i = 0; i + 1 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10) return i;
  }
  return -1;
}

/** Reads one answer, skipping interim (1xx) ones (RFC 9110 §15.2). */
async function readAnswer(conn: Deno.Conn, head: boolean): Promise<Answer> {
  const incoming = new Incoming(conn);
  for (;;) {
    const statusLine = await incoming.line("status line");
    const match = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
    if (match === null) {
      throw new UpstreamError(`not an HTTP/1.1 status line: ${statusLine}`);
    }
    const status = Number(match[1]);
    const headers = new Headers();
    for (;;) {
      const line = await incoming.line("header section");
      if (line === "") break;
      const colon = line.indexOf(":");
      if (colon <= 0) throw new UpstreamError(`malformed header line: ${line}`);
      headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
    }
    if (status < 200) continue;
    const body = await readBody(
      incoming,
      headers,
      head || status === 204 || status === 304,
    );
    return { status, statusText: match[2] ?? "", headers, body };
  }
}

/** The content, framed as RFC 9112 §6.3 says. */
async function readBody(
  incoming: Incoming,
  headers: Headers,
  none: boolean,
): Promise<Uint8Array<ArrayBuffer>> {
  if (none) return new Uint8Array(0);
  const coding = headers.get("transfer-encoding");
  if (coding !== null) {
    if (!/(^|,)\s*chunked\s*$/i.test(coding)) {
      throw new UpstreamError(`unsupported transfer-encoding: ${coding}`);
    }
    const parts: Uint8Array[] = [];
    for (;;) {
      const sizeLine = await incoming.line("chunk size");
      const size = parseInt(sizeLine.split(";")[0].trim(), 16);
      if (!Number.isSafeInteger(size) || size < 0) {
        throw new UpstreamError(`malformed chunk size: ${sizeLine}`);
      }
      if (size === 0) break;
      parts.push(await incoming.exactly(size, "chunk"));
      await incoming.exactly(2, "chunk");
    }
    // Trailer fields up to the empty line; a proxy may drop them (RFC 9110 §6.5.1).
    while ((await incoming.line("trailer section")) !== "");
    return concat(parts);
  }
  const length = headers.get("content-length");
  if (length !== null) {
    if (!/^\d+$/.test(length.trim())) {
      throw new UpstreamError(`malformed content-length: ${length}`);
    }
    return await incoming.exactly(Number(length.trim()), "content");
  }
  while (await incoming.more());
  return incoming.take(incoming.buffered.length);
}
