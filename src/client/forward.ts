/**
 * `catty forward`'s core, like `ssh -L`: local listeners whose connections reach the session's
 * ports through the server, all over one reconnecting WebSocket per forward
 * (`/v1/sessions/<label>/forward?id=`) carrying one stream per connection (`src/lib/mux.ts`, the
 * opener). When the link drops, connections stay open and wait; the link is dialled again with
 * the same forward id and every stream resumes where it stood (the agent kept its side).
 */
import { createServer, type Server, type Socket as NetSocket } from "node:net";
import type { Log } from "../lib/log.ts";
import { Mux, pipeSocket } from "../lib/mux.ts";
import { Socket, type DropInfo } from "../lib/socket.ts";
import { CattyError } from "../protocol/errors.ts";
import { CLOSE } from "../protocol/close.ts";
import { ForwardMessage } from "../protocol/forward.ts";
import { retryDelay } from "./session-link.ts";

export interface ForwardSpec {
  /** The session's port. */
  remote: number;
  /** The local port (0: any free one). */
  local: number;
  /** The local address to listen on. */
  bind: string;
}

export interface ForwardEvents {
  /** The link to the server is up (again). */
  up?(first: boolean): void;
  /** The link dropped; it is dialled again in `retryInMs` (connections are kept meanwhile). */
  down?(info: DropInfo): void;
  /** A connection to the session's port was refused or broke. */
  refused?(port: number, reason: string): void;
  /** The server sent an error message. */
  error?(message: string): void;
}

export interface ForwardHandle {
  /** Where each spec listens, in order (`local` filled in). */
  readonly listening: ForwardSpec[];
  /** Connections open now. */
  readonly connections: number;
  /** Resolves when the forward ends by itself (the session ended, the server refused it): why. */
  readonly ended: Promise<string>;
  close(): Promise<void>;
}

function listen(spec: ForwardSpec, onConnection: (socket: NetSocket) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ allowHalfOpen: true }, onConnection);
    server.once("error", (err: NodeJS.ErrnoException) => {
      const where = `${spec.bind}:${spec.local}`;
      if (err.code === "EADDRINUSE") reject(new CattyError("conflict", `${where} is already in use.`, "Pick another local port: --local PORT, or LOCAL:REMOTE."));
      else if (err.code === "EACCES") reject(new CattyError("forbidden", `Not allowed to listen on ${where}.`, "Use a port above 1023."));
      else reject(new CattyError("bad_request", `Cannot listen on ${where}: ${err.message}.`));
    });
    server.listen(spec.local, spec.bind, () => resolve(server));
  });
}

export async function startForward(
  opts: { api: string; token: string; label: string; specs: ForwardSpec[]; log: Log },
  ev: ForwardEvents = {},
): Promise<ForwardHandle> {
  const sockets = new Set<NetSocket>();
  let closing = false;
  let link: Socket<ForwardMessage, ForwardMessage> | null = null;
  const mux = new Mux({
    role: "opener",
    ports: opts.specs.map((s) => s.remote),
    onViolation: (what) => link?.malformed(what),
  });
  const servers: Server[] = [];
  const listening: ForwardSpec[] = [];
  try {
    for (const spec of opts.specs) {
      const server = await listen(spec, (socket) => {
        socket.setNoDelay(true);
        sockets.add(socket);
        socket.once("close", () => sockets.delete(socket));
        const stream = mux.open(spec.remote);
        pipeSocket(stream, socket);
        const onClose = stream.onClose;
        stream.onClose = (error) => {
          onClose(error);
          if (error !== null && !closing) ev.refused?.(spec.remote, error);
        };
      });
      servers.push(server);
      const address = server.address();
      listening.push({ ...spec, local: typeof address === "object" && address ? address.port : spec.local });
    }
  } catch (err) {
    for (const s of servers) s.close();
    throw err;
  }

  let settle: (why: string) => void = () => {};
  const ended = new Promise<string>((resolve) => (settle = resolve));
  const id = Buffer.from(crypto.getRandomValues(new Uint8Array(18))).toString("base64url");
  const base = opts.api.replace(/^http/, "ws").replace(/\/$/, "");
  let first = true;
  const socket: Socket<ForwardMessage, ForwardMessage> = new Socket<ForwardMessage, ForwardMessage>(
    {
      url: `${base}/v1/sessions/${encodeURIComponent(opts.label)}/forward?id=${id}`,
      headers: { Authorization: `Bearer ${opts.token}` },
      schema: ForwardMessage,
      log: opts.log,
      ping: (n) => ({ type: "ping", id: n }),
      retry: ({ sinceLostMs, previousMs, wasOpen }) => (wasOpen ? 0 : retryDelay(sinceLostMs, previousMs, 5_000)),
      stopOn: [CLOSE.ended, CLOSE.malformed, CLOSE.protocol, CLOSE.replaced],
    },
    {
      open: () => mux.attach({ send: (b) => socket.sendBinary(b), hello: (h) => socket.send(h) }),
      message: (msg) => {
        if (msg.type === "hello") {
          mux.hello(msg);
          ev.up?.(first);
          first = false;
        } else if (msg.type === "ping") socket.send({ type: "pong", id: msg.id });
        else if (msg.type === "error") ev.error?.(msg.message);
      },
      binary: (data) => mux.frame(data),
      down: (info) => {
        mux.detach();
        if (info.retryInMs !== null) return ev.down?.(info);
        settle(info.code === CLOSE.ended ? "the session ended" : info.reason || `the server closed the forward (${info.code})`);
      },
    },
  );
  link = socket;
  socket.start();

  return {
    listening,
    get connections() {
      return sockets.size;
    },
    ended,
    async close() {
      closing = true;
      socket.close(1000, "forward done");
      mux.close("the forward ended");
      for (const s of sockets) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
