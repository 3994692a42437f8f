/**
 * A stand-in for the agent's link to the server (the `Link` seam): the test opens, drops and ends
 * it, delivers the server's messages, and reads what the agent sent — JSON messages parsed, PTY
 * output frames decoded. Nothing is sent while it is down, as with the real link.
 */
import type { Link, LinkHandlers } from "../../agent/link.ts";
import { decodeAgentOutput, ServerToAgent, type AgentToServer, type OutputFrame } from "../../src/protocol/index.ts";
import { waitFor } from "./wait.ts";

type Sent = { kind: "json"; msg: AgentToServer } | { kind: "binary"; data: Uint8Array };
export type MessageOf<K extends AgentToServer["type"]> = Extract<AgentToServer, { type: K }>;

export class FakeLink implements Link {
  private handlers: LinkHandlers | null = null;
  connected = false;
  buffered = 0;
  closed = false;
  /** Everything the agent sent, in order. */
  readonly sent: Sent[] = [];
  /** Called for every JSON message the agent sends (to answer it, for example). */
  onMessage: (msg: AgentToServer) => void = () => {};

  /** The `dial` dependency: hands the agent this link. */
  readonly dial = (handlers: LinkHandlers): Link => {
    this.handlers = handlers;
    return this;
  };

  private get h(): LinkHandlers {
    if (!this.handlers) throw new Error("the agent has not dialled yet");
    return this.handlers;
  }

  send(data: Uint8Array): boolean {
    if (!this.connected) return false;
    this.sent.push({ kind: "binary", data: data.slice() });
    return true;
  }

  sendMessage(msg: AgentToServer): boolean {
    if (!this.connected) return false;
    // A round trip through JSON, as on the wire: nothing the agent keeps a reference to leaks into the record.
    const copy = JSON.parse(JSON.stringify(msg)) as AgentToServer;
    this.sent.push({ kind: "json", msg: copy });
    this.onMessage(copy);
    return true;
  }

  close(): void {
    this.closed = true;
    this.connected = false;
  }

  /** The link (re)connects. */
  open(): void {
    this.connected = true;
    this.h.onOpen();
  }

  /** The link drops (the real one re-dials). */
  drop(): void {
    this.connected = false;
    this.h.onDown?.();
  }

  /** The server closes the link for good: the session has ended. */
  end(reason: string): void {
    this.connected = false;
    this.h.onDown?.();
    this.h.onEnded(reason);
  }

  /** A message from the server, checked as the real socket checks it: a malformed one is dropped. */
  deliver(msg: ServerToAgent | Record<string, unknown>): void {
    const parsed = ServerToAgent.safeParse(msg);
    if (parsed.success) this.h.onMessage(parsed.data);
  }

  /** Input bytes from a client. */
  input(data: string | Uint8Array): void {
    this.h.onBinary(typeof data === "string" ? new TextEncoder().encode(data) : data);
  }

  /** The JSON messages sent, optionally only those of one type. */
  messages(): AgentToServer[];
  messages<K extends AgentToServer["type"]>(type: K): MessageOf<K>[];
  messages(type?: AgentToServer["type"]): AgentToServer[] {
    return this.sent.flatMap((s) => (s.kind === "json" && (!type || s.msg.type === type) ? [s.msg] : []));
  }

  /** The PTY output frames sent, decoded. */
  frames(): OutputFrame[] {
    return this.sent.flatMap((s) => {
      const frame = s.kind === "binary" ? decodeAgentOutput(s.data) : null;
      return frame ? [frame] : [];
    });
  }

  /** Waits for the `n`th (default: first) message of `type`. */
  async next<K extends AgentToServer["type"]>(type: K, opts: { n?: number; timeoutMs?: number } = {}): Promise<MessageOf<K>> {
    const n = opts.n ?? 1;
    return waitFor(() => this.messages(type)[n - 1], { timeoutMs: opts.timeoutMs ?? 5_000, what: `message #${n} of type ${type}` });
  }

  clear(): void {
    this.sent.length = 0;
  }
}
