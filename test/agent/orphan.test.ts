/**
 * The orphan watch (agent/orphan.ts) on a clock the test moves by hand: when it gives up, that a
 * link coming back saves the agent, and that it does nothing when it must not — shown without
 * waiting for time to pass.
 */
import { describe, expect, test } from "bun:test";
import { OrphanWatch } from "../../agent/orphan.ts";
import { silentLog } from "../../src/lib/log.ts";
import { FakeClock } from "../helpers/clock.ts";

function watch(idleTimeoutMs: number, lastTryMs: number): { watch: OrphanWatch; gaveUp: number[]; at: number[]; clock: FakeClock } {
  const clock = new FakeClock();
  const gaveUp: number[] = [];
  const at: number[] = [];
  const onGiveUp = (ms: number): void => {
    gaveUp.push(ms);
    at.push(clock.now());
  };
  return { watch: new OrphanWatch({ idleTimeoutMs, lastTryMs, log: silentLog, onGiveUp, clock }), gaveUp, at, clock };
}

describe("the orphan watch", () => {
  test("gives up once the server has been unreachable for the idle timeout plus the last try, and only then", () => {
    const { watch: w, gaveUp, clock } = watch(60_000, 10_000);
    w.down();
    clock.advance(59_999);
    expect(w.state).toBe("down");
    clock.advance(1);
    expect(w.state).toBe("last-try");
    clock.advance(9_999);
    expect(gaveUp).toEqual([]);
    clock.advance(1);
    expect(gaveUp).toEqual([70_000]);
    expect(w.state).toBe("closed");
    w.down(); // closed after giving up: never twice
    clock.advance(1_000_000);
    expect(gaveUp).toEqual([70_000]);
  });

  test("a link that comes back during the last try saves the agent", () => {
    const { watch: w, gaveUp, clock } = watch(30_000, 60_000);
    w.down();
    expect(w.state).toBe("down");
    clock.advance(30_000);
    expect(w.state).toBe("last-try");
    w.up();
    expect(w.state).toBe("up");
    clock.advance(1_000_000);
    expect(gaveUp).toEqual([]);
    expect(clock.pending).toBe(0);
    w.close();
  });

  test("each drop starts the clock again; further drops while down do not", () => {
    const { watch: w, gaveUp, at, clock } = watch(250, 10);
    w.down();
    clock.advance(200);
    w.up();
    const second = clock.now();
    w.down(); // a new outage: the clock starts here, not at the first
    clock.advance(200);
    w.down(); // still the same outage: the clock keeps running
    clock.advance(59);
    expect(gaveUp).toEqual([]);
    clock.advance(1);
    expect(at).toEqual([second + 260]);
    expect(gaveUp).toEqual([260]);
  });

  test("the last try is never longer than the idle timeout", () => {
    const { watch: w, gaveUp, clock } = watch(20, 60_000);
    w.down();
    clock.advance(40);
    expect(gaveUp).toEqual([40]);
  });

  test("closed: never gives up", () => {
    const { watch: w, gaveUp, clock } = watch(10, 10);
    w.down();
    w.close();
    clock.advance(1_000_000);
    expect(gaveUp).toEqual([]);
    expect(w.state).toBe("closed");
  });

  test("an idle timeout longer than a timer can take (about 25 days) is waited for, not taken as zero", () => {
    const idle = 2 ** 31 + 1000;
    const { watch: w, gaveUp, clock } = watch(idle, 10);
    w.down();
    clock.advance(2 ** 31 - 1); // where an overflowing timer would have fired long before
    expect(w.state).toBe("down");
    clock.advance(1001);
    expect(w.state).toBe("last-try");
    clock.advance(10);
    expect(gaveUp).toEqual([idle + 10]);
  });
});
