/**
 * Test preload (bunfig.toml): every test process gets its own HOME and CATTY_HOME in a fresh
 * temporary directory, and no server address or token from the developer's environment, so no
 * test reads or writes the developer's own files or talks to their server.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const home = mkdtempSync(join(tmpdir(), "catty-test-home-"));
process.env.HOME = home;
process.env.CATTY_HOME = join(home, ".catty");
for (const name of ["CATTY_API_ADDR", "CATTY_TOKEN", "CATTY_PORT", "CATTY_DATA_DIR", "CATTY_SERVER_BIN", "CATTY_AGENT_BIN"]) {
  delete process.env[name];
}
