/**
 * The part of `main` that `rooms`, `reconcile` and `replay` share, so they answer alike:
 * `--help` prints the usage (exit 0); a bad command line prints why and where the options are
 * (exit 2); then the tool runs, and a missing local stack or a failure prints one line (exit 1).
 */

import {
  type FlagSpec,
  type ParsedFlags,
  parseFlags,
  UsageError,
} from "./send.ts";
import { StackNotRunningError } from "./stack_info.ts";

export interface Tool<T> {
  /** The prefix of every message, e.g. `rooms`. */
  name: string;
  usage: string;
  flags: FlagSpec;
  /** Printed under a usage error, e.g. "Run `npm run rooms -- --help`." */
  hint: string;
  /** What a failure of `run` is reported as, e.g. "could not read the feed". */
  failure: string;
  /** The options from the flags (no positionals are taken); throws {@link UsageError}. */
  parse(flags: ParsedFlags): T;
  /** Does the work and returns the exit code. */
  run(options: T): Promise<number>;
}

export async function runTool<T>(
  tool: Tool<T>,
  argv: string[],
): Promise<number> {
  let options: T;
  try {
    const flags = parseFlags(argv, tool.flags);
    if (flags.booleans.has("help")) {
      console.log(tool.usage);
      return 0;
    }
    if (flags.positionals.length > 0) {
      throw new UsageError(`unexpected argument ${flags.positionals[0]}`);
    }
    options = tool.parse(flags);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${tool.name}: ${error.message}\n${tool.hint}`);
    return 2;
  }
  try {
    return await tool.run(options);
  } catch (error) {
    const message = error instanceof StackNotRunningError
      ? error.message
      : `${tool.failure}: ${(error as Error).message}`;
    console.error(`${tool.name}: ${message}`);
    return 1;
  }
}
