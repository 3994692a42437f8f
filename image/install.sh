#!/bin/sh
# Runs as root inside the session image while it is built (image/Dockerfile, and the chroot of
# `npm run session-image`): installs Node.js, npm and Claude Code from the npm registry, and makes
# the unprivileged `catty` user (uid 1000) the program runs as, with its home and /workspace.
set -eu
here=$(dirname "$0")
. "$here/versions.env"
registry=${NPM_REGISTRY:-https://registry.npmjs.org}
# A build machine behind a TLS-inspecting proxy passes its CA bundle for the build only
# (CATTY_BUILD_CA); the image keeps Debian's.
if [ -n "${CATTY_BUILD_CA:-}" ]; then
  export CURL_CA_BUNDLE="$CATTY_BUILD_CA" NODE_EXTRA_CA_CERTS="$CATTY_BUILD_CA" npm_config_cafile="$CATTY_BUILD_CA"
fi

case "$(dpkg --print-architecture)" in
  amd64) arch=x64 ;;
  arm64) arch=arm64 ;;
  *) echo "unsupported architecture $(dpkg --print-architecture)" >&2; exit 1 ;;
esac

fetch() { # package version → extracted into $2/package
  name=$1; version=$2; dir=$3
  mkdir -p "$dir"
  curl -fsSL --retry 3 "$registry/$name/-/${name##*/}-$version.tgz" | tar -xz -C "$dir"
}

tmp=$(mktemp -d)
# Node.js: the official binary, as the npm registry carries it.
fetch "node-linux-$arch" "$NODE_VERSION" "$tmp/node"
cp "$tmp/node/package/bin/node" /usr/local/bin/node
# npm, then Claude Code through npm (its postinstall puts the native binary in place).
fetch npm "$NPM_VERSION" "$tmp/npm"
mkdir -p /usr/local/lib/node_modules
mv "$tmp/npm/package" /usr/local/lib/node_modules/npm
ln -sf ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
ln -sf ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
rm -rf "$tmp"
npm install --global --no-fund --no-audit --registry "$registry" "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
npm cache clean --force >/dev/null 2>&1 || true
rm -rf /root/.npm

# The program's user. The agent runs as root beside it and hands /workspace over at start.
useradd --uid 1000 --user-group --create-home --home-dir /home/catty --shell /bin/bash catty
install -d -o catty -g catty -m 0755 /workspace
install -d -o root -g root -m 0700 /var/lib/catty-agent
# Claude Code opens at its prompt: onboarding done, /workspace trusted (src/lib/claude-config.ts).
printf '{"hasCompletedOnboarding": true, "projects": {"/workspace": {"hasTrustDialogAccepted": true}}}\n' > /home/catty/.claude.json
chown catty:catty /home/catty/.claude.json
