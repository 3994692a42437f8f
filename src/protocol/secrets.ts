/**
 * Secrets a user sends with `catty new`: names the program's environment may take, and the limits
 * of one request. The CLI checks names when a secret is stored; the server checks them again when
 * a request carries them.
 */
import { z } from "zod";

/** Names the session's environment is built from, or that would hand the session Catty's or a cloud's keys. */
const RESERVED = new Set(["PATH", "HOME", "USER", "SHELL", "PWD", "TERM", "LOGNAME", "LANG"]);
const RESERVED_PREFIXES: Array<[string, string]> = [
  ["CATTY_", "Catty's own settings"],
  ["ANTHROPIC_", "the server provides Claude API access; to use your own key, run `catty new --own-api-key`"],
  ["AWS_", "cloud credentials"],
  ["FLY_", "cloud credentials"],
  ["KUBE", "cluster credentials"],
];

export const MAX_SECRET_BYTES = 64 * 1024;
export const MAX_SECRETS = 100;

/** Why `name` cannot be a secret's name, or null when it can. */
export function checkSecretName(name: string): string | null {
  if (!/^[A-Z_][A-Z0-9_]*$/.test(name)) {
    return `"${name}" is not a valid name: use capital letters, digits and underscores, not starting with a digit (e.g. NPM_TOKEN).`;
  }
  if (name.length > 128) return `"${name.slice(0, 20)}…" is too long (at most 128 characters).`;
  if (RESERVED.has(name)) return `"${name}" is set by the session itself and cannot be a secret.`;
  for (const [prefix, why] of RESERVED_PREFIXES) {
    if (name.startsWith(prefix)) return `"${name}" cannot be a secret (${prefix}*: ${why}).`;
  }
  return null;
}

/** The secrets of one create request: the program's extra environment. */
export const Secrets = z
  .record(z.string(), z.string().max(MAX_SECRET_BYTES).refine((v) => !v.includes("\0"), "must not contain NUL"))
  .superRefine((r, ctx) => {
    const names = Object.keys(r);
    if (names.length > MAX_SECRETS) ctx.addIssue({ code: "custom", message: `at most ${MAX_SECRETS} secrets` });
    for (const name of names) {
      const problem = checkSecretName(name);
      if (problem) ctx.addIssue({ code: "custom", message: problem, path: [name] });
    }
  });
export type Secrets = z.infer<typeof Secrets>;
