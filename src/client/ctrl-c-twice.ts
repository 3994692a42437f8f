/**
 * Ctrl+C twice within a second detaches. The first Ctrl+C still goes to the program (so a single
 * Ctrl+C works as always); Ctrl+C inside a bracketed paste, or with another key in between, never
 * counts. Ctrl+C is the byte 0x03, or the key as terminals send it with the kitty keyboard
 * protocol (`CSI 99;5u`) or xterm's modifyOtherKeys (`CSI 27;5;99~`); key releases and lone
 * modifier keys (kitty) and focus reports are not "another key".
 *
 * It reads events (`input.ts`): only the detaching Ctrl+C is kept from the program — unless part
 * of it already went ahead (a read cut it after its ESC), in which case the rest follows so the
 * program never holds half a key.
 */
import { InputReader, readAll, unsent, type InputEvent } from "./input.ts";

const CTRL_C = 0x03;
/** Kitty key codes of the modifier keys themselves (left shift … right meta, caps/num lock…). */
const KITTY_MODIFIER_MIN = 57441;
const KITTY_MODIFIER_MAX = 57452;
const KITTY_CTRL = 4;
const KITTY_CAPS_LOCK = 64;
const KITTY_NUM_LOCK = 128;

/** What a key means for detaching. */
const OTHER = 0;
const CTRLC = 1;
/** Neither a Ctrl+C nor another key (a release, a modifier alone, focus in/out). */
const NEUTRAL = 2;

export class DetachDetector {
  private lastCtrlC = -Infinity;
  /** For `feed`. */
  private reader: InputReader | null = null;

  constructor(
    private readonly windowMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** One event: what of it goes on to the program (null: nothing), and whether it detaches. */
  take(ev: InputEvent): { pass: InputEvent | null; detach: boolean } {
    switch (ev.kind) {
      case "head":
        return { pass: ev, detach: false };
      case "paste":
      case "pasting":
        this.lastCtrlC = -Infinity;
        return { pass: ev, detach: false };
      case "text":
        for (let i = 0; i < ev.raw.length; i++) {
          if (this.key(ev.raw[i] === CTRL_C ? CTRLC : OTHER)) return { pass: i > 0 ? { kind: "text", raw: ev.raw.subarray(0, i) } : null, detach: true };
        }
        return { pass: ev, detach: false };
      default:
        if (this.key(meaning(ev.raw))) return { pass: ev.sent > 0 ? ev : null, detach: true };
        return { pass: ev, detach: false };
    }
  }

  /** Bytes of one read: those to forward, and whether the user asked to detach. */
  feed(chunk: Uint8Array): { forward: Uint8Array; detach: boolean } {
    this.reader ??= new InputReader();
    const parts: Uint8Array[] = [];
    for (const ev of readAll(this.reader, chunk)) {
      const { pass, detach } = this.take(ev);
      if (pass) parts.push(unsent(pass));
      if (detach) {
        this.reader = null;
        return { forward: Buffer.concat(parts), detach: true };
      }
    }
    return { forward: parts.length === 1 && parts[0] === chunk ? chunk : Buffer.concat(parts), detach: false };
  }

  /** Applies one key; true when it detaches. */
  private key(event: number): boolean {
    if (event === NEUTRAL) return false;
    if (event !== CTRLC) {
      this.lastCtrlC = -Infinity;
      return false;
    }
    const t = this.now();
    if (t - this.lastCtrlC <= this.windowMs) {
      this.lastCtrlC = -Infinity;
      return true;
    }
    this.lastCtrlC = t;
    return false;
  }
}

/** What an escape sequence means for detaching. */
function meaning(raw: Uint8Array): number {
  if (raw.length < 3 || raw[1] !== 0x5b) return OTHER; // not a CSI
  const final = raw[raw.length - 1] as number;
  if (final < 0x40 || final > 0x7e) return OTHER; // cut short
  /** Parameters: [param][sub-parameter], first three of each two. */
  const p = [0, 0, 0, 0, 0, 0];
  const has = [false, false, false, false, false, false];
  let param = 0;
  let sub = 0;
  let prefix = 0;
  let intermediate = false;
  for (let i = 2; i < raw.length - 1; i++) {
    const b = raw[i] as number;
    if (b >= 0x30 && b <= 0x39) {
      if (param < 3 && sub < 2) {
        const k = param * 2 + sub;
        p[k] = Math.min((p[k] as number) * 10 + (b - 0x30), 1e7);
        has[k] = true;
      }
    } else if (b === 0x3b) {
      param++;
      sub = 0;
    } else if (b === 0x3a) sub++;
    else if (b >= 0x3c && b <= 0x3f) {
      if (param === 0 && sub === 0 && !has[0] && prefix === 0) prefix = b;
      else intermediate = true;
    } else if (b >= 0x20 && b <= 0x2f) intermediate = true;
  }
  if (prefix !== 0 || intermediate) return OTHER;
  const key = p[0] as number;
  const mods = p[2] as number;
  const event = p[3] as number;
  const third = p[4] as number;
  const params = param + 1;
  if (final === 0x7e) {
    // ~
    if (params === 3 && key === 27 && mods === 5 && third === 99) return CTRLC; // modifyOtherKeys
    return OTHER;
  }
  if (final === 0x75) {
    // u: kitty keyboard protocol, CSI key[:alternates] ; mods[:event] [; text] u
    if (has[3] && event === 3) return NEUTRAL; // a release
    if (key >= KITTY_MODIFIER_MIN && key <= KITTY_MODIFIER_MAX) return NEUTRAL;
    // Ctrl and nothing else, Caps Lock and Num Lock aside (mods is 1 + a bit set).
    const ctrlOnly = ((mods - 1) & ~(KITTY_CAPS_LOCK | KITTY_NUM_LOCK)) === KITTY_CTRL;
    if (key === 99 && ctrlOnly && (!has[3] || event === 1)) return CTRLC;
    return OTHER;
  }
  if ((final === 0x49 || final === 0x4f) && params === 1 && !has[0]) return NEUTRAL; // focus in/out
  return OTHER;
}
