/**
 * Reads `.stack/stack.json`, the file `npm start` writes for a running local stack, and answers
 * "where is the stack and is it up?" for the developer tools.
 */

import { fromFileUrl } from "../lib/file_url.ts";

/** What the tools need to know about a running local stack. */
export interface StackInfo {
  /** The function URL (through the gateway), e.g. http://127.0.0.1:54321/functions/v1/hms-webhook. */
  functionUrl: string;
  /** The `SUPABASE_URL`-style gateway base; REST is at `${supabaseUrl}/rest/v1`. */
  supabaseUrl: string;
  /** postgresql:// URL of the stack's database. */
  databaseUrl: string;
  /** The `HMS_WEBHOOK_SECRET` the function runs with. */
  webhookSecret: string;
  /** The secret-header name the function runs with. */
  secretHeader: string;
  /** Service-role key (bypasses RLS). */
  serviceRoleKey: string;
  /** Anon key. */
  anonKey: string;
  /** The file this was read from. */
  file: string;
  /** The local 100ms API stand-in `npm start` runs when no real keys are set. */
  hmsApi?: { url: string; accessKey: string; appSecret: string };
}

/** Thrown when no usable stack file exists or the stack it describes does not answer. */
export class StackNotRunningError extends Error {
  constructor(detail: string) {
    super(
      `the local stack is not running (${detail}). Start it with \`npm start\` in another ` +
        `terminal, or point the tool at another deployment (see --help).`,
    );
    this.name = "StackNotRunningError";
  }
}

/** The repository root: two levels above this file. */
export function repoRoot(): string {
  return fromFileUrl(new URL("../../", import.meta.url)).replace(/\/$/, "");
}

/** Default location of the stack file. `HMS_STACK_FILE` overrides it (tests, several stacks). */
export function stackFilePath(): string {
  return Deno.env.get("HMS_STACK_FILE") ?? `${repoRoot()}/.stack/stack.json`;
}

/** Maps the stack file's JSON (scripts/stack/main.ts `StackFile`) onto {@link StackInfo}. */
export function parseStackInfo(raw: unknown, file: string): StackInfo {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new StackNotRunningError(`${file} is not a JSON object`);
  }
  const r = raw as Record<string, unknown>;
  const need = (key: string): string => {
    const value = r[key];
    if (typeof value !== "string" || value === "") {
      throw new StackNotRunningError(`${file} has no ${key}`);
    }
    return value;
  };
  const supabaseUrl = need("supabaseUrl").replace(/\/$/, "");
  return {
    functionUrl: need("functionUrl"),
    supabaseUrl,
    databaseUrl: need("databaseUrl"),
    webhookSecret: need("webhookSecret"),
    secretHeader: typeof r.secretHeader === "string" && r.secretHeader !== ""
      ? r.secretHeader
      : "x-webhook-secret",
    serviceRoleKey: need("serviceRoleKey"),
    anonKey: typeof r.anonKey === "string" ? r.anonKey : "",
    file,
    hmsApi: typeof r.hmsApi === "object" && r.hmsApi !== null
      ? r.hmsApi as StackInfo["hmsApi"]
      : undefined,
  };
}

/** The stack file's contents, or `null` when there is no file. Does not check liveness. */
export async function readStackInfo(
  file = stackFilePath(),
): Promise<StackInfo | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new StackNotRunningError(`${file} is not valid JSON`);
  }
  return parseStackInfo(raw, file);
}

/** True when something accepts TCP connections at the URL's host and port within ~1 s. */
export async function isListening(url: string): Promise<boolean> {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === "https:" ? 443 : 80));
  const timeout = new Promise<false>((resolve) => {
    const t = setTimeout(() => resolve(false), 1000);
    Deno.unrefTimer(t);
  });
  const connect = Deno.connect({ hostname: u.hostname, port }).then((conn) => {
    conn.close();
    return true;
  }, () => false);
  return await Promise.race([connect, timeout]);
}

/**
 * The running stack: its file must exist and its gateway must answer; otherwise a
 * {@link StackNotRunningError} that tells the developer what to do.
 */
export async function requireStack(file = stackFilePath()): Promise<StackInfo> {
  const info = await readStackInfo(file);
  if (info === null) throw new StackNotRunningError(`no ${file}`);
  if (!(await isListening(info.supabaseUrl))) {
    throw new StackNotRunningError(
      `${info.supabaseUrl} does not answer; ${file} is stale`,
    );
  }
  return info;
}
