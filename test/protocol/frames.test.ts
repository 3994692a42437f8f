/** Binary frames: the server hands a client the agent's frame re-headed in place, bytes unchanged. */
import { expect, test } from "bun:test";
import fc from "fast-check";
import {
  agentOutputToClient,
  agentSyncToClient,
  decodeAgentOutput,
  decodeAgentSync,
  decodeClientOutput,
  decodeClientSync,
  encodeAgentOutput,
  encodeAgentSync,
} from "../../src/protocol/frames.ts";

test("an output frame re-headed for a client keeps its offset and bytes", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.nat({ max: 2 ** 52 }), fc.uint8Array({ maxLength: 300 }), (clientId, offset, data) => {
      const frame = encodeAgentOutput(clientId, offset, data);
      expect(decodeAgentOutput(frame)?.clientId).toBe(clientId);
      const client = decodeClientOutput(agentOutputToClient(frame));
      expect(client?.offset).toBe(offset);
      expect([...(client?.data ?? [])]).toEqual([...data]);
    }),
  );
});

test("a sync-back frame re-headed for a client keeps its transfer and bytes", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 0xffffffff }), fc.integer({ min: 1, max: 0xffffffff }), fc.uint8Array({ maxLength: 300 }), (clientId, transfer, data) => {
      const frame = encodeAgentSync(clientId, transfer, data);
      expect(decodeAgentSync(frame)?.clientId).toBe(clientId);
      const client = decodeClientSync(agentSyncToClient(frame));
      expect(client?.transfer).toBe(transfer);
      expect([...(client?.data ?? [])]).toEqual([...data]);
    }),
  );
});
