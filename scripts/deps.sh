#!/usr/bin/env bash
# Install the Debian 12 packages switchboard needs. Non-interactive and
# idempotent: when every package is already installed it only asks dpkg and
# returns (well under a second); otherwise it runs apt-get update once and
# installs what is missing. Runs as root, or through sudo when not root.
#
#   scripts/deps.sh           everything: build, tests, run script, benchmark
#   scripts/deps.sh build     only what compiling needs (the Dockerfile's build stage)
#   scripts/deps.sh runtime   only the shared libraries the binaries load
#                             (the Dockerfile's runtime stage)
#
# The Dockerfile runs this script, so the image and the native set-up install
# the same packages.
set -euo pipefail

build=(
  build-essential cmake pkg-config
  libczmq-dev libzmq3-dev libcivetweb-dev libssl-dev
  libprotobuf-c-dev protobuf-c-compiler libjansson-dev
  libcurl4-openssl-dev libpq-dev libyaml-dev zlib1g-dev
  python3          # CMake registers the Python integration tests
  ca-certificates
)
develop=(
  clang libclang-rt-14-dev   # fuzzing and sanitizers
  clang-format               # the test command checks the layout of every C file
  postgresql                 # initdb, pg_ctl: the private cluster of tests and run.sh
  curl openssl iproute2 procps   # run.sh: health checks, secrets, ports, ps
  wrk                        # bench/
  docker-compose             # validates docker-compose.yml (no engine needed)
  chromium chromium-driver python3-selenium   # tests/integration/test_console.py drives the console's page
  nginx                      # tests/integration/test_nginx_mtls.py, test_lb_nginx.py run README's nginx blocks (their own child, never the service)
  haproxy                    # tests/integration/test_fault_lb.py runs README's HAProxy block (its own child, never the service)
)
runtime=(
  libczmq4 libzmq5 libcivetweb1 libprotobuf-c1 libjansson4
  libcurl4 libpq5 libyaml-0-2 libssl3 zlib1g ca-certificates
  libssl-dev   # civetweb loads libssl.so/libcrypto.so by these unversioned names for TLS
)

case "${1:-all}" in
  all) packages=("${build[@]}" "${develop[@]}") ;;
  build) packages=("${build[@]}") ;;
  runtime) packages=("${runtime[@]}") ;;
  *)
    echo "usage: $0 [all|build|runtime]" >&2
    exit 2
    ;;
esac

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps.sh: all ${#packages[@]} packages are installed"
  exit 0
fi

echo "deps.sh: installing ${missing[*]}"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "deps.sh: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  as_root=(sudo)
fi
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
# nginx and haproxy are here for their binaries (the tests run their own, as
# children, on loopback); on a machine with systemd each package also starts
# its system service (nginx on port 80, haproxy on Debian's sample
# configuration), which nothing of switchboard wants.
if command -v systemctl >/dev/null 2>&1; then
  for service in nginx haproxy; do
    if [[ " ${missing[*]} " == *" $service "* ]] && systemctl is-active --quiet "$service" 2>/dev/null; then
      echo "deps.sh: stopping and disabling the $service service the package started (only its binary is used)"
      "${as_root[@]}" systemctl disable --now "$service" || true
    fi
  done
fi
echo "deps.sh: done"
