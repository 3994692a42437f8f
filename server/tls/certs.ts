/**
 * Certificates as the HTTPS listener serves them: a PEM chain and its key, with the names and
 * expiry read from the leaf, and the pick of the one that serves a name (a wildcard serves one
 * label below its domain).
 */
import { X509Certificate } from "node:crypto";

export interface Certificate {
  /** The leaf first, then the chain, PEM. */
  cert: string;
  /** The private key, PEM. */
  key: string;
  /** The DNS names the leaf is for (`*.preview.example.com` for a wildcard). */
  names: string[];
  notAfter: Date;
}

/** Reads the leaf of `cert`; throws with a message saying what is wrong with it. */
export function parseCertificate(cert: string, key: string): Certificate {
  if (!/-----BEGIN CERTIFICATE-----/.test(cert)) throw new Error("is not a PEM certificate (-----BEGIN CERTIFICATE-----)");
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) throw new Error("is not a PEM private key (-----BEGIN PRIVATE KEY-----)");
  const leaf = new X509Certificate(cert);
  const names = (leaf.subjectAltName ?? "")
    .split(",")
    .map((n) => n.trim())
    .filter((n) => n.startsWith("DNS:"))
    .map((n) => n.slice(4).toLowerCase());
  if (names.length === 0) {
    const cn = /CN=([^\n,]+)/.exec(leaf.subject)?.[1];
    if (cn) names.push(cn.toLowerCase());
  }
  return { cert, key, names, notAfter: leaf.validToDate };
}

/** Whether `cert` serves `host`: one of its names, or a wildcard one label above it. */
export function serves(cert: Pick<Certificate, "names">, host: string): boolean {
  const h = host.toLowerCase();
  return cert.names.some((n) => n === h || (n.startsWith("*.") && h.endsWith(n.slice(1)) && !h.slice(0, -n.length + 1).includes(".")));
}
