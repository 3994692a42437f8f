/**
 * A TCP proxy on loopback that delays each direction by half a round trip, as a long link does
 * (`tc netem` is not available on these machines): every chunk is forwarded `oneWayMs` after it
 * arrived, in order, with backpressure handled. `rttMs` can change while connections run.
 */
import type { Socket, TCPSocketListener } from "bun";

interface Side {
  /** Chunks due at a time, oldest first. */
  queue: { due: number; data: Uint8Array }[];
  /** What the peer socket did not take yet. */
  unwritten: Uint8Array[];
  timer: Timer | undefined;
}

interface Conn {
  client: Socket<Conn>;
  upstream: Socket<Conn> | null;
  toUpstream: Side;
  toClient: Side;
  closed: boolean;
}

const side = (): Side => ({ queue: [], unwritten: [], timer: undefined });

export class DelayProxy {
  private readonly conns = new Set<Conn>();

  private constructor(
    private readonly listener: TCPSocketListener<Conn>,
    /** Added to each direction: half the round trip. */
    public oneWayMs: number,
  ) {}

  static start(opts: { port: number; rttMs: number }): DelayProxy {
    let self: DelayProxy | null = null;
    const listener = Bun.listen<Conn>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(client) {
          const conn: Conn = { client, upstream: null, toUpstream: side(), toClient: side(), closed: false };
          client.data = conn;
          self?.conns.add(conn);
          void Bun.connect<Conn>({
            hostname: "127.0.0.1",
            port: opts.port,
            socket: {
              open(up) {
                up.data = conn;
                conn.upstream = up;
                flush(up, conn.toUpstream);
              },
              data(_up, data) {
                self?.delay(conn, conn.toClient, data, () => conn.client);
              },
              drain(up) {
                flush(up, conn.toUpstream);
              },
              close() {
                self?.close(conn);
              },
              error() {
                self?.close(conn);
              },
            },
          }).catch(() => self?.close(conn));
        },
        data(client, data) {
          const conn = client.data;
          self?.delay(conn, conn.toUpstream, data, () => conn.upstream);
        },
        drain(client) {
          flush(client, client.data.toClient);
        },
        close(client) {
          self?.close(client.data);
        },
        error(client) {
          self?.close(client.data);
        },
      },
    });
    self = new DelayProxy(listener, opts.rttMs / 2);
    return self;
  }

  get url(): string {
    return `http://127.0.0.1:${this.listener.port}`;
  }

  set rttMs(ms: number) {
    this.oneWayMs = ms / 2;
  }

  stop(): void {
    for (const conn of this.conns) this.close(conn);
    this.listener.stop(true);
  }

  [Symbol.dispose](): void {
    this.stop();
  }

  private delay(conn: Conn, s: Side, data: Uint8Array, to: () => Socket<Conn> | null): void {
    if (conn.closed) return;
    // Copied: the socket may reuse its read buffer once the data callback returns.
    s.queue.push({ due: performance.now() + this.oneWayMs, data: new Uint8Array(data) });
    this.schedule(conn, s, to);
  }

  private schedule(conn: Conn, s: Side, to: () => Socket<Conn> | null): void {
    if (s.timer || s.queue.length === 0) return;
    const wait = Math.max(0, (s.queue[0]?.due ?? 0) - performance.now());
    s.timer = setTimeout(() => {
      s.timer = undefined;
      if (conn.closed) return;
      const now = performance.now();
      while (s.queue.length > 0 && (s.queue[0]?.due ?? 0) <= now + 0.5) s.unwritten.push((s.queue.shift() as { data: Uint8Array }).data);
      const sock = to();
      if (sock) flush(sock, s);
      this.schedule(conn, s, to);
    }, wait);
  }

  private close(conn: Conn): void {
    if (conn.closed) return;
    conn.closed = true;
    clearTimeout(conn.toClient.timer);
    clearTimeout(conn.toUpstream.timer);
    this.conns.delete(conn);
    conn.client.end();
    conn.upstream?.end();
  }
}

/** Writes what `sock` takes now and keeps the rest, in order. */
function flush(sock: Socket<Conn>, s: Side): void {
  while (s.unwritten.length > 0) {
    const chunk = s.unwritten[0] as Uint8Array;
    const n = sock.write(chunk);
    if (n < chunk.length) {
      s.unwritten[0] = chunk.subarray(Math.max(0, n));
      return;
    }
    s.unwritten.shift();
  }
}
