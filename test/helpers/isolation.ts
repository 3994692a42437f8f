/**
 * What the isolation tests run inside a session (sandboxed local and Docker): scripts that write
 * their findings, one per line, to /workspace/result.txt and end with `done`.
 */

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ApiClient } from "../../src/client/api.ts";
import { PROTOCOL_VERSION } from "../../src/protocol/index.ts";
import { waitFor } from "./wait.ts";

/**
 * What a session must not read on the host: the server's secrets and database, and a file of
 * the host user's (written here).
 */
export function hostTargets(dataDir: string): string[] {
  const hostFile = join(process.env.HOME as string, "host-secret.txt");
  writeFileSync(hostFile, "host user's file\n");
  return ["blob-secret", "owner-token", "catty.db", "server-key"].map((f) => join(dataDir, f)).concat(hostFile);
}

/** Lines that try to read each of `targets`, writing `read F` or `denied F`. */
export function readAttempts(targets: string[]): string[] {
  return targets.map((f) => `if cat '${f}' >/dev/null 2>&1; then echo "read ${f}" >> $r; else echo "denied ${f}" >> $r; fi`);
}

/**
 * A fork bomb, then a runaway allocation; writes `started=N` (the processes of the program's own
 * user at the peak, counted with shell builtins, since at the limit nothing can fork) and
 * `memory=EXIT` (not 0 when the limit ended it), then `done`, and stays.
 */
export const LIMITS_SCRIPT = [
  "r=/workspace/result.txt",
  // dash gives up on a failed fork at once (bash would retry for a long time).
  "sh -c 'for i in $(seq 300); do sleep 30 & done' 2>/dev/null",
  'n=0; for p in /proc/[0-9]*; do [ -O "$p" ] && n=$((n+1)); done; echo "started=$n" >> $r',
  "pkill sleep 2>/dev/null",
  // 1 GiB without a newline: tail holds it all, and the memory limit ends it.
  "head -c 1073741824 /dev/zero | tail > /dev/null; echo \"memory=$?\" >> $r",
  "echo done >> $r",
  "sleep 300",
].join("\n");

/** The figures LIMITS_SCRIPT wrote. */
export function limitsFound(lines: string[]): { started: number; memoryExit: number } {
  const value = (key: string): number => Number(lines.find((l) => l.startsWith(`${key}=`))?.slice(key.length + 1));
  return { started: value("started"), memoryExit: value("memory") };
}

/**
 * The review's chain against the agent (not the sandbox): each round makes a directory, a nested
 * one and a file with content of the program's own, waits until the watcher has seen them (the
 * agent's sync-back is attached), then swaps the directory, the parent and the file for symlinks
 * to `target` (a directory the program cannot read but the agent could), plants a FIFO, and
 * writes into the moved directories under the `names` it knows are in `target`: the watch, still on
 * the moved directory, reports those names under the swapped path. Writes `done` to
 * /workspace/result.txt after `rounds` rounds, then keeps the last swap in place.
 */
export function swapAttack(target: string, names: string[], rounds = 40): string {
  return [
    "cd /workspace",
    `for i in $(seq ${rounds}); do`,
    '  mkdir -p d p/q && echo "mine $i" > d/f && echo "mine $i" > p/q/g && echo "own $i" > own.txt',
    "  sleep 0.05",
    `  mv d d.$i && ln -s '${target}' d`,
    `  mv p p.$i && ln -s '${target}' p`,
    `  rm -f f && ln -s '${target}' f`,
    "  mkfifo fifo-$i",
    `  for n in ${names.join(" ")}; do echo x > d.$i/$n; echo x > p.$i/$n; echo x > p.$i/q/$n; done`,
    "  sleep 0.05",
    '  [ "$i" -lt ' + rounds + " ] && rm -f d p",
    "done",
    "echo done >> /workspace/result.txt",
    "sleep 300",
  ].join("\n");
}

