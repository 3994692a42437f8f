/**
 * User-facing messages: consola on stderr, so stdout stays clean for `--json` and pipes. `src/cli.ts`
 * lowers the level to errors only when `CATTY_QUIET` is set.
 */
import { createConsola } from "consola";

export const ui = createConsola({
  level: 3,
  stdout: process.stderr,
  stderr: process.stderr,
  formatOptions: { date: false },
});
