// Added to Istio's pilot/pkg/bootstrap by Strait's bench/istio/build.sh (not part of Istio).
//
// pilot-discovery cannot start without a Kubernetes API server: with --configDir and
// no kube registry, bootstrap leaves the multicluster controller nil and the
// ServiceEntry controller dereferences it (serviceentry/controller.go, ConfigCluster()).
// Istio's own bootstrap tests start the server with the in-memory fake client from
// istio.io/istio/pkg/kube instead; this lets the built binary do the same when
// STRAIT_BENCH_FAKE_KUBE=true. The client holds no objects, so every Kubernetes
// informer is empty and all services come from the --configDir ServiceEntries.

package bootstrap

import (
	"os"

	"istio.io/istio/pkg/kube"
)

// StraitBenchInitFuncs returns the NewServer init function installing the fake
// Kubernetes client, or none unless STRAIT_BENCH_FAKE_KUBE=true.
func StraitBenchInitFuncs() []func(*Server) {
	if os.Getenv("STRAIT_BENCH_FAKE_KUBE") != "true" {
		return nil
	}
	return []func(*Server){func(s *Server) { s.kubeClient = kube.NewFakeClient() }}
}
