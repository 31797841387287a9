/**
 * A stand-in for Supabase's REST API that answers `POST /rest/v1/rpc/hms_apply_event` the way
 * PostgREST would (200 + the function's jsonb), without a database: used where the bench wants
 * the function's own cost (cold start) and not the database's.
 */

/** The RPC answer the stub returns: a plausible `applied` result. */
export const STUB_RESULT = {
  status: "applied",
  reason: null,
  room: {
    hms_room_id: "6501c1d2e3f4a5b6c7d8e9f0",
    is_live: true,
    listener_count: 3,
    speaker_count: 1,
    trending_score: 6.0,
    last_active_at: "2024-10-04T18:03:10.558102Z",
  },
};

export interface RpcStub {
  url: string;
  /** How many RPC calls it answered. */
  calls(): number;
  stop(): Promise<void>;
}

/** Listens on the first free port in [from, to]; other paths get a PostgREST-style 404. */
export function startRpcStub(from: number, to: number): RpcStub {
  let calls = 0;
  const body = JSON.stringify(STUB_RESULT);
  for (let port = from; port <= to; port++) {
    try {
      const server = Deno.serve({
        hostname: "127.0.0.1",
        port,
        onListen: () => {},
      }, (req) => {
        if (
          req.method === "POST" &&
          new URL(req.url).pathname === "/rest/v1/rpc/hms_apply_event"
        ) {
          calls++;
          return new Response(body, {
            headers: { "content-type": "application/json" },
          });
        }
        return Response.json({ code: "PGRST202", message: "not found" }, {
          status: 404,
        });
      });
      return {
        url: `http://127.0.0.1:${port}`,
        calls: () => calls,
        stop: async () => {
          await server.shutdown();
        },
      };
    } catch (error) {
      if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    }
  }
  throw new Error(`no free port in ${from}-${to} for the REST stub`);
}
