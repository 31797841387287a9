/**
 * What `supabase functions deploy` ships is the entry's module graph (plus static_files). This
 * copies only the local files `deno info --json` lists for the shim into an empty folder, runs
 * the function from there and expects a 200 `applied`; so the deployed bundle needs nothing
 * else (no `.wasm` read at runtime, no static_files). Also checks verify_jwt = false.
 */

import { buildEvent, nowNanos, objectId } from "../scripts/lib/hms.ts";
import { denoBinary } from "../scripts/stack/function.ts";
import { assert } from "./helpers/assert.ts";
import { createRoom, roomRow } from "./helpers/db.ts";
import { stackTest } from "./helpers/stack.ts";
import { assertOutcome, deliver } from "./helpers/webhook.ts";

const FUNCTION_DIR = "supabase/functions/hms-webhook";

interface GraphModule {
  specifier: string;
  kind?: string;
  mediaType?: string;
  local?: string;
  error?: string;
}

async function moduleGraph(root: string): Promise<GraphModule[]> {
  const output = await new Deno.Command(denoBinary(root), {
    args: ["info", "--json", `${FUNCTION_DIR}/index.ts`],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, `deno info failed: ${stderr}`);
  const graph = JSON.parse(new TextDecoder().decode(output.stdout));
  return graph.modules as GraphModule[];
}

/** The `[functions.hms-webhook]` table of supabase/config.toml as key -> raw value. */
function functionConfig(toml: string): Record<string, string> {
  const values: Record<string, string> = {};
  let inSection = false;
  for (const raw of toml.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    if (line.startsWith("[")) {
      inSection = line === "[functions.hms-webhook]";
      continue;
    }
    const m = /^([A-Za-z_]+)\s*=\s*(.+)$/.exec(line);
    if (inSection && m) values[m[1]] = m[2].trim();
  }
  return values;
}

stackTest({
  name:
    "the deploy bundle: only the shim's module graph, run from an empty folder, applies an event",
  async fn(stack, t) {
    const modules = await moduleGraph(stack.root);
    const errors = modules.filter((m) => m.error !== undefined);
    assert.deepEqual(errors, [], "every module of the graph resolves");

    await t.step("the graph has no .wasm that would need static_files", () => {
      const wasm = modules.filter((m) =>
        /\.wasm($|\?)/.test(m.specifier) || m.mediaType === "Wasm" ||
        m.kind === "wasm"
      );
      assert.deepEqual(wasm.map((m) => m.specifier), []);
    });

    const local = modules.filter((m) => m.specifier.startsWith("file://"));
    const rootUrl = new URL(`file://${stack.root}/`).href;
    const relative = local.map((m) =>
      decodeURIComponent(m.specifier.slice(rootUrl.length))
    );

    await t.step("every local module lives in the function's folder", () => {
      assert.ok(
        relative.includes(`${FUNCTION_DIR}/index.ts`),
        relative.join(", "),
      );
      for (const path of relative) {
        assert.ok(
          local.every((m) => m.specifier.startsWith(rootUrl)),
          `${path} is outside the repo`,
        );
        assert.ok(
          path.startsWith(`${FUNCTION_DIR}/`),
          `${path} is outside ${FUNCTION_DIR}`,
        );
      }
    });

    await t.step(
      "copied alone into an empty folder, the function applies a signed event",
      async () => {
        const folder = await Deno.makeTempDir({ prefix: "hms-deploy-graph-" });
        try {
          for (const path of relative) {
            const target = `${folder}/${path}`;
            await Deno.mkdir(target.slice(0, target.lastIndexOf("/")), {
              recursive: true,
            });
            await Deno.copyFile(`${stack.root}/${path}`, target);
          }
          await stack.withFunction({
            entry: `${folder}/${FUNCTION_DIR}/index.ts`,
            cwd: folder,
          }, async (instance) => {
            const roomId = await createRoom(stack.sql);
            const event = buildEvent("peer.join.success", {
              roomId,
              sessionId: objectId(),
              role: "speaker",
              at: nowNanos(),
            });
            const answer = await deliver(instance.url, event, {
              secret: stack.secret,
              headerName: stack.secretHeader,
              auth: "signature",
            });
            assertOutcome(answer, "applied");
            assert.equal((await roomRow(stack.sql, roomId))?.speakers, 1);
          });
        } finally {
          await Deno.remove(folder, { recursive: true });
        }
      },
    );

    await t.step(
      "supabase/config.toml deploys it with verify_jwt = false",
      async () => {
        const config = functionConfig(
          await Deno.readTextFile(`${stack.root}/supabase/config.toml`),
        );
        assert.equal(config.verify_jwt, "false", "100ms sends no Supabase JWT");
      },
    );
  },
});
