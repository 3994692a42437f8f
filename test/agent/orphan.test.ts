import { describe, expect, test } from "bun:test";
import { OrphanWatch } from "../../agent/orphan.ts";
import { silentLog } from "../../src/lib/log.ts";
import { waitFor } from "../helpers/wait.ts";

function watch(idleTimeoutMs: number, lastTryMs: number): { watch: OrphanWatch; gaveUp: number[]; at: number[] } {
  const gaveUp: number[] = [];
  const at: number[] = [];
  const onGiveUp = (ms: number): void => {
    gaveUp.push(ms);
    at.push(Date.now());
  };
  return { watch: new OrphanWatch({ idleTimeoutMs, lastTryMs, log: silentLog, onGiveUp }), gaveUp, at };
}

describe("the orphan watch", () => {
  test("gives up once the server has been unreachable for the idle timeout plus the last try", async () => {
    const { watch: w, gaveUp } = watch(60, 40);
    const started = performance.now();
    w.down();
    await waitFor(() => gaveUp.length > 0, { timeoutMs: 2_000, what: "giving up" });
    expect(performance.now() - started).toBeGreaterThanOrEqual(95);
    expect(gaveUp[0]).toBeGreaterThanOrEqual(95);
    w.down(); // closed after giving up: never twice
  });

  test("a link that comes back during the last try saves the agent", async () => {
    const { watch: w, gaveUp } = watch(30, 60_000);
    w.down();
    expect(w.state).toBe("down");
    await waitFor(() => w.state === "last-try", { timeoutMs: 2_000, what: "the last try" });
    w.up();
    expect(w.state).toBe("up");
    expect(gaveUp).toEqual([]);
    w.close();
  });

  test("each drop starts the clock again; further drops while down do not", async () => {
    const { watch: w, gaveUp, at } = watch(250, 10);
    w.down();
    await Bun.sleep(20);
    w.up();
    const second = Date.now();
    w.down(); // a new outage: the clock starts here, not at the first
    await Bun.sleep(30);
    w.down(); // still the same outage: the clock keeps running
    await waitFor(() => gaveUp.length > 0, { timeoutMs: 3_000, what: "giving up" });
    const downFor = gaveUp[0] as number;
    expect((at[0] as number) - second).toBeGreaterThanOrEqual(255);
    expect(downFor).toBeGreaterThanOrEqual((at[0] as number) - second - 5);
  });

  test("the last try is never longer than the idle timeout", async () => {
    const { watch: w, gaveUp } = watch(20, 60_000);
    w.down();
    await waitFor(() => gaveUp.length > 0, { timeoutMs: 2_000, what: "giving up" });
  });

  test("closed: never gives up", async () => {
    const { watch: w, gaveUp } = watch(10, 10);
    w.down();
    w.close();
    await Bun.sleep(50); // well past both timers
    expect(gaveUp).toEqual([]);
    expect(w.state).toBe("closed");
  });

  test("an idle timeout longer than a timer can take (about 25 days) is waited for, not taken as zero", async () => {
    const { watch: w, gaveUp } = watch(2 ** 31 + 1000, 10);
    w.down();
    await Bun.sleep(50); // an overflowing timer would have fired by now
    expect(gaveUp).toEqual([]);
    expect(w.state).toBe("down");
    w.close();
  });
});
