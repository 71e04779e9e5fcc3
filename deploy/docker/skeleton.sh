#!/bin/sh
# Writes the Cargo workspace's skeleton to DEST: the manifests and the lockfile as they are, and
# every target root replaced by a stub (a library by an empty file, anything with a `main` by an
# empty `main`). Building the skeleton compiles every dependency and none of our code, so the
# Dockerfile's dependency layer is rebuilt only when a manifest or the lockfile changes.
#
#   deploy/docker/skeleton.sh DEST        # run from the workspace root
#
# deploy/validate.sh runs this same script and loads the result with `cargo metadata`.
set -eu
dest=${1:?usage: skeleton.sh DEST}
mkdir -p "$dest"
cp Cargo.toml Cargo.lock "$dest/"
find crates xtask -name Cargo.toml | while read -r manifest; do
  mkdir -p "$dest/$(dirname "$manifest")"
  cp "$manifest" "$dest/$manifest"
done
find crates xtask \( -path '*/src/lib.rs' -o -path '*/src/main.rs' -o -path '*/src/bin/*.rs' \
  -o -path '*/benches/*.rs' -o -path '*/tests/*.rs' -o -path '*/examples/*.rs' \) -print \
| while read -r f; do
  mkdir -p "$dest/$(dirname "$f")"
  case "$f" in
    */src/lib.rs) : > "$dest/$f" ;;
    *) echo 'fn main() {}' > "$dest/$f" ;;
  esac
done
