/** Closed-loop load driver: C workers each send their next item as soon as the last one returns. */

export interface LoadResult {
  /** Per-request latency in ms, in completion order. */
  latencies: number[];
  wallMs: number;
  /** Requests per second over the whole run. */
  throughput: number;
  errors: string[];
}

/**
 * Sends every item once with `concurrency` workers. `send` gets the item and the worker's index
 * (for per-worker connections), resolves when the item is fully handled and throws to report a
 * failed request; failures are collected, not fatal, so the caller can fail loudly with all.
 */
export async function runLoad<T>(
  items: readonly T[],
  concurrency: number,
  send: (item: T, worker: number) => Promise<void>,
): Promise<LoadResult> {
  const latencies: number[] = [];
  const errors: string[] = [];
  let next = 0;
  const worker = async (id: number) => {
    while (next < items.length) {
      const item = items[next++];
      const t0 = performance.now();
      try {
        await send(item, id);
        latencies.push(performance.now() - t0);
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
    }
  };
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.max(1, concurrency) }, (_, id) => worker(id)),
  );
  const wallMs = performance.now() - started;
  return {
    latencies,
    wallMs,
    throughput: (items.length / wallMs) * 1000,
    errors,
  };
}
