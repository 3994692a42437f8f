/**
 * Text from elsewhere (the server, a session, a registry), made safe to print on the user's
 * terminal. A server — or a session's program, through a label, a reason or a file name — could
 * otherwise write escape sequences into it: set the clipboard (OSC 52), retitle the window, move
 * the cursor to forge a line, or hide text behind bidirectional overrides. Every string the server
 * sends reaches the CLI through `api.ts` (HTTP answers and errors) or `session-link.ts` (attach
 * messages) and passes through `printable` there, once; `Display` passes its notices through it
 * too, and the paths a session names (sync-back's summary, `catty sync`'s plan) are printed through it.
 */

/** C0 controls (tab, newline and carriage return among them), DEL, C1 controls, and bidi overrides and isolates. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `text` with control characters removed (tabs and line breaks become spaces). */
export function printable(text: string): string {
  return text.replace(CONTROL, (c) => (c === "\t" || c === "\n" || c === "\r" ? " " : ""));
}

/** Every string in `value` (a parsed JSON answer: objects, arrays, strings, numbers…) made printable. */
export function printableDeep<T>(value: T): T {
  if (typeof value === "string") return printable(value) as T;
  if (Array.isArray(value)) return value.map((v) => printableDeep(v)) as T;
  if (value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [printable(k), printableDeep(v)])) as T;
  }
  return value;
}
