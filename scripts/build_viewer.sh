#!/usr/bin/env bash
# Vendor NiiVue's browser bundle into the interactive viewer's component
# (medseg/app/static/volume_viewer/niivue.umd.js, committed: CI and the image need no npm).
# Run again only to change NiiVue's version; the checksum below pins the file committed.
#   scripts/build_viewer.sh            # fetch @niivue/niivue, check, copy
#   scripts/build_viewer.sh --check    # only check the committed file against the pin
set -euo pipefail

VERSION=0.69.0  # @niivue/niivue, BSD-2-Clause (https://github.com/niivue/niivue)
SHA256=47b896b77ec4a5be3ef1949c33ad393b6f45629921f326c279000bcf51bdb4af
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET="$ROOT/medseg/app/static/volume_viewer/niivue.umd.js"

if [[ "${1:-}" != "--check" ]]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "@niivue/niivue@$VERSION" >/dev/null && tar xzf ./*.tgz)
    # the UMD bundle: one file, no module loaded on demand, nothing fetched at run time
    if grep -q 'import(' "$work/package/dist/niivue.umd.js"; then
        echo "build_viewer: niivue.umd.js $VERSION loads modules on demand" >&2
        exit 1
    fi
    cp "$work/package/dist/niivue.umd.js" "$TARGET"
fi
echo "$SHA256  $TARGET" | sha256sum --check --quiet
echo "niivue.umd.js $VERSION: $(wc -c <"$TARGET") bytes, checksum as pinned"
