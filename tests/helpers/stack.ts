/**
 * Gives every end-to-end test the stack to talk to: the one `npm test` started (described by
 * the JSON file in `HMS_STACK_FILE`), or else a private stack started on first use and torn down
 * when the test module's isolate unloads (`deno test` gives each module its own). Also a
 * superuser SQL client, extra function instances, and `stackTest`, the one way a test gets it.
 */

import postgres from "postgres";
import {
  type FunctionProcess,
  startFunction,
} from "../../scripts/stack/function.ts";
import {
  REPO_ROOT,
  type Stack,
  type StackFile,
  startStack,
} from "../../scripts/stack/main.ts";

/** Per-instance options for {@link TestStack.startFunction}. */
export interface InstanceOptions {
  env?: Record<string, string | undefined>;
  /** Default: the stack's gateway. */
  supabaseUrl?: string;
  entry?: string;
  cwd?: string;
}

/** What the tests use of a running stack. */
export interface TestStack {
  root: string;
  functionUrl: string;
  supabaseUrl: string;
  restUrl: string;
  databaseUrl: string;
  secret: string;
  secretHeader: string;
  serviceKey: string;
  anonKey: string;
  /** The entry module function processes run (the shim unless the stack was told otherwise). */
  functionEntry: string;
  /** Superuser connection for checking rows (never used by the code under test). */
  sql: postgres.Sql;
  /** Another function process against this stack (stopped at exit at the latest). */
  startFunction(options?: InstanceOptions): Promise<FunctionProcess>;
  /** Runs `use` with another function process and stops that process however `use` ends. */
  withFunction<T>(
    options: InstanceOptions,
    use: (instance: FunctionProcess) => Promise<T>,
  ): Promise<T>;
}

const instances: FunctionProcess[] = [];
let cleanup: (() => void) | null = null;

globalThis.addEventListener("unload", () => {
  // Exit handlers cannot await: kill what is left and stop a private stack synchronously.
  for (const instance of instances) instance.stopSync();
  cleanup?.();
});

async function load(): Promise<TestStack> {
  const file = Deno.env.get("HMS_STACK_FILE");
  let info: StackFile;
  if (file) {
    info = JSON.parse(await Deno.readTextFile(file));
  } else {
    // `deno test` stopped by Ctrl-C or a time limit skips "unload": clean up on signals too,
    // including one that arrives while the stack is still starting.
    let stack: Stack | null = null;
    let signalled: number | null = null;
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      Deno.addSignalListener(signal, () => {
        if (stack === null && signalled === null) {
          signalled = code;
          return;
        }
        for (const instance of instances) instance.stopSync();
        stack?.stopSync();
        Deno.exit(code);
      });
    }
    const started = await startStack({ pauseCronJobs: true });
    stack = started;
    cleanup = () => started.stopSync();
    if (signalled !== null) {
      started.stopSync();
      Deno.exit(signalled);
    }
    info = started.file();
  }
  const sql = postgres(info.databaseUrl, { max: 4, onnotice: () => {} });
  const stack: TestStack = {
    root: info.root ?? REPO_ROOT,
    functionUrl: info.functionUrl,
    supabaseUrl: info.supabaseUrl,
    restUrl: info.restUrl,
    databaseUrl: info.databaseUrl,
    secret: info.webhookSecret,
    secretHeader: info.secretHeader,
    serviceKey: info.serviceRoleKey,
    anonKey: info.anonKey,
    functionEntry: info.functionEntry,
    sql,
    async startFunction(options: InstanceOptions = {}) {
      const instance = await startFunction({
        root: info.root ?? REPO_ROOT,
        supabaseUrl: options.supabaseUrl ?? info.supabaseUrl,
        serviceKey: info.serviceRoleKey,
        secret: info.webhookSecret,
        env: options.env,
        entry: options.entry ?? info.functionEntry,
        cwd: options.cwd,
      });
      instances.push(instance);
      return instance;
    },
    async withFunction(options, use) {
      const instance = await stack.startFunction(options);
      try {
        return await use(instance);
      } finally {
        await instance.stop();
      }
    },
  };
  return stack;
}

let shared: Promise<TestStack> | null = null;

/** The stack for this test process (started once). */
export function getStack(): Promise<TestStack> {
  shared ??= load();
  return shared;
}

/** Test options for tests that share the stack: its pools and processes outlive one test. */
const SHARED = { sanitizeOps: false, sanitizeResources: false } as const;

/** A test on the shared stack (with {@link SHARED}'s options): `fn` gets the stack to use. */
export function stackTest(test: {
  name: string;
  fn(stack: TestStack, t: Deno.TestContext): Promise<void>;
}): void {
  Deno.test({
    name: test.name,
    ...SHARED,
    async fn(t) {
      await test.fn(await getStack(), t);
    },
  });
}
