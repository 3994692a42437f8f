/**
 * Ways to detach that never reach the program (the double Ctrl+C sends its first Ctrl+C on):
 *
 * - ssh's escape: at the start of a line (after Enter, or before anything was typed), `~` is held;
 *   `~.` detaches, `~~` sends one `~`, `~?` asks for the list of escapes; `~` and any other key
 *   go on as typed.
 * - detach keys, docker's way (`--detach-keys ctrl-p,ctrl-q`, `CATTY_DETACH_KEYS`): the keys are
 *   held while they match and detach once all came; a key that breaks the match sends the held
 *   ones on.
 *
 * It reads events (`input.ts`): inside a bracketed paste and an escape sequence nothing is looked
 * at, so pasted text and arrow keys pass untouched; such an event breaks a held `~` or a partial
 * match, which go on before it. Runs before the double Ctrl+C detector.
 */
import { CattyError } from "../protocol/errors.ts";
import { InputReader, readAll, unsent, type InputEvent } from "./input.ts";

const TILDE = 0x7e;
const CR = 0x0d;
const LF = 0x0a;

export interface EscapeResult {
  /** What goes to the program. */
  forward: Uint8Array;
  detach: boolean;
  /** `~?` was typed: show the escapes. */
  help: boolean;
}

/**
 * Parses docker-style detach keys: comma-separated `ctrl-<a-z @ [ \ ] ^ _>` or single
 * printable characters, e.g. `ctrl-p,ctrl-q` or `ctrl-a,d`.
 */
export function parseDetachKeys(spec: string): Uint8Array {
  const bytes: number[] = [];
  for (const part of spec.split(",")) {
    const key = part.trim().toLowerCase();
    const ctrl = /^ctrl-(.)$/.exec(key);
    if (ctrl) {
      const c = (ctrl[1] as string).charCodeAt(0);
      if (c >= 0x61 && c <= 0x7a) bytes.push(c - 0x60);
      else if ("@[\\]^_".includes(ctrl[1] as string)) bytes.push(c === 0x40 ? 0 : c - 0x40);
      else throw badKeys(spec, part);
    } else if (part.length === 1 && part >= " " && part <= "~") {
      bytes.push(part.charCodeAt(0));
    } else throw badKeys(spec, part);
  }
  if (bytes.length === 0) throw badKeys(spec, spec);
  return new Uint8Array(bytes);
}

const badKeys = (spec: string, part: string): CattyError =>
  new CattyError(
    "bad_request",
    `Invalid detach keys ${JSON.stringify(spec)}: ${JSON.stringify(part.trim())} is not a key.`,
    "Use comma-separated keys such as ctrl-p,ctrl-q (ctrl- with a-z, @, [, \\, ], ^ or _) or single characters.",
  );

/** How the detach keys read: `Ctrl+P Ctrl+Q`. */
export function describeDetachKeys(keys: Uint8Array): string {
  return [...keys].map((b) => (b < 0x20 ? `Ctrl+${String.fromCharCode(b + 0x40)}` : String.fromCharCode(b))).join(" ");
}

export class EscapeKeys {
  private lineStart = true;
  private tilde = false;
  private matched = 0;
  /** For `feed`. */
  private readonly reader = new InputReader();

  constructor(private readonly detachKeys: Uint8Array | null = null) {}

  /** One event: what goes on to the program (held keys released), whether it detaches or asks for help. */
  take(ev: InputEvent): { pass: InputEvent[]; detach: boolean; help: boolean } {
    if (ev.kind === "text") {
      const r = this.keys(ev.raw);
      return { pass: r.forward.length > 0 ? [{ kind: "text", raw: r.forward }] : [], detach: r.detach, help: r.help };
    }
    // A sequence or a paste: nothing in it is looked at, and it breaks a held ~ or a partial match.
    const held = this.release();
    this.lineStart = false;
    return { pass: held.length > 0 ? [{ kind: "text", raw: held }, ev] : [ev], detach: false, help: false };
  }

  /** Bytes of one read. */
  feed(chunk: Uint8Array): EscapeResult {
    const parts: Uint8Array[] = [];
    let help = false;
    for (const ev of readAll(this.reader, chunk)) {
      const r = this.take(ev);
      help ||= r.help;
      parts.push(...r.pass.map(unsent));
      if (r.detach) return { forward: Buffer.concat(parts), detach: true, help };
    }
    return { forward: parts.length === 1 && parts[0] === chunk ? chunk : Buffer.concat(parts), detach: false, help };
  }

  /** The held ~ and partly matched detach keys, which go on after all. */
  private release(): Uint8Array {
    const out: number[] = [];
    if (this.tilde) out.push(TILDE);
    if (this.matched > 0 && this.detachKeys) out.push(...this.detachKeys.subarray(0, this.matched));
    this.tilde = false;
    this.matched = 0;
    return Uint8Array.from(out);
  }

  /** Plain keys. */
  private keys(chunk: Uint8Array): EscapeResult {
    const out: number[] = [];
    let help = false;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number;
      if (this.tilde) {
        this.tilde = false;
        if (b === 0x2e) return { forward: Uint8Array.from(out), detach: true, help };
        if (b === 0x3f) {
          help = true;
          continue;
        }
        out.push(TILDE);
        this.lineStart = false;
        if (b === TILDE) continue;
      } else if (this.lineStart && b === TILDE) {
        this.tilde = true;
        continue;
      }
      const keys = this.detachKeys;
      if (keys) {
        if (b === keys[this.matched]) {
          if (++this.matched === keys.length) return { forward: Uint8Array.from(out), detach: true, help };
          continue;
        }
        if (this.matched > 0) {
          out.push(...keys.subarray(0, this.matched));
          this.matched = 0;
          if (b === keys[0]) {
            this.matched = 1;
            if (keys.length === 1) return { forward: Uint8Array.from(out), detach: true, help };
            continue;
          }
        }
      }
      out.push(b);
      this.lineStart = b === CR || b === LF;
    }
    // (The same length is not the same bytes: held keys may have gone out and others been held.)
    const same = out.length === chunk.length && out.every((b, i) => b === chunk[i]);
    return { forward: same ? chunk : Uint8Array.from(out), detach: false, help };
  }
}
