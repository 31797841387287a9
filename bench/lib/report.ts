/**
 * Turns section results into the target checks (✓/✗, never asserted) and the printed table.
 * Ratios and fractions are computed here once, so the JSON and the table always agree.
 */

import type { Meta } from "./meta.ts";
import type { CoreImpl, CoreResult } from "../sections/core.ts";
import type { SizeResult } from "../sections/size.ts";
import type { E2eResult } from "../sections/e2e.ts";
import type { CeilingResult } from "../sections/ceiling.ts";
import type { MemoryResult } from "../sections/memory.ts";
import { type DbCostResult, modeKey, type Window } from "../sections/dbcost.ts";
import type { LevelResult } from "./traffic.ts";

export interface Sections {
  core?: CoreResult;
  size?: SizeResult;
  e2e?: E2eResult;
  ceiling?: CeilingResult;
  memory?: MemoryResult;
  dbcost?: DbCostResult;
}

export interface Target {
  name: string;
  target: string;
  value: number | boolean | null;
  unit: string;
  pass: boolean | null;
}

export interface Comparison {
  run: string;
  concurrency: number;
  e2e_throughput_eps: number;
  ceiling_throughput_eps: number;
  fraction_of_ceiling: number;
  e2e_p50_ms: number;
  ceiling_p50_ms: number;
  p50_overhead_ms: number;
}

const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** End to end vs the direct-SQL ceiling, level by level and for the hot room. */
export function compare(e2e: E2eResult, ceiling: CeilingResult): Comparison[] {
  const pairs: [string, LevelResult, LevelResult][] = e2e.levels.flatMap(
    (l) => {
      const c = ceiling.levels.find((x) => x.concurrency === l.concurrency);
      return c
        ? [[`${l.rooms} rooms`, l, c] as [string, LevelResult, LevelResult]]
        : [];
    },
  );
  pairs.push(["hot room", e2e.hot_room, ceiling.hot_room]);
  return pairs.map(([run, e, c]) => ({
    run,
    concurrency: e.concurrency,
    e2e_throughput_eps: e.throughput_eps,
    ceiling_throughput_eps: c.throughput_eps,
    fraction_of_ceiling: r3(e.throughput_eps / c.throughput_eps),
    e2e_p50_ms: e.latency_ms.median,
    ceiling_p50_ms: c.latency_ms.median,
    p50_overhead_ms: r3(e.latency_ms.median - c.latency_ms.median),
  }));
}

type Measured = number | boolean | null | undefined;

const COMPARE: Record<string, (v: number, bound: number) => boolean> = {
  "<=": (v, bound) => v <= bound,
  ">=": (v, bound) => v >= bound,
  "<": (v, bound) => v < bound,
  "": (v, bound) => v === bound,
};

/**
 * A target's rule is its text, so what the report shows and what it checks cannot drift apart:
 * `<= 5 ms`, `>= 50%`, `wasm/baseline < 1`, `<= 3.3 rows` or `0 B`. KB and % scale the bound to
 * the value's unit (bytes, a fraction); otherwise the value's unit is the text's (µs, ms, B, ×,
 * rows; none: ×).
 */
function check(name: string, target: string, value: Measured): Target {
  const rule = /^(?:[a-z/]+ )?(<=|>=|<|)\s*([\d.]+)\s*(µs|ms|KB|B|%|×|rows)?$/
    .exec(target);
  if (rule === null) throw new Error(`unreadable target: ${target}`);
  const [, op, number, suffix = "×"] = rule;
  const scale = suffix === "KB" ? 1000 : suffix === "%" ? 0.01 : 1;
  const unit = suffix === "KB" ? "B" : suffix === "%" ? "×" : suffix;
  const v = value ?? null;
  const pass = v === null
    ? null
    : typeof v === "boolean"
    ? v
    : COMPARE[op](v, Number(number) * scale);
  return { name, target, value: v, unit, pass };
}

