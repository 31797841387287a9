/** `--name value` command-line flags for the probes (they are only started by the harness). */

export function flags(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const name = args[i];
    if (!name.startsWith("--")) throw new Error(`unexpected argument ${name}`);
    const value = args[i + 1];
    if (value === undefined || value.startsWith("--")) {
      out.set(name.slice(2), "true");
    } else {
      out.set(name.slice(2), value);
      i++;
    }
  }
  return out;
}

/** A required flag. */
export function need(f: Map<string, string>, name: string): string {
  const value = f.get(name);
  if (value === undefined) throw new Error(`--${name} is required`);
  return value;
}
