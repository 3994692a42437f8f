import { describe, expect, test } from "bun:test";
import { Requests } from "../../agent/requests.ts";
import type { AgentToServer } from "../../src/protocol/index.ts";

const ID = "save-0001";

function setup(opts: { up?: boolean; timeoutMs?: number } = {}): { requests: Requests; sent: AgentToServer[] } {
  const sent: AgentToServer[] = [];
  const requests = new Requests({
    send: (msg) => {
      if (opts.up === false) return false;
      sent.push(msg);
      return true;
    },
    timeoutMs: opts.timeoutMs,
  });
  return { requests, sent };
}

describe("requests to the server", () => {
  test("an answer with the same type and id resolves the request", async () => {
    const { requests, sent } = setup();
    const asked = requests.ask({ type: "save_request", id: ID, reason: "initial" }, "save_target", ID);
    expect(sent).toEqual([{ type: "save_request", id: ID, reason: "initial" }]);
    expect(requests.answer({ type: "save_result", id: ID, ok: true, error: null })).toBe(false); // another type
    expect(requests.answer({ type: "save_target", id: "save-0002", url: "/x", error: null })).toBe(false); // another id
    expect(requests.answer({ type: "save_target", id: ID, url: "/put/here", error: null })).toBe(true);
    expect(await asked).toEqual({ type: "save_target", id: ID, url: "/put/here", error: null });
    expect(requests.pending).toBe(0);
    // A late duplicate finds nothing waiting.
    expect(requests.answer({ type: "save_target", id: ID, url: "/put/here", error: null })).toBe(false);
  });

  test("a request the server does not answer in time fails", async () => {
    const { requests } = setup({ timeoutMs: 30 });
    const asked = requests.ask({ type: "save_done", id: ID, root: "0000000000000000000000000000000000000000000000000000000000000000", size: 1, files: 1 }, "save_result", ID);
    await expect(asked).rejects.toThrow("the server did not answer in time");
    expect(requests.pending).toBe(0);
  });

  test("every waiting request fails at once when the link drops", async () => {
    const { requests } = setup();
    const a = requests.ask({ type: "save_request", id: ID, reason: "periodic" }, "save_target", ID);
    const b = requests.ask({ type: "save_done", id: "save-0002", root: "0000000000000000000000000000000000000000000000000000000000000000", size: 3, files: 1 }, "save_result", "save-0002");
    expect(requests.pending).toBe(2);
    requests.failAll("the link to the server dropped");
    await expect(a).rejects.toThrow("the link to the server dropped");
    await expect(b).rejects.toThrow("the link to the server dropped");
    expect(requests.pending).toBe(0);
  });

  test("a request that cannot be sent fails at once", async () => {
    const { requests } = setup({ up: false });
    await expect(requests.ask({ type: "save_request", id: ID, reason: "final" }, "save_target", ID)).rejects.toThrow("not connected");
    expect(requests.pending).toBe(0);
  });
});
