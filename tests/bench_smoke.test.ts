/**
 * Smoke test of `npm run bench`: the TypeScript baseline decides exactly like the Rust core (so
 * the speed comparison is fair), and a `--quick` run of every section completes and writes
 * sane, complete JSON. Timing values are never asserted against targets here.
 */

import { buildEvent, EVENT_TYPES, headersFor } from "../scripts/lib/hms.ts";
import {
  ACTIONS,
  type Bytes,
  checkEvent,
  DEFAULT_IGNORED,
  DEFAULT_SPEAKERS,
  loadConfig,
} from "../bench/baseline.ts";
import {
  type BenchContract,
  credentialHeaders,
  loadBenchPackage,
  readDecision,
} from "../bench/lib/pkg.ts";
import assert from "./helpers/assert.ts";
import { fromFileUrl } from "../scripts/lib/file_url.ts";

const ROOT = fromFileUrl(new URL("../", import.meta.url));
const SECRET = "smoke-secret-2b7f";
const ENV = {
  HMS_WEBHOOK_SECRET: SECRET,
  SUPABASE_URL: "http://127.0.0.1:1",
  SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_smoke" }),
};

interface Case {
  name: string;
  body: string | Uint8Array;
  headers: Record<string, string>;
}

/** Requests covering every decision the core makes: plans, ignores and each refusal. */
async function cases(): Promise<Case[]> {
  const out: Case[] = [];
  const signed = async (
    name: string,
    body: string,
    auth: "signature" | "header" | "both",
  ) =>
    out.push({
      name,
      body,
      headers: await headersFor(body, { secret: SECRET, auth }),
    });
  const now = Date.now();
  for (const type of EVENT_TYPES) {
    await signed(
      `${type} (100ms)`,
      buildEvent(type, { at: new Date(now - 5_000) }).body,
      "signature",
    );
  }
  for (
    const type of [
      "room.started",
      "room.ended",
      "peer.joined",
      "peer.left",
      "track.updated",
    ]
  ) {
    await signed(
      `${type} (flat)`,
      buildEvent(type, { format: "flat" }).body,
      "signature",
    );
  }
  for (
    const role of [
      "Host",
      " speaker ",
      "__internal_recorder",
      "beam",
      "viewer-realtime",
    ]
  ) {
    await signed(
      `role ${role}`,
      buildEvent("peer.join.success", { role }).body,
      "header",
    );
  }
  const join = buildEvent("peer.join.success").body;
  await signed("both proofs", join, "both");
  out.push({
    name: "wrong secret",
    body: join,
    headers: await headersFor(join, { secret: "other", auth: "signature" }),
  });
  out.push({
    name: "no proof",
    body: join,
    headers: { "content-type": "application/json" },
  });
  out.push({
    name: "tampered body",
    body: join.replace("listener", "speaker"),
    headers: await headersFor(join, { secret: SECRET, auth: "signature" }),
  });
  await signed(
    "stale",
    buildEvent("peer.join.success", { at: new Date(now - 3_600_000) }).body,
    "both",
  );
  await signed(
    "future",
    buildEvent("peer.join.success", { at: new Date(now + 600_000) }).body,
    "both",
  );
  await signed("truncated JSON", join.slice(0, -3), "signature");
  await signed("array", "[1,2]", "signature");
  await signed("empty", "", "header");
  const invalidUtf8 = new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]);
  out.push({
    name: "invalid UTF-8",
    body: invalidUtf8,
    headers: await headersFor(invalidUtf8, {
      secret: SECRET,
      auth: "signature",
    }),
  });
  const noRoom = JSON.parse(join);
  delete noRoom.data.room_id;
  await signed("missing room_id", JSON.stringify(noRoom), "signature");
  await signed(
    "long peer id",
    buildEvent("peer.join.success", { peerId: "p".repeat(300) }).body,
    "signature",
  );
  const badTime = JSON.parse(join);
  badTime.data.joined_at = "2024-13-40T25:61:00Z";
  await signed("bad joined_at", JSON.stringify(badTime), "signature");
  const noPeer = JSON.parse(join);
  delete noPeer.data.peer_id;
  await signed("missing peer_id", JSON.stringify(noPeer), "signature");
  return out;
}

