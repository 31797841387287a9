/**
 * `npm run reconcile`: runs one reconcile pass (`POST <function URL>/reconcile`, authenticated
 * with the webhook secret like a webhook) and prints its summary as a table: rooms checked,
 * rooms corrected with their counts before and after, sessions closed, API errors, rooms not
 * reached. `npm start` calls {@link reconcileOnce} on a timer.
 */

import { headersFor } from "../lib/hms.ts";
import { UsageError } from "./send.ts";
import { requireStack } from "./stack_info.ts";
import { runTool } from "./cli.ts";

const USAGE = `Usage: npm run reconcile -- [options]

Runs one reconcile pass of the function and prints what it did.

  --url URL          function URL (…/hms-webhook)     [the local stack's]
  --secret S         webhook secret   [the local stack's; with --url: $HMS_WEBHOOK_SECRET]
  --header-name H    secret header    [the local stack's; with --url: $HMS_WEBHOOK_SECRET_HEADER]
  --json             print the function's JSON answer as is
  -h, --help         this text

Exit status: 0 the pass completed, 1 it was incomplete or failed, 2 bad usage.`;

/** The counts of a room. */
export interface Counts {
  is_live: boolean;
  listener_count: number;
  speaker_count: number;
}

/** The function's answer (src/reconcile/pass.rs `Summary`). */
export interface Summary {
  /** `running`/`too_soon`: no pass ran (429; another holds the turn, or the interval). */
  status: "completed" | "incomplete" | "failed" | "running" | "too_soon";
  api: "on" | "off";
  rooms_checked: number;
  rooms_corrected: { room_id: string; before: Counts; after: Counts }[];
  sessions_closed: number;
  api_errors: {
    room_id: string | null;
    call: string;
    error: string;
    status: number | null;
    detail?: string;
  }[];
  db_errors: {
    room_id: string | null;
    call: string;
    problem: string;
    status: number | null;
  }[];
  not_reached: string[];
  /** Live rooms outside the pass's window: the next passes read them from `cursor` on. */
  not_read: number;
  cursor: string | null;
  unverified: { room_id: string; reason: string }[];
  rooms_unknown: number;
  stopped: string | null;
  ms: number;
  retry_after_s?: number;
}

/** Where and how to call the route. */
export interface Target {
  functionUrl: string;
  secret: string;
  headerName?: string;
}

/** One pass: the HTTP status and the parsed summary (or the error body). */
export async function reconcileOnce(
  target: Target,
): Promise<{ status: number; summary: Summary | null; text: string }> {
  // The time goes stale like a webhook's; signed too, so it passes in every auth mode.
  const body = JSON.stringify({ timestamp: new Date().toISOString() });
  const response = await fetch(
    `${target.functionUrl.replace(/\/$/, "")}/reconcile`,
    {
      method: "POST",
      headers: await headersFor(body, {
        secret: target.secret,
        auth: "both",
        headerName: target.headerName,
      }),
      body,
      // The function stops new calls after 60 s; calls in flight end within 10 s more.
      signal: AbortSignal.timeout(120_000),
    },
  );
  const text = await response.text();
  let summary: Summary | null = null;
  try {
    const parsed = JSON.parse(text);
    if (typeof parsed?.rooms_checked === "number") summary = parsed;
  } catch {
    summary = null;
  }
  return { status: response.status, summary, text };
}

const counts = (c: Counts) =>
  `${c.is_live ? "live" : "not live"} ${c.listener_count}L ${c.speaker_count}S`;

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) =>
    Math.max(...rows.map((r) => r[i].length))
  );
  return rows.map((r) =>
    r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()
  )
    .join("\n");
}

/** The summary as terminal tables. */
export function renderSummary(s: Summary): string {
  const out: string[] = [];
  out.push(table([
    [
      "pass",
      "api",
      "rooms checked",
      "corrected",
      "sessions closed",
      "api errors",
      "not reached",
      "ms",
    ],
    [
      s.status + (s.stopped ? ` (${s.stopped})` : ""),
      s.api,
      String(s.rooms_checked),
      String(s.rooms_corrected.length),
      String(s.sessions_closed),
      String(s.api_errors.length),
      String(s.not_reached.length),
      String(s.ms),
    ],
  ]));
  if (s.retry_after_s !== undefined) {
    out.push(
      `\nNo pass ran (${s.status}): try again in ${s.retry_after_s} s.`,
    );
  }
  if (s.not_read > 0) {
    out.push(
      `\n${s.not_read} live room(s) outside this pass's window: the next passes read them, after ${s.cursor}.`,
    );
  }
  if (s.api === "off") {
    out.push(
      "\nThe 100ms API part is off (set HMS_APP_ACCESS_KEY and HMS_APP_SECRET); only sessions past 12 h were closed.",
    );
  }
  if (s.rooms_corrected.length > 0) {
    out.push(
      "\n" + table([
        ["room", "before", "after"],
        ...s.rooms_corrected.map((
          c,
        ) => [c.room_id, counts(c.before), counts(c.after)]),
      ]),
    );
  }
  const problems = [
    ...s.api_errors.map((e) => [
      e.room_id ?? "-",
      `100ms ${e.call}`,
      `${e.error}${e.status ? ` ${e.status}` : ""}${
        e.detail ? `: ${e.detail}` : ""
      }`,
    ]),
    ...s.db_errors.map((e) => [
      e.room_id ?? "-",
      `database ${e.call}`,
      `${e.problem}${e.status ? ` ${e.status}` : ""}`,
    ]),
    ...s.unverified.map((u) => [u.room_id, "unverified", u.reason]),
    ...s.not_reached.map((room) => [room, "not reached", "next pass"]),
  ];
  if (problems.length > 0) {
    out.push("\n" + table([["room", "what", "detail"], ...problems]));
  }
  if (s.rooms_unknown > 0) {
    out.push(
      `\n${s.rooms_unknown} room(s) live on 100ms are not in the rooms table.`,
    );
  }
  return out.join("\n");
}

const FLAGS = {
  url: "string",
  secret: "string",
  "header-name": "string",
  json: "boolean",
  help: "boolean",
} as const;

/** Runs the command; returns the exit code. */
export function main(argv: string[]): Promise<number> {
  return runTool({
    name: "reconcile",
    usage: USAGE,
    flags: FLAGS,
    hint: "Run `npm run reconcile -- --help`.",
    failure: "the function did not answer",
    parse: ({ strings, booleans }) => {
      let target: Target | undefined;
      if (strings.url !== undefined) {
        const secret = strings.secret ?? Deno.env.get("HMS_WEBHOOK_SECRET");
        if (!secret) {
          throw new UsageError("--url needs --secret or $HMS_WEBHOOK_SECRET");
        }
        target = {
          functionUrl: strings.url,
          secret,
          headerName: strings["header-name"] ??
            Deno.env.get("HMS_WEBHOOK_SECRET_HEADER"),
        };
      }
      return { target, json: booleans.has("json") };
    },
    run: async ({ target, json }) => {
      if (target === undefined) {
        const stack = await requireStack();
        target = {
          functionUrl: stack.functionUrl,
          secret: stack.webhookSecret,
          headerName: stack.secretHeader,
        };
      }
      const { status, summary, text } = await reconcileOnce(target);
      if (json || summary === null) {
        console.log(summary === null ? `${status} ${text}` : text);
      } else {
        console.log(renderSummary(summary));
      }
      return status === 200 && summary?.status === "completed" ? 0 : 1;
    },
  }, argv);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
