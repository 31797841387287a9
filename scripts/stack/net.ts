/** Free-port discovery on 127.0.0.1 and bounded waiting. */

/** The loopback address every part of the local stack binds to. */
export const HOST = "127.0.0.1";

/** A TCP port that was free a moment ago (the OS picks it). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Waits until `ready()` holds. Gives up after `timeoutMs` (naming `what`), or as soon as
 * `failed()` returns a reason (e.g. the process that should listen has exited).
 */
export async function waitUntil(
  ready: () => boolean,
  what: string,
  timeoutMs: number,
  failed: () => string | null = () => null,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    if (ready()) return;
    const reason = failed();
    if (reason !== null) throw new Error(reason);
    if (Date.now() > deadline) {
      throw new Error(`${what} not within ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
