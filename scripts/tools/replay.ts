/**
 * `npm run replay -- --since <time> [--until <time>] [--room <id>]`: asks 100ms's replay API
 * (`POST /v2/analytics/webhooks/replay`,
 * https://www.100ms.live/docs/server-side/v2/api-reference/analytics/replay-webhook-events) to re-send the deliveries that failed
 * in that window, and reports the workflow it started. 100ms re-sends them to the configured
 * webhook URL at 10 events/s, marked `is_replay: true`; the function applies them without any
 * configuration change (docs/reconcile.md, "Replay").
 *
 * Credentials: `HMS_APP_ACCESS_KEY` / `HMS_APP_SECRET` (and `HMS_API_URL`), else the local
 * stack's 100ms stand-in. The management token is minted here with `jose` (HS256, 100ms's
 * claims) and never printed.
 */

import { SignJWT } from "jose";
import { dataTime, parseTime } from "../lib/hms.ts";
import { UsageError } from "./send.ts";
import { readStackInfo, StackNotRunningError } from "./stack_info.ts";
import { runTool } from "./cli.ts";

const USAGE =
  `Usage: npm run replay -- --since TIME [--until TIME] [--room ID] [options]

Asks 100ms to re-send the webhook deliveries that failed in a window (last 30 days), and
reports the workflow. TIME is RFC 3339 (2026-12-01T09:00:00Z) or an age: 90m, 2h, 3d.

  --since TIME       start of the window (required)
  --until TIME       end of the window                        [now]
  --room ID          only this room
  --status S         failed, success or all                    [failed]
  --events A,B       only these event types
  --wait             poll the workflow until it has sent everything
  --api-url URL      100ms API    [$HMS_API_URL, else the local stand-in, else https://api.100ms.live]
  --json             print 100ms's answer as is
  -h, --help         this text

Credentials: $HMS_APP_ACCESS_KEY and $HMS_APP_SECRET (Dashboard -> Developer), else the
local stack's 100ms stand-in. Role changes and room ends are not replayable: run
\`npm run reconcile\` afterwards, it repairs those from 100ms's session records.

Exit status: 0 a workflow started or is running, 1 100ms refused, 2 bad usage.`;

const AGE = /^(\d+)([mhd])$/;

/** RFC 3339, or an age like `2h` before `nowMs`; as epoch ms. */
export function parseWhen(text: string, nowMs: number): number {
  const age = AGE.exec(text);
  if (age) {
    const unit =
      { m: 60_000, h: 3_600_000, d: 86_400_000 }[age[2] as "m" | "h" | "d"];
    return nowMs - Number(age[1]) * unit;
  }
  try {
    return Number(parseTime(text) / 1_000_000n);
  } catch {
    throw new UsageError(`"${text}" is neither RFC 3339 nor an age like 2h`);
  }
}

