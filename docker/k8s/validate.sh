#!/usr/bin/env bash
# validate.sh: checks every manifest of docker/k8s/ offline against the Kubernetes API schemas
# (`kubernetes-validate --strict`: unknown fields are errors), as part of `make test`.
#
# The validator comes from PyPI (`kubernetes-validate`); `.ci/run` installs it in target/k8s-venv.
# Where it is missing, this says so and succeeds, except under CI (CI=true), where it fails.
# It also checks that the validator rejects a broken manifest, so a validator that accepts
# anything cannot pass for one that checked.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
K8S_VERSION=${K8S_VERSION:-1.37.0}

if command -v kubernetes-validate >/dev/null 2>&1; then
    VALIDATE=kubernetes-validate
elif [[ -x "$ROOT/target/k8s-venv/bin/kubernetes-validate" ]]; then
    VALIDATE=$ROOT/target/k8s-venv/bin/kubernetes-validate
else
    hint="python3 -m venv target/k8s-venv && target/k8s-venv/bin/pip install kubernetes-validate==1.37.0"
    if [[ "${CI:-}" == true ]]; then
        echo "k8s-validate: kubernetes-validate is not installed; CI must run it ($hint)" >&2
        exit 1
    fi
    echo "k8s-validate SKIPPED: kubernetes-validate is not installed ($hint)"
    exit 0
fi

manifests=("$HERE"/*.yaml)
"$VALIDATE" --strict --quiet -k "$K8S_VERSION" "${manifests[@]}"
echo "k8s-validate: ${#manifests[@]} manifest file(s) valid against Kubernetes $K8S_VERSION (strict)"

broken=$(mktemp "${TMPDIR:-/tmp}/k8s-broken.XXXXXX.yaml")
trap 'rm -f "$broken"' EXIT
sed 's/^  replicas: 3$/  replicas: three/' "$HERE/node.yaml" >"$broken"
if "$VALIDATE" --strict --quiet -k "$K8S_VERSION" "$broken" >/dev/null 2>&1; then
    echo "k8s-validate: the validator accepted a broken manifest (replicas: three)" >&2
    exit 1
fi
echo "k8s-validate: a broken manifest is rejected, as it must be"
