/** Bearer tokens: 256 bits of randomness, stored only as a SHA-256 hash. */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** `shr`: a preview share link; `pvw`: a preview host's sign-in ticket or cookie; `act`: a notification's one-use answer. */
export function newToken(prefix: "cat" | "agt" | "apx" | "tkt" | "dev" | "shr" | "pvw" | "act"): string {
  return `${prefix}_${randomBytes(32).toString("base64url")}`;
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** Constant-time comparison of two hex hashes (or any equal-length strings). */
export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
