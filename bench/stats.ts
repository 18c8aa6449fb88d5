// The few statistics the benchmark reports: rounded values, percentiles, p50 / max spreads and counter deltas.

export interface Spread {
  p50: number | null;
  max: number | null;
}

/** The keys of T whose values are of type V. */
export type KeysOf<T, V> = { [K in keyof T]: T[K] extends V ? K : never }[keyof T];

export const round = (value: number | null, digits = 1): number | null => (value === null ? null : Number(value.toFixed(digits)));

export const percentile = (values: number[], p: number): number | null => {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? null;
};

/** Median and maximum, to 0.1. */
export const spread = (values: number[]): Spread => ({ p50: round(percentile(values, 50)), max: round(percentile(values, 100)) });

/** What each counter gained between two readings, the counters that moved only, the most first. */
export const countsSince = (before: Record<string, number>, after: Record<string, number>): Record<string, number> =>
  Object.fromEntries(
    Object.entries(after)
      .map(([key, count]) => [key, count - (before[key] ?? 0)] as const)
      .filter(([, count]) => count > 0)
      .sort((a, b) => b[1] - a[1]),
  );
