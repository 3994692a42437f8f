import pkg from "../../package.json" with { type: "json" };

/** The version of all three binaries, from package.json (inlined at build time). */
export const VERSION: string = pkg.version;
