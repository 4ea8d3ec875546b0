#!/usr/bin/env bash
# Builds the kernels' tests for aarch64 and runs them under qemu (user mode), with and
# without the SDOT extension: the NEON kernels' correctness check on an x86 machine.
#
# Needs Debian's aarch64 Rust standard library (rustup's needs a download from
# static.rust-lang.org; Debian's comes from the package registry), a cross linker and qemu:
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install rustc-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu \
#       libc6-dev-arm64-cross qemu-user
# Debian's `rustc-web` compiler (/usr/bin/rustc) must be the same version as that library.
# The binaries run on the multiarch libc6:arm64 that comes with it (/lib/aarch64-linux-gnu):
# under `qemu-aarch64 -L /usr/aarch64-linux-gnu` (the cross toolchain's older libc) thread
# creation spins forever in qemu 7.2.
#
# Usage: tools/cross/aarch64.sh [CRATE...]   (default: slm-kernels); extra cargo test
# arguments after `--`. Timings under emulation mean nothing; only pass/fail does.
set -euo pipefail
cd "$(dirname "$0")/../.."
crates=()
while [[ $# -gt 0 && "$1" != "--" ]]; do crates+=("$1"); shift; done
[[ $# -gt 0 ]] && shift
[[ ${#crates[@]} -eq 0 ]] && crates=(slm-kernels)
rustc_deb=/usr/bin/rustc
for need in "$rustc_deb" /usr/bin/aarch64-linux-gnu-gcc /usr/bin/qemu-aarch64 /lib/ld-linux-aarch64.so.1; do
    [[ -x "$need" ]] || { echo "missing $need (see the header of $0)" >&2; exit 2; }
done
ls /usr/lib/rustlib/aarch64-unknown-linux-gnu/lib/libstd-*.rlib >/dev/null 2>&1 \
    || { echo "missing aarch64 std: apt-get install libstd-rust-web-dev:arm64" >&2; exit 2; }
export RUSTC="$rustc_deb" RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_DIR=target/aarch64
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
pkgs=()
for c in "${crates[@]}"; do pkgs+=(-p "$c"); done
# `max` has every extension qemu models (SDOT included); Cortex-A53 is ARMv8.0, without it.
for cpu in max cortex-a53; do
    echo "== qemu-aarch64 -cpu $cpu"
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $cpu" \
        cargo test --target aarch64-unknown-linux-gnu "${pkgs[@]}" "$@"
done
