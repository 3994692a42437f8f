/**
 * The vault's restore stream: a save as a tar archive (names relative to the workspace), read
 * through a `BlobReader`, which checks every blob. Trees are read as the walk comes to them:
 * entering a directory reads its subdirectories' trees and looks up where everything they list
 * is, one query per directory, ahead of the walk; so the stream starts as soon as the root is
 * read and runs without waiting on the database. With `manifest`, the archive is followed by its
 * files' chunks (`ManifestWriter`), so a restore knows them without hashing what it wrote.
 */
import { CattyError } from "../../src/protocol/errors.ts";
import { ManifestWriter, type Tree } from "../../src/lib/snapshot/format.ts";
import { MAX_DEPTH, type BlobReader } from "./pack-reader.ts";
import { TAR_END, TarBatches, tarHeader, tarPadding, type TarEntry } from "./tar.ts";

/** Blobs a tar stream reads ahead of what it has written, and their bytes at most (beyond one file). */
const READ_AHEAD = 64;
const READ_AHEAD_BYTES = 16 * 1024 * 1024;

export interface TarOptions {
  /** The time of directories and links (files carry their own). */
  mtimeSec: number;
  /** Follow the archive with its files' chunks. */
  manifest?: boolean;
}

export async function* tarStream(r: BlobReader, root: string, opts: TarOptions): AsyncGenerator<Uint8Array> {
  /** Trees read (or being read), each once what it lists has been looked up. */
  const trees = new Map<string, Promise<Tree>>();
  const treeOf = (hash: string): Promise<Tree> => {
    let tree = trees.get(hash);
    if (!tree) {
      tree = r.tree(hash).then(async (t) => {
        await r.locate(t.e.flatMap((e) => (e.t === "d" ? [e.h] : e.t === "f" ? e.c : [])));
        return t;
      });
      // Read ahead: a failure surfaces when the walk comes to the tree.
      tree.catch(() => {});
      trees.set(hash, tree);
    }
    return tree;
  };
  await r.locate([root]);

  type Item = { entry: TarEntry; chunks: readonly string[] };
  /** Every entry below `hash` in tar order, with its file's chunks, in runs up to a subdirectory. */
  async function* dir(prefix: string, hash: string, depth: number): AsyncGenerator<Item[]> {
    // A tree met again deeper down (trees are shared by hash) is checked again here.
    if (depth > MAX_DEPTH) throw new CattyError("bad_request", `The save's directories nest deeper than ${MAX_DEPTH} levels.`);
    const tree = await treeOf(hash);
    for (const e of tree.e) if (e.t === "d") void treeOf(e.h);
    let run: Item[] = [];
    for (const e of tree.e) {
      const name = prefix === "" ? e.n : `${prefix}/${e.n}`;
      if (e.t === "d") {
        run.push({ entry: { name, type: "dir", mode: e.m, size: 0, mtime: opts.mtimeSec }, chunks: [] });
        yield run;
        run = [];
        yield* dir(name, e.h, depth + 1);
      } else if (e.t === "l") {
        run.push({ entry: { name, type: "symlink", mode: 0o777, size: 0, mtime: opts.mtimeSec, linkname: e.l }, chunks: [] });
      } else {
        run.push({ entry: { name, type: "file", mode: e.m, size: e.s, mtime: e.mt / 1000 }, chunks: e.c });
      }
    }
    if (run.length > 0) yield run;
  }

  // Blobs are read (fetched, decrypted, decompressed) up to READ_AHEAD ahead of the output, so
  // that several decompress side by side on the worker threads. The walk runs ahead too; it is
  // waited for only when nothing read is left to write.
  const walk = dir("", root, 0);
  let queue: Item[] = [];
  let taken = 0;
  let next: Promise<IteratorResult<Item[]>> | null = null;
  let arrived: IteratorResult<Item[]> | null = null;
  let exhausted = false;
  const out = new TarBatches();
  const manifest = opts.manifest ? new ManifestWriter() : null;
  const ahead: Array<{ entry: TarEntry; reads: Array<Promise<Uint8Array>> }> = [];
  let pending = 0;
  let pendingBytes = 0;
  const fill = async (): Promise<void> => {
    while (!exhausted && pending < READ_AHEAD && (pendingBytes < READ_AHEAD_BYTES || pending === 0)) {
      if (taken === queue.length) {
        if (!next) {
          next = walk.next();
          next.then((got) => void (arrived = got), () => {});
        }
        if (!arrived && ahead.length > 0) return;
        const got = arrived ?? (await next);
        next = arrived = null;
        if (got.done) exhausted = true;
        else [queue, taken] = [got.value, 0];
        continue;
      }
      const { entry, chunks } = queue[taken++]!;
      if (entry.type === "file") manifest?.add(entry.size, chunks);
      const reads = chunks.map((c) => r.read(c));
      // Failures surface when the chunk's turn comes; until then they are not "unhandled".
      for (const p of reads) p.catch(() => {});
      pending += reads.length;
      pendingBytes += entry.size;
      ahead.push({ entry, reads });
    }
  };
  for (await fill(); ahead.length > 0; await fill()) {
    const { entry, reads } = ahead.shift()!;
    out.add(tarHeader(entry));
    if (entry.type === "file") {
      let written = 0;
      for (const read of reads) {
        const bytes = await read;
        pending--;
        written += bytes.length;
        if (written > entry.size) break;
        out.add(bytes);
      }
      if (written !== entry.size) throw new CattyError("internal", `${entry.name} in the save has ${written} bytes of content, not ${entry.size}.`);
      pendingBytes -= entry.size;
      out.add(tarPadding(entry.size));
    }
    yield* out.ready();
  }
  out.add(TAR_END);
  if (manifest) out.add(manifest.bytes());
  yield* out.ready(true);
}
