/** What a result was measured on: machine, commit, tool versions (so ratios can be compared). */

import { run, rustTool } from "./proc.ts";

export interface Meta {
  date: string;
  commit: string | null;
  dirty: boolean | null;
  machine: {
    cores: number;
    cpu_model: string | null;
    mem_total_mb: number | null;
    os: string;
  };
  versions: {
    deno: string;
    v8: string;
    typescript: string;
    rustc: string | null;
  };
}

async function firstLine(
  cmd: string,
  args: string[],
  cwd: string,
): Promise<string | null> {
  try {
    const r = await run(cmd, { args, cwd, timeoutMs: 30_000 });
    return r.code === 0 ? r.stdout.trim().split("\n")[0] : null;
  } catch {
    return null;
  }
}

function cpuModel(): string | null {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(
      Deno.readTextFileSync("/proc/cpuinfo"),
    );
    return m ? m[1].trim() : null;
  } catch {
    return null;
  }
}

function memTotalMb(): number | null {
  try {
    const m = /^MemTotal:\s+(\d+) kB/m.exec(
      Deno.readTextFileSync("/proc/meminfo"),
    );
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

/** Collects the metadata block of bench/results/latest.json. */
export async function collectMeta(root: string): Promise<Meta> {
  const commit = await firstLine("git", ["rev-parse", "HEAD"], root);
  const status = await firstLine("git", [
    "status",
    "--porcelain",
    "--untracked-files=no",
  ], root);
  return {
    date: new Date().toISOString(),
    commit,
    dirty: commit === null ? null : status !== null && status !== "",
    machine: {
      cores: navigator.hardwareConcurrency,
      cpu_model: cpuModel(),
      mem_total_mb: memTotalMb(),
      os: `${Deno.build.os} ${Deno.osRelease()} ${Deno.build.arch}`,
    },
    versions: {
      deno: Deno.version.deno,
      v8: Deno.version.v8,
      typescript: Deno.version.typescript,
      rustc: await firstLine(rustTool("rustc"), ["--version"], root),
    },
  };
}
