/**
 * Saves read back: read tickets (`/v1/vault/<ticket>/tar`) for the agent's restore and for
 * downloads, and the tar (or tar.gz) stream such a ticket names. Archive saves and uploads from
 * before content-addressed saves are read through presigned URLs of their blob.
 */
import { z } from "zod";
import { CattyError, Label, type SaveInfo } from "../../src/protocol/index.ts";
import { Hash } from "../../src/lib/snapshot/format.ts";
import type { BlobStore } from "../blobs/types.ts";
import type { SaveRow, SessionRow, Store } from "../store/types.ts";
import { signTicket, verifyTicket } from "../tickets.ts";
import type { Vault } from "../vault/vault.ts";
import { vaultRoot } from "../vault/catalog.ts";

export const toSaveInfo = (r: SaveRow): SaveInfo => ({
  id: r.id,
  createdAt: r.createdAt,
  size: r.size,
  files: r.files,
  reason: r.reason,
  added: r.added,
});

const ReadTicket = z.object({
  u: z.string(),
  r: Hash,
  z: z.literal(1).optional(),
  t: z.number().int(),
  n: Label.optional(),
  /** The stream is followed by its files' chunks (`vault.tar`'s manifest): a restore's. */
  m: z.literal(1).optional(),
});

/** How a save is read out: gzipped or not, its files' times, the download's name, and the manifest after it. */
interface ReadOptions {
  gzip: boolean;
  mtime: string;
  name?: string;
  manifest?: boolean;
}

/**
 * A pull stream over an async generator, once it has produced its first piece: an error before
 * that is thrown here (the caller can still answer with it), an error after it errors the stream.
 */
async function streamOf(gen: AsyncGenerator<Uint8Array>): Promise<ReadableStream<Uint8Array>> {
  let first: IteratorResult<Uint8Array> | null = await gen.next();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = first ?? (await gen.next());
        first = null;
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      } catch (err) {
        controller.error(err);
      }
    },
    async cancel() {
      await gen.return(undefined);
    },
  });
}

export interface ReadingDeps {
  store: Pick<Store, "listSaves">;
  blobs: Pick<BlobStore, "presignGet" | "stat">;
  vault: Pick<Vault, "tar">;
  ticketKey: Buffer;
  ttlSec: number;
  now: () => number;
}

export function createReading(deps: ReadingDeps) {
  const { store, blobs, vault, ttlSec, now } = deps;

  /** A URL the holder may fetch the save under `root` from, as tar (or tar.gz, named after `name`), until it expires. */
  const readUrl = (userId: string, root: string, opts: ReadOptions): string => {
    const payload = {
      u: userId,
      r: root,
      t: Math.floor(Date.parse(opts.mtime) / 1000) || 0,
      ...(opts.gzip ? { z: 1 } : {}),
      ...(opts.name ? { n: opts.name } : {}),
      ...(opts.manifest ? { m: 1 } : {}),
    };
    return `/v1/vault/${signTicket(deps.ticketKey, payload, ttlSec, now())}/tar`;
  };

  /** Where a stored save or upload (`key`) is read from. */
  const urlOf = async (userId: string, key: string, opts: ReadOptions): Promise<string> => {
    const root = vaultRoot(key);
    return root ? readUrl(userId, root, opts) : blobs.presignGet(key, ttlSec);
  };

  return {
    /** Where the agent restores the workspace from on (re)connect, until it has. */
    async restoreFor(row: SessionRow): Promise<{ url: string; size: number | null } | null> {
      if (!row.restoreKey) return null;
      if (vaultRoot(row.restoreKey)) return { url: await urlOf(row.userId, row.restoreKey, { gzip: false, mtime: row.createdAt, manifest: true }), size: null };
      const info = await blobs.stat(row.restoreKey);
      return { url: await blobs.presignGet(row.restoreKey, ttlSec), size: info?.size ?? null };
    },

    /**
     * A read ticket's save as a tar (or tar.gz) stream, for `/v1/vault/<ticket>/tar`. A save that
     * cannot be read from its start (a tree missing or damaged) throws before anything is sent.
     */
    async readTar(ticket: string): Promise<{ stream: ReadableStream<Uint8Array>; gzip: boolean; name: string | null }> {
      const { u, r, z: gz, t, n, m } = verifyTicket(deps.ticketKey, ticket, ReadTicket, { nowMs: now() });
      const tar = await streamOf(vault.tar(u, r, { mtimeSec: t, manifest: m === 1 }));
      const stream = gz ? tar.pipeThrough(new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>) : tar;
      return { stream, gzip: gz === 1, name: n ?? null };
    },

    async savesOf(sessionId: string): Promise<SaveInfo[]> {
      return (await store.listSaves(sessionId)).map(toSaveInfo);
    },

    /** A save of the session (the latest, or the newest made at or before `at`) and a URL for it as a .tar.gz. */
    async download(row: SessionRow, opts: { at?: number; id?: string } = {}): Promise<SaveInfo & { url: string }> {
      const rows = await store.listSaves(row.id);
      const save =
        opts.id !== undefined
          ? rows.find((r) => r.id === opts.id)
          : opts.at !== undefined
            ? rows.find((r) => Date.parse(r.createdAt) <= (opts.at as number))
            : rows[0];
      if (!save) {
        if (opts.id !== undefined) throw new CattyError("not_found", `Session ${row.label} has no save ${opts.id}.`, `Run \`catty saves ${row.label}\` to see its saves.`);
        if (opts.at !== undefined) {
          throw new CattyError("not_found", `Session ${row.label} has no save from ${new Date(opts.at).toISOString()} or earlier.`, `Run \`catty saves ${row.label}\` to see its saves.`);
        }
        throw new CattyError("not_found", `Session ${row.label} has no save yet: the first save happens about 10 seconds after it starts.`);
      }
      return { ...toSaveInfo(save), url: await urlOf(row.userId, save.key, { gzip: true, mtime: save.createdAt, name: row.label }) };
    },
  };
}
