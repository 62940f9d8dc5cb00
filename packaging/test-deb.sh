#!/usr/bin/env bash
# Installs the built .deb on this machine (as root) and checks it the way a self-hoster would use
# it, without systemd: the binary, the packaged config, the packaged user serving it, then
# remove (data kept) and purge (data gone). Run after packaging/build.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
deb=$(ls target/debian/chat_*.deb | head -n1)
as_root dpkg -i "$deb"
/usr/bin/chat --version
/usr/bin/chat config check /etc/chat/chat.toml >/dev/null
getent passwd chat >/dev/null
test "$(stat -c %U:%G /var/lib/chat)" = "chat:chat"
test "$(stat -c %a /etc/chat/chat.toml)" = "640"

# Serve as the packaged user with the packaged config (on loopback ports, for the test).
log=$(mktemp)
as_root runuser -u chat -- /usr/bin/chat serve --config /etc/chat/chat.toml \
  --listen 127.0.0.1:0 --turn-listen 127.0.0.1:0 --metrics-listen off >"$log" 2>&1 &
for _ in $(seq 1 50); do
  url=$(grep -o 'http://[0-9.:]*' "$log" | head -n1 || true)
  [ -n "$url" ] && break
  sleep 0.2
done
[ -n "$url" ] || { cat "$log"; echo "the packaged server did not start" >&2; exit 1; }
test "$(curl -fsS "$url/healthz")" = "ok"
test "$(curl -fsS "$url/readyz")" = "ready"
curl -fsS -X POST "$url/api/v1/register" -H 'content-type: application/json' \
  -d '{"username":"deb","password":"packaged-pass"}' >/dev/null
# A backup while it runs, as the service user, through the admin socket.
as_root runuser -u chat -- /usr/bin/chat backup --config /etc/chat/chat.toml /var/lib/chat/test-backup.redb
test -s /var/lib/chat/test-backup.redb
# Admin commands as the service user, through the admin socket of the running server.
as_root runuser -u chat -- /usr/bin/chat admin --config /etc/chat/chat.toml user make-admin deb
as_root runuser -u chat -- /usr/bin/chat admin --config /etc/chat/chat.toml user list | grep -E '^deb +@deb:.* yes '
as_root pkill -TERM -u chat -f '/usr/bin/chat serve' || true
for _ in $(seq 1 50); do pgrep -u chat -f '/usr/bin/chat serve' >/dev/null || break; sleep 0.2; done
test -f /var/lib/chat/chat.redb

# Remove keeps the data; purge deletes it.
as_root dpkg -r chat
test ! -e /usr/bin/chat
test -f /var/lib/chat/chat.redb
as_root dpkg -P chat
test ! -e /var/lib/chat
echo "packaging/test-deb.sh: ok"
