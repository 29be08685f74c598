#!/usr/bin/env bash
# `make e2e-kind`: the end-to-end suite (tests/e2e) on a kind cluster, where Docker and kind exist.
#
# Builds the image with the project's Dockerfile, loads it into a kind cluster with
# `kind load docker-image`, and runs tests/e2e against that cluster's kubeconfig
# (OSTINATO_E2E_KUBECONFIG) instead of the project's own single-node cluster. Where Docker or
# kind is missing it says so and exits 0: the same suite runs on the single-node cluster with
# `make e2e`.
#
# Environment: KIND_CLUSTER (default ostinato-e2e), KIND_KEEP=1 keeps the cluster afterwards,
# KIND_NODE_IMAGE picks the node image (kind's default otherwise), PYTHON (default .venv/bin/python).
set -euo pipefail

cd "$(dirname "$0")/.."
CLUSTER="${KIND_CLUSTER:-ostinato-e2e}"
IMAGE="localhost/ostinato:dev"
PYTHON="${PYTHON:-.venv/bin/python}"

skip() {
    echo "make e2e-kind: skipped: $1 (the same suite runs on the project's own cluster: make e2e)"
    exit 0
}

command -v kind >/dev/null 2>&1 || skip "kind is not installed (https://kind.sigs.k8s.io)"
command -v docker >/dev/null 2>&1 || skip "docker is not installed"
docker info >/dev/null 2>&1 || skip "the Docker daemon is not reachable (docker info failed)"

created=0
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
    created=1
fi
cleanup() {
    if [[ "$created" == 1 && "${KIND_KEEP:-0}" != 1 ]]; then
        kind delete cluster --name "$CLUSTER"
    fi
}
trap cleanup EXIT

docker build --tag "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

kubeconfig="$(mktemp -t ostinato-kind-kubeconfig.XXXXXX)"
trap 'rm -f "$kubeconfig"; cleanup' EXIT
kind get kubeconfig --name "$CLUSTER" >"$kubeconfig"

OSTINATO_E2E_KUBECONFIG="$kubeconfig" "$PYTHON" -m pytest tests/e2e -v -p no:cacheprovider "$@"
