#!/usr/bin/env bash
# Builds Istio's pilot-discovery (the peer the control-plane benchmark runs against)
# into ${STRAIT_CACHE:-/var/cache/strait}/istio/pilot-discovery.
#
# Istio tags its releases without the "v" prefix ("1.30.3"), so the Go module proxy
# knows them only as pseudo-versions. The pin below is a commit on the release-1.30
# branch (its go.mod requires istio.io/api v1.30.4-0.…, i.e. after 1.30.3). istio's
# go.mod has no replace/exclude directives, so `go install pkg@version` works as is.
#
# Everything Go writes (module cache, build cache) stays under the cache dir, so a
# rerun is incremental and `rm -rf "$CACHE"` removes all of it.
set -euo pipefail

ISTIO_MODULE_VERSION="${ISTIO_MODULE_VERSION:-v0.0.0-20260423205519-b01690e6db7d}"
ISTIO_VERSION_LABEL="${ISTIO_VERSION_LABEL:-1.30-dev+b01690e6db7d}"

CACHE="${STRAIT_CACHE:-/var/cache/strait}/istio"
mkdir -p "$CACHE"

export GOPATH="$CACHE/gopath"
export GOMODCACHE="$CACHE/gomodcache"
export GOCACHE="$CACHE/gocache"
export GOBIN="$CACHE"
# The installed Go is newer than istio's `go` line; never download another toolchain.
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false"

stamp="$CACHE/pilot-discovery.version"
if [[ -x "$CACHE/pilot-discovery" && -f "$stamp" && "$(cat "$stamp")" == "$ISTIO_MODULE_VERSION" ]]; then
    echo "istio pilot-discovery $ISTIO_MODULE_VERSION already built: $CACHE/pilot-discovery"
    exit 0
fi

start=$(date +%s)
go install -trimpath \
    -ldflags "-s -w -X istio.io/istio/pkg/version.buildVersion=$ISTIO_VERSION_LABEL" \
    "istio.io/istio/pilot/cmd/pilot-discovery@$ISTIO_MODULE_VERSION"
end=$(date +%s)

echo "$ISTIO_MODULE_VERSION" >"$stamp"
echo "built $CACHE/pilot-discovery ($ISTIO_MODULE_VERSION) in $((end - start)) s"
du -sh "$CACHE" 2>/dev/null || true
