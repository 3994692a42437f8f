/**
 * The agent's link against a real Bun.serve WebSocket server on port 0: typed messages out,
 * parsed messages in (and the raw text for handlers that parse themselves), re-dial after a drop,
 * and the end of re-dialling when the server says the session has ended.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { ServerWebSocket } from "bun";
import { agentRetryDelay, dialServer, type Link, type LinkHandlers } from "../../agent/link.ts";
import { silentLog } from "../../src/lib/log.ts";
import { AgentToServer, CLOSE, parseMessage, type ServerToAgent } from "../../src/protocol/index.ts";
import { waitFor } from "../helpers/wait.ts";

interface Server {
  url: string;
  paths: string[];
  conns: Array<{ ws: ServerWebSocket<unknown>; got: Array<string | Uint8Array> }>;
  stop(): void;
}

function server(): Server {
  const s: Server = { url: "", paths: [], conns: [], stop: () => {} };
  const byWs = new Map<ServerWebSocket<unknown>, Server["conns"][number]>();
  const bun = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, srv) {
      s.paths.push(`${new URL(req.url).pathname} ${req.headers.get("authorization")}`);
      return srv.upgrade(req) ? undefined : new Response("no", { status: 400 });
    },
    websocket: {
      open(ws) {
        const conn = { ws, got: [] };
        byWs.set(ws, conn);
        s.conns.push(conn);
      },
      message(ws, msg) {
        byWs.get(ws)?.got.push(typeof msg === "string" ? msg : new Uint8Array(msg));
      },
    },
  });
  s.url = `http://127.0.0.1:${bun.port}`;
  s.stop = () => bun.stop(true);
  return s;
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function dial(url: string, extra: Partial<LinkHandlers> = {}): { link: Link; log: string[] } {
  const log: string[] = [];
  const handlers: LinkHandlers = {
    onOpen: () => log.push("open"),
    onMessage: (msg) => log.push(`message ${JSON.stringify(msg)}`),
    onBinary: (data) => log.push(`binary ${[...data].join(",")}`),
    onEnded: (reason) => log.push(`ended ${reason}`),
    onDown: () => log.push("down"),
    ...extra,
  };
  const link = dialServer({ url, token: "agent-token", log: silentLog }, handlers);
  cleanups.push(() => link.close());
  return { link, log };
}

describe("agent link", () => {
  test("dials /v1/agent/connect with its token; typed messages and bytes both ways", async () => {
    const srv = server();
    cleanups.push(srv.stop);
    const parsed: ServerToAgent[] = [];
    const { link, log } = dial(srv.url, { onMessage: (m) => parsed.push(m) });
    await waitFor(() => link.connected, { what: "connected" });
    expect(srv.paths).toEqual(["/v1/agent/connect Bearer agent-token"]);

    expect(link.sendMessage({ type: "restored", files: 3, bytes: 10 })).toBe(true);
    expect(link.send(new Uint8Array([1, 2]))).toBe(true);
    const conn = srv.conns[0] as Server["conns"][number];
    await waitFor(() => conn.got.length === 2, { what: "both at the server" });
    expect(parseMessage(AgentToServer, conn.got[0] as string)).toEqual({ type: "restored", files: 3, bytes: 10 });
    expect([...(conn.got[1] as Uint8Array)]).toEqual([1, 2]);

    conn.ws.send(JSON.stringify({ type: "resize", cols: 90, rows: 20 }));
    conn.ws.send(new Uint8Array([7]));
    await waitFor(() => parsed.length === 1 && log.includes("binary 7"), { what: "message and input" });
    expect(parsed[0]).toEqual({ type: "resize", cols: 90, rows: 20 });
    expect(log.some((l) => l.startsWith("message"))).toBe(false);
  });

  test("malformed messages never reach the handler", async () => {
    const srv = server();
    cleanups.push(srv.stop);
    const { link, log } = dial(srv.url);
    await waitFor(() => link.connected, { what: "connected" });
    const conn = srv.conns[0] as Server["conns"][number];
    conn.ws.send("garbage");
    conn.ws.send(JSON.stringify({ type: "exit_ack" }));
    await waitFor(() => log.includes(`message {"type":"exit_ack"}`), { what: "the valid message" });
    expect(log.filter((l) => l.startsWith("message"))).toHaveLength(1);
  });

  test("re-dials after a drop, and stops once the server says the session ended", async () => {
    const srv = server();
    cleanups.push(srv.stop);
    const { link, log } = dial(srv.url);
    await waitFor(() => link.connected, { what: "connected" });
    srv.conns[0]?.ws.close(CLOSE.replaced, "replaced");
    await waitFor(() => srv.conns.length === 2 && link.connected, { what: "re-dialled" });
    expect(log).toEqual(["open", "down", "open"]);

    srv.conns[1]?.ws.close(CLOSE.ended, "stopped by user");
    await waitFor(() => log.includes("ended stopped by user"), { what: "ended" });
    expect(link.connected).toBe(false);
    expect(link.sendMessage({ type: "ping", id: 1 })).toBe(false);
  });

  test("retry schedule: 100 ms for 2 s, then doubling from 200 ms to the cap", () => {
    const at = (sinceLostMs: number, previousMs: number): number => agentRetryDelay({ sinceLostMs, previousMs, wasOpen: false });
    expect(at(0, 0)).toBe(100);
    expect(at(1_999, 100)).toBe(100);
    expect(at(2_000, 100)).toBe(200);
    expect(at(3_000, 200)).toBe(400);
    expect(at(9_000, 3_200)).toBe(5_000);
    expect(agentRetryDelay({ sinceLostMs: 9_000, previousMs: 3_200, wasOpen: false }, 10_000)).toBe(6_400);
  });
});
