#!/usr/bin/env bash
# Greedy text from the aarch64 `slm` (under qemu, with and without SDOT) against this machine's
# `slm`, for every weight type: the end-to-end check of the NEON kernels. Same setup as
# tools/cross/aarch64.sh (see its header).
#
# Usage: tools/cross/aarch64_generate.sh [HOST_SLM]   (default: target/release/slm, built if absent)
set -euo pipefail
cd "$(dirname "$0")/../.."
host=${1:-target/release/slm}
[[ -x "$host" ]] || cargo build --release -p slm-cli --bin slm
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO_TARGET_DIR=target/aarch64
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
cargo build --target aarch64-unknown-linux-gnu -p slm-cli --bin slm
arm=target/aarch64/aarch64-unknown-linux-gnu/debug/slm
data=../shared/data/llama2c
model=(-m "$data/stories260K.bin" --tokenizer "$data/tok512.bin")
args=(--prompt "Once upon a time" -n 48 -t 0 --no-echo --threads 2)
status=0
for ty in f32 q8_0 q4_1 q4_0; do
    want=$("$host" generate "${model[@]}" "${args[@]}" --type "$ty" 2>/dev/null)
    for cpu in max cortex-a53; do
        got=$(qemu-aarch64 -cpu "$cpu" "$arm" generate "${model[@]}" "${args[@]}" --type "$ty" 2>/dev/null)
        if [[ "$got" == "$want" ]]; then
            echo "$ty, -cpu $cpu: same text"
        else
            echo "$ty, -cpu $cpu: DIFFERENT"; echo "  host:    $want"; echo "  aarch64: $got"; status=1
        fi
    done
done
exit $status
