/**
 * Helpers for the sync-back tests: a picture of a directory tree to show nothing changed, file
 * hashes, and a rogue agent — a test that dials `/v1/agent/connect` with a session's agent token
 * and speaks the agent protocol itself, to send whatever a hostile session machine might.
 */
import { createHash } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import {
  AgentToServer,
  encodeAgentOutput,
  encodeAgentSync,
  parseMessage,
  PROTOCOL_VERSION,
  ServerToAgent,
  type SyncEvent,
} from "../../src/protocol/index.ts";
import type { MachineSpec, Provider } from "../../server/providers/types.ts";
import { waitFor } from "./wait.ts";

/** sha256 of a file's bytes (hex); null when it does not exist. */
export function fileHash(path: string): string | null {
  if (!existsSync(path)) return null;
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/**
 * Every entry under `root` (not following symlinks) with what it is: `dir <mode>`,
 * `file <mode> <sha256>`, `link -> <target>`. Entries for which `skip(rel)` is true are left out.
 */
export function snapshotTree(root: string, skip: (rel: string) => boolean = () => false): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string): void => {
    for (const name of readdirSync(rel ? join(root, rel) : root).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      if (skip(child)) continue;
      const abs = join(root, child);
      const st = lstatSync(abs);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out[child] = `link -> ${readlinkSync(abs)}`;
      else if (st.isDirectory()) {
        out[child] = `dir ${mode}`;
        walk(child);
      } else out[child] = `file ${mode} ${fileHash(abs)}`;
    }
  };
  if (existsSync(root)) walk("");
  return out;
}

/**
 * A provider that starts no machine: it hands each session's agent token to the test (which then
 * plays the agent) and reports the machine alive, so the server never fails the session.
 */
export function rogueProvider(real: Provider): Provider & { tokens: Map<string, string> } {
  const tokens = new Map<string, string>();
  return {
    name: real.name,
    regions: real.regions,
    isolated: real.isolated,
    tokens,
    async start(spec: MachineSpec) {
      tokens.set(spec.label, spec.agentToken);
      // This process stands in for the machine: alive as long as the test runs.
      return { provider: "local", pid: process.pid, dir: "/nonexistent" };
    },
    async isAlive() {
      return true;
    },
    async destroy() {},
  };
}

type ServerMsg = ServerToAgent;

/** The test playing a session's agent over the real agent endpoint. */
export class RogueAgent {
  private readonly ws: WebSocket;
  readonly received: ServerMsg[] = [];
  /** Input bytes the server forwarded from the interactive client. */
  input = "";
  private offset = 0;
  private transfer = 0;
  private seq = 0;
  private readonly opened: Promise<void>;

  constructor(serverUrl: string, token: string) {
    this.ws = new WebSocket(`${serverUrl.replace(/^http/, "ws")}/v1/agent/connect`, {
      headers: { Authorization: `Bearer ${token}` },
    } as never);
    this.ws.binaryType = "arraybuffer";
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve();
      this.ws.onerror = () => reject(new Error("rogue agent could not connect"));
    });
    this.ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        const msg = parseMessage(ServerToAgent, e.data);
        if (msg) this.received.push(msg);
        if (msg?.type === "ping") this.send({ type: "pong", id: msg.id });
      } else {
        this.input += new TextDecoder().decode(new Uint8Array(e.data as ArrayBuffer));
      }
    };
  }

  /** Connects and says hello as a fresh agent would; resolves on the server's welcome. */
  async hello(): Promise<void> {
    await this.opened;
    this.send({ type: "hello", protocol: PROTOCOL_VERSION, offset: 0, cols: 80, rows: 24, pid: null });
    await this.next("welcome");
  }

  send(msg: AgentToServer): void {
    this.ws.send(JSON.stringify(msg));
  }

  /** Sends raw JSON, valid or not, as a broken or hostile agent might. */
  sendRaw(data: string | Uint8Array): void {
    this.ws.send(data);
  }

  /** Waits for the first message of `type` not yet taken, and takes it. */
  async next<T extends ServerMsg["type"]>(type: T, timeoutMs = 15_000): Promise<Extract<ServerMsg, { type: T }>> {
    return waitFor(
      () => {
        const i = this.received.findIndex((m) => m.type === type);
        if (i === -1) return null;
        return this.received.splice(i, 1)[0] as Extract<ServerMsg, { type: T }>;
      },
      { timeoutMs, what: `the server to send the agent "${type}"` },
    );
  }

  /** Program output, numbered as the real agent numbers it, for every live client. */
  output(text: string): void {
    const data = new TextEncoder().encode(text);
    this.ws.send(encodeAgentOutput(0, this.offset, data));
    this.offset += data.length;
  }

  /** Answers an attach: nothing to replay, live output follows from here. */
  synced(clientId: number): void {
    this.send({ type: "synced", clientId, offset: this.offset });
  }

  sync(clientId: number, event: SyncEvent): void {
    this.send({ type: "sync", clientId, event });
  }

  nextSeq(): number {
    return ++this.seq;
  }

  /** A whole file as the real agent sends it: `file`, binary chunks, `file_end`. */
  file(clientId: number, path: string, content: string | Uint8Array, chunk = 4096): void {
    const data = typeof content === "string" ? new TextEncoder().encode(content) : content;
    const transfer = ++this.transfer;
    this.sync(clientId, { kind: "file", seq: this.nextSeq(), path, size: data.length, transfer });
    for (let at = 0; at < data.length; at += chunk) {
      this.ws.send(encodeAgentSync(clientId, transfer, data.subarray(at, at + chunk)));
    }
    this.sync(clientId, { kind: "file_end", transfer });
  }

  close(): void {
    this.ws.close(1000, "rogue done");
  }
}
