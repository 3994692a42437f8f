/**
 * Files dropped on the terminal while attached. A terminal inserts a dropped file as its path,
 * inside a bracketed paste when the program asked for those (Claude Code does). When a paste is
 * nothing but paths (absolute or `~/…`, spaces escaped with `\`, several separated by spaces) to
 * files a session takes (images, PDFs, text; ≤ 10 MB each), catty asks once, showing the full
 * paths, and only on Enter uploads the files to the session's `.catty-uploads/` and pastes the
 * program the remote paths instead. Anything else is pasted unchanged.
 *
 * A paste is not proof that the user dropped a file: a program can put any text in the clipboard
 * (OSC 52). So nothing private is ever offered: no symbolic link, no file with other (hard-linked)
 * names, nothing under `$CATTY_HOME`, `~/.ssh`, `~/.claude`, `~/.aws` or `~/.config`, nothing
 * hidden (a name starting with `.` anywhere in the path) — checked on the path as pasted and as
 * resolved — and the file read is the one checked (opened without following a link, same device
 * and inode).
 *
 * The pastes themselves are found by the input reader (`input.ts`).
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readFileSync, realpathSync } from "node:fs";
import { homedir } from "node:os";
import { basename, isAbsolute, join, normalize, sep } from "node:path";
import { FILE_MAX_BYTES, fileProblem } from "../protocol/files.ts";

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

/** A file to offer the session: its resolved path, and the identity it had when checked. */
export interface DroppedFile {
  path: string;
  name: string;
  size: number;
  dev: number;
  ino: number;
}

/** Where a pasted path may not come from: the user's home and catty's own directory. */
export interface PrivatePlaces {
  home: string;
  /** `$CATTY_HOME` (credentials, secrets, logs). */
  cattyHome: string;
}

/** Directories under home whose files never leave the machine by a paste. */
const PRIVATE_DIRS = [".ssh", ".claude", ".aws", ".config"];

/** `dir` as given and as resolved (when it exists): a path inside either is inside it. */
function bothForms(dir: string): string[] {
  try {
    const real = realpathSync.native(dir);
    return real === dir ? [dir] : [dir, real];
  } catch {
    return [dir];
  }
}

const inside = (path: string, dir: string): boolean => path === dir || path.startsWith(dir.endsWith(sep) ? dir : `${dir}${sep}`);

/** Why `path` (absolute) is private, or null. */
export function privatePlace(path: string, places: PrivatePlaces): string | null {
  if (bothForms(places.cattyHome).some((d) => inside(path, d))) return `it is in catty's own directory (${places.cattyHome})`;
  for (const name of PRIVATE_DIRS) {
    const dir = join(places.home, name);
    if (bothForms(dir).some((d) => inside(path, d))) return `it is in ${dir}`;
  }
  if (path.split(sep).some((part) => part.startsWith("."))) return "it is hidden (a name in its path starts with a dot)";
  return null;
}

/** C0 and C1 control characters and DEL: a name holding one is not shown, nor offered. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * What a paste of `paths` may become: files to offer (each a regular file a session takes, not a
 * link, nowhere private), a refusal saying why (the paste then goes on as text), or null when the
 * paste is not files at all (a path that does not exist, a directory, a type a session does not
 * take, over 10 MB).
 */
export function droppableFiles(paths: string[], places: PrivatePlaces): { files: DroppedFile[] } | { refused: string } | null {
  const files: DroppedFile[] = [];
  let refused: string | null = null;
  let notFiles = false;
  for (const path of paths) {
    let st;
    try {
      st = lstatSync(path);
    } catch {
      notFiles = true;
      continue;
    }
    if (st.isSymbolicLink()) {
      refused ??= `${path} is a symbolic link`;
      continue;
    }
    if (!st.isFile() || fileProblem(path, st.size) !== null) {
      notFiles = true;
      continue;
    }
    if (st.nlink > 1) {
      // Another name of the same file may be in a private place: which one the paste names proves nothing.
      refused ??= `${path} has other names (hard links)`;
      continue;
    }
    let real: string;
    try {
      // The native call: on a case-insensitive disk it gives the names' real letter case too.
      real = realpathSync.native(path);
    } catch {
      notFiles = true;
      continue;
    }
    if (CONTROL.test(real)) {
      refused ??= "a pasted path holds control characters";
      continue;
    }
    const why = privatePlace(normalize(path), places) ?? privatePlace(real, places);
    if (why) {
      refused ??= `${real}: ${why}`;
      continue;
    }
    files.push({ path: real, name: basename(real), size: st.size, dev: st.dev, ino: st.ino });
  }
  if (refused) return { refused };
  if (notFiles || files.length === 0) return null;
  return { files };
}

/**
 * The bytes of a file offered, read only if it is still the file that was checked: opened without
 * following a link, a regular file with the same device and inode, within the size limit.
 */
export function readDroppedFile(file: DroppedFile): Uint8Array {
  const fd = openSync(file.path, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.dev !== file.dev || st.ino !== file.ino) throw new Error(`${file.path} changed since it was checked`);
    if (st.size > FILE_MAX_BYTES) throw new Error(`${file.path} grew over the size limit`);
    return new Uint8Array(readFileSync(fd));
  } finally {
    closeSync(fd);
  }
}

/**
 * The answer to "upload these files?" in a read of input: Enter uploads; Escape (or Ctrl+C) pastes
 * the text; anything else is not an answer. Keys as terminals send them plainly and with the kitty
 * keyboard protocol (`CSI 13u`, `CSI 27u`, `CSI 99;5u`) or xterm's modifyOtherKeys.
 */
export function uploadAnswer(input: Uint8Array): "upload" | "paste" | null {
  const s = Buffer.from(input).toString("latin1");
  if (s === "\r" || s === "\n" || s === "\r\n" || /^\x1b\[13(;1)?(:1)?u$/.test(s)) return "upload";
  if (s === "\x1b" || s === "\x03" || /^\x1b\[27(;1)?(:1)?u$/.test(s) || /^\x1b\[99;5(:1)?u$/.test(s) || s === "\x1b[27;5;99~") return "paste";
  return null;
}
