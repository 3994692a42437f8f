/**
 * The browser's attach link, the CLI's protocol on the shared typed socket (src/lib/socket.ts):
 * a fresh one-use ticket for every dial, `hello` with the output offset it holds, messages parsed
 * with the protocol's schema, a heartbeat that gives up on a silent server, output taken only past
 * that offset (src/lib/output-offset.ts), and the agent's screen when it was away too long — so a
 * reload or a dropped network shows the right screen and loses nothing. It reconnects by itself
 * with backoff until the session ends or another client takes over.
 */
import { CLOSE } from "../../../src/protocol/close.ts";
import { decodeClientOutput } from "../../../src/protocol/frames.ts";
import { PROTOCOL_VERSION, ServerToClient, type ClientToServer } from "../../../src/protocol/messages.ts";
import type { SessionStatus } from "../../../src/protocol/session.ts";
import { newOutput } from "../../../src/lib/output-offset.ts";
import { Socket, type DropInfo } from "../../../src/lib/socket.ts";
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
  /** A round trip measured by the heartbeat (ping to pong), in ms. */
  rtt?(ms: number): void;
}

type AttachSocket = Socket<ServerToClient, ClientToServer>;

/** Failed dials wait 0.5 s, then twice as long each time, up to 10 s. */
const retryMs = (previousMs: number): number => Math.min(10_000, Math.max(500, previousMs * 2));

export class BrowserLink {
  private socket: AttachSocket | null = null;
  /** End offset of the output held (null until the first output or screen). */
  private offset: number | null = null;
  /** Same on every reconnect, so the server can tell a comeback from a new client. */
  private readonly instance = crypto.randomUUID();
  private everAttached = false;
  /** When each heartbeat ping went, by id, until its pong. */
  private readonly pings = new Map<number, number>();
  private size = { cols: 80, rows: 24 };

  constructor(
    private readonly label: string,
    private readonly view: boolean,
    private readonly ev: LinkEvents,
  ) {}

  start(cols: number, rows: number): void {
    this.size = { cols, rows };
    this.dial();
  }

  /** Retry now (the Retry button). */
  reconnect(): void {
    this.dial();
  }

  close(): void {
    this.socket?.close(1000, "page done");
    this.socket = null;
  }

  input(data: string): void {
    this.socket?.sendBinary(new TextEncoder().encode(data));
  }

  resize(cols: number, rows: number): void {
    this.size = { cols, rows };
    if (!this.view && this.socket?.ready) this.socket.send({ type: "resize", cols, rows });
  }

  private dial(): void {
    this.socket?.close(1000, "retry");
    const socket: AttachSocket = new Socket<ServerToClient, ClientToServer>(
      {
        url: () => this.attachUrl(),
        schema: ServerToClient,
        log: console,
        ping: (id) => {
          if (this.pings.size > 8) this.pings.clear();
          this.pings.set(id, performance.now());
          return { type: "ping", id };
        },
        // A link that was up is dialled again at once.
        retry: ({ previousMs, wasOpen }) => (wasOpen ? 0 : retryMs(previousMs)),
        stopOn: [CLOSE.ended, CLOSE.takeover, CLOSE.protocol, CLOSE.malformed],
        // Input waits for `attached`: the server takes it only from an accepted client.
        awaitReady: true,
      },
      {
        open: () => this.hello(socket),
        message: (msg) => this.message(socket, msg),
        binary: (frame) => this.binary(socket, frame),
        down: (info) => this.down(socket, info),
      },
    );
    this.socket = socket;
    socket.start();
  }

  private async attachUrl(): Promise<string> {
    this.ev.state({ kind: "connecting", reason: this.everAttached ? "reconnecting" : null });
    const { ticket } = await api.ticket(this.label, this.view);
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/v1/sessions/${encodeURIComponent(this.label)}/attach?ticket=${encodeURIComponent(ticket)}`;
  }

  private hello(socket: AttachSocket): void {
    socket.send({
      type: "hello",
      protocol: PROTOCOL_VERSION,
      mode: this.view ? "view" : "interactive",
      offset: this.offset,
      cols: this.size.cols,
      rows: this.size.rows,
      syncBack: null,
      instance: this.instance,
      reconnect: this.everAttached,
    });
  }

  private binary(socket: AttachSocket, frame: Uint8Array): boolean {
    const out = decodeClientOutput(frame);
    if (!out) return false;
    const fresh = newOutput(this.offset, out.offset, out.data);
    if (!fresh) return true;
    if (fresh.gap) socket.send({ type: "repaint" });
    this.offset = fresh.end;
    this.ev.output(fresh.data);
    return true;
  }

  private message(socket: AttachSocket, msg: ServerToClient): void {
    switch (msg.type) {
      case "attached":
        this.everAttached = true;
        socket.markReady();
        socket.ping(); // the round trip, measured at once (the heartbeat goes on measuring it)
        this.ev.state({ kind: "connected" });
        return;
      case "status":
        if (msg.message) this.ev.state({ kind: "connecting", reason: msg.message });
        else if (socket.ready) this.ev.state({ kind: "connected" });
        return;
      case "screen":
        this.offset = msg.offset;
        this.ev.screen(msg.data);
        return;
      case "exit":
        return this.finish(socket, `Process exited with code ${msg.code}`);
      case "ended":
        if (msg.screen) this.ev.screen(msg.screen);
        return this.finish(socket, endedReason(msg.status, msg.exitCode, msg.reason));
      case "takeover":
        return this.finish(socket, "Connection replaced by another client");
      case "ping":
        socket.send({ type: "pong", id: msg.id });
        return;
      case "attention":
        this.ev.attention?.(msg.state);
        return;
      case "error":
        return this.finish(socket, msg.message);
      case "pong": {
        const sent = this.pings.get(msg.id);
        if (sent === undefined) return;
        this.pings.delete(msg.id);
        this.ev.rtt?.(performance.now() - sent);
        return;
      }
      case "view_only":
      case "sync":
        return;
      default: {
        const never: never = msg;
        return never;
      }
    }
  }

  private down(socket: AttachSocket, info: DropInfo): void {
    if (socket !== this.socket) return;
    switch (info.code) {
      case CLOSE.takeover:
        return this.finish(socket, "Connection replaced by another client");
      case CLOSE.protocol:
        return this.finish(socket, info.reason || "This page speaks another protocol than the server: reload it.");
      case CLOSE.ended:
        // The server says why in a message before it closes; this is in case that never came.
        return this.finish(socket, "The session has ended.");
      case CLOSE.malformed:
        return this.finish(socket, "The server kept sending messages this page cannot read: reload it.");
    }
    this.ev.state({ kind: "disconnected", reason: info.reason || "network", final: info.retryInMs === null });
  }

  private finish(socket: AttachSocket, reason: string): void {
    if (socket !== this.socket) return;
    socket.close(1000, "done");
    this.ev.state({ kind: "disconnected", reason, final: true });
  }
}

/** Why a session that had already ended is not attachable, in the status bar's words. */
function endedReason(status: SessionStatus, exitCode: number | null, reason: string | null): string {
  if (exitCode !== null) return `Process exited with code ${exitCode}`;
  if (status === "stopped") return "Session was stopped";
  return `Session ${status === "timed_out" ? "timed out" : status}${reason ? `: ${reason}` : ""}`;
}
