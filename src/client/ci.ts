/** A CI run: `CI` or `CONTINUOUS_INTEGRATION` set, and not to 0 or false (as Ink and most tools read it). */
export function inCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const set = (k: string): boolean => k in env && env[k] !== "0" && env[k] !== "false";
  return set("CI") || set("CONTINUOUS_INTEGRATION");
}
