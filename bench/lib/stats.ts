/** Summary statistics for timing samples: median, p99 and friends, with nearest-rank quantiles. */

export interface Summary {
  n: number;
  median: number;
  p99: number;
  mean: number;
  min: number;
  max: number;
}

/** Nearest-rank quantile of an ascending array (q in [0, 1]). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(
    sorted.length - 1,
    Math.max(0, Math.ceil(q * sorted.length) - 1),
  );
  return sorted[rank];
}

/** Summarises samples; NaN fields for an empty set so a missing figure is visible, not zero. */
export function summarize(samples: ArrayLike<number>): Summary {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const x of sorted) sum += x;
  return {
    n: sorted.length,
    median: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    mean: sorted.length === 0 ? Number.NaN : sum / sorted.length,
    min: sorted.length === 0 ? Number.NaN : sorted[0],
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1],
  };
}

/** Rounds every number of a summary to `digits` decimals (JSON output stays readable). */
export function rounded(s: Summary, digits = 3): Summary {
  const f = 10 ** digits;
  const r = (x: number) => Math.round(x * f) / f;
  return {
    n: s.n,
    median: r(s.median),
    p99: r(s.p99),
    mean: r(s.mean),
    min: r(s.min),
    max: r(s.max),
  };
}
