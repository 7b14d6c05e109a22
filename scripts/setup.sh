#!/usr/bin/env bash
# Installs the Debian packages ferry's build needs, when any is missing; does nothing when all are there.
# Boost 1.81 (not 1.74: Asio's per-operation cancellation) with msgpuck, never msgpack-cxx, whose
# packages depend on Boost 1.74's dev package and conflict with 1.81's.
# The dashboard's browser test needs chromium, node and tests/browser's npm packages (playwright-core);
# the fuzz targets, clang 16 with its sanitizer and libFuzzer runtimes.
#
#   setup.sh [PACKAGE...]     also these packages (scripts/bench.sh --curves: gnuplot-nox)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  g++ cmake ninja-build pkg-config
  clang-format  # the style check (tests/support/check_format.sh)
  clang-tidy-16  # the house rules in .clang-tidy (tests/support/check_tidy.sh)
  curl jq  # docs/http-api.md's examples, which tests/docs/http_api_doc_test.mjs runs
  python3-yaml  # PyYAML: tests/docs/kubernetes_manifest_test.py parses deploy/kubernetes/'s manifests
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev  # Boost.URL: the HTTP API's request targets
  libmsgpuck-dev libsqlite3-dev libcli11-dev libfmt-dev libspdlog-dev
  libdw-dev  # elfutils: names the frames of remote stacks
  libssl-dev  # OpenSSL 3: TLS between hosts
  libgtest-dev libgmock-dev libbenchmark-dev
  chromium nodejs
  clang-16 libclang-rt-16-dev llvm-16  # scripts/fuzz.sh: libFuzzer (clang 14 lacks std::source_location), its symbolizer
  slurmctld slurmd slurm-client munge  # scripts/slurm-cluster.sh: the local Slurm cluster of the cluster tests
  "$@"
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Debian's nodejs comes without npm, NodeSource's with it: ask for Debian's only when there is none.
command -v npm >/dev/null || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# playwright-core at the version tests/browser/package-lock.json pins (it drives Debian's chromium).
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "setup: npm ci --prefix tests/browser" >&2
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null
fi
