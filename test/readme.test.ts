/** The README's settings tables are generated from the code's settings declarations. */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { README, renderReadme } from "./setup/readme-settings.ts";

test("README settings tables match the settings the binaries declare (regenerate: bun test/setup/readme-settings.ts --write)", () => {
  const text = readFileSync(README, "utf8");
  expect(renderReadme(text)).toBe(text);
});
