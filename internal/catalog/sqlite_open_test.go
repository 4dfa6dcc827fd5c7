package catalog_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/catalog"
)

// TestSQLiteOpenWaitsForAWriterOnAFreshFile: a fresh catalog file whose write lock another connection
// holds — what a second worker sees while the first one turns the new file into WAL mode — must be
// waited for, as the busy timeout promises, not refused with SQLITE_BUSY.
func TestSQLiteOpenWaitsForAWriterOnAFreshFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "catalog.db")
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "CREATE TABLE other_process (x)"); err != nil {
		t.Fatal(err)
	}
	opened := make(chan error, 1)
	go func() {
		c, err := catalog.Open(ctx, "sqlite://"+path)
		if err == nil {
			err = c.Migrate(ctx)
			c.Close()
		}
		opened <- err
	}()
	// Hold the lock long enough for Open to run into it, then let go: Open must then go ahead.
	select {
	case err := <-opened:
		t.Fatalf("Open returned while another connection held the write lock: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("Open and Migrate after the lock was released: %v", err)
	}
	var mode string
	if err := other.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal mode %q (%v), want wal", mode, err)
	}
}
