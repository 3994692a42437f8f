/**
 * Picks the terminal's answer to a cursor position query (`ESC[6n` → `ESC[row;colR`) out of the
 * input events (`input.ts`), holding the input meanwhile (so typeahead is neither lost nor
 * mistaken for it), however the answer is cut into reads. Once answered, or given up, cursor
 * reports are input like any other (Shift+F3 is one in some terminals).
 */
import { InputReader, readAll, unsentBytes, type InputEvent } from "./input.ts";

/** Input held this long without an answer means the terminal does not answer. */
const MAX_HELD_BYTES = 256;

export class CursorReportReader {
  private held: InputEvent[] = [];
  private heldBytes = 0;
  private done = false;
  /** For `feed`. */
  private readonly reader = new InputReader();
  /** The reported position, 0-based; null until it came (or if it never does). */
  position: { row: number; col: number } | null = null;

  /** Whether it is still waiting for the answer. */
  get waiting(): boolean {
    return !this.done;
  }

  /** Events of a read: null while it holds on, else the events to pass on (the answer removed). */
  take(events: InputEvent[]): InputEvent[] | null {
    if (this.done) return events;
    for (const [i, ev] of events.entries()) {
      if (ev.kind === "cursor") {
        // The heads the answer sent ahead are held here: they go with it.
        let ahead = ev.sent;
        while (ahead > 0 && this.held.at(-1)?.kind === "head") ahead -= (this.held.pop() as InputEvent).raw.length;
        const rest = [...this.held, ...events.slice(i + 1)];
        this.done = true;
        this.held = [];
        this.position = { row: ev.row, col: ev.col };
        return rest;
      }
      this.held.push(ev);
      this.heldBytes += ev.raw.length;
    }
    // Not an answer after this much input: the terminal does not answer; pass everything on.
    return this.heldBytes > MAX_HELD_BYTES ? this.release() : null;
  }

  /** Stops waiting; returns the events held so far. */
  release(): InputEvent[] {
    this.done = true;
    const held = this.held;
    this.held = [];
    return held;
  }

  /** Bytes while waiting: null while it holds on, else the bytes to pass on (answer removed). */
  feed(chunk: Uint8Array): Uint8Array | null {
    const out = this.take(readAll(this.reader, chunk));
    return out === null ? null : unsentBytes(out);
  }

  /** Stops waiting; returns the bytes held so far. */
  giveUp(): Uint8Array {
    return unsentBytes(this.release());
  }
}
