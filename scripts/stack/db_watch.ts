/**
 * Watches the stack's PostgreSQL so that `npm start` can say when it stopped answering and when
 * it came back: one connection of its own runs `select 1` every second with a short timeout.
 * A restart, a shutdown, a crash recovery (a killed backend ends every connection) and a paused
 * server all show up as "stopped answering", then "back after N s".
 */

import pg from "pg";

/** Options of {@link watchDatabase}. */
export interface WatchOptions {
  url: string;
  /** The postmaster's pid now (to tell a restart from a pause or a crash recovery). */
  postmasterPid: () => number;
  /** Receives one line per change. */
  onEvent: (line: string) => void;
  intervalMs?: number;
  /** A probe that takes longer than this counts as not answering. */
  timeoutMs?: number;
}

/** A running watch. */
export interface DatabaseWatch {
  stop(): Promise<void>;
}

function reasonOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split(
    "\n",
  )[0];
}

/** Starts watching; the first probe runs after one interval. */
export function watchDatabase(options: WatchOptions): DatabaseWatch {
  const interval = options.intervalMs ?? 1000;
  const timeout = options.timeoutMs ?? 2000;
  let client: pg.Client | null = null;
  let downSince: number | null = null;
  let lastPid = options.postmasterPid();
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<void> = Promise.resolve();

  const drop = () => {
    const dead = client;
    client = null;
    // end() waits for a server that may be paused; the socket is closed either way.
    dead?.end().catch(() => {});
  };

  async function probe(): Promise<void> {
    try {
      if (client === null) {
        const fresh = new pg.Client({
          connectionString: options.url,
          application_name: "hms-stack-watch",
          connectionTimeoutMillis: timeout,
          query_timeout: timeout,
        });
        // A connection that breaks between probes reports here; the next probe sees it too.
        fresh.on("error", () => {});
        client = fresh;
        await fresh.connect();
      }
      await client.query("select 1");
    } catch (error) {
      drop();
      if (downSince === null && !stopped) {
        downSince = performance.now();
        options.onEvent(`stopped answering (${reasonOf(error)})`);
      }
      return;
    }
    const pid = options.postmasterPid();
    const how = pid === lastPid
      ? `same postmaster, pid ${pid}`
      : `restarted: postmaster pid ${lastPid} -> ${pid}`;
    if (downSince !== null) {
      const seconds = ((performance.now() - downSince) / 1000).toFixed(1);
      options.onEvent(`back after ${seconds} s (${how})`);
      downSince = null;
    } else if (pid !== lastPid) {
      // Restarted between two probes: too quick to be seen as down.
      options.onEvent(`restarted between two checks (${how})`);
    }
    lastPid = pid;
  }

  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = probe().finally(schedule);
    }, interval);
  };
  schedule();

  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running.catch(() => {});
      drop();
    },
  };
}
