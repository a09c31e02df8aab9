#!/usr/bin/env bash
# Builds Istio's pilot-discovery (the peer the control-plane benchmark runs against)
# into ${STRAIT_CACHE:-/var/cache/strait}/istio/pilot-discovery.
#
# Which Istio: Istio tags releases without a "v" ("1.30.3"), so the Go module proxy knows
# istio.io/istio only by pseudo-versions, and the proxy reachable here holds three:
#   v0.0.0-20260423205519-b01690e6db7d  master, 2026-04-23 (VERSION file: 1.31; built
#                                        after the release-1.30 branch cut; istio.io/api
#                                        v1.30.0-alpha.1.0.20260415…)
#   v0.0.0-20260826214018-9739e10eb9d7  release-1.30 (istio.io/api v1.30.4-0.…)
#   v0.0.0-20260827124520-eed52ebb66ad  1.31 release candidate
# Only the first builds: the proxy answers "not available" (403) for dependencies the
# other two pin (istio.io/api, istio.io/client-go, go-control-plane, agentgateway/api
# at their exact pseudo-versions). So the pin is the 2026-04-23 master commit, which
# carries the 1.30 code line plus a few weeks of master.
#
# Everything Go writes (module cache, build cache) stays under the cache dir, so a
# rerun is incremental and `rm -rf "$CACHE"` removes all of it.
set -euo pipefail

ISTIO_MODULE_VERSION="${ISTIO_MODULE_VERSION:-v0.0.0-20260423205519-b01690e6db7d}"
ISTIO_VERSION_LABEL="${ISTIO_VERSION_LABEL:-1.31-dev+b01690e6db7d}"

CACHE="${STRAIT_CACHE:-/var/cache/strait}/istio"
mkdir -p "$CACHE"

export GOPATH="$CACHE/gopath"
export GOMODCACHE="$CACHE/gomodcache"
export GOCACHE="$CACHE/gocache"

# The installed Go is newer than istio's `go` line; never download another toolchain.
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-buildvcs=false"

stamp="$CACHE/pilot-discovery.version"
if [[ -x "$CACHE/pilot-discovery" && -f "$stamp" && "$(cat "$stamp")" == "$ISTIO_MODULE_VERSION+fakekube" ]]; then
    echo "istio pilot-discovery $ISTIO_MODULE_VERSION already built: $CACHE/pilot-discovery"
    exit 0
fi

start=$(date +%s)
# Fetch the module, then build inside a copy of its own source tree: that makes istio's
# go.mod AND go.sum the main module's, so every dependency is checked against the hashes
# istio committed. (`go install pkg@version` instead asks the checksum database for
# each dependency, and the module proxy reachable here does not serve those lookups.)
go mod download "istio.io/istio@$ISTIO_MODULE_VERSION"
pristine="$GOMODCACHE/istio.io/istio@$ISTIO_MODULE_VERSION"
src="$CACHE/src/istio@$ISTIO_MODULE_VERSION"
rm -rf "$src"
mkdir -p "$(dirname "$src")"
cp -r "$pristine" "$src"
chmod -R u+w "$src"

# The one change to Istio: pilot-discovery gets an opt-in (STRAIT_BENCH_FAKE_KUBE=true)
# in-memory Kubernetes client, because it crashes at startup without an API server.
# See strait_bench_fakekube.go for the evidence and the reasoning.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cp "$here/strait_bench_fakekube.go" "$src/pilot/pkg/bootstrap/strait_bench_fakekube.go"
cmd_go="$src/pilot/cmd/pilot-discovery/app/cmd.go"
before='bootstrap.NewServer(serverArgs)'
after='bootstrap.NewServer(serverArgs, bootstrap.StraitBenchInitFuncs()...)'
if [[ "$(grep -c -F "$before" "$cmd_go")" != 1 ]]; then
    echo "expected exactly one '$before' in $cmd_go; the pinned Istio changed" >&2
    exit 1
fi
sed -i "s/$before/$after/" "$cmd_go"

(
    cd "$src"
    GOWORK=off go build -trimpath -o "$CACHE/pilot-discovery" \
        -ldflags "-s -w -X istio.io/istio/pkg/version.buildVersion=$ISTIO_VERSION_LABEL" \
        ./pilot/cmd/pilot-discovery
)
end=$(date +%s)

echo "$ISTIO_MODULE_VERSION+fakekube" >"$stamp"
echo "built $CACHE/pilot-discovery ($ISTIO_MODULE_VERSION) in $((end - start)) s"
du -sh "$CACHE" 2>/dev/null || true
