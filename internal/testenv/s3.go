package testenv

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// S3Server is a running S3-compatible server for one test.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:<port>; use path-style addressing
	AccessKey string
	SecretKey string
	Region    string
}

// S3 starts versitygw with its posix backend on a free loopback port, storing objects in a temporary
// directory of t, and stops it when t ends. The binary comes from MODELREG_VERSITYGW_BIN or PATH.
func S3(t TB) S3Server {
	t.Helper()
	bin, ok := Binary("MODELREG_VERSITYGW_BIN", "versitygw")
	if !ok {
		Unavailable(t, "versitygw not found (set MODELREG_VERSITYGW_BIN or put versitygw on PATH)")
		return S3Server{}
	}
	srv := S3Server{AccessKey: "modelreg-test", SecretKey: randomHex(t, 20), Region: "us-east-1"}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatalf("versitygw data directory: %v", err)
	}
	// A free port can be taken between FreePort and the server's bind; a few attempts make that a non-issue.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
		stop, err := startVersity(t, bin, addr, data, filepath.Join(dir, fmt.Sprintf("versitygw-%d.log", attempt)), srv)
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(stop)
		srv.Endpoint = "http://" + addr
		return srv
	}
	t.Fatalf("start versitygw: %v", lastErr)
	return S3Server{}
}

func startVersity(t TB, bin, addr, data, logPath string, srv S3Server) (stop func(), err error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin,
		"--port", addr,
		"--region", srv.Region,
		"--health", "/health",
		// Without it versitygw closes the connection after every response, so each S3 request dials
		// anew, which AWS S3 does not make clients do: the tests and the benchmark would measure that.
		"--keep-alive",
		"--quiet",
		"posix", data)
	// Credentials go through the environment rather than argv so they do not show up in process listings.
	cmd.Env = append(os.Environ(),
		"ROOT_ACCESS_KEY_ID="+srv.AccessKey,
		"ROOT_SECRET_ACCESS_KEY="+srv.SecretKey)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// If the test binary dies (a timeout panic skips every Cleanup), the kernel takes the server with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case werr := <-exited:
			return nil, fmt.Errorf("versitygw exited before it was ready (%v); log:\n%s", werr, tail(logPath))
		default:
		}
		if healthy("http://" + addr + "/health") {
			return stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("versitygw did not answer on %s within 30s; log:\n%s", addr, tail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func healthy(url string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(bytes.TrimSpace(b))
}

func randomHex(t TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random: %v", err)
	}
	return hex.EncodeToString(b)
}
