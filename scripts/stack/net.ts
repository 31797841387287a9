/** Free-port discovery and bounded waiting for a TCP listener on 127.0.0.1. */

/** The loopback address every part of the local stack binds to. */
export const HOST = "127.0.0.1";

/** A TCP port that was free a moment ago (the OS picks it). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: HOST, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** True when something accepts a TCP connection on the port. */
export async function isListening(port: number): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname: HOST, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Waits until the port accepts connections. Gives up after `timeoutMs`, or as soon as
 * `failed()` returns a reason (e.g. the process that should listen has exited).
 */
export async function waitForPort(
  port: number,
  timeoutMs: number,
  failed: () => string | null = () => null,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    if (await isListening(port)) return;
    const reason = failed();
    if (reason !== null) throw new Error(reason);
    if (Date.now() > deadline) {
      throw new Error(
        `nothing listened on ${HOST}:${port} within ${timeoutMs} ms`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