Deno.test("contract tables: every copy agrees with the Rust core's (src/webhook/event.rs, src/roles.rs)", async () => {
  const { glue } = await loadBenchPackage();
  const core = glue.WebhookHandler.contract() as BenchContract;
  // The independent TypeScript baseline keeps its own copies.
  assert.deepEqual(ACTIONS, core.actions, "bench/baseline.ts ACTIONS");
  assert.equal(DEFAULT_SPEAKERS, core.speaker_roles, "baseline speaker roles");
  assert.equal(DEFAULT_IGNORED, core.ignored_roles, "baseline ignored roles");
  // The event builder (and so every end-to-end test) knows every handled type.
  for (const type of Object.keys(core.actions)) {
    assert.ok(EVENT_TYPES.includes(type), `scripts/lib/hms.ts lacks ${type}`);
  }
});

Deno.test("baseline: decides exactly like the Rust core in Wasm (fair comparison)", async () => {
  const { glue } = await loadBenchPackage();
  const handler = new glue.WebhookHandler(ENV);
  const config = await loadConfig(ENV);
  const all = await cases();
  let calls = 0;
  const seen = new Set<string>();
  for (const c of all) {
    const bytes = (typeof c.body === "string"
      ? new TextEncoder().encode(c.body)
      : c.body) as Bytes;
    const now = Date.now();
    const rust = readDecision(
      handler.check_event(...credentialHeaders(c.headers), bytes, now),
    );
    const ts = await checkEvent(
      config,
      "POST",
      new Headers(c.headers),
      bytes,
      now,
    );
    if (rust.step === "call") {
      calls++;
      assert.equal(
        ts.kind,
        "call",
        `${c.name}: Rust planned a call, baseline ${JSON.stringify(ts)}`,
      );
      if (ts.kind === "call") {
        assert.deepEqual(
          JSON.parse(ts.body),
          JSON.parse(rust.args),
          `${c.name}: RPC arguments`,
        );
      }
    } else {
      const body = JSON.parse(rust.body);
      seen.add(body.code ?? body.reason);
      assert.equal(
        ts.kind,
        "respond",
        `${c.name}: Rust answered ${rust.status}, baseline planned a call`,
      );
      if (ts.kind === "respond") {
        assert.equal(
          ts.status,
          rust.status,
          `${c.name}: status (Rust ${rust.body})`,
        );
        assert.equal(ts.body.status, body.status, `${c.name}: body status`);
        assert.equal(
          ts.body.code,
          body.code,
          `${c.name}: error code (Rust ${rust.body})`,
        );
        assert.equal(ts.body.reason, body.reason, `${c.name}: ignore reason`);
      }
    }
  }
  assert.ok(
    calls >= 20,
    `expected most cases to plan a call, got ${calls} of ${all.length}`,
  );
  const expected = [
    "failure event",
    "event type not handled",
    "unauthorized",
    "stale_timestamp",
    "invalid_json",
    "not_an_object",
    "empty_body",
    "invalid_utf8",
    "missing_field",
    "field_too_long",
    "invalid_timestamp",
  ];
  assert.deepEqual(
    [...seen].sort(),
    expected.sort(),
    "every kind of refusal was compared",
  );
});

type Json = Record<string, unknown>;
const obj = (x: unknown, what: string): Json => {
  assert.ok(
    typeof x === "object" && x !== null && !Array.isArray(x),
    `${what} is an object`,
  );
  return x as Json;
};
const positive = (x: unknown, what: string) =>
  assert.ok(
    typeof x === "number" && Number.isFinite(x) && x > 0,
    `${what} > 0 (got ${x})`,
  );

