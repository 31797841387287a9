/** What every section gets: repo root, scratch dir, the run size (quick or full), a logger. */

export interface BenchContext {
  root: string;
  /** Scratch directory for this run (under /tmp/bench). */
  tmp: string;
  quick: boolean;
  log(message: string): void;
}

/** How much work each figure does; `--quick` keeps the smoke test to seconds. */
export interface Sizes {
  /** Timed events per implementation, split over `coreRounds` alternating processes. */
  coreIters: number;
  coreRounds: number;
  coreWarmup: number;
  coldStartRuns: number;
  rooms: number;
  warmupEvents: number;
  /** Events per concurrency level (spread over `rooms` rooms). */
  perLevel: Record<number, number>;
  /** Events for the direct-to-function and baseline comparisons (at concurrency 1 and 16). */
  compareEvents: Record<number, number>;
  hotRoomJoins: number;
  hotRoomConcurrency: number;
  memoryEvents: number;
}

export const LEVELS = [1, 16, 64] as const;

export function sizes(quick: boolean): Sizes {
  return quick
    ? {
      coreIters: 2_000,
      coreRounds: 1,
      coreWarmup: 200,
      coldStartRuns: 2,
      rooms: 5,
      warmupEvents: 20,
      perLevel: { 1: 20, 16: 48, 64: 96 },
      compareEvents: { 1: 10, 16: 32 },
      hotRoomJoins: 64,
      hotRoomConcurrency: 16,
      memoryEvents: 2_000,
    }
    : {
      coreIters: 50_000,
      coreRounds: 5,
      coreWarmup: 5_000,
      coldStartRuns: 20,
      rooms: 100,
      warmupEvents: 400,
      perLevel: { 1: 1_000, 16: 4_000, 64: 4_000 },
      compareEvents: { 1: 500, 16: 2_000 },
      hotRoomJoins: 5_000,
      hotRoomConcurrency: 16,
      memoryEvents: 100_000,
    };
}