/** The brief's targets, evaluated on whatever sections ran (null = not measured this run). */
export function targets(
  s: Sections,
  comparisons: Comparison[] | null,
): Target[] {
  const { core, size, memory } = s;
  const c16 = s.e2e?.levels.find((l) => l.concurrency === 16)?.latency_ms;
  const vsCeiling = comparisons?.find((c) =>
    c.concurrency === 16 && c.run !== "hot room"
  )?.fraction_of_ceiling;
  const coldStartRatio = size?.baseline_cold_start
    ? size.cold_start.in_process_ms.median /
      size.baseline_cold_start.in_process_ms.median
    : null;
  const growth = `Wasm memory growth over ${
    memory?.events ?? "100,000"
  } events`;
  const hot = s.e2e?.hot_room.latency_ms.p99;
  const spread = s.e2e?.levels.find((l) =>
    l.concurrency === s.e2e?.hot_room.concurrency
  )?.latency_ms.p99;
  const rows: [string, string, Measured][] = [
    [
      "core in Wasm faster than the TS baseline",
      "wasm/baseline < 1",
      core?.ratios.wasm_over_baseline,
    ],
    [
      "cold start vs the TS baseline's (in process, medians)",
      "wasm/baseline <= 0.8",
      coldStartRatio,
    ],
    ["end to end p50 at c=16", "<= 5 ms", c16?.median],
    ["end to end p99 at c=16", "<= 25 ms", c16?.p99],
    [
      "hot room p99 vs the c=16 spread run (mixed traffic)",
      "hot/spread <= 2×",
      hot !== undefined && spread !== undefined ? r3(hot / spread) : null,
    ],
    ["throughput vs direct-SQL ceiling at c=16", ">= 50%", vsCeiling],
    [growth, "0 B", memory?.wasm_memory_growth_bytes],
    ...dbRows(s.dbcost),
  ];
  return rows.map(([name, target, value]) => check(name, target, value));
}

/** Per peer event (join, role change, leave; fpw on): the worst time in the entry function and
 * rows written (shown beside the table, against the goals ≤ 8× the floor and ≤ 3.3 rows). */
export function peerWorst(d: DbCostResult | undefined): {
  time: number | undefined;
  rows: number | undefined;
} {
  const on = d?.windows.filter((w) =>
    w.full_page_writes && w.wal_compression === "off" &&
    ["join", "role_change", "leave"].includes(w.kind)
  );
  if (!on || on.length === 0) return { time: undefined, rows: undefined };
  return {
    time: Math.max(
      ...on.map((w) =>
        d!.time_over_floor?.[modeKey(w)] ?? Number.POSITIVE_INFINITY
      ),
    ),
    rows: Math.max(
      ...on.map((w) =>
        w.rows_inserted_per_event + w.rows_updated_per_event +
        w.rows_deleted_per_event
      ),
    ),
  };
}

/** Per peer event (fpw on, the worst kind): time in the entry function within 8× the
 * trigger-free floor's, at most 3.3 rows written, WAL within 6× the floor's; and a rooms update
 * that keeps the feed's band is HOT. */
function dbRows(d: DbCostResult | undefined): [string, string, Measured][] {
  const on = d?.windows.filter((w) =>
    w.full_page_writes && w.wal_compression === "off" &&
    ["join", "role_change", "leave"].includes(w.kind)
  );
  const worstOf = (f: (w: Window) => number | undefined) =>
    on && on.length > 0
      ? Math.max(...on.map((w) => f(w) ?? Number.POSITIVE_INFINITY))
      : undefined;
  const worst = worstOf((w) => d!.wal_over_floor[modeKey(w)]);
  const joins = d?.windows.find((w) =>
    w.kind === "join" && w.full_page_writes && w.wal_compression === "off"
  );
  const peer = peerWorst(d);
  return [
    [
      "time in the entry function per peer event vs the floor, fpw on (worst kind)",
      "<= 8×",
      peer.time,
    ],
    ["rows written per peer event (worst kind)", "<= 3.3 rows", peer.rows],
    ["WAL per peer event vs the floor, fpw on (worst kind)", "<= 6×", worst],
    [
      "rooms updates that keep the feed's band: HOT share (joins, fpw on)",
      ">= 90%",
      joins?.rooms_hot_share_same_band,
    ],
  ];
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

const num = (x: number | null | undefined, digits = 1) =>
  x === null || x === undefined || Number.isNaN(x)
    ? "-"
    : x.toLocaleString("en-US", {
      maximumFractionDigits: digits,
      minimumFractionDigits: digits,
    });
const int = (x: number | null | undefined) => num(x, 0);
const mark = (t: Target | undefined) =>
  t === undefined || t.pass === null ? "" : `${t.target} ${t.pass ? "✓" : "✗"}`;

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) =>
    Math.max(...rows.map((r) => (r[i] ?? "").length))
  );
  return rows.map((r) =>
    "  " +
    r.map((cell, i) =>
      i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])
    ).join("  ")
  ).join("\n");
}

