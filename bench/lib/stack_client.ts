/** Starts bench/probes/stack_host.ts as a child process and talks to it over stdin/stdout lines. */

export interface StackInfo {
  functionUrl: string;
  functionDirectUrl: string;
  supabaseUrl: string;
  databaseUrl: string;
  secret: string;
  serviceKey: string;
  /** fsync, synchronous_commit, full_page_writes, wal_level as the server reports them. */
  postgresSettings: Record<string, string>;
  pids: {
    host: number;
    function: number;
    baseline: number | null;
    postgres: number;
  };
}

export interface HostedStack {
  info: StackInfo;
  /** Routes the gateway's `/functions/v1/hms-webhook` to the Rust shim or the TS baseline. */
  target(name: "rust" | "baseline"): Promise<void>;
  /** Stops the stack (function processes, gateway, PostgreSQL) and waits for the host to exit. */
  stop(): Promise<void>;
}

/** Starts a stack in its own process; rejects with the host's stderr if it doesn't come up. */
export async function hostStack(opts: {
  root: string;
  baseline: boolean;
  timeoutMs: number;
  /** postgresql.conf overrides (default none: a Supabase database's durability). */
  postgresSettings?: Record<string, string>;
}): Promise<HostedStack> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "bench/probes/stack_host.ts",
      ...(opts.baseline ? ["--baseline"] : []),
      ...Object.entries(opts.postgresSettings ?? {}).flatMap((
        [name, value],
      ) => ["--pg-setting", `${name}=${value}`]),
    ],
    cwd: opts.root,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const writer = child.stdin.getWriter();
  let buffered = "";
  const nextJson = async (): Promise<Record<string, unknown>> => {
    while (true) {
      const newline = buffered.indexOf("\n");
      if (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.startsWith("{")) return JSON.parse(line);
        continue;
      }
      const { value, done } = await lines.read();
      if (done) {
        throw new Error(`stack host exited:\n${(await stderr).slice(-4000)}`);
      }
      buffered += value;
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error("stack host did not start in time")),
      opts.timeoutMs,
    );
  });
  let info: StackInfo;
  try {
    info = (await Promise.race([nextJson(), timeout])) as unknown as StackInfo;
  } catch (error) {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already gone.
    }
    await child.status;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const send = (line: string) =>
    writer.write(new TextEncoder().encode(`${line}\n`));
  let stopped: Promise<void> | null = null;
  return {
    info,
    async target(name) {
      await send(`target ${name}`);
      const answer = await nextJson();
      if (answer.target !== name) {
        throw new Error(`stack host refused target ${name}`);
      }
    },
    stop() {
      stopped ??= (async () => {
        const kill = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch {
            // Exited meanwhile.
          }
        }, 30_000);
        await send("stop").catch(() => {});
        await writer.close().catch(() => {});
        await child.status;
        clearTimeout(kill);
        await lines.cancel().catch(() => {});
        await stderr.catch(() => "");
      })();
      return stopped;
    },
  };
}
