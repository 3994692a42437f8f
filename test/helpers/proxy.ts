/**
 * A TCP proxy on loopback in front of a server, for fault tests: `cut()` drops every connection
 * at once (RST, as a network that goes away) and closes new ones as they arrive until `restore()`.
 * Bytes are forwarded as they come, with backpressure handled, so the proxy itself never loses
 * or reorders anything while the link is up.
 */
import type { Socket, TCPSocketListener } from "bun";

interface Conn {
  client: Socket<Conn>;
  /** Blackholed: bytes are read and thrown away, nothing is closed (a peer that went silent). */
  silent: boolean;
  upstream: Socket<Conn> | null;
  /** Bytes waiting to be written to each side (upstream still connecting, or a full socket). */
  toUpstream: Uint8Array[];
  toClient: Uint8Array[];
  /** A side closed: end the other once its queue is written. */
  ending: boolean;
  closed: boolean;
}

/** Writes what `sock` takes now and keeps the rest, in order. */
function pump(sock: Socket<Conn>, queue: Uint8Array[]): void {
  while (queue.length > 0) {
    const chunk = queue[0] as Uint8Array;
    const n = sock.write(chunk);
    if (n < chunk.length) {
      queue[0] = chunk.subarray(Math.max(0, n));
      return;
    }
    queue.shift();
  }
}

function forward(sock: Socket<Conn> | null, queue: Uint8Array[], data: Uint8Array): void {
  // Copied: the socket may reuse its read buffer once the data callback returns.
  queue.push(new Uint8Array(data));
  if (sock) pump(sock, queue);
}

export class TcpProxy implements AsyncDisposable {
  private readonly conns = new Set<Conn>();
  private isCut = false;
  /** Connections forwarded (not counting those closed while cut). */
  accepted = 0;
  /** When the last forwarded connection was accepted (performance.now()). */
  lastAcceptedAt: number | null = null;
  /** Called as each forwarded connection is accepted. */
  onAccept: ((at: number) => void) | null = null;

  private constructor(
    private readonly listener: TCPSocketListener<Conn>,
    /** Where new connections go (may be changed before they come, e.g. once a server's port is known). */
    readonly target: { hostname: string; port: number },
  ) {}

  static start(target: { hostname?: string; port: number }): TcpProxy {
    const to = { hostname: target.hostname ?? "127.0.0.1", port: target.port };
    let proxy: TcpProxy | null = null;
    const listener = Bun.listen<Conn>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(client) {
          proxy?.accept(client);
        },
        data(client, data) {
          const c = client.data;
          if (!c || c.closed || c.silent) return;
          forward(c.upstream, c.toUpstream, data);
        },
        drain(client) {
          const c = client.data;
          if (!c) return;
          pump(client, c.toClient);
          proxy?.maybeEnd(c);
        },
        close(client) {
          if (client.data) proxy?.sideClosed(client.data, "client");
        },
        error(client) {
          if (client.data) proxy?.sideClosed(client.data, "client");
        },
      },
    });
    proxy = new TcpProxy(listener, to);
    return proxy;
  }

  get port(): number {
    return this.listener.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Connections open right now. */
  get open(): number {
    return this.conns.size;
  }

  get isDown(): boolean {
    return this.isCut;
  }

  private accept(client: Socket<Conn>): void {
    if (this.isCut) {
      client.terminate();
      return;
    }
    const c: Conn = { client, silent: false, upstream: null, toUpstream: [], toClient: [], ending: false, closed: false };
    client.data = c;
    this.conns.add(c);
    this.accepted++;
    this.lastAcceptedAt = performance.now();
    this.onAccept?.(this.lastAcceptedAt);
    const proxy = this;
    Bun.connect<Conn>({
      hostname: this.target.hostname,
      port: this.target.port,
      data: c,
      socket: {
        open(up) {
          if (c.closed) {
            up.terminate();
            return;
          }
          c.upstream = up;
          pump(up, c.toUpstream);
          proxy.maybeEnd(c);
        },
        data(_up, data) {
          if (!c.closed && !c.silent) forward(c.client, c.toClient, data);
        },
        drain(up) {
          pump(up, c.toUpstream);
          proxy.maybeEnd(c);
        },
        close() {
          proxy.sideClosed(c, "upstream");
        },
        error() {
          proxy.sideClosed(c, "upstream");
        },
        connectError() {
          proxy.kill(c);
        },
      },
    }).catch(() => this.kill(c));
  }

  /** One side went away: the other gets what is still queued for it, then an orderly close. */
  private sideClosed(c: Conn, side: "client" | "upstream"): void {
    if (c.closed) return;
    // A silent path carries no close either: the other side finds out by itself, or never.
    if (c.silent) return;
    // Nothing more can be written to the side that went away.
    if (side === "client") c.toClient.length = 0;
    else c.toUpstream.length = 0;
    c.ending = true;
    this.maybeEnd(c);
  }

  private maybeEnd(c: Conn): void {
    if (!c.ending || c.closed) return;
    if (c.toClient.length > 0 || c.toUpstream.length > 0) return;
    c.closed = true;
    this.conns.delete(c);
    c.client.end();
    c.upstream?.end();
  }

  private kill(c: Conn): void {
    if (c.closed && !this.conns.has(c)) return;
    c.closed = true;
    this.conns.delete(c);
    c.toClient.length = 0;
    c.toUpstream.length = 0;
    c.client.terminate();
    c.upstream?.terminate();
  }

  /** Drops every connection now, and every new one until `restore()`. */
  cut(): void {
    this.isCut = true;
    for (const c of [...this.conns]) this.kill(c);
  }

  restore(): void {
    this.isCut = false;
  }

  /**
   * The open connections go silent: from now on their bytes are dropped in both directions and
   * neither side hears of the other closing, as when a network path dies without a reset; only a
   * heartbeat notices. New connections are not affected.
   */
  silence(): void {
    for (const c of this.conns) {
      c.silent = true;
      c.toClient.length = 0;
      c.toUpstream.length = 0;
    }
  }

  stop(): void {
    this.cut();
    this.listener.stop(true);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.stop();
  }
}
