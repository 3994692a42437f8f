#!/bin/sh
# Installs Catty (catty, catty-server, catty-agent) for this machine: downloads the release
# archive, SHA256SUMS and its signature, checks the signature with the release key written below
# (OpenSSL 3), the archive's SHA-256 against SHA256SUMS, and installs the binaries into PREFIX/bin.
#
#   curl -fsSL <base>/install.sh | sh
#   sh install.sh [--prefix DIR] [--version VERSION] [--base-url URL]
#
# CATTY_DOWNLOAD_URL, CATTY_VERSION, CATTY_PREFIX and CATTY_OPENSSL (an OpenSSL 3 openssl) work too.
set -eu

BASE_URL="${CATTY_DOWNLOAD_URL:-__BASE_URL__}"
VERSION="${CATTY_VERSION:-__VERSION__}"
PREFIX="${CATTY_PREFIX:-$HOME/.local}"
OPENSSL="${CATTY_OPENSSL:-openssl}"
# The public key the release's SHA256SUMS is signed with (Ed25519, base64 SPKI): a download
# location that swaps the archive and SHA256SUMS together still cannot sign them.
RELEASE_KEY="__RELEASE_KEY__"

fail() {
  echo "catty install: $1" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || fail "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
    --version) [ $# -ge 2 ] || fail "--version needs a version"; VERSION=$2; shift 2 ;;
    --base-url) [ $# -ge 2 ] || fail "--base-url needs a URL"; BASE_URL=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) fail "unknown option $1 (see --help)" ;;
  esac
done
case "$BASE_URL" in
  __BASE*) fail "no download URL: set CATTY_DOWNLOAD_URL or pass --base-url" ;;
esac
case "$RELEASE_KEY" in
  __RELEASE*) fail "this install.sh holds no release key: use the install.sh published with the release" ;;
esac
case "$VERSION" in
  *[!0-9A-Za-z.+-]*|"") fail "\"$VERSION\" is not a version (such as 1.2.3)" ;;
esac
# Signatures are checked with OpenSSL 3 (pkeyutl -rawin); without it nothing is installed.
command -v "$OPENSSL" >/dev/null 2>&1 || fail "checking the release's signature needs OpenSSL 3, and there is no $OPENSSL: install it (apt install openssl, brew install openssl@3), or point CATTY_OPENSSL at one"
case "$("$OPENSSL" version 2>/dev/null)" in
  "OpenSSL "[3-9].*|"OpenSSL "[1-9][0-9]*) ;;
  *) fail "checking the release's signature needs OpenSSL 3 or newer, and $OPENSSL is $("$OPENSSL" version 2>/dev/null || echo "of unknown version"): install it (brew install openssl@3) and point CATTY_OPENSSL at its openssl" ;;
esac

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) fail "$(uname -s) is not supported yet (Linux and macOS are)" ;;
esac
case "$(uname -m)" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) fail "$(uname -m) is not supported yet (x64 and arm64 are)" ;;
esac
archive="catty-$VERSION-$os-$arch.tar.gz"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
fetch() {
  if command -v curl >/dev/null 2>&1; then curl -fsSL "$1" -o "$2"
  elif command -v wget >/dev/null 2>&1; then wget -q "$1" -O "$2"
  else fail "neither curl nor wget is installed"; fi
}
echo "Downloading $archive…"
fetch "$BASE_URL/$archive" "$tmp/$archive" || fail "could not download $BASE_URL/$archive"
fetch "$BASE_URL/SHA256SUMS" "$tmp/SHA256SUMS" || fail "could not download $BASE_URL/SHA256SUMS"
fetch "$BASE_URL/SHA256SUMS.sig" "$tmp/SHA256SUMS.sig" || fail "could not download $BASE_URL/SHA256SUMS.sig"
printf -- '-----BEGIN PUBLIC KEY-----\n%s\n-----END PUBLIC KEY-----\n' "$RELEASE_KEY" > "$tmp/release-key.pem"
"$OPENSSL" pkeyutl -verify -pubin -inkey "$tmp/release-key.pem" -rawin -in "$tmp/SHA256SUMS" -sigfile "$tmp/SHA256SUMS.sig" >/dev/null 2>&1 ||
  fail "SHA256SUMS at $BASE_URL is not signed with the Catty release key: refusing to install (the download may have been tampered with)"

expected=$(awk -v f="$archive" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")
[ -n "$expected" ] || fail "$archive is not listed in SHA256SUMS"
if command -v sha256sum >/dev/null 2>&1; then actual=$(sha256sum "$tmp/$archive" | cut -d' ' -f1)
else actual=$(shasum -a 256 "$tmp/$archive" | cut -d' ' -f1); fi
[ "$expected" = "$actual" ] || fail "checksum mismatch for $archive (expected $expected, got $actual): refusing to install"

mkdir -p "$tmp/x" "$PREFIX/bin"
tar xzf "$tmp/$archive" -C "$tmp/x"
for b in catty catty-server catty-agent; do
  [ -f "$tmp/x/$b" ] || fail "$archive holds no $b"
  cp "$tmp/x/$b" "$PREFIX/bin/.$b.new.$$"
  chmod 0755 "$PREFIX/bin/.$b.new.$$"
  mv -f "$PREFIX/bin/.$b.new.$$" "$PREFIX/bin/$b"
done
echo "Installed catty $VERSION into $PREFIX/bin."
case ":$PATH:" in
  *":$PREFIX/bin:"*) ;;
  *) echo "Add $PREFIX/bin to your PATH to run catty." ;;
esac
