#!/usr/bin/env bash
# Builds the native system layer (native/: the gvfs_native N-API addon, C) with
# node-gyp against Debian's Node headers (/usr/include/node, --nodedir=/usr):
# never downloads headers or prebuilt binaries. A no-op when the addon is newer
# than its sources.
set -euo pipefail
cd "$(dirname "$0")/../native"
out=build/Release/gvfs_native.node
if [[ -f $out ]] && [[ -z $(find src binding.gyp -newer "$out" -print -quit) ]]; then
  exit 0
fi
[[ -f /usr/include/node/node_api.h ]] || { echo "build-native: /usr/include/node/node_api.h missing (Debian nodejs headers: libnode-dev / nodejs)" >&2; exit 1; }
# node-gyp from the devDependencies, else the copy npm ships with.
gyp=../node_modules/node-gyp/bin/node-gyp.js
if [[ ! -f $gyp ]]; then
  gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
fi
[[ -f $gyp ]] || { echo "build-native: node-gyp not found (npm ci installs it)" >&2; exit 1; }
echo "build-native: building native/ with $(node "$gyp" --version)" >&2
node "$gyp" rebuild --nodedir=/usr --jobs=2 >&2
