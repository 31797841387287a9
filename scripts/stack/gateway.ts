/**
 * The local stack's single entry point, like Supabase's API gateway: `/rest/v1/*` goes to the
 * REST stand-in in this process, `/functions/v1/hms-webhook` is proxied (method, headers,
 * streamed body, status, headers) to the function process; anything else is a JSON 404.
 */

import { HOST } from "./net.ts";
import { settleWithin } from "./proc.ts";
import type { Rest } from "./rest.ts";

/** The function name the gateway routes, as deployed. */
export const FUNCTION_NAME = "hms-webhook";

/** A running gateway. */
export interface Gateway {
  port: number;
  url: string;
  /** Where `/functions/v1/hms-webhook` is forwarded (the function process's base URL). */
  setFunctionTarget(url: string): void;
  stop(): Promise<void>;
}

// Hop-by-hop headers (RFC 9110 §7.6.1) and Host belong to one connection, not to the request.
const HOP_HEADERS = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "te",
  "trailer",
  "upgrade",
  "host",
];

/** The content codings Deno's `fetch` decodes on the fly (what Deno.serve compresses with). */
const DECODED_BY_FETCH = new Set(["gzip", "x-gzip", "deflate", "br"]);

function json(status: number, body: Record<string, unknown>): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json" },
  });
}

/** Starts the gateway on `port` (0 = any free port). */
export function startGateway(
  options: { port: number; rest: Rest },
): Promise<Gateway> {
  let target: string | null = null;
  const controller = new AbortController();

  async function proxy(request: Request, rest: string): Promise<Response> {
    if (target === null) {
      return json(503, {
        code: "BOOT_ERROR",
        message: "Function failed to start (please check logs)",
      });
    }
    const headers = new Headers(request.headers);
    for (const name of HOP_HEADERS) headers.delete(name);
    const hasBody = request.body !== null &&
      !["GET", "HEAD"].includes(request.method);
    try {
      const upstream = await fetch(`${target}${rest}`, {
        method: request.method,
        headers,
        body: hasBody ? request.body : undefined,
        redirect: "manual",
      });
      const out = new Headers(upstream.headers);
      for (const name of HOP_HEADERS) out.delete(name);
      // fetch hands over the body decoded (Deno.serve compresses when the client accepts it), so
      // the upstream's encoding and length no longer describe it, as with any decoding proxy
      // (RFC 9110 §8.4, §8.6).
      if (DECODED_BY_FETCH.has(out.get("content-encoding")?.trim() ?? "")) {
        out.delete("content-encoding");
        out.delete("content-length");
      }
      return new Response(upstream.body, {
        status: upstream.status,
        headers: out,
      });
    } catch (error) {
      return json(502, {
        code: "BAD_GATEWAY",
        message: `the function process did not answer: ${
          error instanceof Error ? error.message : error
        }`,
      });
    }
  }

  async function handler(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname;
    if (path === "/rest/v1" || path.startsWith("/rest/v1/")) {
      return await options.rest.handle(request, path.slice("/rest/v1".length));
    }
    const fn = `/functions/v1/${FUNCTION_NAME}`;
    if (path === fn || path.startsWith(`${fn}/`)) {
      // The edge runtime sees the path from the function name on, as on Supabase.
      return await proxy(
        request,
        `${path.slice("/functions/v1".length)}${url.search}`,
      );
    }
    if (path.startsWith("/functions/v1/")) {
      return json(404, {
        code: "NOT_FOUND",
        message: "Requested function was not found",
      });
    }
    return json(404, {
      code: "NOT_FOUND",
      message: `no route for ${request.method} ${path}`,
    });
  }

  return new Promise((resolve, reject) => {
    try {
      const server = Deno.serve({
        hostname: HOST,
        port: options.port,
        signal: controller.signal,
        onListen: ({ port }) => {
          resolve({
            port,
            url: `http://${HOST}:${port}`,
            setFunctionTarget(url: string) {
              target = url.replace(/\/$/, "");
            },
            async stop() {
              // In-flight requests get a moment to finish; a hung one must not block shutdown.
              controller.abort();
              await settleWithin(server.finished, 2000);
            },
          });
        },
      }, handler);
    } catch (error) {
      reject(error);
    }
  });
}
