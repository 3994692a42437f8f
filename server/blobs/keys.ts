/**
 * Blob keys, shared by every `BlobStore`: `/`-separated segments of `[A-Za-z0-9._-]`, such as
 * `snapshots/<sessionId>/<id>.tar.gz`. The disk store turns a key into a path, so the rules are
 * strict (no empty segments, no `.` or `..`, no leading `/`); the S3 store applies the same rules
 * so that code written against one store behaves the same against the other.
 */
import { CattyError } from "../../src/protocol/errors.ts";

const SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_KEY_LENGTH = 1024;

/** Why `key` is not a valid blob key, or null when it is. */
function keyProblem(key: string): string | null {
  if (key.length === 0) return "it is empty";
  if (key.length > MAX_KEY_LENGTH) return `it is longer than ${MAX_KEY_LENGTH} characters`;
  if (key.startsWith("/")) return "it starts with /";
  for (const segment of key.split("/")) {
    if (segment === "") return "it has an empty segment";
    if (segment === "." || segment === "..") return `it has a "${segment}" segment`;
    if (!SEGMENT.test(segment)) return "segments may only hold A-Z, a-z, 0-9, '.', '_' and '-'";
  }
  return null;
}

export function isValidKey(key: string): boolean {
  return keyProblem(key) === null;
}

/** Throws a `bad_request` CattyError unless `key` is a valid blob key. */
export function assertValidKey(key: string): void {
  const problem = keyProblem(key);
  if (problem) throw new CattyError("bad_request", `Invalid blob key ${JSON.stringify(key)}: ${problem}.`);
}

/**
 * Throws unless `prefix` could start a valid key: empty, or a key with an optional trailing `/`
 * whose last segment may be partial (`snapshots/`, `snapshots/ab`).
 */
export function assertValidPrefix(prefix: string): void {
  if (prefix === "") return;
  const problem = keyProblem(prefix.endsWith("/") ? prefix.slice(0, -1) : prefix);
  if (problem) throw new CattyError("bad_request", `Invalid blob key prefix ${JSON.stringify(prefix)}: ${problem}.`);
}
