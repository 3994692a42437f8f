/**
 * Waiting for a condition with a deadline: how tests wait for something to happen. (That
 * something does not happen for a while is shown on a clock the test moves, test/helpers/clock.ts,
 * where the code takes one.)
 */
export async function waitFor<T>(
  check: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? ` (last error: ${last.message})` : "";
      throw new Error(`timed out waiting for ${opts.what ?? "condition"}${why}`);
    }
    await Bun.sleep(opts.intervalMs ?? 50);
  }
}
