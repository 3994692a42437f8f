/** The platforms Catty ships binaries for, named `<os>-<arch>` as Node and Bun name them. */
export const TARGETS = ["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64"] as const;
export type Target = (typeof TARGETS)[number];

/** This machine's target, or null when Catty ships nothing for it. */
export function currentTarget(platform: string = process.platform, arch: string = process.arch): Target | null {
  const t = `${platform}-${arch}`;
  return (TARGETS as readonly string[]).includes(t) ? (t as Target) : null;
}
