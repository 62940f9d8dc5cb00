#!/usr/bin/env bash
# Makes the release source tarball chat-VERSION.tar.gz (`git archive`, top directory
# chat-VERSION/) in OUT_DIR, and rewrites the url and sha256 lines of the Homebrew formula for it.
#
#   packaging/homebrew/release.sh OUT_DIR [REF]
#
# REF: the commit or tag to archive; default the tag vVERSION if it exists, else HEAD (with a
# warning: only a tag is a release). VERSION is the one in REF's Cargo.toml.
# CHAT_RELEASE_URL_BASE: where the tarball is published (the url becomes BASE/chat-VERSION.tar.gz);
# default: the directory of the formula's current url. A file:// base works for a local install.
# FORMULA: the formula file to rewrite; default packaging/homebrew/chat.rb. Relative paths are
# taken from the current directory. Runs on Linux and macOS (sha256sum or shasum).
#
# At release time: tag vVERSION, run this on the tag, publish OUT_DIR/chat-VERSION.tar.gz itself
# at the url (the sha256 is of this file: do not regenerate it elsewhere, another git version may
# compress differently), then commit the formula change and copy chat.rb into the tap.
# The formula is part of the tree it archives, so the copy inside a tarball always names the
# previous tarball; the formula in the repository (after the tag) and in the tap is the one to use.
set -euo pipefail
abs() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
out=$(abs "${1:?usage: packaging/homebrew/release.sh OUT_DIR [REF]}")
formula=$(abs "${FORMULA:-$(dirname "$0")/chat.rb}")
cd "$(dirname "$0")/../.."

cargo_version() { sed -n 's/^version = "\(.*\)"$/\1/p' | head -n1; }
if [ $# -ge 2 ]; then
  ref=$2
else
  tag="v$(cargo_version <Cargo.toml)"
  if git rev-parse -q --verify "refs/tags/$tag" >/dev/null; then
    ref=$tag
  else
    ref=HEAD
    echo "release.sh: no tag $tag: archiving HEAD, which is not a release" >&2
  fi
fi
commit=$(git rev-parse --verify "$ref^{commit}")
version=$(git show "$commit:Cargo.toml" | cargo_version)
[ -n "$version" ] || { echo "release.sh: no version in $ref:Cargo.toml" >&2; exit 1; }

mkdir -p "$out"
tarball="$out/chat-$version.tar.gz"
git archive --format=tar.gz --prefix="chat-$version/" -o "$tarball" "$commit"
# What the formula builds from: the lockfile (std_cargo_args has --locked) and the sources.
listing=$(tar -tzf "$tarball")
for f in Cargo.toml Cargo.lock src/main.rs; do
  grep -qx "chat-$version/$f" <<<"$listing" || { echo "release.sh: $f missing from $tarball" >&2; exit 1; }
done
sha=$({ command -v sha256sum >/dev/null && sha256sum "$tarball" || shasum -a 256 "$tarball"; } | cut -d' ' -f1)

current_url=$(sed -n 's/^  url "\(.*\)"$/\1/p' "$formula")
[ -n "$current_url" ] || { echo "release.sh: no url line in $formula" >&2; exit 1; }
base=${CHAT_RELEASE_URL_BASE:-${current_url%/*}}
url="$base/chat-$version.tar.gz"
if [ "$ref" = "v$version" ]; then
  source_note="git archive of tag $ref ($(git rev-parse --short "$commit"))"
else
  source_note="git archive of $(git rev-parse --short "$commit") (not a release tag)"
fi

tmp=$(mktemp)
sed -e "s|^  # release.sh: .*|  # release.sh: $source_note|" \
    -e "s|^  url \".*\"$|  url \"$url\"|" \
    -e "s|^  sha256 \"[0-9a-f]*\"$|  sha256 \"$sha\"|" "$formula" >"$tmp"
grep -qx "  url \"$url\"" "$tmp" && grep -qx "  sha256 \"$sha\"" "$tmp" \
  || { rm -f "$tmp"; echo "release.sh: could not rewrite the url/sha256 lines of $formula" >&2; exit 1; }
cat "$tmp" >"$formula"
rm -f "$tmp"

echo "tarball: $tarball"
echo "sha256:  $sha"
echo "url:     $url"
echo "formula: $formula ($source_note)"
