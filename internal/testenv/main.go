package testenv

import (
	"sync"
	"testing"
)

var (
	shutdownMu sync.Mutex
	shutdowns  []func()
)

// registerShutdown arranges for stop to run when RunWithServers returns, after every test of the
// binary. Helpers that start one server per test binary (lazily, on first use) register its stop here,
// because no single test's Cleanup outlives the others that share the server.
func registerShutdown(stop func()) {
	shutdownMu.Lock()
	defer shutdownMu.Unlock()
	shutdowns = append(shutdowns, stop)
}

// RunWithServers runs the tests and then stops every server the helpers of this package started for
// them, most recent first. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunWithServers(m)) }
func RunWithServers(m *testing.M) int {
	code := m.Run()
	Shutdown()
	return code
}

// Shutdown stops every server the helpers of this package started once per process, most recent
// first. RunWithServers calls it; a program that is not a test binary calls it before it exits.
func Shutdown() {
	shutdownMu.Lock()
	stops := shutdowns
	shutdowns = nil
	shutdownMu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}
