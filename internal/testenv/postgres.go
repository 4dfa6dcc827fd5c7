package testenv

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lib/pq"
)

// pgServer is the one PostgreSQL server of this test binary, started by the first Postgres call.
var (
	pgOnce   sync.Once
	pgServer *postgresServer
	pgErr    error
	pgDBs    atomic.Int64
)

// Postgres returns the URL of a new, empty database on a throwaway PostgreSQL server, dropped when t
// ends. The server is started once per test binary, on first use, and stopped by RunWithServers (or, if
// the binary dies first, by the kernel: it gets SIGQUIT when the test binary exits).
//
// The binaries are looked up in $MODELREG_PG_BINDIR, else `pg_config --bindir`, else
// /usr/lib/postgresql/15/bin.
func Postgres(t TB) string {
	t.Helper()
	bindir := pgBinDir()
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bindir, name)); err != nil {
			Unavailable(t, "PostgreSQL's %s is not in %s (set MODELREG_PG_BINDIR or install postgresql-15)", name, bindir)
		}
	}
	// initdb and postgres refuse to run as root, so root runs them as the postgres user.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		var err error
		if cred, err = postgresCredential(); err != nil {
			Unavailable(t, "running as root, PostgreSQL needs another user: %v", err)
		}
	}
	pgOnce.Do(func() {
		pgServer, pgErr = startPostgres(bindir, cred)
		if pgErr == nil {
			registerShutdown(pgServer.stop)
		}
	})
	if pgErr != nil {
		t.Fatalf("start PostgreSQL: %v", pgErr)
	}

	name := fmt.Sprintf("test_%d", pgDBs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := pgServer.admin.ExecContext(ctx, "CREATE DATABASE "+pq.QuoteIdentifier(name)); err != nil {
		t.Fatalf("create PostgreSQL database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// FORCE: a test that leaked a connection must not make the next one fail.
		if _, err := pgServer.admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+pq.QuoteIdentifier(name)+" WITH (FORCE)"); err != nil {
			t.Logf("drop PostgreSQL database %s: %v", name, err)
		}
	})
	return pgServer.url(name)
}

func pgBinDir() string {
	if d := os.Getenv("MODELREG_PG_BINDIR"); d != "" {
		return d
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); d != "" {
			return d
		}
	}
	return "/usr/lib/postgresql/15/bin"
}

func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("gid of postgres: %w", err)
	}
	// Groups is empty so root's supplementary groups are dropped too.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

type postgresServer struct {
	dir    string // owns everything: data directory, socket, logs
	port   int
	cmd    *exec.Cmd
	exited chan struct{} // closed when the server process has exited
	admin  *sql.DB       // to the postgres database, for CREATE/DROP DATABASE
}

func (s *postgresServer) url(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, database)
}

// startPostgres runs initdb and then the server itself (not pg_ctl, which would detach it): as our
// child it can be told to die with us (Pdeathsig), and its exit is noticed at once.
func startPostgres(bindir string, cred *syscall.Credential) (*postgresServer, error) {
	dir, err := os.MkdirTemp("", "modelreg-pg-")
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*postgresServer, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fail(err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bindir, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.Dir = dir // the caller's working directory may be closed to the postgres user
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("initdb: %w\n%s", err, out))
	}

	// The port is free when chosen but another process may take it before the server binds it, so a
	// bind failure is retried on a new port.
	for attempt := 1; ; attempt++ {
		s, log, err := runPostgres(bindir, dir, data, cred, attempt)
		if err == nil {
			return s, nil
		}
		if attempt < 3 && (strings.Contains(log, "could not bind") || strings.Contains(log, "could not create listen socket")) {
			continue
		}
		return fail(fmt.Errorf("%w\nserver log:\n%s", err, log))
	}
}

func runPostgres(bindir, dir, data string, cred *syscall.Credential, attempt int) (*postgresServer, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	return runPostgresOn(bindir, dir, data, cred, attempt, port)
}

// runPostgresOn starts the server on a given port, as a restart after an outage must.
func runPostgresOn(bindir, dir, data string, cred *syscall.Credential, attempt, port int) (*postgresServer, string, error) {
	logPath := filepath.Join(dir, fmt.Sprintf("postgres-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(filepath.Join(bindir, "postgres"),
		"-D", data,
		"-h", "127.0.0.1",
		"-p", strconv.Itoa(port),
		"-k", dir,
		// Throwaway data: durability only costs time.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		// Concurrency tests open many connections per database, and tests run in parallel.
		"-c", "max_connections=300",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		// SIGQUIT is PostgreSQL's immediate shutdown: if the test binary is killed (a -timeout panic, say)
		// the server does not outlive it.
		Pdeathsig: syscall.SIGQUIT,
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start postgres: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	s := &postgresServer{dir: dir, port: port, cmd: cmd, exited: exited}

	readLog := func() string {
		b, _ := os.ReadFile(logPath)
		if len(b) > 16<<10 {
			b = append([]byte("…"), b[len(b)-16<<10:]...)
		}
		return string(bytes.TrimSpace(b))
	}

	admin, err := sql.Open("postgres", s.url("postgres"))
	if err != nil {
		s.kill()
		return nil, readLog(), err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err = admin.PingContext(ctx)
		cancel()
		if err == nil {
			s.admin = admin
			return s, "", nil
		}
		select {
		case <-exited:
			admin.Close()
			return nil, readLog(), fmt.Errorf("postgres exited before accepting connections (%v)", waitErr)
		default:
		}
		if time.Now().After(deadline) {
			admin.Close()
			s.kill()
			return nil, readLog(), fmt.Errorf("postgres did not accept connections on port %d within 60s: %w", port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop shuts the server down ("fast": clients are disconnected) and removes its files.
func (s *postgresServer) stop() {
	if s.admin != nil {
		s.admin.Close()
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.kill()
	}
	os.RemoveAll(s.dir)
}

func (s *postgresServer) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// freePort is FreePort without a TB, for servers started once for many tests.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("find free port: not a TCP address")
	}
	return addr.Port, nil
}
