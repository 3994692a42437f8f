/**
 * Installs the system programs the test suite drives with apt-get when they are missing: tmux for
 * the end-to-end tests, vim and bash as programs inside sessions, bubblewrap for the session
 * sandbox, dockerd (docker.io) for the Docker provider, mmdebstrap for the session image and
 * Chromium for the dashboard's browser tests, curl for install.sh, pebble for the TLS tests, PostgreSQL for the store's
 * tests on it (Debian keeps its server programs off PATH: see test/helpers/postgres.ts), iproute2,
 * passt and nftables for sessions' own networks (and python3 to serve from a session). Run
 * by `npm test` before `bun test`; does nothing when everything is there.
 */
import { postgresBin } from "../helpers/postgres.ts";

const NEEDED: Record<string, string> = {
  tmux: "tmux",
  vim: "vim",
  bash: "bash",
  bwrap: "bubblewrap",
  setpriv: "util-linux",
  dockerd: "docker.io",
  // With the helpers it recommends for checking and unpacking Debian's archives.
  mmdebstrap: "mmdebstrap gpg libdpkg-perl arch-test",
  // The dashboard's browser tests (driven by playwright-core).
  chromium: "chromium",
  // install.sh downloads with curl (the release tests).
  curl: "curl",
  // The ACME test server (with its DNS stand-in) the TLS tests get certificates from.
  pebble: "pebble",
  // A sandboxed session's own network (server/providers/network.ts): its namespace, its NAT
  // (pasta), its egress rules; the isolation tests' stand-in hosts and a server in a session.
  ip: "iproute2",
  pasta: "passt",
  nft: "nftables",
  python3: "python3",
};

const missing = Object.entries(NEEDED)
  .filter(([bin]) => !Bun.which(bin))
  .flatMap(([, pkgs]) => pkgs.split(" "));
if (!postgresBin()) missing.push("postgresql");

if (missing.length > 0) {
  const apt = Bun.which("apt-get");
  if (!apt) {
    console.error(`The tests need ${missing.join(", ")}; install them with your package manager.`);
    process.exit(1);
  }
  const sudo = process.getuid?.() === 0 ? [] : ["sudo"];
  console.error(`Installing ${missing.join(", ")} for the tests…`);
  const run = (args: string[]): number =>
    Bun.spawnSync([...sudo, ...args], {
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    }).exitCode;
  if (run([apt, "install", "-y", "--no-install-recommends", ...missing]) !== 0) {
    if (run([apt, "update"]) !== 0 || run([apt, "install", "-y", "--no-install-recommends", ...missing]) !== 0) {
      console.error(`Could not install ${missing.join(", ")}.`);
      process.exit(1);
    }
  }
}
