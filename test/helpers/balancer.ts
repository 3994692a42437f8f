/**
 * A small TCP load balancer for tests of several replicas: each connection goes to the next live
 * backend (round robin) and its bytes are piped both ways. A backend can be dropped (its
 * connections are cut, as when a machine dies) and added back.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { freePort } from "./ports.ts";

export interface Balancer {
  readonly url: string;
  readonly port: number;
  /** The backends (loopback ports) new connections go to, in turn. */
  setBackends(ports: number[]): void;
  /** Stops sending to `port` and cuts the connections it has. */
  drop(port: number): void;
  /** Connections made to each backend so far. */
  readonly made: Map<number, number>;
  stop(): Promise<void>;
}

export async function startBalancer(backends: number[] = []): Promise<Balancer> {
  const port = freePort();
  let ports = [...backends];
  let next = 0;
  const open = new Map<number, Set<Socket>>();
  const made = new Map<number, number>();
  const server: Server = createServer((client) => {
    if (ports.length === 0) return client.destroy();
    const to = ports[next++ % ports.length] as number;
    made.set(to, (made.get(to) ?? 0) + 1);
    const upstream = createConnection({ host: "127.0.0.1", port: to });
    const mine = open.get(to) ?? new Set<Socket>();
    open.set(to, mine);
    mine.add(client);
    const cut = (): void => {
      mine.delete(client);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", cut).on("close", cut);
    upstream.on("error", cut).on("close", cut);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    made,
    setBackends(list) {
      ports = [...list];
    },
    drop(backend) {
      ports = ports.filter((p) => p !== backend);
      for (const s of open.get(backend) ?? []) s.destroy();
      open.delete(backend);
    },
    async stop() {
      for (const set of open.values()) for (const s of set) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
