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

/** Each figure's work as [quick, full], side by side. */
const SIZES: { [K in keyof Sizes]: [quick: Sizes[K], full: Sizes[K]] } = {
  coreIters: [2_000, 50_000],
  coreRounds: [1, 5],
  coreWarmup: [200, 5_000],
  coldStartRuns: [2, 20],
  rooms: [5, 100],
  warmupEvents: [20, 400],
  perLevel: [{ 1: 20, 16: 48, 64: 96 }, { 1: 1_000, 16: 4_000, 64: 4_000 }],
  compareEvents: [{ 1: 10, 16: 32 }, { 1: 500, 16: 2_000 }],
  hotRoomJoins: [64, 5_000],
  hotRoomConcurrency: [16, 16],
  memoryEvents: [2_000, 100_000],
};

export function sizes(quick: boolean): Sizes {
  return Object.fromEntries(
    Object.entries(SIZES).map(([key, [q, full]]) => [key, quick ? q : full]),
  ) as unknown as Sizes;
}
