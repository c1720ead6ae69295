// Command coredns is CoreDNS with only the plugins the local cluster's DNS needs: cluster
// names from the API server (kubernetes), health and readiness for the kubelet's
// probes, a cache, and error logs. No `forward`: names outside the cluster get no
// answer, so no query ever leaves the machine.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The order in which plugins handle a query (a subset of CoreDNS's plugin.cfg order).
var directives = []string{"errors", "log", "health", "ready", "cache", "kubernetes"}

func main() {
	dnsserver.Directives = directives
	coremain.Run()
}
