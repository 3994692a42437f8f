/**
 * Files a user hands to a running session (dropped on the dashboard's terminal, or pasted as
 * paths into `catty connect`): what may go, how big, and the name it gets in the session's
 * `.catty-uploads/`. The client checks first, to say no early; the server checks again, and the
 * agent accepts only names of the form built here.
 */

import { z } from "zod";

/** The answer to `POST /v1/sessions/<label>/files`: where the file is, as the program sees it. */
export const PutFileResult = z.object({ path: z.string(), size: z.number().int() });
export type PutFileResult = z.infer<typeof PutFileResult>;

/** The directory, inside the workspace, that handed files land in. Sync-back leaves it out. */
export const FILES_DIR = ".catty-uploads";

/** The largest file one request may carry. */
export const FILE_MAX_BYTES = 10 * 1024 * 1024;

/** Extensions a session takes: images, PDFs and text (what Claude Code reads from a path). */
export const FILE_TYPES: readonly string[] = ["png", "jpg", "jpeg", "gif", "webp", "bmp", "svg", "pdf", "txt", "md", "json", "xml", "csv"];

const STEM_MAX = 64;

/** A name as the agent accepts it: `<stem>-<yyyymmdd-hhmmss>.<ext>`, nothing that could leave the directory. */
export const STORED_FILE_NAME = new RegExp(`^[A-Za-z0-9][A-Za-z0-9._-]{0,${STEM_MAX - 1}}-\\d{8}-\\d{6}\\.(${FILE_TYPES.join("|")})$`);

/** The extension of a file name, lowercased, without the dot ("" when it has none). */
export function fileExtension(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? "";
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : "";
}

/** Why `name` (of `size` bytes) cannot be handed to a session, or null when it can. */
export function fileProblem(name: string, size: number): string | null {
  const ext = fileExtension(name);
  if (!FILE_TYPES.includes(ext)) {
    return `${JSON.stringify(name.split(/[\\/]/).pop() ?? name)} is not a file type a session takes (${FILE_TYPES.join(", ")}).`;
  }
  if (size > FILE_MAX_BYTES) return `${JSON.stringify(name)} is larger than ${FILE_MAX_BYTES / 1024 / 1024} MB.`;
  return null;
}

/**
 * The name a file gets in `.catty-uploads/`: its own name reduced to letters, digits, `.`, `_`
 * and `-` (accents dropped, anything else a dash, no leading dot), then the time, then its
 * extension: `Screen Shot 2.png` at 14:03:07 on 2026-11-29 → `Screen-Shot-2-20261129-140307.png`.
 */
export function storedFileName(original: string, at: Date): string {
  const base = original.split(/[\\/]/).pop() ?? "";
  const ext = fileExtension(base);
  const stem = (ext ? base.slice(0, base.length - ext.length - 1) : base)
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .replace(/[^A-Za-z0-9._-]+/g, "-")
    .replace(/^[^A-Za-z0-9]+/, "")
    .replace(/[.-]+$/, "")
    .slice(0, STEM_MAX)
    .replace(/[.-]+$/, "");
  const p = (n: number): string => String(n).padStart(2, "0");
  const stamp = `${at.getUTCFullYear()}${p(at.getUTCMonth() + 1)}${p(at.getUTCDate())}-${p(at.getUTCHours())}${p(at.getUTCMinutes())}${p(at.getUTCSeconds())}`;
  return `${stem || "file"}-${stamp}.${ext}`;
}
