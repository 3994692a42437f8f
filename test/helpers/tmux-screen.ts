/**
 * Comparing terminals: a screen restored through Catty must equal what a local terminal running
 * the same program shows — text, cursor position and alternate-screen flag (`Tmux.state()`).
 */
import { Tmux } from "./tmux.ts";
import { waitFor } from "./wait.ts";

/**
 * Waits until two terminals show the same state; on timeout, fails showing both (the last
 * states seen), so a difference is easy to read.
 */
export async function waitForSameScreen(a: Tmux, b: Tmux, timeoutMs = 15_000, what = "screens"): Promise<string> {
  let sa = "";
  let sb = "";
  try {
    return await waitFor(
      () => {
        sa = a.state();
        sb = b.state();
        return sa === sb ? sa : null;
      },
      { timeoutMs, what: `${what} to be equal` },
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- through catty ---\n${sa}\n--- local ---\n${sb}\n---`);
  }
}
