// Package devserver runs a Temporal development server (the `temporal` CLI's `server start-dev`) as a
// child process: the embedded default of `worker --dev`, and the real server of end-to-end tests.
//
// It runs the CLI binary rather than linking go.temporal.io/server in-process because the server, the SDK
// and the UI server only build together at matching go.temporal.io/api versions, and the
// CLI's binary carries its own consistent set plus the Web UI.
package devserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// CLIModule is the version of the Temporal CLI the registry installs when none is found; later tags carry
// replace directives and do not `go install`.
const CLIModule = "github.com/temporalio/cli/cmd/temporal@v1.5.1"

// SearchAttributes are the registry's custom search attributes and their types.
var SearchAttributes = []string{"ModelName=Keyword", "ModelVersion=Int", "ModelStage=Keyword"}

// Options configures a dev server.
type Options struct {
	Binary    string // path of the temporal CLI; FindBinary when empty
	DBFile    string // SQLite file that persists workflows across restarts; in-memory when empty
	IP        string // default 127.0.0.1
	Port      int    // frontend gRPC port; a free one when 0
	UIPort    int    // Web UI port; a free one when 0
	Headless  bool   // no Web UI
	Namespace string // default "default"
	Log       io.Writer
}

// Server is a running dev server.
type Server struct {
	Address string // host:port of the frontend
	UIURL   string // empty when headless
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// CacheDir is where the registry keeps binaries it installed.
func CacheDir() string {
	if d := os.Getenv("MODELREG_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "modelreg")
	}
	return filepath.Join(os.TempDir(), "modelreg-cache")
}

// FindBinary returns the temporal CLI: $MODELREG_TEMPORAL_BIN, the cache, or PATH.
func FindBinary() (string, bool) {
	if p := os.Getenv("MODELREG_TEMPORAL_BIN"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	if p := filepath.Join(CacheDir(), "bin", "temporal"); fileExists(p) {
		return p, true
	}
	if p, err := exec.LookPath("temporal"); err == nil {
		return p, true
	}
	return "", false
}

// InstallBinary builds the temporal CLI into the cache with `go install` (a few minutes, once).
func InstallBinary(ctx context.Context, log io.Writer) (string, error) {
	bin := filepath.Join(CacheDir(), "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("the temporal CLI is not installed and there is no go command to build it: install it or set MODELREG_TEMPORAL_BIN")
	}
	cmd := exec.CommandContext(ctx, goBin, "install", CLIModule)
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go install %s: %w", CLIModule, err)
	}
	return filepath.Join(bin, "temporal"), nil
}

// Start launches the server and waits until its frontend accepts connections.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.Binary == "" {
		p, ok := FindBinary()
		if !ok {
			return nil, errors.New("temporal CLI not found (set MODELREG_TEMPORAL_BIN or run scripts/install-tools.sh)")
		}
		o.Binary = p
	}
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	var err error
	if o.Port == 0 {
		if o.Port, err = freePort(o.IP); err != nil {
			return nil, err
		}
	}
	args := []string{"server", "start-dev", "--ip", o.IP, "--port", strconv.Itoa(o.Port),
		"--namespace", o.Namespace, "--log-level", "warn"}
	if o.DBFile != "" {
		args = append(args, "--db-filename", o.DBFile)
	}
	if o.Headless {
		args = append(args, "--headless")
	} else {
		if o.UIPort == 0 {
			if o.UIPort, err = freePort(o.IP); err != nil {
				return nil, err
			}
		}
		args = append(args, "--ui-ip", o.IP, "--ui-port", strconv.Itoa(o.UIPort))
	}
	for _, sa := range SearchAttributes {
		args = append(args, "--search-attribute", sa)
	}
	cmd := exec.Command(o.Binary, args...)
	if o.Log != nil {
		cmd.Stdout, cmd.Stderr = o.Log, o.Log
	}
	// Its own process group, so Stop reaches the whole server; and killed with us, so a crashed worker
	// never leaves an orphan holding the database file.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Binary, err)
	}
	s := &Server{Address: net.JoinHostPort(o.IP, strconv.Itoa(o.Port)), cmd: cmd, done: make(chan struct{})}
	if !o.Headless {
		s.UIURL = fmt.Sprintf("http://%s", net.JoinHostPort(o.IP, strconv.Itoa(o.UIPort)))
	}
	go func() { s.waitErr = cmd.Wait(); close(s.done) }()
	deadline := time.After(2 * time.Minute)
	for {
		c, err := net.DialTimeout("tcp", s.Address, 300*time.Millisecond)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("temporal dev server exited before listening on %s: %v", s.Address, s.waitErr)
		case <-deadline:
			s.Stop()
			return nil, fmt.Errorf("temporal dev server did not listen on %s within 2 minutes", s.Address)
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop terminates the server (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (s *Server) Stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Kill stops the server at once, as a crash would.
func (s *Server) Kill() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// Done is closed when the server process has exited.
func (s *Server) Done() <-chan struct{} { return s.done }

func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
