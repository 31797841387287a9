/**
 * The local stack's single entry point, like Supabase's API gateway: `/rest/v1/*` goes to the
 * REST stand-in in this process, `/functions/v1/hms-webhook` is proxied (method, headers,
 * streamed body, status, headers, content as sent) to the function process over HTTP/1.1
 * (http1.ts: an answer that comes before the whole body was sent still gets through); anything
 * else is a JSON 404.
 */

import { exchange, HOP_HEADERS } from "./http1.ts";
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
    try {
      const answer = await exchange(target, rest, request);
      const out = new Headers(answer.headers);
      // Deno.serve frames the bytes itself; the content coding travels with them untouched.
      for (const name of [...HOP_HEADERS, "content-length"]) out.delete(name);
      const nullBody = request.method === "HEAD" || answer.status === 204 ||
        answer.status === 304;
      return new Response(nullBody ? null : answer.body, {
        status: answer.status,
        statusText: answer.statusText,
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
