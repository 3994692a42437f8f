/** Sync-back, agent side: a file is sent as big as the `file` event announced it, never bigger. */
import { expect, test } from "bun:test";
import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SyncSender } from "../../agent/sync-sender.ts";
import type { WorkspaceJournal } from "../../agent/watch.ts";
import { silentLog } from "../../src/lib/log.ts";
import { decodeAgentSync, type AgentToServer, type SyncEvent } from "../../src/protocol/index.ts";
import { noise, tempDirs } from "../helpers/fs.ts";
import { waitFor } from "../helpers/wait.ts";

const tempDir = tempDirs("catty-sync-sender-");

test("a file that grows while it is sent is cut at the size the file event declared", async () => {
  const root = tempDir();
  const size = 300 * 1024; // more than one read chunk, so the file grows between reads
  writeFileSync(join(root, "log.txt"), noise(size, 1));
  // The journal seam: one change to send.
  const journal = { epoch: "E", seq: 1, changesSince: () => [{ path: "log.txt", seq: 1, kind: "file" }] } as unknown as WorkspaceJournal;
  const events: SyncEvent[] = [];
  let sent = 0;
  const sender = new SyncSender({
    journal,
    root,
    maxFileBytes: 50 * 1024 * 1024,
    log: silentLog,
    buffered: () => 0,
    send: (msg: AgentToServer) => {
      if (msg.type === "sync") events.push(msg.event);
      return true;
    },
    sendBinary: (frame) => {
      if (sent === 0) appendFileSync(join(root, "log.txt"), noise(100 * 1024, 2)); // the program keeps writing
      sent += decodeAgentSync(frame)?.data.byteLength ?? 0;
      return true;
    },
  });
  sender.subscribe(7, { epoch: "E", seq: 0 });
  const end = await waitFor(() => events.find((e) => e.kind === "file_end"), { what: "the file to be sent" });
  expect(events.find((e) => e.kind === "file")).toMatchObject({ path: "log.txt", size });
  expect(end).toMatchObject({ bytes: size });
  expect(sent).toBe(size);
});
