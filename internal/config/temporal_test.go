package config

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// mapEnv is an environment for fromEnv that is not the process's, so a developer's TEMPORAL_* settings
// cannot leak into these tests. The config file's default location still comes from the process
// environment, hence noConfigHome.
type mapEnv map[string]string

func (m mapEnv) LookupEnv(k string) (string, bool) { v, ok := m[k]; return v, ok }
func (m mapEnv) Environ() []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// noConfigHome points the default config file location at an empty directory.
func noConfigHome(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("HOME", t.TempDir())
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// certFiles writes a self-signed certificate and its key as PEM files.
func certFiles(t *testing.T) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "temporal.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"temporal.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

func TestTemporalDefaults(t *testing.T) {
	noConfigHome(t)
	c, err := fromEnv(mapEnv{})
	if err != nil {
		t.Fatal(err)
	}
	if c.TemporalAddress != "127.0.0.1:7233" || c.Namespace != "default" {
		t.Fatalf("address %q, namespace %q; want 127.0.0.1:7233 and default", c.TemporalAddress, c.Namespace)
	}
	opts, err := c.clientOptions(quiet())
	if err != nil {
		t.Fatal(err)
	}
	if opts.HostPort != "127.0.0.1:7233" || opts.Namespace != "default" || opts.ConnectionOptions.TLS != nil || opts.Credentials != nil {
		t.Fatalf("options %+v: want plain 127.0.0.1:7233, namespace default", opts)
	}
	if opts.DataConverter == nil || opts.Logger == nil {
		t.Fatal("the registry's data converter and logger are not applied")
	}
}

func TestTemporalEnvconfigNames(t *testing.T) {
	noConfigHome(t)
	cert, key := certFiles(t)
	c, err := fromEnv(mapEnv{
		"TEMPORAL_ADDRESS":                 "temporal.test:7233",
		"TEMPORAL_NAMESPACE":               "registry",
		"TEMPORAL_TLS_CLIENT_CERT_PATH":    cert,
		"TEMPORAL_TLS_CLIENT_KEY_PATH":     key,
		"TEMPORAL_TLS_SERVER_CA_CERT_PATH": cert,
		"TEMPORAL_TLS_SERVER_NAME":         "temporal.test",
		"TEMPORAL_GRPC_META_X_TENANT":      "ml",
		"MODELREG_PAYLOAD_KEY":             randomKey(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.TemporalAddress != "temporal.test:7233" || c.Namespace != "registry" || len(c.Temporal.Deprecated) != 0 {
		t.Fatalf("address %q, namespace %q, deprecated %v", c.TemporalAddress, c.Namespace, c.Temporal.Deprecated)
	}
	opts, err := c.clientOptions(quiet())
	if err != nil {
		t.Fatal(err)
	}
	tc := opts.ConnectionOptions.TLS
	if tc == nil || len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.ServerName != "temporal.test" {
		t.Fatalf("TLS %+v: want the client certificate, the CA and the server name", tc)
	}
	if opts.HostPort != "temporal.test:7233" || opts.Namespace != "registry" || opts.HeadersProvider == nil {
		t.Fatalf("options %+v", opts)
	}
	h, _ := opts.HeadersProvider.GetHeaders(context.Background())
	if h["x-tenant"] != "ml" {
		t.Fatalf("gRPC metadata %v", h)
	}
	// The payload codec is applied on top of the profile, and so is the failure converter.
	p, err := opts.DataConverter.ToPayload("fraud")
	if err != nil || string(p.Metadata["encoding"]) != "binary/encrypted" || opts.FailureConverter == nil {
		t.Fatalf("payload %v, %v; failure converter %v", p, err, opts.FailureConverter)
	}
}

func TestTemporalDeprecatedNames(t *testing.T) {
	noConfigHome(t)
	cert, key := certFiles(t)
	c, err := fromEnv(mapEnv{"TEMPORAL_TLS_CERT": cert, "TEMPORAL_TLS_KEY": key, "TEMPORAL_TLS_CA": cert, "TEMPORAL_TLS_SERVER_NAME": "temporal.test"})
	if err != nil {
		t.Fatal(err)
	}
	opts, err := c.clientOptions(quiet())
	if err != nil {
		t.Fatal(err)
	}
	if tc := opts.ConnectionOptions.TLS; tc == nil || len(tc.Certificates) != 1 || tc.RootCAs == nil || tc.ServerName != "temporal.test" {
		t.Fatalf("TLS %+v: the old names are not honoured", tc)
	}
	if len(c.Temporal.Deprecated) != 3 || !strings.Contains(strings.Join(c.Temporal.Deprecated, ","), "TEMPORAL_TLS_CA (use TEMPORAL_TLS_SERVER_CA_CERT_PATH)") {
		t.Fatalf("deprecated %v", c.Temporal.Deprecated)
	}

	// envconfig's name wins over the old one.
	c, err = fromEnv(mapEnv{"TEMPORAL_TLS_CA": "/nonexistent/old.pem", "TEMPORAL_TLS_SERVER_CA_CERT_PATH": cert})
	if err != nil {
		t.Fatal(err)
	}
	if c.Temporal.Profile.TLS.ServerCACertPath != cert || len(c.Temporal.Deprecated) != 0 {
		t.Fatalf("CA %q, deprecated %v", c.Temporal.Profile.TLS.ServerCACertPath, c.Temporal.Deprecated)
	}

	// TEMPORAL_TLS=true, an old name that envconfig kept, still means TLS with the system roots.
	c, err = fromEnv(mapEnv{"TEMPORAL_TLS": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if opts, err := c.clientOptions(quiet()); err != nil || opts.ConnectionOptions.TLS == nil || opts.ConnectionOptions.TLS.RootCAs != nil {
		t.Fatalf("TEMPORAL_TLS=true: %v %+v", err, opts.ConnectionOptions.TLS)
	}
}

func TestTemporalProfileFromConfigFile(t *testing.T) {
	noConfigHome(t)
	file := filepath.Join(t.TempDir(), "temporal.toml")
	if err := os.WriteFile(file, []byte(`
[profile.default]
address = "localhost:7233"

[profile.prod]
address = "prod.tmprl.cloud:7233"
namespace = "registry.acct"
api_key = "key-from-file"

[profile.prod.tls]
server_name = "prod.tmprl.cloud"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := fromEnv(mapEnv{"TEMPORAL_CONFIG_FILE": file})
	if err != nil || c.TemporalAddress != "localhost:7233" || c.Namespace != "default" {
		t.Fatalf("default profile: %q %q %v", c.TemporalAddress, c.Namespace, err)
	}
	c, err = fromEnv(mapEnv{"TEMPORAL_CONFIG_FILE": file, "TEMPORAL_PROFILE": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if c.TemporalAddress != "prod.tmprl.cloud:7233" || c.Namespace != "registry.acct" || c.Temporal.Profile.APIKey != "key-from-file" {
		t.Fatalf("prod profile: %q %q %v", c.TemporalAddress, c.Namespace, c.Temporal)
	}
	opts, err := c.clientOptions(quiet())
	if err != nil || opts.Credentials == nil || opts.ConnectionOptions.TLS == nil || opts.ConnectionOptions.TLS.ServerName != "prod.tmprl.cloud" {
		t.Fatalf("prod options: %v %+v", err, opts)
	}
	// Variables override the profile.
	c, err = fromEnv(mapEnv{"TEMPORAL_CONFIG_FILE": file, "TEMPORAL_PROFILE": "prod", "TEMPORAL_NAMESPACE": "other"})
	if err != nil || c.Namespace != "other" || c.TemporalAddress != "prod.tmprl.cloud:7233" {
		t.Fatalf("override: %q %q %v", c.TemporalAddress, c.Namespace, err)
	}
	// A profile asked for by name must exist.
	if _, err := fromEnv(mapEnv{"TEMPORAL_CONFIG_FILE": file, "TEMPORAL_PROFILE": "staging"}); err == nil || !strings.Contains(err.Error(), "staging") {
		t.Fatalf("missing profile: %v", err)
	}
	// The default location is the temporal CLI's.
	dir := filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "temporalio")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file, filepath.Join(dir, "temporal.toml")); err != nil {
		t.Fatal(err)
	}
	if c, err := fromEnv(mapEnv{"TEMPORAL_PROFILE": "prod"}); err != nil || c.Namespace != "registry.acct" {
		t.Fatalf("default file: %q %v", c.Namespace, err)
	}
}

// An API key is sent as a bearer token on every call, and turns TLS on unless it is turned off.
func TestTemporalAPIKey(t *testing.T) {
	noConfigHome(t)
	c, err := fromEnv(mapEnv{"TEMPORAL_API_KEY": "key-123"})
	if err != nil {
		t.Fatal(err)
	}
	if opts, err := c.clientOptions(quiet()); err != nil || opts.Credentials == nil || opts.ConnectionOptions.TLS == nil {
		t.Fatalf("API key without TEMPORAL_TLS: %v %+v, want credentials and TLS", err, opts)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []string, 1)
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(stream.Context())
		select {
		case got <- md.Get("authorization"):
		default:
		}
		return status.Error(codes.Unavailable, "not a Temporal server")
	}))
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()

	c, err = fromEnv(mapEnv{"TEMPORAL_ADDRESS": l.Addr().String(), "TEMPORAL_API_KEY": "key-123", "TEMPORAL_TLS": "false"})
	if err != nil {
		t.Fatal(err)
	}
	// The fake server refuses the first call, so Dial fails; what matters is what that call carried.
	if cl, err := c.Dial(quiet()); err == nil {
		cl.Close()
	}
	select {
	case auth := <-got:
		if !slices.Equal(auth, []string{"Bearer key-123"}) {
			t.Fatalf("authorization %q", auth)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no call reached the server")
	}
}

// The embedded default's dev server speaks neither TLS nor API keys, whatever the profile says.
func TestUseDevServer(t *testing.T) {
	noConfigHome(t)
	c, err := fromEnv(mapEnv{"TEMPORAL_API_KEY": "key-123", "TEMPORAL_TLS_SERVER_NAME": "cloud", "TEMPORAL_NAMESPACE": "dev-ns"})
	if err != nil {
		t.Fatal(err)
	}
	c.UseDevServer("127.0.0.1:7299")
	opts, err := c.clientOptions(quiet())
	if err != nil || opts.HostPort != "127.0.0.1:7299" || opts.Namespace != "dev-ns" || opts.Credentials != nil ||
		opts.ConnectionOptions.TLS != nil || !opts.ConnectionOptions.TLSDisabled {
		t.Fatalf("%v %+v: want plain 127.0.0.1:7299 in dev-ns", err, opts)
	}
}

// Variables must name exactly what fromEnv looks up: a compose file or a deployment checked against it
// then sets nothing that is ignored.
func TestVariablesAreWhatFromEnvReads(t *testing.T) {
	noConfigHome(t)
	rec := &recordingEnv{read: map[string]bool{}}
	if _, err := fromEnv(rec); err != nil {
		t.Fatal(err)
	}
	// envconfig reads these too; the registry ignores them (see temporalVariables).
	for _, ignored := range []string{"TEMPORAL_CODEC_ENDPOINT", "TEMPORAL_CODEC_AUTH"} {
		if !rec.read[ignored] {
			t.Errorf("%s is no longer read: drop it from this test", ignored)
		}
		delete(rec.read, ignored)
	}
	var read []string
	for k := range rec.read {
		read = append(read, k)
	}
	slices.Sort(read)
	listed := slices.Clone(Variables)
	slices.Sort(listed)
	if !slices.Equal(read, listed) {
		t.Fatalf("fromEnv reads\n%v\nVariables lists\n%v", read, listed)
	}
	if !rec.environ || !slices.Equal(VariablePrefixes, []string{"TEMPORAL_GRPC_META_"}) {
		t.Fatalf("the TEMPORAL_GRPC_META_ family: environ read %t, prefixes %v", rec.environ, VariablePrefixes)
	}
	for name, want := range map[string]bool{"TEMPORAL_ADDRESS": true, "TEMPORAL_GRPC_META_X_TENANT": true, "TEMPORAL_GRPC_META_": false,
		"TEMPORAL_CODEC_ENDPOINT": false, "MODELREG_S3_BUCKET": true, "MODELREG_SOURCE_S3_ENDPOINT": true, "MODELREG_S3_BUCKETS": false} {
		if IsVariable(name) != want {
			t.Errorf("IsVariable(%s) = %t", name, !want)
		}
	}
}

type recordingEnv struct {
	read    map[string]bool
	environ bool
}

func (r *recordingEnv) LookupEnv(k string) (string, bool) { r.read[k] = true; return "", false }
func (r *recordingEnv) Environ() []string                 { r.environ = true; return nil }

// Everything else reads its settings from Config, so Variables stays the whole list: no other package
// may read a MODELREG_ or TEMPORAL_ variable itself, except where `worker --dev` finds the temporal CLI.
func TestNoVariableReadOutsideConfig(t *testing.T) {
	allowed := map[string]string{"MODELREG_CACHE": "internal/devserver", "MODELREG_TEMPORAL_BIN": "internal/devserver"}
	read := regexp.MustCompile(`(?:Getenv|LookupEnv)\("((?:MODELREG|TEMPORAL)_[A-Z0-9_]*)"\)`)
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(path, "../../"))
		if d.IsDir() {
			// Tests and their helpers configure the servers they start.
			if rel == "internal/config" || rel == "internal/testenv" || rel == "tests" || (path != "../.." && strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range read.FindAllStringSubmatch(string(src), -1) {
			if dir, ok := allowed[m[1]]; !ok || dir != filepath.ToSlash(filepath.Dir(rel)) {
				t.Errorf("%s reads %s itself: read it in config.FromEnv and list it in Variables", rel, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
