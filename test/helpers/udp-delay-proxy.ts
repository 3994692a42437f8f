/**
 * A UDP proxy on loopback that delays each direction by half a round trip (mosh's path in the
 * benchmarks; `tc netem` is not available here): datagrams from the client go to the server on
 * `port` `oneWayMs` after they arrived, and the server's go back to the client's last address as
 * late. Order is kept; nothing is dropped.
 */
import type { udp } from "bun";

export class UdpDelayProxy {
  private client: { port: number; address: string } | null = null;
  private constructor(
    private readonly front: udp.Socket<"uint8array">,
    private readonly back: udp.Socket<"uint8array">,
    public oneWayMs: number,
  ) {}

  static async start(opts: { port: number; rttMs: number }): Promise<UdpDelayProxy> {
    let self: UdpDelayProxy | null = null;
    const later = (ms: number, fn: () => void): void => void setTimeout(fn, ms);
    const front = await Bun.udpSocket({
      hostname: "127.0.0.1",
      binaryType: "uint8array",
      socket: {
        data(_s, data, port, address) {
          if (!self) return;
          self.client = { port, address };
          const copy = new Uint8Array(data);
          const p = self;
          later(p.oneWayMs, () => void p.back.send(copy, opts.port, "127.0.0.1"));
        },
      },
    });
    const back = await Bun.udpSocket({
      hostname: "127.0.0.1",
      binaryType: "uint8array",
      socket: {
        data(_s, data) {
          const p = self;
          const to = p?.client;
          if (!p || !to) return;
          const copy = new Uint8Array(data);
          later(p.oneWayMs, () => void p.front.send(copy, to.port, to.address));
        },
      },
    });
    self = new UdpDelayProxy(front, back, opts.rttMs / 2);
    return self;
  }

  get port(): number {
    return this.front.port;
  }

  set rttMs(ms: number) {
    this.oneWayMs = ms / 2;
  }

  stop(): void {
    this.front.close();
    this.back.close();
  }
}