/**
 * An interactive client attached with sync-back from the start, keeping everything the server
 * sends it (text and binary frames, as text) to search for what must never arrive.
 */
export async function syncBackClient(attachUrl: string, token: string, protocol: number): Promise<{ received(): string; close(): void }> {
  const ws = new WebSocket(attachUrl, { headers: { Authorization: `Bearer ${token}` } } as never);
  ws.binaryType = "arraybuffer";
  const parts: string[] = [];
  const decoder = new TextDecoder("latin1");
  ws.onmessage = (e) => parts.push(typeof e.data === "string" ? e.data : decoder.decode(new Uint8Array(e.data as ArrayBuffer)));
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error(`could not attach to ${attachUrl}`));
  });
  ws.send(JSON.stringify({ type: "hello", protocol, mode: "interactive", offset: null, cols: 80, rows: 24, syncBack: { epoch: null, seq: 0 } }));
  return { received: () => parts.join(""), close: () => ws.close() };
}

/** A save's bytes as text (a gzipped archive is unzipped first), to search for what must not be in it. */
export async function saveText(url: string, token: string): Promise<string> {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`downloading the save: ${res.status}`);
  let bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = Bun.gunzipSync(bytes);
  return new TextDecoder("latin1").decode(bytes);
}

/**
 * A script that probes the network from inside a session: `NAME reached BODY` or `NAME unreachable`
 * for each target (curl, 5 s each), the proxy's base URL and its answer to a Claude API call
 * (`proxy=200`), the first nameserver, then `done`; it stays.
 */
export function networkProbes(targets: Array<[string, string]>): string {
  return [
    "r=/workspace/result.txt",
    'probe() { if body=$(curl -sS -m 5 "$2" 2>&1); then echo "$1 reached $body" >> $r; else echo "$1 unreachable" >> $r; fi; }',
    ...targets.map(([name, url]) => `probe ${name} '${url}'`),
    'echo "base=$ANTHROPIC_BASE_URL" >> $r',
    `echo "proxy=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST "$ANTHROPIC_BASE_URL/v1/messages" -H "Authorization: Bearer $ANTHROPIC_AUTH_TOKEN" ` +
      `-H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' -d '{"model":"claude-test","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}')" >> $r`,
    'echo "dns=$(grep -m1 ^nameserver /etc/resolv.conf)" >> $r',
    "echo done >> $r",
    "sleep 300",
  ].join("\n");
}

/** Where `runSwapAttack` runs: the server's API as its owner, and how a session starts and reports. */
export interface AttackRig<S extends { label: string }> {
  api: ApiClient;
  token: string;
  /** Starts a session running `script` in bash. */
  start(script: string): Promise<S>;
  /** The lines the session wrote to /workspace/result.txt, once it wrote `done`. */
  results(session: S): Promise<string[]>;
}

/**
 * `swapAttack` against `target` in a session, with sync-back attached from the start: waits for
 * the rounds to end and the program's own last file to come back, stops the session (its final
 * save), and returns everything the client received and the final save's bytes, for the test to
 * search for what must not be there.
 */
export async function runSwapAttack<S extends { label: string }>(
  rig: AttackRig<S>,
  target: string,
  names: string[],
): Promise<{ session: S; received: string; saved: string }> {
  const { api, token } = rig;
  const session = await rig.start(swapAttack(target, names));
  await waitFor(async () => (await api.get(session.label)).status === "running", { what: "the session running" });
  const client = await syncBackClient(api.attachUrl(session.label), token, PROTOCOL_VERSION);
  try {
    if (!(await rig.results(session)).includes("done")) throw new Error("the attack did not finish its rounds");
    // The program's own files do come back: sync-back ran through every swap.
    await waitFor(() => client.received().includes("own 40"), { timeoutMs: 30_000, what: "the program's last file synced back" });
  } finally {
    client.close();
  }
  await api.stop(session.label);
  const save = await api.latestSave(session.label);
  return { session, received: client.received(), saved: await saveText(api.resolveUrl(save.url), token) };
}
