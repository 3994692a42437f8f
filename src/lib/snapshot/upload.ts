/**
 * Sending a save's blobs: `BlobUploader` collects the blobs a build hands it, asks the server
 * which of them it lacks, and sends those in packs (`encodePack`) of about `PACK_TARGET_BYTES`.
 * Blobs the server is known to hold are neither asked about nor sent. `httpVault` is the server's
 * side of that conversation over HTTP (`<base>/missing`, `<base>/pack`), retrying what failed on
 * the way (network errors, 5xx) a few times with backoff.
 */
import type { BlobSink } from "./build.ts";
import { encodePack, MAX_QUERY_HASHES, PACK_TARGET_BYTES, type PackRecord } from "./format.ts";

export interface VaultClient {
  /** Which of `hashes` the store does not have. */
  missing(hashes: string[]): Promise<string[]>;
  /** Stores a pack; resolves once every blob in it is stored. */
  putPack(pack: Uint8Array): Promise<void>;
}

export interface HttpVaultOptions {
  /** Extra request headers (a bearer token). */
  headers?: Record<string, string>;
  /** Attempts per request (default 4). */
  attempts?: number;
  /** The first retry's delay; doubled each time (default 250 ms). */
  backoffMs?: number;
}

/** Thrown for an answer that retrying will not change (4xx). */
export class VaultRefusal extends Error {}

export function httpVault(base: string, opts: HttpVaultOptions = {}): VaultClient {
  const attempts = opts.attempts ?? 4;
  const backoff = opts.backoffMs ?? 250;
  const call = async (path: string, init: RequestInit): Promise<Response> => {
    let last: unknown;
    for (let i = 0; i < attempts; i++) {
      if (i > 0) await Bun.sleep(backoff * 2 ** (i - 1));
      try {
        const res = await fetch(`${base}/${path}`, { ...init, headers: { ...opts.headers, ...(init.headers as Record<string, string>) } });
        if (res.ok) return res;
        const text = await res.text().catch(() => "");
        const message = describe(res.status, text);
        if (res.status < 500 && res.status !== 429 && res.status !== 408) throw new VaultRefusal(message);
        last = new Error(message);
      } catch (err) {
        if (err instanceof VaultRefusal) throw err;
        last = err;
      }
    }
    throw last instanceof Error ? last : new Error(String(last));
  };
  return {
    async missing(hashes) {
      const res = await call("missing", { method: "POST", body: JSON.stringify({ hashes }), headers: { "Content-Type": "application/json" } });
      const body = (await res.json()) as { missing?: unknown };
      if (!Array.isArray(body.missing) || !body.missing.every((h) => typeof h === "string")) throw new Error("the server's answer about missing blobs is malformed");
      return body.missing as string[];
    },
    async putPack(pack) {
      await call("pack", { method: "PUT", body: pack, headers: { "Content-Type": "application/octet-stream" } });
    },
  };
}

function describe(status: number, text: string): string {
  try {
    const body = JSON.parse(text) as { message?: unknown };
    if (typeof body.message === "string") return body.message;
  } catch {
    // not JSON
  }
  return `the server answered ${status}${text ? `: ${text.slice(0, 200)}` : ""}`;
}

export class BlobUploader implements BlobSink {
  /** Blob bytes sent. */
  added = 0;
  /** Blobs sent. */
  sent = 0;
  private queue: PackRecord[] = [];
  private queued = new Set<string>();
  private queuedBytes = 0;
  /** The batch being sent, if any. */
  private sending: Promise<void> = Promise.resolve();

  /** `known`: blobs the store holds; grows with what this uploader learns or stores. */
  constructor(
    private readonly client: VaultClient,
    readonly known: Set<string> = new Set(),
  ) {}

  async add(hash: string, bytes: Uint8Array): Promise<void> {
    if (this.known.has(hash) || this.queued.has(hash)) return;
    this.queue.push({ hash, bytes: bytes.slice() });
    this.queued.add(hash);
    this.queuedBytes += bytes.length;
    if (this.queuedBytes >= PACK_TARGET_BYTES || this.queue.length >= MAX_QUERY_HASHES) {
      // One batch goes out while the next is read: wait only for the one before.
      await this.sending;
      this.sending = this.send(this.take());
      // Awaited by the next add or flush; until then its failure is not "unhandled".
      this.sending.catch(() => {});
    }
  }

  /** Sends what is waiting, and waits until everything sent is stored. */
  async flush(): Promise<void> {
    await this.sending;
    this.sending = this.send(this.take());
    await this.sending;
  }

  private take(): PackRecord[] {
    const batch = this.queue;
    this.queue = [];
    this.queued = new Set();
    this.queuedBytes = 0;
    return batch;
  }

  private async send(batch: PackRecord[]): Promise<void> {
    if (batch.length === 0) return;
    const missing = new Set(await this.client.missing(batch.map((r) => r.hash)));
    const records = batch.filter((r) => missing.has(r.hash));
    // Packs stay under the request cap: a new one starts before a blob would pass the target.
    let pack: PackRecord[] = [];
    let bytes = 0;
    const put = async (): Promise<void> => {
      if (pack.length === 0) return;
      await this.client.putPack(encodePack(pack));
      this.sent += pack.length;
      this.added += bytes;
      pack = [];
      bytes = 0;
    };
    for (const r of records) {
      if (bytes > 0 && bytes + r.bytes.length > PACK_TARGET_BYTES) await put();
      pack.push(r);
      bytes += r.bytes.length;
    }
    await put();
    for (const r of batch) this.known.add(r.hash);
  }
}
