/**
 * The agent's link to the server: a WebSocket it dials out on, re-dialled with backoff whenever it
 * drops, for as long as the agent runs. The program never notices a drop.
 */
import type { Log } from "../src/lib/log.ts";
import { CLOSE } from "../src/protocol/close.ts";

export interface LinkHandlers {
  onOpen(): void;
  onText(text: string): void;
  /** Input bytes for the program. */
  onBinary(data: Uint8Array): void;
  /** The server said this session is over: stop re-dialling. */
  onEnded(reason: string): void;
  /** The link dropped (it is re-dialled unless the session ended). */
  onDown?(): void;
}

export interface Link {
  readonly connected: boolean;
  send(data: string | Uint8Array): boolean;
  /** Bytes queued in the socket but not yet sent (for flow control). */
  readonly buffered: number;
  close(): void;
}

/** Pings every 5 s; a link silent for 20 s is dead (well within the 30 s promised). */
const HEARTBEAT_MS = 5_000;
const DEAD_AFTER_MS = 20_000;

export function dialServer(opts: { url: string; token: string; log: Log; maxBackoffMs?: number }, h: LinkHandlers): Link {
  const wsUrl = `${opts.url.replace(/^http/, "ws").replace(/\/$/, "")}/v1/agent/connect`;
  const maxBackoff = opts.maxBackoffMs ?? 5_000;
  let ws: WebSocket | null = null;
  let closed = false;
  let backoff = 200;
  let lastHeard = Date.now();
  let heartbeat: Timer | undefined;
  let pingId = 0;
  let dropLink: () => void = () => {};
  /** When the link went down (0 while it is up). */
  let lostAt = 0;

  const connect = (): void => {
    if (closed) return;
    const sock = new WebSocket(wsUrl, { headers: { Authorization: `Bearer ${opts.token}` } } as never);
    sock.binaryType = "arraybuffer";
    ws = sock;
    sock.onopen = () => {
      backoff = 200;
      lostAt = 0;
      lastHeard = Date.now();
      opts.log.info("connected to server", { url: wsUrl });
      h.onOpen();
    };
    sock.onmessage = (ev) => {
      lastHeard = Date.now();
      if (typeof ev.data === "string") h.onText(ev.data);
      else h.onBinary(new Uint8Array(ev.data as ArrayBuffer));
    };
    const onClose = (ev: { code: number; reason: string }): void => {
      if (ws !== sock) return;
      ws = null;
      h.onDown?.();
      if (closed) return;
      if (ev.code === CLOSE.ended) {
        closed = true;
        h.onEnded(ev.reason || "session ended");
        return;
      }
      // Quick re-dials for a short outage (a server restart), then exponential backoff; jittered
      // so that many agents do not re-dial in step.
      if (lostAt === 0) lostAt = Date.now();
      const quick = Date.now() - lostAt < 2_000;
      const wait = (quick ? 100 : Math.min(backoff, maxBackoff)) * (0.8 + Math.random() * 0.4);
      if (!quick) backoff = Math.min(backoff * 2, maxBackoff);
      opts.log.warn("link to server lost; re-dialling", { code: ev.code, inMs: Math.round(wait) });
      setTimeout(connect, wait);
    };
    sock.onclose = onClose;
    dropLink = () => {
      sock.onclose = null;
      sock.close(4000, "dead peer");
      onClose({ code: 4000, reason: "dead peer" });
    };
    sock.onerror = () => {
      // onclose follows and re-dials.
    };
  };

  heartbeat = setInterval(() => {
    const sock = ws;
    if (!sock || sock.readyState !== WebSocket.OPEN) return;
    if (Date.now() - lastHeard > DEAD_AFTER_MS) {
      opts.log.warn("server silent for too long; reconnecting");
      dropLink();
      return;
    }
    sock.send(JSON.stringify({ type: "ping", id: ++pingId }));
  }, HEARTBEAT_MS);

  connect();
  return {
    get connected() {
      return ws?.readyState === WebSocket.OPEN;
    },
    get buffered() {
      return ws?.bufferedAmount ?? 0;
    },
    send(data) {
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      ws.send(data);
      return true;
    },
    close() {
      closed = true;
      clearInterval(heartbeat);
      heartbeat = undefined;
      ws?.close(1000, "agent done");
    },
  };
}
