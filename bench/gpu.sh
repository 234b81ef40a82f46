#!/usr/bin/env bash
# npm run bench:gpu: first the device tests (test/device*.test.ts: the CPU-vs-GPU losses, the state and teacher tables
# kept on the GPU) and the node placement of the GPU graphs (bench/gpu-placement.ts), then kdistill's training and KD steps on a GPU (WebGPU provider, training state kept on the
# device) against PyTorch CUDA eager on the same machine, at batch 128, 1,024 and 4,096 (bench/gpu.ts). For a machine
# with an NVIDIA GPU and no Node.js (../shared/GPU.md): on the development machine run `npm ci && npm run build &&
# bash bench/gpu-bundle.sh`, carry `.gpu` and `dist`, then run this script there. Bounded: 8 minutes in all.
# Full results go to $OUT (test log, placement log, bench-gpu.json) when OUT is set; the table is printed last.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .gpu ]; then
  bash .gpu/unpack.sh
  export PATH="$PWD/.gpu/bin:$PATH"
fi
export VK_DRIVER_FILES="${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}"
[ -f dist/bench/gpu.js ] || { echo "dist/bench/gpu.js is missing: build first (npm run build) and carry dist/" >&2; exit 2; }
log="${OUT:-/tmp}/device-tests.log"
# The tests' verdict is kept, not fatal: the timings are worth having even when a test fails.
timeout 90 node --test --test-reporter=spec dist/test/device.test.js dist/test/device-state.test.js > "$log" 2>&1 || true
grep -E '^(✔|✖|﹣|ℹ (tests|pass|fail|skipped))' "$log" || tail -20 "$log"
# Where ONNX Runtime places each node of the GPU graphs: every node that falls back to the CPU is listed.
timeout 60 node dist/bench/gpu-placement.js --device webgpu 2> "${OUT:-/tmp}/placement.log" >/dev/null || true
awk '/^===/ { print; cpu = 0; next }
     /VerifyEachNodeIsAssignedToAnEp/ && /placed on/ { sub(/^.*VerifyEachNodeIsAssignedToAnEp\] */, "  "); print; cpu = /CPUExecutionProvider/; next }
     cpu && /VerifyEachNodeIsAssignedToAnEp/ { sub(/^.*VerifyEachNodeIsAssignedToAnEp\] */, "    "); print }' "${OUT:-/tmp}/placement.log" | head -60
timeout 320 node dist/bench/gpu.js --device webgpu --limit 300 "$@"
