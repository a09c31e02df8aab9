#!/usr/bin/env bash
# Builds the Kubernetes test binaries the e2e harness runs:
#   kube-apiserver, kube-controller-manager, kubectl  (k8s.io/kubernetes, ./go.mod)
#   etcd                                            (go.etcd.io/etcd/server/v3, ./go.mod)
#   helm                                            (helm.sh/helm/v3, ./helm/go.mod)
#
# Versions live only in the two go.mod files; this script reads them from there.
# Everything it writes goes under ${STRAIT_CACHE:-/var/cache/strait}/kube:
#   gomod/    GOMODCACHE     gocache/  GOCACHE     bin/  the binaries + .stamp
# A second run is a no-op (a few ms) while bin/.stamp matches the go.mod/go.sum
# files, this script and the Go toolchain. Concurrent runs serialise on a lock.
#
# Usage: e2e/kube/build.sh            build if needed, print the binary directory
#        e2e/kube/build.sh --force    rebuild even if the stamp matches
#
# Bumping Kubernetes: edit the k8s.io/kubernetes version and every staging
# `replace` (v0.<minor>.<patch>) in go.mod, then run, in e2e/kube:
#   GOFLAGS=-mod=mod go mod tidy
# (etcd follows the version k8s.io/kubernetes requires). Helm: edit helm/go.mod
# and tidy there.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${STRAIT_CACHE:-/var/cache/strait}/kube"
bin="$cache/bin"
force=0
[[ "${1:-}" == "--force" ]] && force=1

# The version a go.mod requires (or replaces to) for one module path.
pinned() { # file module
	awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$1"
}
kube_version="$(pinned "$here/go.mod" k8s.io/kubernetes)"
etcd_version="$(pinned "$here/go.mod" go.etcd.io/etcd/server/v3)"
helm_version="$(pinned "$here/helm/go.mod" helm.sh/helm/v3)"
for v in kube_version etcd_version helm_version; do
	[[ -n "${!v}" ]] || { echo "build.sh: cannot read $v from go.mod" >&2; exit 1; }
done

mkdir -p "$cache" "$bin"
exec 9>"$cache/.lock"
flock 9

export GOMODCACHE="$cache/gomod" GOCACHE="$cache/gocache"
# Static binaries (as Kubernetes ships them), no toolchain downloads, go.sum is
# authoritative, and a module cache that `rm -rf` can delete.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off
export GOFLAGS="-mod=readonly -modcacherw -trimpath -buildvcs=false"

stamp="$(
	{
		cat "$here/go.mod" "$here/go.sum" "$here/helm/go.mod" "$here/helm/go.sum" "$here/build.sh"
		go version
	} | sha256sum | cut -d' ' -f1
)"
binaries=(etcd kube-apiserver kube-controller-manager kubectl helm)
have_all=1
for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || have_all=0; done
if [[ $force == 0 && $have_all == 1 && "$(cat "$bin/.stamp" 2>/dev/null)" == "$stamp" ]]; then
	echo "$bin"
	exit 0
fi
rm -f "$bin/.stamp"

kube_minor="${kube_version#v1.}"
kube_minor="${kube_minor%%.*}"
# What Kubernetes' hack/lib/version.sh stamps in (minus buildDate, which would
# make every build differ): the apiserver serves it on /version, which kubectl
# and Helm (Chart.yaml kubeVersion) compare against.
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1"
	kube_ldflags+=" -X $pkg.gitMinor=$kube_minor -X $pkg.gitTreeState=clean"
done
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
helm_ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"

timed() { # label command...
	local start=$SECONDS
	"${@:2}"
	echo "build.sh: $1 took $((SECONDS - start)) s" >&2
}

echo "build.sh: Kubernetes $kube_version, etcd $etcd_version, Helm $helm_version -> $bin" >&2
total_start=$SECONDS
cd "$here"
timed kube-apiserver go build -ldflags "$kube_ldflags" -o "$bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
timed kube-controller-manager go build -ldflags "$kube_ldflags" -o "$bin/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager
timed kubectl go build -ldflags "$kube_ldflags" -o "$bin/kubectl" k8s.io/kubernetes/cmd/kubectl
timed etcd go build -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
cd "$here/helm"
timed helm go build -ldflags "$helm_ldflags" -o "$bin/helm" helm.sh/helm/v3/cmd/helm
echo "build.sh: all binaries took $((SECONDS - total_start)) s" >&2

# Refuse to stamp binaries that do not report the pinned versions.
check() { # binary expected-substring command...
	local out
	out="$("${@:3}" 2>&1)" || true
	[[ "$out" == *"$2"* ]] || { echo "build.sh: $1 reports '$out', expected $2" >&2; exit 1; }
}
check kube-apiserver "$kube_version" "$bin/kube-apiserver" --version
check kube-controller-manager "$kube_version" "$bin/kube-controller-manager" --version
check kubectl "$kube_version" "$bin/kubectl" version --client
check etcd "${etcd_version#v}" "$bin/etcd" --version
check helm "$helm_version" "$bin/helm" version --short

echo "$stamp" >"$bin/.stamp"
echo "$bin"
