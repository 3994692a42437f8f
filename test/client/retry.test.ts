import { expect, test } from "bun:test";
import { retryDelay } from "../../src/client/session-link.ts";

test("reconnect delays: quick for a blip, then exponential up to the 10 s cap", () => {
  expect(retryDelay(0, 100, 10_000)).toBe(100);
  expect(retryDelay(2_999, 100, 10_000)).toBe(100);
  expect(retryDelay(5_000, 100, 10_000)).toBe(250);
  expect(retryDelay(10_000, 250, 10_000)).toBe(500);
  expect(retryDelay(20_000, 4_000, 10_000)).toBe(8_000);
  expect(retryDelay(60_000, 8_000, 10_000)).toBe(10_000);
  expect(retryDelay(600_000, 10_000, 10_000)).toBe(10_000);
});
