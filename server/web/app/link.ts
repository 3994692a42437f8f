/**
 * The browser's attach link, speaking the CLI's protocol: a WebSocket opened with a one-use ticket,
 * `hello` with the output offset it holds, binary output frames appended only past that offset, the
 * agent's screen when it was away too long — so a reload or a dropped network shows the right
 * screen and loses nothing. It reconnects by itself with backoff (a fresh ticket each time) until
 * the session ends or another client takes over.
 */
import { decodeClientOutput } from "../../../src/protocol/frames.ts";
import { PROTOCOL_VERSION } from "../../../src/protocol/messages.ts";
import type { ServerToClient } from "../../../src/protocol/messages.ts";
import { api } from "./api.ts";

export type LinkState =
  | { kind: "connecting"; reason: string | null }
  | { kind: "connected" }
  | { kind: "disconnected"; reason: string; final: boolean };

export interface LinkEvents {
  output(data: Uint8Array): void;
  /** The whole screen as escape sequences (after a reset). */
  screen(data: string): void;
  state(s: LinkState): void;
  attention?(state: string): void;
}

export class BrowserLink {
  private ws: WebSocket | null = null;
  private offset: number | null = null;
  private readonly instance = crypto.randomUUID();
  private attached = false;
  private everAttached = false;
  private closed = false;
  private retry = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private size = { cols: 80, rows: 24 };

  constructor(
    private readonly label: string,
    private readonly view: boolean,
    private readonly ev: LinkEvents,
  ) {}

  start(cols: number, rows: number): void {
    this.size = { cols, rows };
    void this.connect();
  }

  /** Retry now (the Retry button). */
  reconnect(): void {
    this.closed = false;
    if (this.timer) clearTimeout(this.timer);
    this.retry = 0;
    void this.connect();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.ws?.close();
  }

  input(data: string): void {
    if (this.ws?.readyState === WebSocket.OPEN && this.attached) this.ws.send(new TextEncoder().encode(data));
  }

  resize(cols: number, rows: number): void {
    this.size = { cols, rows };
    if (this.ws?.readyState === WebSocket.OPEN && this.attached && !this.view) this.ws.send(JSON.stringify({ type: "resize", cols, rows }));
  }

  private async connect(): Promise<void> {
    this.ev.state({ kind: "connecting", reason: this.everAttached ? "reconnecting" : null });
    let ticket: string;
    try {
      ticket = (await api.ticket(this.label, this.view)).ticket;
    } catch (err) {
      return this.dropped((err as Error).message);
    }
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/sessions/${encodeURIComponent(this.label)}/attach?ticket=${encodeURIComponent(ticket)}`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.attached = false;
    ws.onopen = () => {
      ws.send(
        JSON.stringify({
          type: "hello",
          protocol: PROTOCOL_VERSION,
          mode: this.view ? "view" : "interactive",
          offset: this.offset,
          cols: this.size.cols,
          rows: this.size.rows,
          syncBack: null,
          instance: this.instance,
          reconnect: this.everAttached,
        }),
      );
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") return this.message(JSON.parse(e.data) as ServerToClient);
      const out = decodeClientOutput(new Uint8Array(e.data as ArrayBuffer));
      if (!out) return;
      const end = out.offset + out.data.length;
      let data = out.data;
      if (this.offset !== null) {
        if (end <= this.offset) return;
        if (out.offset < this.offset) data = data.subarray(this.offset - out.offset);
        else if (out.offset > this.offset) ws.send(JSON.stringify({ type: "repaint" }));
      }
      this.offset = end;
      this.ev.output(data);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (!this.closed) this.dropped("network");
    };
  }

  private message(msg: ServerToClient): void {
    switch (msg.type) {
      case "attached":
        this.attached = true;
        this.everAttached = true;
        this.retry = 0;
        this.ev.state({ kind: "connected" });
        return;
      case "status":
        if (msg.message) this.ev.state({ kind: "connecting", reason: msg.message });
        else if (this.attached) this.ev.state({ kind: "connected" });
        return;
      case "screen":
        this.offset = msg.offset;
        this.ev.screen(msg.data);
        return;
      case "exit":
        return this.finish(`Process exited with code ${msg.code}`);
      case "ended":
        if (msg.screen) this.ev.screen(msg.screen);
        return this.finish(endedReason(msg.status, msg.exitCode, msg.reason));
      case "takeover":
        return this.finish("Connection replaced by another client");
      case "ping":
        this.ws?.send(JSON.stringify({ type: "pong", id: msg.id }));
        return;
      case "attention":
        this.ev.attention?.(msg.state);
        return;
      case "error":
        return this.finish(msg.message);
      default:
        return;
    }
  }

  private finish(reason: string): void {
    this.closed = true;
    this.ev.state({ kind: "disconnected", reason, final: true });
    this.ws?.close();
  }

  private dropped(reason: string): void {
    if (this.closed) return;
    this.ev.state({ kind: "disconnected", reason, final: false });
    const wait = Math.min(10_000, 500 * 2 ** this.retry++);
    this.timer = setTimeout(() => void this.connect(), wait);
  }
}

/** Why a session that had already ended is not attachable, in the status bar's words. */
export function endedReason(status: string, exitCode: number | null, reason: string | null): string {
  if (exitCode !== null) return `Process exited with code ${exitCode}`;
  if (status === "stopped") return "Session was stopped";
  return `Session ${status === "timed_out" ? "timed out" : status}${reason ? `: ${reason}` : ""}`;
}
