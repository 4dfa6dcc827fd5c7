package testenv

import (
	"context"
	"os"
	"path/filepath"

	"github.com/modelreg/modelreg/internal/devserver"
)

// TemporalBinary returns the temporal CLI, or skips/fails t when it is not installed.
func TemporalBinary(t TB) string {
	t.Helper()
	bin, ok := Binary("MODELREG_TEMPORAL_BIN", "temporal")
	if !ok {
		if p, found := devserver.FindBinary(); found {
			return p
		}
		Unavailable(t, "the temporal CLI is not installed (MODELREG_TEMPORAL_BIN)")
	}
	return bin
}

// Temporal starts a headless Temporal dev server with the registry's search attributes, persisted to
// dbFile (in-memory when empty), and stops it when t ends.
func Temporal(t TB, dbFile string) *devserver.Server {
	t.Helper()
	bin := TemporalBinary(t)
	logFile, err := os.Create(filepath.Join(t.TempDir(), "temporal.log"))
	if err != nil {
		t.Fatal(err)
	}
	// A free port can be taken between its pick and the server's bind (the server opens several): a
	// server that exits before it listens is started again on other ports.
	var srv *devserver.Server
	for attempt := 1; ; attempt++ {
		srv, err = devserver.Start(context.Background(), devserver.Options{Binary: bin, DBFile: dbFile, Headless: true, Log: logFile})
		if err == nil {
			break
		}
		if attempt == 3 {
			b, _ := os.ReadFile(logFile.Name())
			t.Fatalf("start temporal dev server: %v\n%s", err, b)
		}
	}
	t.Cleanup(func() { srv.Stop(); logFile.Close() })
	return srv
}