/** A management token as 100ms documents it (security-and-tokens.mdx). */
export async function managementToken(
  accessKey: string,
  appSecret: string,
  nowMs = Date.now(),
): Promise<string> {
  const now = Math.floor(nowMs / 1000);
  return await new SignJWT({
    access_key: accessKey,
    type: "management",
    version: 2,
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt(now)
    .setNotBefore(now)
    .setExpirationTime(now + 3600)
    .setJti(crypto.randomUUID())
    .sign(new TextEncoder().encode(appSecret));
}

/** What to ask for. */
export interface ReplayRequest {
  since: number;
  until?: number;
  room?: string;
  status?: "failed" | "success" | "all";
  events?: string[];
}

/** The replay API's JSON body. */
export function replayBody(r: ReplayRequest): Record<string, unknown> {
  const body: Record<string, unknown> = {
    start_time: dataTime(new Date(r.since)),
    end_time: dataTime(new Date(r.until ?? Date.now())),
    status: r.status ?? "failed",
  };
  if (r.room !== undefined) body.room_id = r.room;
  if (r.events !== undefined) body.event_names = r.events;
  return body;
}

const FLAGS = {
  since: "string",
  until: "string",
  room: "string",
  status: "string",
  events: "string",
  wait: "boolean",
  "api-url": "string",
  json: "boolean",
  help: "boolean",
} as const;

/** Runs the command; returns the exit code. */
export function main(argv: string[]): Promise<number> {
  return runTool({
    name: "replay",
    usage: USAGE,
    flags: FLAGS,
    hint: "Run `npm run replay -- --help`.",
    failure: "100ms did not answer",
    parse: (flags) => {
      const { strings } = flags;
      if (strings.since === undefined) {
        throw new UsageError("--since is required");
      }
      const now = Date.now();
      const since = parseWhen(strings.since, now);
      const until = strings.until === undefined
        ? now
        : parseWhen(strings.until, now);
      if (since < now - 30 * 86_400_000) {
        throw new UsageError(
          "--since is more than 30 days ago: 100ms keeps 30 days of deliveries",
        );
      }
      if (until < since) throw new UsageError("--until is before --since");
      const status = strings.status ?? "failed";
      if (!["failed", "success", "all"].includes(status)) {
        throw new UsageError("--status must be failed, success or all");
      }
      const request: ReplayRequest = {
        since,
        until,
        room: strings.room,
        status: status as ReplayRequest["status"],
        events: strings.events?.split(",").map((e) => e.trim()).filter(Boolean),
      };
      return { request, flags };
    },
    run: async ({ request, flags }) => {
      let accessKey = Deno.env.get("HMS_APP_ACCESS_KEY");
      let appSecret = Deno.env.get("HMS_APP_SECRET");
      let apiUrl = flags.strings["api-url"] ?? Deno.env.get("HMS_API_URL");
      if (!accessKey || !appSecret) {
        const stack = await readStackInfo();
        if (stack?.hmsApi === undefined) {
          throw new StackNotRunningError(
            "no HMS_APP_ACCESS_KEY/HMS_APP_SECRET and no local 100ms stand-in",
          );
        }
        accessKey = stack.hmsApi.accessKey;
        appSecret = stack.hmsApi.appSecret;
        apiUrl ??= stack.hmsApi.url;
      }
      apiUrl = (apiUrl ?? "https://api.100ms.live").replace(/\/$/, "");
      const token = await managementToken(accessKey, appSecret);
      const response = await fetch(`${apiUrl}/v2/analytics/webhooks/replay`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${token}`,
          "content-type": "application/json",
        },
        body: JSON.stringify(replayBody(request)),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await response.text();
      if (flags.booleans.has("json")) console.log(text);
      if (response.status !== 200) {
        console.error(
          `replay: 100ms answered ${response.status}${
            response.status === 429 ? " (rate limited: retry in 45 s)" : ""
          }: ${text.slice(0, 300)}`,
        );
        return 1;
      }
      const answer = JSON.parse(text) as {
        workflow_id: string;
        status: string;
        message?: string;
      };
      if (!flags.booleans.has("json")) {
        console.log(
          `replay workflow ${answer.workflow_id}: ${answer.status}${
            answer.message ? ` (${answer.message})` : ""
          }\n  window ${dataTime(new Date(request.since))} .. ${
            dataTime(new Date(request.until!))
          }${
            request.room ? `, room ${request.room}` : ""
          }, ${request.status} deliveries` +
            `\n  100ms re-sends them at 10 events/s, marked is_replay; then run \`npm run reconcile\`` +
            ` for role changes and room ends, which are not replayable.`,
        );
      }
      if (flags.booleans.has("wait")) {
        for (let i = 0; i < 3600; i++) {
          const poll = await fetch(
            `${apiUrl}/v2/analytics/webhooks/replay/${
              encodeURIComponent(answer.workflow_id)
            }`,
            {
              headers: {
                authorization: `Bearer ${await managementToken(
                  accessKey,
                  appSecret,
                )}`,
              },
              signal: AbortSignal.timeout(30_000),
            },
          );
          const state = await poll.json().catch(() => ({}));
          if (poll.status !== 200 || state.status !== "running") {
            console.log(
              `  workflow ${state.status ?? poll.status}: ${
                JSON.stringify(state)
              }`,
            );
            break;
          }
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      return 0;
    },
  }, argv);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
