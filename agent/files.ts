/**
 * Files the user hands to the session (`put_file`): fetched from the server, then written into
 * `.catty-uploads/` by a small shell script started inside the program's own sandbox (the
 * provider's wrapper: the same user, the same view of the file system). Whatever the program did
 * to the workspace — a symlink where the directory should be, a planted file — the write can reach
 * only what the program itself can reach, so it cannot be turned against the agent or the host.
 */
import { FILE_MAX_BYTES, FILES_DIR, STORED_FILE_NAME } from "../src/protocol/files.ts";

/**
 * Writes stdin to `<dir>/<name>` without ever replacing anything: the bytes go to a new temp file
 * (noclobber), which is then hard-linked under the first free name (`ln` fails when the name
 * exists, even as a dangling symlink). Prints the path as the program sees it.
 */
const WRITE_SCRIPT = `set -eu
dir=$1; name=$2
umask 022
mkdir -p -- "$dir"
cd -- "$dir"
tmp=".put-$$-$name"
set -C
cat > "$tmp"
stem=\${name%.*}; ext=\${name##*.}
n=1; f=$name
until ln -- "$tmp" "$f" 2>/dev/null; do
  n=$((n + 1))
  if [ "$n" -gt 50 ]; then rm -f -- "$tmp"; echo "no free name for $name" >&2; exit 1; fi
  f="$stem-$n.$ext"
done
rm -f -- "$tmp"
printf '%s/%s' "$PWD" "$f"`;

export interface PutFileOptions {
  serverUrl: string;
  /** The program's working directory, as the agent sees it. */
  workspace: string;
  /** The provider's sandbox wrapper, as for the program. */
  wrap: string[];
  /** How long the write may take before it is abandoned. */
  timeoutMs?: number;
}

/** Fetches the file and writes it; resolves to its path as the program sees it, or throws why not. */
export async function putFile(file: { name: string; url: string; size: number }, opts: PutFileOptions): Promise<string> {
  if (!STORED_FILE_NAME.test(file.name)) throw new Error(`refused the file name ${JSON.stringify(file.name)}`);
  if (file.size > FILE_MAX_BYTES) throw new Error(`refused a file of ${file.size} bytes (at most ${FILE_MAX_BYTES})`);
  const res = await fetch(new URL(file.url, `${opts.serverUrl}/`));
  if (!res.ok) throw new Error(`download failed: ${res.status} ${res.statusText}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes.length !== file.size) throw new Error(`download incomplete: got ${bytes.length} of ${file.size} bytes`);

  const proc = Bun.spawn([...opts.wrap, "/bin/sh", "-c", WRITE_SCRIPT, "catty-put-file", FILES_DIR, file.name], {
    cwd: opts.workspace,
    env: { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin" },
    stdin: bytes,
    stdout: "pipe",
    stderr: "pipe",
    timeout: opts.timeoutMs ?? 30_000,
  });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`writing ${FILES_DIR}/${file.name} failed: ${err.trim().split("\n").pop() || `exit code ${code}`}`);
  if (!out.startsWith("/")) throw new Error(`writing ${FILES_DIR}/${file.name} gave no path`);
  return out;
}
