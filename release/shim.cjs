#!/usr/bin/env node
// Runs this platform's Catty binary (from the optional dependency npm installed for it), with the
// terminal, the arguments and the exit code passed through. Generated into the npm package by
// `npm run release`: the two constants below are filled in there.
"use strict";
const { spawn } = require("node:child_process");
const path = require("node:path");

const PACKAGE = "__PACKAGE__";
const EXE = "__EXE__";
const TARGETS = ["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64"];

const target = `${process.platform}-${process.arch}`;
if (process.platform === "win32") {
  console.error(`${PACKAGE}: Windows is not yet supported. Use WSL (Windows Subsystem for Linux) and install ${PACKAGE} there.`);
  process.exit(1);
}
if (!TARGETS.includes(target)) {
  console.error(`${PACKAGE}: this platform (${target}) is not supported; ${PACKAGE} ships for ${TARGETS.join(", ")}.`);
  process.exit(1);
}
let bin;
try {
  bin = path.join(path.dirname(require.resolve(`${PACKAGE}-${target}/package.json`)), "bin", EXE);
} catch {
  console.error(
    `${PACKAGE}: the binary package ${PACKAGE}-${target} is not installed. ` +
      "It is an optional dependency: reinstall without --no-optional / --omit=optional.",
  );
  process.exit(1);
}

const child = spawn(bin, process.argv.slice(2), { stdio: "inherit" });
// Keys such as Ctrl+C reach the binary from the terminal itself; signals sent to this process
// alone (kill, a hang-up) are passed on to it.
for (const signal of ["SIGINT", "SIGQUIT", "SIGTERM", "SIGHUP"]) {
  process.on(signal, () => {
    if (signal === "SIGTERM" || signal === "SIGHUP") child.kill(signal);
  });
}
child.on("error", (err) => {
  console.error(`${PACKAGE}: could not run ${bin}: ${err.message}`);
  process.exit(1);
});
child.on("exit", (code, signal) => {
  if (signal) {
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code ?? 1);
});
