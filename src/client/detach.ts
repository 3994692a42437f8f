/**
 * Every way to detach, reading the input events (`input.ts`) in turn: ssh's escapes and the
 * detach keys (`escape-keys.ts`), then Ctrl+C twice (`ctrl-c-twice.ts`). What none of them keeps
 * is the program's, as the bytes that came.
 */
import { DetachDetector } from "./ctrl-c-twice.ts";
import { describeDetachKeys, EscapeKeys } from "./escape-keys.ts";
import { unsent, type InputEvent } from "./input.ts";

/** Every way to detach, for the "Detach with …" line: `Enter ~ . or Ctrl+C twice` (and the detach keys). */
export function detachHint(detachKeys: Uint8Array | null): string {
  return `${detachKeys ? `${describeDetachKeys(detachKeys)}, ` : ""}Enter ~ . or Ctrl+C twice`;
}

/** What `~?` shows. */
export function escapeHelp(detachKeys: Uint8Array | null): string {
  return `escapes (after Enter): ~. detach · ~~ a literal ~ · ~? this list${detachKeys ? ` · ${describeDetachKeys(detachKeys)} detach` : ""} · Ctrl+C twice detach`;
}

export class Detacher {
  private readonly escapes: EscapeKeys;
  private readonly ctrlC: DetachDetector;

  constructor(opts: { detachKeys?: Uint8Array | null; windowMs?: number; now?: () => number } = {}) {
    this.escapes = new EscapeKeys(opts.detachKeys ?? null);
    this.ctrlC = new DetachDetector(opts.windowMs, opts.now);
  }

  /**
   * Events in order: the bytes that go to the program, whether the user detached (nothing after
   * that is read), and whether `~?` asked for the list of escapes.
   */
  take(events: InputEvent[]): { forward: Uint8Array; detach: boolean; help: boolean } {
    const out: Uint8Array[] = [];
    let help = false;
    let detach = false;
    for (const ev of events) {
      const escaped = this.escapes.take(ev);
      help ||= escaped.help;
      for (const e of escaped.pass) {
        const taken = this.ctrlC.take(e);
        if (taken.pass) out.push(unsent(taken.pass));
        detach = taken.detach;
        if (detach) break;
      }
      detach ||= escaped.detach;
      if (detach) break;
    }
    return { forward: out.length === 1 ? (out[0] as Uint8Array) : Buffer.concat(out), detach, help };
  }
}
