#!/usr/bin/env bash
# Builds the release binary statically linked (glibc, static-pie; no extra toolchain needed) and
# the Debian package from it. Output: target/x86_64-unknown-linux-gnu/release/chat and
# target/debian/chat_<version>-1_amd64.deb.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked --target "$target" --bin chat
bin="target/$target/release/chat"
file "$bin"
if ! file "$bin" | grep -q 'static'; then
  echo "packaging/build.sh: $bin is not statically linked" >&2
  exit 1
fi
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "packaging/build.sh: $bin has dynamic dependencies:" >&2
  ldd "$bin" >&2
  exit 1
fi
echo "static binary: $bin ($(du -h "$bin" | cut -f1))"
if ! command -v cargo-deb >/dev/null 2>&1; then
  cargo install cargo-deb --locked
fi
cargo deb --no-build --target "$target" --output target/debian/
ls -l target/debian/*.deb
