#!/usr/bin/env bash
# Build dependencies osprey needs beyond the Rust toolchain, on Debian/Ubuntu.
# RocksDB's Rust bindings are generated with bindgen, which needs libclang.
set -euo pipefail

need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
command -v clang >/dev/null 2>&1 || need+=(clang)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The test services: kinesis-local comes from npm, moto from PyPI into a venv.
command -v npm >/dev/null 2>&1 || need+=(nodejs npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
# The operations kit's tests: promtool and a Prometheus server (its postinst may start one on
# :9090; the tests never use that port), and a compose client for `config` checks.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
{ docker compose version || command -v docker-compose; } >/dev/null 2>&1 || need+=(docker-compose)
[ "${#need[@]}" -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "deps.sh: installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
