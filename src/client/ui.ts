/** User-facing messages: consola on stderr, so stdout stays clean for `--json` and pipes. */
import { createConsola } from "consola";

export const ui = createConsola({
  level: process.env.CATTY_QUIET ? 1 : 3,
  stdout: process.stderr,
  stderr: process.stderr,
  formatOptions: { date: false },
});
