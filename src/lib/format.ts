/**
 * Words for people, the same in the CLI and the dashboard: how long ago something was, and a
 * string as one word for a POSIX shell (completion scripts, the sandbox's command line, paths typed
 * into a session's terminal).
 */

/** "42s ago", "5m ago", "3h ago", "2d ago". */
export function ago(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

/** `s` in single quotes: one shell word, whatever it holds. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

/** `s` as one shell word: as it is when it is plain, else quoted. */
export function shellWord(s: string): string {
  return /^[A-Za-z0-9_./-]+$/.test(s) ? s : shellQuote(s);
}
