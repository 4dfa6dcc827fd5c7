// Package testenv starts the real servers that tests talk to (PostgreSQL, an S3-compatible server, a
// Temporal dev server) as throwaway child processes on free loopback ports, and stops them.
//
// The binaries come from scripts/test.sh, which installs and caches them and exports their paths. When a
// binary is missing, a test is skipped in a plain `go test` but fails under MODELREG_REQUIRE_SERVERS=1
// (set by scripts/test.sh and so by CI), so CI can never pass by skipping.
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"time"
)

// TB is what these helpers need of a test. testing.TB has it, and so has the benchmark command
// (tests/bench), which starts the same servers outside `go test`.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Unavailable skips or fails t, depending on MODELREG_REQUIRE_SERVERS, because what is needs is missing.
func Unavailable(t TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("MODELREG_REQUIRE_SERVERS") == "1" {
		t.Fatalf("required test server unavailable: %s", msg)
	}
	t.Skipf("%s (run scripts/test.sh to install it)", msg)
}

// Binary finds an executable from the environment variable env, or else on PATH.
func Binary(env, name string) (string, bool) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	p, err := exec.LookPath(name)
	return p, err == nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitTCP waits until something accepts connections on addr.
func WaitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listened on %s within %s: %w", addr, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
