/**
 * The one piece of ASN.1 an ACME client needs: a PKCS#10 certificate signing request (RFC 2986)
 * for a P-256 key, naming the domains in its subject and a subjectAltName extension, signed with
 * ECDSA-SHA256. DER is written by hand: a handful of tag-length-value helpers.
 */

const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** One DER element: tag, length (short or long form), contents. */
export function der(tag: number, ...contents: Uint8Array[]): Uint8Array {
  const body = concat(...contents);
  const n = body.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : n < 0x10000 ? [0x82, n >> 8, n & 0xff] : [0x83, n >> 16, (n >> 8) & 0xff, n & 0xff];
  return concat(new Uint8Array([tag, ...length]), body);
}

const seq = (...c: Uint8Array[]): Uint8Array => der(0x30, ...c);
const set = (...c: Uint8Array[]): Uint8Array => der(0x31, ...c);
const utf8 = (s: string): Uint8Array => der(0x0c, new TextEncoder().encode(s));
const octets = (b: Uint8Array): Uint8Array => der(0x04, b);
const bits = (b: Uint8Array): Uint8Array => der(0x03, new Uint8Array([0]), b);

/** A positive INTEGER from big-endian bytes: leading zeros dropped, one added when the top bit is set. */
export function derInteger(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const v = bytes.subarray(i);
  return der(0x02, (v[0] as number) & 0x80 ? concat(new Uint8Array([0]), v) : v);
}

/** An OBJECT IDENTIFIER from its dotted form. */
export function oid(dotted: string): Uint8Array {
  const [a = 0, b = 0, ...rest] = dotted.split(".").map(Number);
  const out = [40 * a + b];
  for (const n of rest) {
    const chunk = [n & 0x7f];
    for (let v = n >>> 7; v > 0; v >>>= 7) chunk.unshift((v & 0x7f) | 0x80);
    out.push(...chunk);
  }
  return der(0x06, new Uint8Array(out));
}

/** WebCrypto's ECDSA signature (r and s, 32 bytes each) as the DER ECDSA-Sig-Value X.509 wants. */
export function ecdsaSigToDer(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  return seq(derInteger(raw.subarray(0, half)), derInteger(raw.subarray(half)));
}

const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";
const COMMON_NAME = "2.5.4.3";
const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";
const SUBJECT_ALT_NAME = "2.5.29.17";

/** A DER CSR for `domains` (the first is the subject's common name), signed by the P-256 key pair. */
export async function createCsr(keys: CryptoKeyPair, domains: readonly string[]): Promise<Uint8Array> {
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const names = seq(...domains.map((d) => der(0x82, new TextEncoder().encode(d))));
  const extensions = seq(seq(oid(SUBJECT_ALT_NAME), octets(names)));
  const info = seq(
    derInteger(new Uint8Array([0])),
    seq(set(seq(oid(COMMON_NAME), utf8(domains[0] ?? "")))),
    spki,
    der(0xa0, seq(oid(EXTENSION_REQUEST), set(extensions))),
  );
  const signature = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.privateKey, info as Uint8Array<ArrayBuffer>));
  return seq(info, seq(oid(ECDSA_WITH_SHA256)), bits(ecdsaSigToDer(signature)));
}

/** DER bytes as PEM with the given label. */
export function pem(label: string, bytes: Uint8Array): string {
  const b64 = Buffer.from(bytes).toString("base64");
  return `-----BEGIN ${label}-----\n${b64.replace(/.{1,64}/g, "$&\n")}-----END ${label}-----\n`;
}
