/**
 * File paths ⇄ `file:` URLs for POSIX paths. A path is not URL text: `#`, `?` and `%` in a
 * checkout's path must be escaped on the way in and unescaped on the way out, or a URL built by
 * concatenation names another file (https://url.spec.whatwg.org/#concept-url-path).
 */

/** `path` (absolute, or relative to `cwd`) as a `file:` URL; text that is already a URL stays. */
export function toFileUrl(path: string, cwd = Deno.cwd()): string {
  if (/^[a-z][a-z\d+.-]*:/i.test(path)) return path;
  const absolute = path.startsWith("/")
    ? path
    : `${cwd.replace(/\/?$/, "/")}${path}`;
  const url = new URL("file:///");
  // The pathname setter escapes `#`, `?` and spaces itself, but would keep `%` as an escape,
  // read `\` as `/` and drop tabs and newlines: those are escaped first.
  url.pathname = absolute.replace(
    /[%\\\t\n\r]/g,
    (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0").toUpperCase()}`,
  );
  return url.href;
}

/** The POSIX path a `file:` URL names (its pathname unescaped). */
export function fromFileUrl(url: URL | string): string {
  const parsed = new URL(url);
  if (parsed.protocol !== "file:") {
    throw new TypeError(`not a file: URL: ${parsed.href}`);
  }
  return decodeURIComponent(parsed.pathname);
}
