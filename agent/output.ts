/**
 * The program's output stream: every byte numbered by its stream offset, kept in the ring (exact
 * replay) and fed to the screen mirror (a correct screen for anyone too far behind), and sent live
 * to every client. `catchUp` gives one attaching client what it misses.
 */
import type { Log } from "../src/lib/log.ts";
import { encodeAgentOutput, type AgentToServer } from "../src/protocol/index.ts";
import { OutputRing } from "./ring.ts";
import { ScreenMirror } from "./screen.ts";

/** Replays go out in pieces so one client's catch-up never becomes one giant frame. */
const REPLAY_CHUNK = 256 * 1024;
// A screen whose offset a flood pushed out of the ring is taken again, this many times at most.
const SCREEN_TRIES = 20;

export interface OutputOptions {
  /** Bytes kept for exact replay (`CATTY_RING_BYTES`). */
  ringBytes: number;
  cols: number;
  rows: number;
  /** Puts one binary frame on the link; false when the link is down. */
  send(data: Uint8Array): boolean;
  /** Puts one message on the link; false when the link is down. */
  sendMessage(msg: AgentToServer): boolean;
  log: Log;
  /** Lines of scrollback the mirror keeps (default 1000). */
  scrollback?: number;
}

export class Output {
  readonly ring: OutputRing;
  readonly mirror: ScreenMirror;

  constructor(private readonly opts: OutputOptions) {
    this.ring = new OutputRing(opts.ringBytes);
    this.mirror = new ScreenMirror(opts.cols, opts.rows, opts.scrollback);
  }

  /** Offset one past the last byte of output. */
  get end(): number {
    return this.ring.end;
  }

  get cols(): number {
    return this.mirror.cols;
  }

  get rows(): number {
    return this.mirror.rows;
  }

  /** New output: numbered, kept, and sent live to every client (client id 0). */
  write(data: Uint8Array): void {
    const offset = this.ring.append(data);
    this.mirror.write(data, this.ring.end);
    this.opts.send(encodeAgentOutput(0, offset, data));
  }

  /** Resizes the mirror; false when the size is unchanged. */
  resize(cols: number, rows: number): boolean {
    if (cols === this.mirror.cols && rows === this.mirror.rows) return false;
    this.mirror.resize(cols, rows);
    return true;
  }

  /** The screen as escape sequences, with up to `scrollback` lines above it. */
  async screen(scrollback: number): Promise<string> {
    return (await this.mirror.snapshot({ scrollback })).data;
  }

  /**
   * Catches a client up: the exact missing bytes when the ring still holds `offset`, else the
   * screen (valid at some offset) and the bytes after it; then `synced` with where live output
   * continues. `repaint`: a client that has everything wants the screen without scrollback.
   * False when the client could not be caught up (output outran the mirror every time).
   */
  async catchUp(clientId: number, offset: number | null, repaint = false): Promise<boolean> {
    const missed = offset === null ? null : this.ring.since(offset);
    if (missed && offset !== null) {
      this.sendBytes(clientId, offset, missed);
      this.json({ type: "synced", clientId, offset: this.ring.end });
      return true;
    }
    for (let attempt = 0; attempt < SCREEN_TRIES; attempt++) {
      const snap = await this.mirror.snapshot(repaint ? { scrollback: 0 } : {});
      const tail = this.ring.since(snap.offset);
      if (!tail) continue; // the ring moved past the screen while it was serialized: take it again
      this.json({ type: "screen", clientId, offset: snap.offset, data: snap.data, cols: snap.cols, rows: snap.rows });
      this.sendBytes(clientId, snap.offset, tail);
      this.json({ type: "synced", clientId, offset: this.ring.end });
      return true;
    }
    this.opts.log.warn("could not catch a client up: output outran the screen mirror", { clientId });
    return false;
  }

  dispose(): void {
    this.mirror.dispose();
  }

  private sendBytes(clientId: number, from: number, bytes: Uint8Array): void {
    for (let at = 0; at < bytes.length; at += REPLAY_CHUNK) {
      this.opts.send(encodeAgentOutput(clientId, from + at, bytes.subarray(at, at + REPLAY_CHUNK)));
    }
  }

  private json(msg: AgentToServer): void {
    this.opts.sendMessage(msg);
  }
}
