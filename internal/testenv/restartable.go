package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// OutagePostgres is a PostgreSQL server of one test's own, which the test can stop and start again on
// the same port and data directory to make the catalog unavailable for a while.
type OutagePostgres struct {
	URL    string
	bindir string
	cred   *syscall.Credential
	dir    string
	data   string
	port   int
	mu     sync.Mutex
	srv    *postgresServer
	starts int
}

// DedicatedPostgres starts an OutagePostgres and removes it when t ends.
func DedicatedPostgres(t TB) *OutagePostgres {
	t.Helper()
	bindir := pgBinDir()
	if _, err := os.Stat(filepath.Join(bindir, "initdb")); err != nil {
		Unavailable(t, "PostgreSQL server binaries not found in %s (set MODELREG_PG_BINDIR)", bindir)
	}
	cred, err := postgresCredential()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := startPostgres(bindir, cred)
	if err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	p := &OutagePostgres{bindir: bindir, cred: cred, dir: srv.dir, data: filepath.Join(srv.dir, "data"), port: srv.port, srv: srv, starts: 1}
	p.URL = srv.url("postgres")
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.srv != nil {
			p.srv.stop()
		}
		os.RemoveAll(p.dir)
	})
	return p
}

// Stop shuts the server down (fast: clients are disconnected), keeping its data.
func (p *OutagePostgres) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv == nil {
		return
	}
	if p.srv.admin != nil {
		p.srv.admin.Close()
	}
	_ = p.srv.cmd.Process.Signal(syscall.SIGINT)
	<-p.srv.exited
	p.srv = nil
}

// Start brings the server back on the same port and data.
func (p *OutagePostgres) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		return nil
	}
	p.starts++
	srv, log, err := runPostgresOn(p.bindir, p.dir, p.data, p.cred, p.starts, p.port)
	if err != nil {
		return fmt.Errorf("restart postgres: %w\n%s", err, log)
	}
	p.srv = srv
	return nil
}

// OutageS3 is a versitygw server of one test's own that can be stopped and started again on the same
// address and data directory.
type OutageS3 struct {
	S3Server
	t      TB
	bin    string
	addr   string
	data   string
	logDir string
	mu     sync.Mutex
	stop   func()
	starts int
}

// DedicatedS3 starts an OutageS3 and stops it when t ends.
func DedicatedS3(t TB) *OutageS3 {
	t.Helper()
	bin, ok := Binary("MODELREG_VERSITYGW_BIN", "versitygw")
	if !ok {
		Unavailable(t, "versitygw not found (set MODELREG_VERSITYGW_BIN or put versitygw on PATH)")
	}
	dir := t.TempDir()
	s := &OutageS3{t: t, bin: bin, data: filepath.Join(dir, "data"), logDir: dir,
		S3Server: S3Server{AccessKey: "modelreg-test", SecretKey: randomHex(t, 20), Region: "us-east-1"}}
	if err := os.Mkdir(s.data, 0o755); err != nil {
		t.Fatal(err)
	}
	s.addr = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	s.Endpoint = "http://" + s.addr
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server, keeping its objects.
func (s *OutageS3) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// Start brings the server back on the same address.
func (s *OutageS3) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		return nil
	}
	s.starts++
	stop, err := startVersity(s.t, s.bin, s.addr, s.data, filepath.Join(s.logDir, fmt.Sprintf("versitygw-%d.log", s.starts)), s.S3Server)
	if err != nil {
		return err
	}
	s.stop = stop
	return nil
}
