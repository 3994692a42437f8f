/**
 * Sending a save's blobs: `BlobUploader` collects the blobs a build hands it, asks the server
 * which of them it lacks, and sends those in packs (`PackWriter`) of about `PACK_TARGET_BYTES`.
 * Blobs the server is known to hold are neither asked about nor sent. `httpVault` is the server's
 * side of that conversation over HTTP (`<base>/missing`, `<base>/pack`), retrying what failed on
 * the way (network errors, 5xx) a few times with backoff.
 */
import type { BlobSink } from "./build.ts";
import { MAX_QUERY_HASHES, PACK_TARGET_BYTES, PackWriter } from "./format.ts";

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
  /** Blobs waiting to be asked about, copied into the pack they make if the store lacks them all. */
  private batch = new PackWriter();
  private queued = new Set<string>();
  /** The batch being sent, if any. */
  private sending: Promise<void> = Promise.resolve();

  /** `known`: blobs the store holds; grows with what this uploader learns or stores. */
  constructor(
    private readonly client: VaultClient,
    readonly known: Set<string> = new Set(),
  ) {}

  async add(hash: string, bytes: Uint8Array): Promise<void> {
    if (this.known.has(hash) || this.queued.has(hash)) return;
    // A pack stays under the target unless one blob alone passes it.
    if (this.batch.count > 0 && this.batch.recordBytesWith(bytes.length) > PACK_TARGET_BYTES) await this.next();
    this.batch.add(hash, bytes);
    this.queued.add(hash);
    if (this.batch.recordBytes >= PACK_TARGET_BYTES || this.batch.count >= MAX_QUERY_HASHES) await this.next();
  }

  /** Sends what is waiting, and waits until everything sent is stored. */
  async flush(): Promise<void> {
    await this.next();
    await this.sending;
  }

  /** One batch goes out while the next is read: waits only for the one before. */
  private async next(): Promise<void> {
    await this.sending;
    const batch = this.batch;
    this.batch = new PackWriter();
    this.queued = new Set();
    this.sending = this.send(batch);
    // Awaited by the next batch or flush; until then its failure is not "unhandled".
    this.sending.catch(() => {});
  }

  private async send(batch: PackWriter): Promise<void> {
    if (batch.count === 0) return;
    const hashes = batch.hashes();
    const answer = new Set(await this.client.missing(hashes));
    const missing = new Set(hashes.filter((h) => answer.has(h)));
    if (missing.size > 0) {
      await this.client.putPack(batch.bytes(missing.size === batch.count ? undefined : missing));
      this.sent += missing.size;
      this.added += batch.bytesOf(missing);
    }
    for (const h of hashes) this.known.add(h);
  }
}
