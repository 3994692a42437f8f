/**
 * Release signatures. A release's `SHA256SUMS` is signed with the project's Ed25519 key
 * (`SHA256SUMS.sig`, the 64 raw signature bytes), because a checksum downloaded from the same place
 * as the archive proves nothing: whoever can replace the one can replace the other. The public
 * key is pinned where the download is checked: built into `catty` (`build.ts --release-key`) for
 * `catty update`, and written into `install.sh` by `release/release.ts`. Keys travel as base64 of
 * their SPKI DER (`MCowBQYDK2VwAyEA…`), which `openssl` reads once wrapped as PEM.
 */
import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";

/** The public key of an Ed25519 private key (PEM), as base64 SPKI DER. */
export function releasePublicKey(privatePem: string): string {
  const key = createPrivateKey(privatePem);
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`the release signing key is ${key.asymmetricKeyType ?? "not an asymmetric key"}, not Ed25519`);
  return createPublicKey(key).export({ format: "der", type: "spki" }).toString("base64");
}

/** The signature of `data` (SHA256SUMS) with the release signing key (PEM). */
export function signRelease(privatePem: string, data: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, data, createPrivateKey(privatePem)));
}

/** Whether `signature` is the pinned key's (base64 SPKI DER) over `data`; false for anything malformed. */
export function verifyRelease(publicKey: string, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    const key = createPublicKey({ key: Buffer.from(publicKey, "base64"), format: "der", type: "spki" });
    return key.asymmetricKeyType === "ed25519" && signature.length === 64 && verify(null, data, key, signature);
  } catch {
    return false;
  }
}

/**
 * A version as a registry may name one: semver (`1.2.3`, `1.2.3-rc.1`, `1.2.3+build.5`), at most
 * 64 characters. Anything else — a path, an option, a URL — is not a version to download or install.
 */
export function isReleaseVersion(version: string): boolean {
  return (
    version.length <= 64 &&
    /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$/.test(version)
  );
}
