/**
 * `npm run bench`: runs the benchmark sections, prints the table and writes
 * bench/results/latest.json (see bench/README.md for what each figure means).
 */

import type { BenchContext } from "./lib/context.ts";
import { collectMeta } from "./lib/meta.ts";
import { compare, render, type Sections, targets } from "./lib/report.ts";
import { type HostedStack, hostStack } from "./lib/stack_client.ts";
import { runCeiling } from "./sections/ceiling.ts";
import { runCore } from "./sections/core.ts";
import { runDbCost } from "./sections/dbcost.ts";
import { runE2e } from "./sections/e2e.ts";
import { runMemory } from "./sections/memory.ts";
import { runSize } from "./sections/size.ts";
import { fromFileUrl } from "../scripts/lib/file_url.ts";

const SECTIONS = [
  "core",
  "size",
  "e2e",
  "ceiling",
  "memory",
  "dbcost",
] as const;
type Section = typeof SECTIONS[number];

const USAGE =
  `Usage: npm run bench [-- --quick] [--only core,size,e2e,ceiling,memory,dbcost] [--out FILE]

  --quick        small counts (seconds, not minutes); used by tests/bench_smoke.test.ts
  --only LIST    run only these sections (comma-separated)
  --out FILE     where to write the JSON (default bench/results/latest.json)
Prints a table; exits 1 if any section failed (e.g. counts not exact), 2 on bad options.`;

interface Options {
  quick: boolean;
  only: Section[];
  out: string;
}

const ROOT = fromFileUrl(new URL("../", import.meta.url)).replace(/\/$/, "");

function parseOptions(args: string[]): Options | string {
  const opts: Options = {
    quick: false,
    only: [...SECTIONS],
    out: `${ROOT}/bench/results/latest.json`,
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--quick") opts.quick = true;
    else if (arg === "--only" || arg === "--out") {
      const value = args[++i];
      if (value === undefined) return `${arg} needs a value`;
      if (arg === "--out") opts.out = value;
      else {
        const names = value.split(",").map((s) => s.trim()).filter((s) =>
          s !== ""
        );
        const unknown = names.filter((n) =>
          !(SECTIONS as readonly string[]).includes(n)
        );
        if (unknown.length > 0 || names.length === 0) {
          return `unknown section(s) "${
            unknown.join(",") || value
          }"; choose from ${SECTIONS.join(",")}`;
        }
        opts.only = names as Section[];
      }
    } else return `unknown option "${arg}"`;
  }
  return opts;
}

async function writeAtomically(path: string, text: string): Promise<void> {
  const dir = path.replace(/\/[^/]*$/, "");
  if (dir !== path) await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}

async function main(args: string[]): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    console.log(USAGE);
    return 0;
  }
  const parsed = parseOptions(args);
  if (typeof parsed === "string") {
    console.error(`bench: ${parsed}\n\n${USAGE}`);
    return 2;
  }
  const opts = parsed;
  const started = performance.now();
  const tmp = `/tmp/bench/run-${Deno.pid}`;
  await Deno.mkdir(tmp, { recursive: true });
  const ctx: BenchContext = {
    root: ROOT,
    tmp,
    quick: opts.quick,
    log: (message) => {
      const s = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
      console.error(`[bench ${s}s] ${message}`);
    },
  };
  const meta = await collectMeta(ROOT);
  const sections: Sections = {};
  const errors: Record<string, string> = {};
  /** The e2e/ceiling stack's durability settings, as its server reported them. */
  let databaseSettings: Record<string, string> | null = null;
  const attempt = async (name: Section, work: () => Promise<void>) => {
    if (!opts.only.includes(name)) return;
    try {
      await work();
    } catch (error) {
      errors[name] = error instanceof Error ? error.message : String(error);
      ctx.log(`${name} FAILED: ${errors[name]}`);
    }
  };

  await attempt("core", async () => {
    sections.core = await runCore(ctx);
  });
  await attempt("size", async () => {
    sections.size = await runSize(ctx);
  });
  if (opts.only.includes("e2e") || opts.only.includes("ceiling")) {
    let stack: HostedStack | null = null;
    try {
      ctx.log(
        "starting the local stack (PostgreSQL, REST stand-in, gateway, functions)",
      );
      stack = await hostStack({
        root: ROOT,
        baseline: opts.only.includes("e2e"),
        timeoutMs: 180_000,
      });
      const s = stack;
      databaseSettings = s.info.postgresSettings;
      ctx.log(
        `database settings: ${
          Object.entries(databaseSettings).map(([k, v]) => `${k}=${v}`).join(
            ", ",
          )
        }`,
      );
      await attempt("e2e", async () => {
        sections.e2e = await runE2e(ctx, s);
      });
      await attempt("ceiling", async () => {
        sections.ceiling = await runCeiling(ctx, s);
      });
    } catch (error) {
      const message = `the local stack did not start: ${
        error instanceof Error ? error.message : error
      }`;
      for (const name of ["e2e", "ceiling"] as const) {
        if (opts.only.includes(name)) errors[name] ??= message;
      }
      ctx.log(message);
    } finally {
      await stack?.stop();
    }
  }
  await attempt("memory", async () => {
    sections.memory = await runMemory(ctx);
  });
  await attempt("dbcost", async () => {
    sections.dbcost = await runDbCost(ctx);
  });

  const comparisons = sections.e2e && sections.ceiling
    ? compare(sections.e2e, sections.ceiling)
    : null;
  const checks = targets(sections, comparisons);
  const result = {
    schema: 1,
    ...meta,
    options: { quick: opts.quick, only: opts.only },
    database_settings: databaseSettings,
    duration_s: Math.round((performance.now() - started) / 100) / 10,
    sections,
    comparisons,
    targets: checks,
    errors,
  };
  await writeAtomically(opts.out, JSON.stringify(result, null, 2) + "\n");
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  console.log(render(meta, sections, comparisons, checks, errors, opts.quick));
  if (databaseSettings !== null) {
    console.log(
      `\ne2e/ceiling database: ${
        Object.entries(databaseSettings).map(([k, v]) => `${k}=${v}`).join(", ")
      }`,
    );
  }
  console.log(`\nwrote ${opts.out} in ${result.duration_s} s`);
  return Object.keys(errors).length === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
