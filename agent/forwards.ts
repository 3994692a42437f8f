/**
 * The agent's side of port forwards (`catty forward`, preview links): when the server asks
 * (`forward` on the agent's link), the agent dials a link of its own for that forward
 * (`/v1/agent/forward?id=`), on which the other end opens streams to the session's ports
 * (`src/lib/mux.ts`, the acceptor). A forward's streams outlive a dropped link for a while
 * (`GRACE_MS`): the server asks again once the other end is back, and they resume where they
 * stood.
 *
 * Only ports a process of the session listens on are reached (`agent/ports.ts`): with the host's
 * network shared, the host's own services stay out of reach of a forward.
 */
import type { Socket as NetSocket } from "node:net";
import type { Log } from "../src/lib/log.ts";
import { Mux, pipeSocket, type MuxStream } from "../src/lib/mux.ts";
import { Socket } from "../src/lib/socket.ts";
import { CLOSE } from "../src/protocol/close.ts";
import { ForwardMessage } from "../src/protocol/forward.ts";
import type { Listener } from "./ports.ts";

/** How long a forward whose link dropped keeps its connections for the link to come back. */
const GRACE_MS = 60_000;

export interface ForwardsDeps {
  serverUrl: string;
  token: string;
  log: Log;
  /** The session's listener on `port`, looked up now; null when nothing of the session listens there. */
  listener(port: number): Listener | null;
  /** Connects to one (agent/ports.ts `connectSessionPort`). */
  connect(listener: Listener): NetSocket;
}

interface Forward {
  mux: Mux;
  link: Socket<ForwardMessage, ForwardMessage> | null;
  grace: ReturnType<typeof setTimeout> | undefined;
}

export class Forwards {
  private readonly forwards = new Map<string, Forward>();

  constructor(private readonly deps: ForwardsDeps) {}

  /** The server asks for a link for forward `id` (new, or the other end came back). */
  open(id: string): void {
    let f = this.forwards.get(id);
    if (!f) {
      const mux = new Mux({ role: "acceptor", onStream: (s) => this.connect(s), onViolation: (what) => f?.link?.malformed(what) });
      f = { mux, link: null, grace: undefined };
      this.forwards.set(id, f);
    }
    clearTimeout(f.grace);
    f.link?.close(1000, "replaced");
    this.dial(id, f);
  }

  private connect(s: MuxStream): void {
    const listener = this.deps.listener(s.port);
    if (!listener) {
      s.reset(`nothing in the session listens on port ${s.port}`);
      return;
    }
    const socket = this.deps.connect(listener);
    socket.once("connect", () => s.accept());
    pipeSocket(s, socket);
  }

  private dial(id: string, f: Forward): void {
    const url = `${this.deps.serverUrl.replace(/^http/, "ws").replace(/\/$/, "")}/v1/agent/forward?id=${encodeURIComponent(id)}`;
    const link: Socket<ForwardMessage, ForwardMessage> = new Socket<ForwardMessage, ForwardMessage>(
      {
        url,
        headers: { Authorization: `Bearer ${this.deps.token}` },
        schema: ForwardMessage,
        log: this.deps.log,
        ping: (n) => ({ type: "ping", id: n }),
        retry: () => 0,
        reconnect: false,
      },
      {
        open: () => f.mux.attach({ send: (b) => link.sendBinary(b), hello: (h) => link.send(h) }),
        message: (msg) => {
          if (msg.type === "hello") f.mux.hello(msg);
          else if (msg.type === "ping") link.send({ type: "pong", id: msg.id });
          else if (msg.type === "error") this.deps.log.warn("forward link error", { message: msg.message });
        },
        binary: (data) => f.mux.frame(data),
        down: (info) => {
          if (f.link !== link) return;
          f.mux.detach();
          f.link = null;
          // The other end is done with it: its connections go now; else they wait for it a while.
          if (info.code === 1000 || info.code === CLOSE.ended) return this.drop(id, "the forward ended");
          f.grace = setTimeout(() => this.drop(id, "the forward's link did not come back"), GRACE_MS);
        },
      },
    );
    f.link = link;
    link.start();
  }

  private drop(id: string, reason: string): void {
    const f = this.forwards.get(id);
    if (!f) return;
    clearTimeout(f.grace);
    f.link?.close(1000, reason);
    f.mux.close(reason);
    this.forwards.delete(id);
  }

  close(): void {
    for (const id of [...this.forwards.keys()]) this.drop(id, "the session ended");
  }
}
