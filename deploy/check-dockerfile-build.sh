#!/usr/bin/env bash
# Runs the Dockerfile's release build without Docker, so the Dockerfile
# cannot rot where no Docker engine is available (CI, this repository's
# sandbox):
#
#   1. asserts the Dockerfile still copies the same inputs and runs the exact
#      build command below;
#   2. builds from a copy of just those inputs (what the build context holds
#      after .dockerignore), with the same stub bench target;
#   3. smoke-tests the binary the way the image uses it: `version`, then
#      `sidecar` answering the HEALTHCHECK command on /healthz and /readyz.
#
# Usage: bash deploy/check-dockerfile-build.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

build_cmd='cargo build --release --locked --features sidecar --bin mapscope'
# How the Dockerfile stubs the bench and example targets Cargo.toml declares.
stub_cmd="awk -F'\"' '/^\\[\\[bench\\]\\]/ { d = \"benches\" } /^\\[\\[example\\]\\]/ { d = \"examples\" } /^name = / && d { print d \"/\" \$2 \".rs\"; d = \"\" }' Cargo.toml"

fail() {
  echo "check-dockerfile-build: $*" >&2
  exit 1
}

# 1. The Dockerfile runs what this script runs.
grep -qF -- "$build_cmd" Dockerfile || fail "Dockerfile no longer runs: $build_cmd"
grep -qxF 'COPY Cargo.toml Cargo.lock ./' Dockerfile || fail "Dockerfile no longer copies Cargo.toml Cargo.lock"
grep -qxF 'COPY src ./src' Dockerfile || fail "Dockerfile no longer copies src"
grep -qF -- "$stub_cmd" Dockerfile || fail "Dockerfile no longer stubs the bench and example targets with: $stub_cmd"
grep -qF 'CMD ["/usr/local/bin/mapscope", "healthcheck", "--url", "http://127.0.0.1:9847/healthz"]' Dockerfile \
  || fail "Dockerfile HEALTHCHECK changed; update this script's smoke test"

# 2. Build from exactly the build context's inputs.
context="$(mktemp -d)"
sidecar_pid=""
cleanup() {
  if [[ -n "$sidecar_pid" ]]; then
    kill "$sidecar_pid" 2>/dev/null || true
    wait "$sidecar_pid" 2>/dev/null || true
  fi
  rm -rf "$context"
}
trap cleanup EXIT
cp Cargo.toml Cargo.lock "$context/"
cp -R src "$context/src"
mkdir -p "$context/benches" "$context/examples"
(cd "$context" && eval "$stub_cmd" | while read -r stub; do printf 'fn main() {}\n' > "$stub"; done)

echo "check-dockerfile-build: $build_cmd (in a copy of the build context)"
# Share the repository's target directory so dependencies are built once.
(cd "$context" && CARGO_TARGET_DIR="$repo/target" MAPSCOPE_REVISION=check $build_cmd)
binary="$repo/target/release/mapscope"

# 3. Smoke test.
"$binary" version
log="$context/sidecar.log"
MAPSCOPE_LISTEN=127.0.0.1:0 MAPSCOPE_INGEST_LISTEN=127.0.0.1:0 "$binary" sidecar >"$log" 2>&1 &
sidecar_pid=$!
url=""
for _ in $(seq 100); do
  url="$(sed -n 's|^mapscope: http listening on \(http://[^ ]*\)/$|\1|p' "$log" | head -n 1)"
  [[ -n "$url" ]] && break
  kill -0 "$sidecar_pid" 2>/dev/null || { cat "$log" >&2; fail "the sidecar exited"; }
  sleep 0.1
done
[[ -n "$url" ]] || { cat "$log" >&2; fail "the sidecar did not start listening"; }
"$binary" healthcheck --url "$url/healthz" || fail "healthcheck $url/healthz failed"
"$binary" healthcheck --url "$url/readyz" || fail "healthcheck $url/readyz failed"
echo "check-dockerfile-build: OK (built, version, healthcheck on $url)"