/** The columns {@link levelRow} fills, with `extra` as the last one's name. */
function levelHeader(extra: string): string[] {
  return [
    "run",
    "events",
    "p50 ms",
    "p99 ms",
    "ev/s",
    "CPU ms per event",
    extra,
  ];
}

function levelRow(label: string, l: LevelResult, extra = ""): string[] {
  return [
    label,
    int(l.events),
    num(l.latency_ms.median, 2),
    num(l.latency_ms.p99, 2),
    int(l.throughput_eps),
    Object.entries(l.cpu_ms_per_event).map(([k, v]) => `${k} ${num(v, 2)}`)
      .join(", "),
    extra,
  ];
}

/** The human-readable report printed after a run. */
export function render(
  meta: Meta,
  s: Sections,
  comparisons: Comparison[] | null,
  checks: Target[],
  errors: Record<string, string>,
  quick: boolean,
): string {
  const byName = new Map(checks.map((t) => [t.name, t]));
  const out: string[] = [];
  out.push(
    `hms-webhook bench (${
      quick ? "quick" : "full"
    }) — ${meta.machine.cores} cores, ` +
      `commit ${meta.commit?.slice(0, 10) ?? "?"}${
        meta.dirty ? " (dirty)" : ""
      }, ` +
      `deno ${meta.versions.deno}, ${
        meta.versions.rustc ?? "rustc ?"
      }, ${meta.date}`,
  );
  if (s.core) {
    const c = s.core;
    out.push(
      `\n1. Core per event: verify + parse + classify + plan, ${c.event_bytes}-byte signed peer.join.success`,
    );
    const row = (label: string, x: CoreImpl, target = "") => [
      label,
      num(x.per_event_us.median, 2),
      num(x.per_event_us.p99, 2),
      `${num(x.breakdown_us.fixed, 1)} / ${num(x.breakdown_us.hmac, 1)} / ${
        num(x.breakdown_us.parse_and_plan, 1)
      }`,
      int(x.iters),
      target,
    ];
    out.push(table([
      [
        "implementation",
        "median µs",
        "p99 µs",
        "fixed / HMAC / parse+plan µs",
        "events",
        "target",
      ],
      row(`Rust native (${c.native.profile ?? "?"} profile)`, c.native),
      row("Wasm under Deno (check_event)", c.wasm),
      row("TypeScript baseline (WebCrypto)", c.baseline),
    ]));
    out.push(
      `  ratios (medians): wasm/native ${
        num(c.ratios.wasm_over_native, 2)
      }×, ` +
        `wasm/baseline ${num(c.ratios.wasm_over_baseline, 2)}× ` +
        mark(byName.get("core in Wasm faster than the TS baseline")) +
        `; same RPC body from all three: ${c.parity.identical ? "yes" : "NO"}`,
    );
  }
  if (s.size) {
    const z = s.size;
    out.push(`\n2. Size and cold start`);
    out.push(table([
      ["figure", "value", "target"],
      [".wasm raw", `${int(z.wasm_bytes)} B`, ""],
      [".wasm gzip -9", `${int(z.wasm_gzip_bytes)} B`, ""],
      ["JS glue (hms_webhook.js)", `${int(z.glue_bytes)} B`, ""],
      [
        "inlined Wasm module (base64 .js)",
        `${int(z.inline_module_bytes)} B`,
        "",
      ],
      [
        `cold start in process, median of ${z.cold_start.runs} (p99)`,
        `${num(z.cold_start.in_process_ms.median, 1)} ms (${
          num(z.cold_start.in_process_ms.p99, 1)
        })`,
        mark(
          byName.get("cold start vs the TS baseline's (in process, medians)"),
        ),
      ],
      [
        "  import (compile + instantiate + serve)",
        `${num(z.cold_start.import_ms.median, 1)} ms`,
        "",
      ],
      [
        "  first request (second one)",
        `${num(z.cold_start.first_request_ms.median, 1)} ms (${
          num(z.cold_start.second_request_ms.median, 1)
        } ms)`,
        "",
      ],
      [
        "cold start, process wall time (median)",
        `${num(z.cold_start.process_wall_ms.median, 1)} ms`,
        "",
      ],
      ...(z.baseline_cold_start
        ? [[
          "TS baseline cold start in process / wall",
          `${num(z.baseline_cold_start.in_process_ms.median, 1)} / ${
            num(z.baseline_cold_start.process_wall_ms.median, 1)
          } ms`,
          "",
        ]]
        : []),
    ]));
  }
  if (s.e2e) {
    const e = s.e2e;
    out.push(`\n3. End to end: ${e.path}`);
    const rows = [levelHeader("target")];
    for (const l of e.levels) {
      rows.push(
        levelRow(
          `c=${l.concurrency}, ${l.rooms} rooms`,
          l,
          l.concurrency === 16
            ? `${mark(byName.get("end to end p50 at c=16"))}, ${
              mark(byName.get("end to end p99 at c=16"))
            }`
            : "",
        ),
      );
    }
    rows.push(
      levelRow(
        `hot room c=${e.hot_room.concurrency} (${
          int(e.hot_room.events)
        } joins in ${num(e.hot_room.wall_ms / 1000, 2)} s)`,
        e.hot_room,
        `p99 vs the spread run's ${
          mark(byName.get(
            "hot room p99 vs the c=16 spread run (mixed traffic)",
          ))
        }`,
      ),
    );
    for (const l of e.direct) {
      rows.push(levelRow(`straight to function, c=${l.concurrency}`, l));
    }
    if ("levels" in e.baseline) {
      for (const l of e.baseline.levels) {
        rows.push(levelRow(`TS baseline function, c=${l.concurrency}`, l));
      }
    }
    out.push(table(rows));
    out.push(
      `  function peak RSS (VmHWM): ${
        int((e.function_peak_rss_kb ?? NaN) / 1024)
      } MiB` +
        ("levels" in e.baseline
          ? `; TS baseline function: ${
            int((e.baseline.function_peak_rss_kb ?? NaN) / 1024)
          } MiB`
          : `; TS baseline function skipped: ${e.baseline.skipped}`) +
        "; counts exact in every room: yes",
    );
  }
  if (s.ceiling) {
    out.push(`\n4. Ceiling: ${s.ceiling.path}`);
    const rows = [levelHeader("")];
    for (const l of s.ceiling.levels) {
      rows.push(levelRow(`c=${l.concurrency}`, l));
    }
    rows.push(
      levelRow(
        `hot room c=${s.ceiling.hot_room.concurrency}`,
        s.ceiling.hot_room,
      ),
    );
    rows.push(
      levelRow(
        `c=${s.ceiling.rest_shaped.concurrency}, REST stand-in's SQL per call`,
        s.ceiling.rest_shaped,
      ),
    );
    out.push(table(rows));
    if (comparisons) {
      out.push(table([
        [
          "end to end vs ceiling",
          "e2e ev/s",
          "ceiling ev/s",
          "fraction",
          "p50 overhead ms",
          "target",
        ],
        ...comparisons.map((c) => [
          `${c.run}, c=${c.concurrency}`,
          int(c.e2e_throughput_eps),
          int(c.ceiling_throughput_eps),
          `${num(c.fraction_of_ceiling * 100, 0)}%`,
          num(c.p50_overhead_ms, 2),
          c.concurrency === 16 && c.run !== "hot room"
            ? mark(byName.get("throughput vs direct-SQL ceiling at c=16"))
            : "",
        ]),
      ]));
    }
  }
  if (s.memory) {
    const m = s.memory;
    out.push(
      `\n5. Memory: ${int(m.events)} events through one isolate (${m.mode})`,
    );
    out.push(table([
      [
        "figure",
        "before",
        "after",
        `after ${m.settle_ms / 1000} s idle`,
        "target",
      ],
      [
        "Wasm linear memory",
        `${int(m.wasm_memory_before_bytes)} B`,
        `${int(m.wasm_memory_after_bytes)} B`,
        `${int(m.wasm_memory_settled_bytes)} B`,
        mark(checks.find((t) => t.name.startsWith("Wasm memory growth"))),
      ],
      [
        "process RSS",
        `${num(m.rss_before_kb / 1024, 1)} MiB`,
        `${num(m.rss_after_kb / 1024, 1)} MiB`,
        `${num(m.rss_settled_kb / 1024, 1)} MiB`,
        "",
      ],
      [
        "JS heap used (after GC)",
        `${num(m.heap_used_before / 1048576, 1)} MiB`,
        `${num(m.heap_used_after / 1048576, 1)} MiB`,
        `${num(m.heap_used_settled / 1048576, 1)} MiB`,
        "",
      ],
    ]));
    out.push(
      `  responses: ${
        Object.entries(m.statuses).map(([k, v]) => `${k}×${int(v)}`).join(", ")
      }; ` +
        `${int(m.rpc_calls)} RPC calls for ${
          int(m.rpc_calls_expected)
        } accepted events; ` +
        `${
          int(m.requests_per_second_incl_generation)
        } requests/s in process (incl. building + signing)`,
    );
  }
  if (s.dbcost) out.push(renderDbCost(s.dbcost, byName));
  out.push("\nTargets");
  out.push(table([
    ["target", "value", "goal", ""],
    ...checks.map((t) => [
      t.name,
      t.value === null
        ? "not measured"
        : typeof t.value === "boolean"
        ? String(t.value)
        : `${num(t.value, 3)} ${t.unit}`,
      t.target,
      t.pass === null ? "-" : t.pass ? "✓" : "✗",
    ]),
  ]));
  for (const [section, message] of Object.entries(errors)) {
    out.push(`\n!! ${section} FAILED: ${message}`);
  }
  return out.join("\n");
}