function assertSummary(x: unknown, what: string, n?: number) {
  const s = obj(x, what);
  positive(s.median, `${what}.median`);
  assert.ok(
    (s.p99 as number) >= (s.median as number),
    `${what}: p99 >= median`,
  );
  assert.ok((s.max as number) >= (s.p99 as number), `${what}: max >= p99`);
  assert.ok(
    (s.min as number) <= (s.median as number),
    `${what}: min <= median`,
  );
  if (n !== undefined) assert.equal(s.n, n, `${what}.n`);
}

function assertLevel(x: unknown, what: string, concurrency: number) {
  const l = obj(x, what);
  assert.equal(l.concurrency, concurrency, `${what}.concurrency`);
  assert.equal(l.counts_exact, true, `${what}.counts_exact`);
  positive(l.events, `${what}.events`);
  positive(l.throughput_eps, `${what}.throughput_eps`);
  assertSummary(l.latency_ms, `${what}.latency_ms`, l.events as number);
  obj(l.cpu_ms_per_event, `${what}.cpu_ms_per_event`);
}

Deno.test({
  name: "bench --quick: every section runs and writes complete, sane JSON",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const outFile = await Deno.makeTempFile({
      prefix: "bench-smoke-",
      suffix: ".json",
    });
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "bench/run.ts", "--quick", "--out", outFile],
        cwd: ROOT,
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const timer = setTimeout(() => child.kill("SIGKILL"), 600_000);
      const out = await child.output();
      clearTimeout(timer);
      const stdout = new TextDecoder().decode(out.stdout);
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(
        out.code,
        0,
        `bench --quick failed:\n${stdout.slice(-3000)}\n${stderr.slice(-3000)}`,
      );
      for (
        const heading of [
          "1. Core",
          "2. Size",
          "3. End to end",
          "4. Ceiling",
          "5. Memory",
          "6. Database cost",
          "Targets",
        ]
      ) {
        assert.ok(stdout.includes(heading), `table has "${heading}"`);
      }

      const r = obj(JSON.parse(await Deno.readTextFile(outFile)), "result");
      assert.deepEqual(r.errors, {});
      assert.deepEqual(obj(r.options, "options"), {
        quick: true,
        only: ["core", "size", "e2e", "ceiling", "memory", "dbcost"],
      });
      positive(obj(r.machine, "machine").cores, "machine.cores");
      assert.ok(!Number.isNaN(Date.parse(r.date as string)), "date");
      assert.match(
        obj(r.versions, "versions").deno as string,
        /^\d+\.\d+\.\d+/,
      );
      assert.ok(
        r.commit === null || /^[0-9a-f]{40}$/.test(r.commit as string),
        "commit",
      );
      const s = obj(r.sections, "sections");

      const core = obj(s.core, "core");
      assert.ok(
        (core.event_bytes as number) >= 900 &&
          (core.event_bytes as number) <= 1200,
      );
      for (const impl of ["native", "wasm", "baseline"]) {
        const c = obj(core[impl], impl);
        assert.equal(c.outcome, "call", `${impl} planned the RPC`);
        assertSummary(c.per_event_us, `core.${impl}`, c.iters as number);
        const parts = obj(c.breakdown_us, `core.${impl}.breakdown_us`);
        positive(parts.fixed, `core.${impl} fixed cost`);
        for (const k of ["hmac", "parse_and_plan"]) {
          assert.ok(
            Number.isFinite(parts[k]),
            `core.${impl}.breakdown_us.${k} is a number`,
          );
        }
      }
      assert.deepEqual(obj(core.parity, "parity"), {
        identical: true,
        differences: [],
      });
      positive(obj(core.ratios, "ratios").wasm_over_native, "wasm_over_native");
      positive(
        obj(core.ratios, "ratios").wasm_over_baseline,
        "wasm_over_baseline",
      );

      const size = obj(s.size, "size");
      const stamp = obj(size.build_stamp, "build_stamp");
      assert.equal(
        size.wasm_bytes,
        stamp.wasm_bytes,
        ".wasm size matches BUILD_STAMP.json",
      );
      assert.ok(
        (size.wasm_gzip_bytes as number) < (size.wasm_bytes as number),
        "gzip < raw",
      );
      positive(size.glue_bytes, "glue_bytes");
      assert.ok(
        (size.inline_module_bytes as number) > (size.wasm_bytes as number),
        "base64 > raw",
      );
      const cold = obj(size.cold_start, "cold_start");
      assert.equal(cold.runs, 2);
      assertSummary(cold.in_process_ms, "cold_start.in_process_ms", 2);
      assertSummary(cold.second_request_ms, "cold_start.second_request_ms", 2);
      assert.ok(
        (obj(cold.process_wall_ms, "wall").median as number) >
          (obj(cold.in_process_ms, "in").median as number),
        "process wall time includes the in-process part",
      );

      const e2e = obj(s.e2e, "e2e");
      const levels = e2e.levels as unknown[];
      assert.deepEqual(levels.map((l) => obj(l, "level").concurrency), [
        1,
        16,
        64,
      ]);
      levels.forEach((l, i) =>
        assertLevel(l, `e2e.levels[${i}]`, [1, 16, 64][i])
      );
      assertLevel(e2e.hot_room, "e2e.hot_room", 16);
      assert.equal(obj(e2e.hot_room, "hot").rooms, 1);
      (e2e.direct as unknown[]).forEach((l, i) =>
        assertLevel(l, `e2e.direct[${i}]`, [1, 16][i])
      );
      positive(e2e.function_peak_rss_kb, "function_peak_rss_kb");
      const base = obj(e2e.baseline, "e2e.baseline");
      if ("levels" in base) {
        (base.levels as unknown[]).forEach((l, i) =>
          assertLevel(l, `baseline[${i}]`, [1, 16][i])
        );
      } else assert.equal(typeof base.skipped, "string");

      const ceiling = obj(s.ceiling, "ceiling");
      (ceiling.levels as unknown[]).forEach((l, i) =>
        assertLevel(l, `ceiling.levels[${i}]`, [1, 16, 64][i])
      );
      assertLevel(ceiling.hot_room, "ceiling.hot_room", 16);
      assertLevel(ceiling.rest_shaped, "ceiling.rest_shaped", 16);
      const comparisons = r.comparisons as Json[];
      assert.equal(comparisons.length, 4);
      for (const c of comparisons) {
        positive(c.fraction_of_ceiling, "fraction_of_ceiling");
      }

      const memory = obj(s.memory, "memory");
      assert.equal(memory.events, 2000);
      positive(memory.wasm_memory_before_bytes, "wasm memory");
      assert.equal(
        memory.wasm_memory_growth_bytes,
        (memory.wasm_memory_after_bytes as number) -
          (memory.wasm_memory_before_bytes as number),
      );
      assert.equal(
        memory.rpc_calls,
        memory.rpc_calls_expected,
        "one RPC per accepted event",
      );
      positive(memory.rpc_calls, "rpc_calls");
      const statuses = obj(memory.statuses, "statuses");
      for (const code of ["200", "400", "401", "413"]) {
        positive(statuses[code], `status ${code}`);
      }

      const db = obj(s.dbcost, "dbcost");
      const windows = db.windows as Json[];
      for (const fpw of [false, true]) {
        for (const kind of ["floor", "join", "role_change", "leave", "close"]) {
          const w = windows.find((x) =>
            x.kind === kind && x.full_page_writes === fpw
          );
          assert.ok(w !== undefined, `dbcost window ${kind}, fpw ${fpw}`);
          positive(w.wal_bytes_per_event, `${kind} WAL bytes`);
          positive(w.backend_cpu_us_per_event, `${kind} backend CPU`);
          positive(w.rows_updated_per_event, `${kind} rows updated`);
        }
      }
      positive(obj(db.ledger, "ledger").total_bytes_per_million, "ledger size");

      const targets = r.targets as Json[];
      assert.equal(targets.length, 11);
      for (const t of targets) {
        assert.equal(typeof t.name, "string");
        assert.ok(
          typeof t.pass === "boolean",
          `target "${t.name}" was evaluated`,
        );
      }
    } finally {
      await Deno.remove(outFile).catch(() => {});
    }
  },
});
