/**
 * Files dropped on the terminal while attached. A terminal inserts a dropped file as its path,
 * inside a bracketed paste when the program asked for those (Claude Code does). When a paste is
 * nothing but paths (absolute or `~/…`, spaces escaped with `\`, several separated by spaces) to
 * files a session takes (images, PDFs, text; ≤ 10 MB each), the files are uploaded to the
 * session's `.catty-uploads/` and the program is pasted the remote paths instead. Anything else is
 * pasted unchanged.
 *
 * `PasteCatcher` finds bracketed pastes in the input stream (an end marker split across reads
 * too); what is not a paste passes straight through, at once.
 */
import { statSync } from "node:fs";
import { homedir } from "node:os";
import { basename, isAbsolute, join } from "node:path";
import { fileProblem } from "../protocol/files.ts";

const START = Buffer.from("\x1b[200~");
const END = Buffer.from("\x1b[201~");
/** A paste longer than this is not a list of dropped files: it goes on as it comes. */
const MAX_PATHS_BYTES = 64 * 1024;

export type PasteEvent = { kind: "bytes"; data: Uint8Array } | { kind: "paste"; text: string; raw: Uint8Array };

/** How many bytes at the end of `buf` could begin `marker` (a marker cut by the read). */
function partialSuffix(buf: Buffer, marker: Buffer): number {
  for (let n = Math.min(marker.length - 1, buf.length); n > 0; n--) {
    if (buf.subarray(buf.length - n).equals(marker.subarray(0, n))) return n;
  }
  return 0;
}

export class PasteCatcher {
  /** Bytes held: a marker's beginning at the end of a read, or a paste not ended yet. */
  private held = Buffer.alloc(0);
  private inPaste = false;
  /** The paste grew too long to be paths: the rest of it passes through. */
  private passing = false;

  feed(chunk: Uint8Array): PasteEvent[] {
    const out: PasteEvent[] = [];
    let buf = Buffer.concat([this.held, chunk]);
    this.held = Buffer.alloc(0);
    for (;;) {
      if (!this.inPaste) {
        const at = buf.indexOf(START);
        if (at === -1) {
          // Nothing is held back here, not even an ESC that might begin a marker: a lone Escape key
          // must reach the program now. (A terminal writes a paste's start marker in one go.)
          if (buf.length > 0) out.push({ kind: "bytes", data: buf });
          return out;
        }
        if (at > 0) out.push({ kind: "bytes", data: buf.subarray(0, at) });
        buf = buf.subarray(at);
        this.inPaste = true;
        this.passing = false;
        continue;
      }
      // In a paste: `buf` starts with START unless it is passing through.
      const from = this.passing ? 0 : START.length;
      const end = buf.indexOf(END, from);
      if (end === -1) {
        if (!this.passing && buf.length > MAX_PATHS_BYTES) this.passing = true;
        if (this.passing) {
          const keep = partialSuffix(buf, END);
          if (buf.length - keep > 0) out.push({ kind: "bytes", data: buf.subarray(0, buf.length - keep) });
          this.held = Buffer.from(buf.subarray(buf.length - keep));
        } else this.held = Buffer.from(buf);
        return out;
      }
      const whole = buf.subarray(0, end + END.length);
      if (this.passing) out.push({ kind: "bytes", data: whole });
      else out.push({ kind: "paste", text: whole.subarray(START.length, end).toString("utf8"), raw: Uint8Array.from(whole) });
      this.inPaste = false;
      this.passing = false;
      buf = buf.subarray(end + END.length);
    }
  }
}

/**
 * The paths a paste names, when it is nothing but paths: absolute or `~/…`, separated by spaces,
 * a space inside a path escaped with `\` (also `'…'` quoting, as some terminals drop files).
 * Null for anything else.
 */
export function pastedPaths(text: string, home = homedir()): string[] | null {
  const t = text.trim();
  if (t === "" || t.includes("\n") || t.includes("\r")) return null;
  const paths: string[] = [];
  let cur = "";
  let quoted = false;
  let started = false;
  for (let i = 0; i < t.length; i++) {
    const c = t[i] as string;
    if (quoted) {
      if (c === "'") quoted = false;
      else cur += c;
    } else if (c === "\\" && i + 1 < t.length) {
      cur += t[++i];
      started = true;
    } else if (c === "'") {
      quoted = true;
      started = true;
    } else if (c === " ") {
      if (started) paths.push(cur);
      cur = "";
      started = false;
    } else {
      cur += c;
      started = true;
    }
  }
  if (quoted) return null;
  if (started) paths.push(cur);
  const resolved = paths.map((p) => (p.startsWith("~/") ? join(home, p.slice(2)) : p));
  return resolved.length > 0 && resolved.every((p) => isAbsolute(p)) ? resolved : null;
}

/** Each path as a file a session takes (name and size), or null when any one is not. */
export function droppableFiles(paths: string[]): Array<{ path: string; name: string; size: number }> | null {
  const files: Array<{ path: string; name: string; size: number }> = [];
  for (const path of paths) {
    let st;
    try {
      st = statSync(path);
    } catch {
      return null;
    }
    if (!st.isFile() || fileProblem(path, st.size) !== null) return null;
    files.push({ path, name: basename(path), size: st.size });
  }
  return files;
}
