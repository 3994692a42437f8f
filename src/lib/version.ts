import pkg from "../../package.json" with { type: "json" };

/** Set by `build.ts --release` (package.json's version); absent in development builds. */
declare const CATTY_VERSION: string | undefined;

/** The version of all three binaries: a release's (e.g. 0.1.0), or "dev" for a development build. */
export const VERSION: string = typeof CATTY_VERSION === "string" ? CATTY_VERSION : "dev";

/** package.json's version, which the next release will carry. */
export const PACKAGE_VERSION: string = pkg.version;
