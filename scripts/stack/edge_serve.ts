/**
 * The edge runtime's `Deno.serve`, for a function process of the local stack: the runtime owns
 * the listener and the user code's `Deno.serve(handler)` only registers the handler. Supabase's
 * edge runtime replaces `Deno.serve` in user workers with its own `serve()`, which takes the
 * handler (`serve(handler)`, `serve(options, handler)` or `serve({ handler })`) plus `onListen`
 * / `onError`, and ignores the worker's port and hostname
 * (https://github.com/supabase/edge-runtime/blob/3e764caf1ad38cf4b39d6962a5029fbc8db008b2/ext/runtime/js/http.js).
 *
 * Imported first by the module the stack generates for each function process (function.ts),
 * which passes the address as `--edge-listen=HOST:PORT`; the bench's cold-start probe calls
 * {@link ownServe} itself. Works the same on every Deno from 2.1 on.
 */

type Handler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

interface UserOptions {
  handler?: Handler;
  onListen?: (addr: Deno.NetAddr) => void;
  onError?: (error: unknown) => Response | Promise<Response>;
}

/** The flag that carries the listener's address. */
export const LISTEN_FLAG = "--edge-listen=";

let served = false;

/**
 * From now on `Deno.serve` listens on `hostname:port` whatever the caller asks for, prints
 * `Listening on http://HOST:PORT/` once bound (the stack waits for that line) and hands every
 * request to the caller's handler.
 */
export function ownServe(hostname: string, port: number): void {
  const realServe = Deno.serve.bind(Deno) as (
    options: Deno.ServeTcpOptions,
    handler: Handler,
  ) => Deno.HttpServer<Deno.NetAddr>;
  const serve = (first: unknown, second?: unknown) => {
    const options =
      (typeof first === "object" && first !== null ? first : {}) as UserOptions;
    const handler = typeof first === "function"
      ? first as Handler
      : typeof second === "function"
      ? second as Handler
      : options.handler;
    if (typeof handler !== "function") {
      throw new TypeError("A handler function must be provided.");
    }
    served = true;
    return realServe({
      hostname,
      port,
      onListen(addr) {
        console.log(`Listening on http://${hostname}:${addr.port}/`);
        options.onListen?.(addr);
      },
      onError: options.onError,
    }, handler);
  };
  (Deno as unknown as { serve: unknown }).serve = serve;
}

/** Fails the process when the function module finished loading without calling `Deno.serve`. */
export function requireServed(entry: string): void {
  if (!served) {
    console.error(`${entry} never called Deno.serve: nothing to serve`);
    Deno.exit(1);
  }
}

const listen = Deno.args.find((arg) => arg.startsWith(LISTEN_FLAG));
if (listen !== undefined) {
  const address = listen.slice(LISTEN_FLAG.length);
  const colon = address.lastIndexOf(":");
  ownServe(address.slice(0, colon), Number(address.slice(colon + 1)));
}
