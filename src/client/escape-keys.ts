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
 * Inside a bracketed paste and inside escape sequences nothing is looked at, so pasted text and
 * arrow keys pass untouched. Runs before the double Ctrl+C detector.
 */
import { CattyError } from "../protocol/errors.ts";

const ESC = 0x1b;
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
  /** 0: ground; 1: after ESC; 2: in a CSI (its parameters in `csi`). */
  private esc = 0;
  private csi = "";
  private inPaste = false;

  constructor(private readonly detachKeys: Uint8Array | null = null) {}

  feed(chunk: Uint8Array): EscapeResult {
    const out: number[] = [];
    let help = false;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number;
      if (this.esc !== 0 || this.inPaste || b === ESC) {
        this.sequenceByte(b);
        out.push(b);
        continue;
      }
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
    return { forward: out.length === chunk.length ? chunk : Uint8Array.from(out), detach: false, help };
  }

  /** Tracks escape sequences, for bracketed pastes (`CSI 200~` … `CSI 201~`) and to keep keys out. */
  private sequenceByte(b: number): void {
    this.lineStart = false;
    if (this.esc === 0) {
      // An ESC (in ground or inside a paste) begins a sequence; other pasted bytes are just text.
      if (b === ESC) this.esc = 1;
      return;
    }
    if (this.esc === 1) {
      if (b === 0x5b) {
        this.esc = 2;
        this.csi = "";
      } else this.esc = b === ESC ? 1 : 0;
      return;
    }
    if (b >= 0x40 && b <= 0x7e) {
      if (b === TILDE && this.csi === "200") this.inPaste = true;
      if (b === TILDE && this.csi === "201") this.inPaste = false;
      this.esc = 0;
    } else if (b === ESC) this.esc = 1;
    else if (this.csi.length < 16) this.csi += String.fromCharCode(b);
  }
}
