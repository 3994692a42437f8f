#!/bin/sh
# Installs Catty (catty, catty-server, catty-agent) for this machine: downloads the release
# archive, checks its SHA-256 against SHA256SUMS, and installs the binaries into PREFIX/bin.
#
#   curl -fsSL <base>/install.sh | sh
#   sh install.sh [--prefix DIR] [--version VERSION] [--base-url URL]
#
# CATTY_DOWNLOAD_URL, CATTY_VERSION and CATTY_PREFIX work too. Default prefix: ~/.local.
set -eu

BASE_URL="${CATTY_DOWNLOAD_URL:-__BASE_URL__}"
VERSION="${CATTY_VERSION:-__VERSION__}"
PREFIX="${CATTY_PREFIX:-$HOME/.local}"

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
