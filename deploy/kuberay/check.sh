#!/usr/bin/env bash
# Deploy Sampan on a Kubernetes cluster with KubeRay, then serve the seed example through it and ask its
# first URL. Runs only where `kubectl` reaches a cluster with the KubeRay operator installed; it changes
# that cluster (namespace SAMPAN_K8S_NAMESPACE, default sampan-check) and removes what it made at the end.
#   IMAGE=registry.example.com/sampan:latest deploy/kuberay/check.sh
set -euo pipefail
cd "$(dirname "$0")"
: "${IMAGE:?set IMAGE to an image with Python, ray and sampan[ray]}"
NS="${SAMPAN_K8S_NAMESPACE:-sampan-check}"
command -v kubectl >/dev/null || { echo "kubectl is not installed: nothing to check here" >&2; exit 2; }
kubectl cluster-info >/dev/null 2>&1 || { echo "no Kubernetes cluster reachable: nothing to check here" >&2; exit 2; }
kubectl get crd rayclusters.ray.io >/dev/null 2>&1 || { echo "the KubeRay operator is not installed" >&2; exit 2; }
kubectl create namespace "$NS" >/dev/null 2>&1 || true
trap 'kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
tmp="$(mktemp -d)"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=sampan-control" \
  -addext "subjectAltName=DNS:sampan-control" -keyout "$tmp/tls.key" -out "$tmp/tls.crt" 2>/dev/null
kubectl -n "$NS" create secret tls sampan-control-tls --cert "$tmp/tls.crt" --key "$tmp/tls.key"
for f in raycluster.yaml sampan.yaml; do sed "s#REPLACE_WITH_YOUR_IMAGE#$IMAGE#" "$f" | kubectl -n "$NS" apply -f -; done
kubectl -n "$NS" rollout status deployment/sampan-server --timeout=600s
pod="$(kubectl -n "$NS" get pod -l app=sampan-server -o name | head -1)"
# The seed example, deployed from inside the server's pod (its CLI finds the server and its token there).
kubectl -n "$NS" exec "$pod" -- sh -c 'cat > /tmp/hello.py' < ../../examples/hello.py
kubectl -n "$NS" exec "$pod" -- sampan deploy /tmp/hello.py
url="$(kubectl -n "$NS" exec "$pod" -- sampan app list --json | python3 -c \
  'import json,sys; a=json.load(sys.stdin); print(next(e["url"] for x in a for e in x["endpoints"] if e["function"]=="square"))')"
answer="$(kubectl -n "$NS" exec "$pod" -- python3 -c "import urllib.request; print(urllib.request.urlopen('$url/?x=42').read().decode())")"
echo "$answer"
test "$answer" = '{"square":1764}'
echo "ok: Sampan on KubeRay served the seed example"
