/**
 * The agent's link to the server: the typed reconnecting socket (`src/lib/socket.ts`) dialled out
 * to `/v1/agent/connect`, re-dialled whenever it drops for as long as the agent runs — quickly
 * (100 ms) for the first 2 s of an outage, then backing off to 5 s, jittered so that many agents do
 * not re-dial in step. Nothing is queued while it is down: the agent's hello on the next link
 * tells the server where the output stream stands, and the server catches its clients up from
 * there. The program never notices a drop.
 */
import type { Log } from "../src/lib/log.ts";
import { Socket, type RetryState } from "../src/lib/socket.ts";
import { CLOSE } from "../src/protocol/close.ts";
import { ServerToAgent, type AgentToServer } from "../src/protocol/messages.ts";

export interface LinkHandlers {
  /** A link opened: send the hello. */
  onOpen(): void;
  /** A message from the server, parsed once at the socket (malformed ones never arrive). */
  onMessage(msg: ServerToAgent): void;
  /** Input bytes for the program. */
  onBinary(data: Uint8Array): void;
  /** The server said this session is over: stop re-dialling. */
  onEnded(reason: string): void;
  /** The link dropped (it is re-dialled unless the session ended). */
  onDown?(): void;
}

export interface Link {
  readonly connected: boolean;
  /** A binary frame (PTY output, sync-back bytes); false when the link is down. */
  send(data: Uint8Array): boolean;
  /** A message to the server; false when the link is down. */
  sendMessage(msg: AgentToServer): boolean;
  /** Bytes queued in the socket but not yet sent (for flow control). */
  readonly buffered: number;
  close(): void;
}

/** Quick re-dials for a short outage (a server restart), then exponential backoff to the cap. */
export function agentRetryDelay(state: RetryState, capMs = 5_000): number {
  if (state.sinceLostMs < 2_000) return 100;
  return Math.min(Math.max(state.previousMs * 2, 200), capMs);
}

export function dialServer(
  opts: { url: string; token: string; log: Log; maxBackoffMs?: number; heartbeatMs?: number; deadAfterMs?: number },
  h: LinkHandlers,
): Link {
  const wsUrl = `${opts.url.replace(/^http/, "ws").replace(/\/$/, "")}/v1/agent/connect`;
  const socket = new Socket<ServerToAgent, AgentToServer>(
    {
      url: wsUrl,
      headers: { Authorization: `Bearer ${opts.token}` },
      schema: ServerToAgent,
      log: opts.log,
      ping: (id) => ({ type: "ping", id }),
      retry: (state) => agentRetryDelay(state, opts.maxBackoffMs),
      stopOn: [CLOSE.ended],
      heartbeatMs: opts.heartbeatMs,
      deadAfterMs: opts.deadAfterMs,
    },
    {
      open() {
        opts.log.info("connected to server", { url: wsUrl });
        h.onOpen();
      },
      message(msg) {
        h.onMessage(msg);
      },
      binary(data) {
        h.onBinary(data);
      },
      down(info) {
        h.onDown?.();
        if (info.retryInMs === null) {
          h.onEnded(info.reason || "session ended");
          return;
        }
        opts.log.warn("link to server lost; re-dialling", { code: info.code, inMs: info.retryInMs });
      },
    },
  ).start();

  return {
    get connected() {
      return socket.connected;
    },
    get buffered() {
      return socket.buffered;
    },
    send(data) {
      return socket.sendBinary(data);
    },
    sendMessage(msg) {
      return socket.send(msg);
    },
    close() {
      socket.close(1000, "agent done");
    },
  };
}