function renderDbCost(d: DbCostResult, byName: Map<string, Target>): string {
  const out = [
    `\n6. Database cost per event (${d.postgres}; ${d.rooms} rooms, ledger prefilled with ${
      int(d.ledger_prefill_rows)
    } rows; CHECKPOINT before each window and every 1,000 events; floor: trigger-free copy of rooms)`,
  ];
  const row = (w: Window) => [
    `${w.kind === "floor" ? "floor (rooms +1)" : w.kind}, fpw ${
      w.full_page_writes ? "on" : "off"
    }${w.wal_compression === "off" ? "" : ` + ${w.wal_compression}`}`,
    int(w.events),
    int(w.wal_bytes_per_event),
    w.kind === "floor" ? "" : `${num(d.wal_over_floor[modeKey(w)], 2)}×`,
    num(w.wal_fpi_per_event, 2),
    `${num(w.rows_inserted_per_event, 2)} / ${
      num(w.rows_updated_per_event, 2)
    }`,
    w.rooms_hot_share === null ? "-" : `${num(w.rooms_hot_share * 100, 0)}%`,
    w.kind === "floor" ? "" : `${num(w.band_changes_per_event * 100, 0)}%`,
    w.rooms_hot_share_same_band === null
      ? "-"
      : `${num(w.rooms_hot_share_same_band * 100, 0)}%`,
    num(w.backend_cpu_us_per_event, 0),
    num(w.entry_us_per_event, 0),
    w.kind === "floor" ? "" : `${num(d.time_over_floor?.[modeKey(w)], 2)}×`,
  ];
  out.push(table([
    [
      "kind",
      "events",
      "WAL B/event",
      "vs floor",
      "FPI/event",
      "rows ins / upd",
      "rooms HOT",
      "band moved",
      "HOT, same band",
      "backend CPU µs",
      "entry µs",
      "vs floor",
    ],
    ...d.windows.map(row),
  ]));
  const l = d.ledger;
  out.push(
    `  ledger: ${int(l.rows)} rows, ${
      num(l.total_bytes_per_million / 1e6, 1)
    } MB per million events (heap + ${
      Object.keys(l.index_bytes).length
    } indexes); prune of ${int(l.prune.rows_deleted)} rows: ${
      num(l.prune.ms, 0)
    } ms, ${int(l.prune.wal_bytes_per_row)} WAL B/row (fpw on)`,
  );
  for (const f of d.feed ?? []) {
    out.push(
      `  feed: trending_rooms(20) with ${int(f.live)} live rooms among ${
        int(f.rooms)
      }: p50 ${num(f.p50_ms, 3)} ms, p99 ${num(f.p99_ms, 3)} ms (server side)`,
    );
  }
  const worst = peerWorst(d);
  out.push(
    `  peer events, fpw on, worst kind: time vs floor ${num(worst.time, 2)}× ${
      mark(byName.get(
        "time in the entry function per peer event vs the floor, fpw on (worst kind)",
      ))
    }; rows written ${num(worst.rows, 2)} ${
      mark(byName.get("rows written per peer event (worst kind)"))
    }`,
  );
  out.push(
    `  targets: WAL vs floor ${
      mark(byName.get("WAL per peer event vs the floor, fpw on (worst kind)"))
    }; rooms HOT when the band stays ${
      mark(byName.get(
        "rooms updates that keep the feed's band: HOT share (joins, fpw on)",
      ))
    }`,
  );
  return out.join("\n");
}
