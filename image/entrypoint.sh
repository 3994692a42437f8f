#!/bin/sh
# The session image's entrypoint. The provider picks a uid of its own for each session's program
# (CATTY_PROGRAM_UID) so that no two sessions on a host share one: per-user limits (the number
# of processes) then hold per session, and nothing of one session's user is another's. The
# image's `catty` user takes that uid here; then tini runs the agent (and reaps orphans).
set -eu
uid=${CATTY_PROGRAM_UID:-}
if [ -n "$uid" ] && [ "$uid" != "$(id -u catty)" ]; then
  groupmod -g "$uid" catty
  usermod -u "$uid" -g "$uid" catty
  chown "$uid:$uid" /workspace
fi
exec /usr/bin/tini -- /usr/local/bin/catty-agent "$@"
