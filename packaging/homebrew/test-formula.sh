#!/usr/bin/env bash
# Checks the Homebrew formula without Homebrew (there is none on Linux CI), against a chat binary
# that is already built:
#
#   packaging/homebrew/test-formula.sh [BINARY]     (default target/release/chat)
#
# 1. `ruby -c` on the formula (installs Debian's ruby if missing).
# 2. Its url names the version in Cargo.toml and release.sh can rewrite it (on a copy).
# 3. harness.rb: a stand-in for Homebrew's formula DSL runs `def install` (cargo recorded, not
#    run), the service command and the formula's own `test do` block against BINARY.
# FORMULA=path checks another formula file (e.g. a deliberately broken copy); KEEP_TMP=1 keeps
# the harness's fake Homebrew prefix.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/chat}
formula=${FORMULA:-packaging/homebrew/chat.rb}
[ -x "$bin" ] || { echo "test-formula.sh: $bin is not an executable (build it first)" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v ruby >/dev/null 2>&1; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ruby >/dev/null
fi
command -v curl >/dev/null 2>&1 || { echo "test-formula.sh: the formula's test needs curl" >&2; exit 1; }
echo "== ruby -c ($(ruby -v | cut -d' ' -f1-2))"
ruby -c "$formula"

echo "== version and release.sh"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
grep -q "^  url \".*/chat-$version\.tar\.gz\"$" "$formula" \
  || { echo "test-formula.sh: the url of $formula is not for chat-$version.tar.gz (Cargo.toml)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$formula" "$tmp/chat.rb"
FORMULA="$tmp/chat.rb" CHAT_RELEASE_URL_BASE="file://$tmp/out" packaging/homebrew/release.sh "$tmp/out" HEAD 2>&1 \
  | sed 's/^/  /'
sha=$(sha256sum "$tmp/out/chat-$version.tar.gz" | cut -d' ' -f1)
grep -qx "  sha256 \"$sha\"" "$tmp/chat.rb" && grep -qx "  url \"file://$tmp/out/chat-$version.tar.gz\"" "$tmp/chat.rb" \
  || { echo "test-formula.sh: release.sh did not rewrite url/sha256" >&2; exit 1; }
ruby -c "$tmp/chat.rb" >/dev/null

echo "== harness: install, service, test do (binary $bin: $("$bin" --version))"
ruby packaging/homebrew/harness.rb "$formula" "$bin"
echo "packaging/homebrew/test-formula.sh: ok"
