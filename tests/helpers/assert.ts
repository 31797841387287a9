/**
 * The few assertions the end-to-end tests use, with node:assert/strict's names. Local because
 * `node:assert` needs `@types/node` for `deno check`, which the repository does not install.
 */

/** Thrown by every failed assertion. */
export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/** JSON with bigints and undefined spelled out, for failure messages. */
export function show(value: unknown): string {
  return JSON.stringify(
    value,
    (
      _,
      v,
    ) => (typeof v === "bigint"
      ? `${v}n`
      : v === undefined
      ? "<undefined>"
      : v),
  );
}

function isEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (
    typeof a !== "object" || typeof b !== "object" || a === null || b === null
  ) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => isEqual(x, b[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length &&
    ka.every((k) =>
      Object.hasOwn(b, k) &&
      isEqual(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
      )
    );
}

function fail(message: string | undefined, detail: string): never {
  throw new AssertionError(message ? `${message}\n${detail}` : detail);
}

/** The assertion set (typed explicitly so that `ok` can narrow). */
export interface Assert {
  equal(actual: unknown, expected: unknown, message?: string): void;
  notEqual(actual: unknown, expected: unknown, message?: string): void;
  deepEqual(actual: unknown, expected: unknown, message?: string): void;
  ok(value: unknown, message?: string): asserts value;
  match(text: string, pattern: RegExp, message?: string): void;
}

export const assert: Assert = {
  /** `Object.is` equality. */
  equal(actual: unknown, expected: unknown, message?: string): void {
    if (!Object.is(actual, expected)) {
      fail(message, `expected ${show(expected)}, got ${show(actual)}`);
    }
  },
  notEqual(actual: unknown, expected: unknown, message?: string): void {
    if (Object.is(actual, expected)) {
      fail(message, `expected anything but ${show(expected)}`);
    }
  },
  /** Structural equality of plain data (objects, arrays, primitives, bigints). */
  deepEqual(actual: unknown, expected: unknown, message?: string): void {
    if (!isEqual(actual, expected)) {
      fail(message, `expected ${show(expected)}\n     got ${show(actual)}`);
    }
  },
  ok(value: unknown, message?: string): asserts value {
    if (!value) fail(message, `expected a truthy value, got ${show(value)}`);
  },
  match(text: string, pattern: RegExp, message?: string): void {
    if (!pattern.test(text)) {
      fail(message, `${show(text)} does not match ${pattern}`);
    }
  },
};

export default assert;
