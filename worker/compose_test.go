package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
	"go.temporal.io/api/enums/v1"
	temporalsdk "go.temporal.io/sdk/temporal"

	"github.com/modelreg/modelreg/internal/config"
	"github.com/modelreg/modelreg/workflows"
)

// The checks below hold docker-compose.yml and the Dockerfile to what the registry and the images they
// name actually do, since no test can run Docker here: a renamed variable, a moved port or a service
// whose credentials drift from the worker's would otherwise only show when a user runs
// `docker compose up`.

func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	// No OS environment and no .env file: the file must stand on its own.
	opts, err := cli.NewProjectOptions([]string{"../docker-compose.yml"}, cli.WithName("modelreg"), cli.WithWorkingDirectory(".."))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

// pinned is whether an image reference names a version: a digest, or a tag other than latest.
func pinned(image string) (reference.Named, bool) {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return nil, false
	}
	if _, ok := ref.(reference.Digested); ok {
		return ref, true
	}
	tagged, ok := ref.(reference.Tagged)
	return ref, ok && tagged.Tag() != "latest"
}

func imageTag(t *testing.T, s types.ServiceConfig) (name, tag string) {
	t.Helper()
	ref, err := reference.ParseNormalizedNamed(s.Image)
	if err != nil {
		t.Fatalf("%s: image %q: %v", s.Name, s.Image, err)
	}
	if tagged, ok := ref.(reference.Tagged); ok {
		tag = tagged.Tag()
	}
	return reference.FamiliarName(ref), tag
}

func TestComposeServicesAndImages(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"temporal-db", "temporal-schema", "temporal", "temporal-setup", "temporal-ui", "catalog-db", "s3", "worker"} {
		service(t, p, name)
	}
	published := map[string]string{}
	for name, s := range p.Services {
		if s.Image == "" {
			if s.Build == nil {
				t.Errorf("%s has neither an image nor a build", name)
			}
		} else {
			ref, ok := pinned(s.Image)
			if !ok {
				t.Errorf("%s: image %q is not pinned to a tag other than latest or a digest", name, s.Image)
				continue
			}
			// MinIO's images left Docker Hub; auto-setup is deprecated in favour of temporalio/server
			// with the schema set up by admin-tools.
			if path := reference.Path(ref); strings.Contains(path, "minio") || path == "temporalio/auto-setup" {
				t.Errorf("%s: image %s is no longer published or maintained", name, s.Image)
			}
		}
		for _, port := range s.Ports {
			if other, dup := published[port.Published]; dup && port.Published != "" {
				t.Errorf("host port %s is published by %s and %s", port.Published, other, name)
			}
			published[port.Published] = name
		}
		// A dependency on a health check that does not exist never becomes healthy.
		for dep, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionHealthy && service(t, p, dep).HealthCheck == nil {
				t.Errorf("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
			}
		}
	}

	for _, s := range []string{"temporal-schema", "temporal-setup"} {
		if name, tag := imageTag(t, service(t, p, s)); name != "temporalio/admin-tools" || !strings.HasPrefix(tag, "1.29.1-") {
			t.Errorf("%s runs %s:%s, want temporalio/admin-tools of server 1.29.1", s, name, tag)
		}
	}
	if name, tag := imageTag(t, service(t, p, "temporal")); name != "temporalio/server" || tag != "1.29.1" {
		t.Errorf("temporal runs %s:%s, want temporalio/server:1.29.1", name, tag)
	}
	if name, tag := imageTag(t, service(t, p, "s3")); name != "versity/versitygw" || tag != "v1.8.0" {
		t.Errorf("s3 runs %s:%s, want versity/versitygw:v1.8.0 (the server the tests run)", name, tag)
	}
	temporal := service(t, p, "temporal")
	if d, ok := temporal.DependsOn["temporal-schema"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("temporal does not wait for its schema: %+v", temporal.DependsOn)
	}
}

// setupScript is the script a one-shot service runs: its entrypoint is `sh /scripts/<file>` with
// /scripts bound to a directory of the repository.
func setupScript(t *testing.T, s types.ServiceConfig) string {
	t.Helper()
	if len(s.Entrypoint) != 2 || s.Entrypoint[0] != "sh" || !strings.HasPrefix(s.Entrypoint[1], "/scripts/") {
		t.Fatalf("%s: entrypoint %q, want sh /scripts/<script>", s.Name, s.Entrypoint)
	}
	for _, v := range s.Volumes {
		if v.Target == "/scripts" && v.Type == types.VolumeTypeBind {
			path := filepath.Join(v.Source, strings.TrimPrefix(s.Entrypoint[1], "/scripts/"))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%s: %v", s.Name, err)
			}
			if sh, err := exec.LookPath("sh"); err == nil {
				if out, err := exec.Command(sh, "-n", path).CombinedOutput(); err != nil {
					t.Errorf("%s: %s does not parse: %v\n%s", s.Name, path, err, out)
				}
			}
			return string(b)
		}
	}
	t.Fatalf("%s: no bind mount at /scripts", s.Name)
	return ""
}

func TestComposeTemporal(t *testing.T) {
	p := loadCompose(t)
	db, schema, temporal := service(t, p, "temporal-db"), service(t, p, "temporal-schema"), service(t, p, "temporal")
	user, password := env(db, "POSTGRES_USER"), env(db, "POSTGRES_PASSWORD")
	for _, c := range []struct{ service, name, got, want string }{
		{"temporal-schema", "POSTGRES_SEEDS", env(schema, "POSTGRES_SEEDS"), "temporal-db"},
		{"temporal-schema", "POSTGRES_USER", env(schema, "POSTGRES_USER"), user},
		{"temporal-schema", "SQL_PASSWORD", env(schema, "SQL_PASSWORD"), password},
		{"temporal", "POSTGRES_SEEDS", env(temporal, "POSTGRES_SEEDS"), "temporal-db"},
		{"temporal", "POSTGRES_USER", env(temporal, "POSTGRES_USER"), user},
		{"temporal", "POSTGRES_PWD", env(temporal, "POSTGRES_PWD"), password},
		{"temporal", "DB", env(temporal, "DB"), "postgres12"},
	} {
		if c.got != c.want || c.want == "" {
			t.Errorf("%s: %s=%q, want %q", c.service, c.name, c.got, c.want)
		}
	}
	script := setupScript(t, schema)
	for _, want := range []string{"temporal-sql-tool --plugin postgres12", "setup-schema -v 0.0", "update-schema",
		"migrate temporal temporal", "migrate temporal_visibility visibility"} {
		if !strings.Contains(script, want) {
			t.Errorf("the schema script does not run %q", want)
		}
	}

	setup := service(t, p, "temporal-setup")
	script = setupScript(t, setup)
	if !strings.Contains(script, "search-attribute create") || !strings.Contains(script, "namespace create") {
		t.Errorf("the setup script does not create the namespace and the search attributes")
	}
	// The names and types the workflows upsert, in the temporal CLI's spelling.
	cliType := map[enums.IndexedValueType]string{enums.INDEXED_VALUE_TYPE_KEYWORD: "Keyword", enums.INDEXED_VALUE_TYPE_INT: "Int"}
	for _, k := range []temporalsdk.SearchAttributeKey{workflows.SAModelName, workflows.SAModelVersion, workflows.SAModelStage} {
		if want := " " + k.GetName() + ":" + cliType[k.GetValueType()]; !strings.Contains(script, want) {
			t.Errorf("the setup script does not create %s as %s", k.GetName(), k.GetValueType())
		}
	}
	worker := service(t, p, "worker")
	if env(setup, "TEMPORAL_ADDRESS") != env(worker, "TEMPORAL_ADDRESS") || env(setup, "TEMPORAL_NAMESPACE") != namespace(worker) {
		t.Errorf("temporal-setup prepares %s in %s, the worker uses %s in %s", env(setup, "TEMPORAL_NAMESPACE"),
			env(setup, "TEMPORAL_ADDRESS"), namespace(worker), env(worker, "TEMPORAL_ADDRESS"))
	}
}

func namespace(s types.ServiceConfig) string {
	if ns := env(s, "TEMPORAL_NAMESPACE"); ns != "" {
		return ns
	}
	return "default"
}

func hostPort(t *testing.T, what, hp string) (string, string) {
	t.Helper()
	h, port, err := net.SplitHostPort(hp)
	if err != nil {
		t.Fatalf("%s %q: %v", what, hp, err)
	}
	return h, port
}

func TestComposeWorker(t *testing.T) {
	p := loadCompose(t)
	w := service(t, p, "worker")

	// Every variable set on the worker is one the registry reads; a misspelt one would be ignored.
	for name := range w.Environment {
		if !config.IsVariable(name) {
			t.Errorf("worker: %s is not a variable the registry reads (config.Variables)", name)
		}
	}

	// The HTTP port: served on MODELREG_HTTP_ADDR, published, and probed by the health check.
	_, httpPort := hostPort(t, "MODELREG_HTTP_ADDR", env(w, "MODELREG_HTTP_ADDR"))
	if httpPort != "8080" || !slices.ContainsFunc(w.Ports, func(p types.ServicePortConfig) bool {
		return p.Target == 8080 && p.Published == "8080"
	}) {
		t.Errorf("worker: serves HTTP on port %s, publishes %+v; want 8080 on 8080", httpPort, w.Ports)
	}
	hc := w.HealthCheck
	if hc == nil || len(hc.Test) != 4 || hc.Test[0] != "CMD" || hc.Test[1] != "/usr/local/bin/worker" || hc.Test[2] != "probe" {
		t.Fatalf("worker: health check %+v, want [CMD /usr/local/bin/worker probe URL]", hc)
	}
	u, err := url.Parse(hc.Test[3])
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() != httpPort || u.Path != "/readyz" {
		t.Errorf("worker: probes %q, want http://127.0.0.1:%s/readyz", hc.Test[3], httpPort)
	}
	if hc.Timeout == nil || float64(*hc.Timeout) <= float64(probeTimeout) {
		t.Errorf("worker: health check timeout %v must exceed the probe's own %s", hc.Timeout, probeTimeout)
	}
	for dep, cond := range map[string]string{
		"temporal-setup": types.ServiceConditionCompletedSuccessfully,
		"catalog-db":     types.ServiceConditionHealthy,
		"s3":             types.ServiceConditionHealthy,
	} {
		if d, ok := w.DependsOn[dep]; !ok || d.Condition != cond {
			t.Errorf("worker: depends on %s with %+v, want %s", dep, d, cond)
		}
	}

	// Temporal: the frontend of the temporal service.
	host, port := hostPort(t, "TEMPORAL_ADDRESS", env(w, "TEMPORAL_ADDRESS"))
	if host != "temporal" || port != "7233" {
		t.Errorf("worker: TEMPORAL_ADDRESS %s:%s, want the temporal service's frontend temporal:7233", host, port)
	}

	// The catalog: the catalog-db service, with its user, password and database.
	db := service(t, p, "catalog-db")
	du, err := url.Parse(env(w, "MODELREG_DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := du.User.Password()
	if du.Scheme != "postgres" || du.Hostname() != "catalog-db" || du.Port() != "5432" || du.User.Username() != env(db, "POSTGRES_USER") ||
		pw != env(db, "POSTGRES_PASSWORD") || strings.TrimPrefix(du.Path, "/") != env(db, "POSTGRES_DB") || env(db, "POSTGRES_DB") == "" {
		t.Errorf("worker: MODELREG_DATABASE_URL %s does not match catalog-db (user %s, database %s)",
			config.RedactURL(du.String()), env(db, "POSTGRES_USER"), env(db, "POSTGRES_DB"))
	}

	// The artifact store: the s3 service, its root credentials, and the bucket it creates.
	s3 := service(t, p, "s3")
	eu, err := url.Parse(env(w, "MODELREG_S3_ENDPOINT"))
	if err != nil {
		t.Fatal(err)
	}
	_, vgwPort := hostPort(t, "VGW_PORT", env(s3, "VGW_PORT"))
	if eu.Hostname() != "s3" || eu.Port() != vgwPort {
		t.Errorf("worker: MODELREG_S3_ENDPOINT %s, want the s3 service on its port %s", eu, vgwPort)
	}
	// Presigned URLs are for clients outside the compose network: the store's published port on the host.
	pu, err := url.Parse(env(w, "MODELREG_S3_PUBLIC_ENDPOINT"))
	if err != nil || pu.Hostname() != "127.0.0.1" || !slices.ContainsFunc(s3.Ports, func(p types.ServicePortConfig) bool {
		return fmt.Sprint(p.Target) == vgwPort && p.Published == pu.Port()
	}) {
		t.Errorf("worker: MODELREG_S3_PUBLIC_ENDPOINT %q is not the s3 service's port %s as published on the host (%+v)",
			env(w, "MODELREG_S3_PUBLIC_ENDPOINT"), vgwPort, s3.Ports)
	}
	if env(w, "MODELREG_S3_ACCESS_KEY_ID") != env(s3, "ROOT_ACCESS_KEY_ID") || env(w, "MODELREG_S3_SECRET_ACCESS_KEY") != env(s3, "ROOT_SECRET_ACCESS_KEY") ||
		env(s3, "ROOT_ACCESS_KEY_ID") == "" {
		t.Errorf("worker: the S3 credentials are not the s3 service's")
	}
	if env(w, "MODELREG_S3_PATH_STYLE") != "true" {
		t.Errorf("worker: versitygw needs path-style requests (MODELREG_S3_PATH_STYLE=true)")
	}
	bucket := env(w, "MODELREG_S3_BUCKET")
	mkdir := "mkdir -p " + env(s3, "VGW_BACKEND_ARG") + "/" + bucket + " "
	if bucket == "" || env(s3, "VGW_BACKEND") != "posix" || !strings.Contains(strings.Join(s3.Entrypoint, " "), mkdir) {
		t.Errorf("s3: the posix backend's entrypoint %q does not create the worker's bucket %q", s3.Entrypoint, bucket)
	}
	if s3.HealthCheck == nil || !strings.Contains(strings.Join(s3.HealthCheck.Test, " "), "127.0.0.1:"+vgwPort+env(s3, "VGW_HEALTH")) ||
		env(s3, "VGW_HEALTH") == "" {
		t.Errorf("s3: health check %+v does not ask versitygw's health endpoint (VGW_HEALTH)", s3.HealthCheck)
	}
}

func TestDockerfile(t *testing.T) {
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []string
	var user, entrypoint string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			image := fields[1]
			if !slices.Contains(stages, image) {
				if _, ok := pinned(image); !ok {
					t.Errorf("FROM %s: not pinned to a tag other than latest or a digest", image)
				}
			}
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				stages = append(stages, fields[3])
			}
			user, entrypoint = "", "" // each stage starts over
		case "USER":
			user = fields[1]
		case "ENTRYPOINT":
			entrypoint = strings.Join(fields[1:], " ")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	// The final stage is the image; without USER it would run as whatever its base says.
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		t.Errorf("the image's user is %q, want a non-root USER in the final stage", user)
	}
	if entrypoint != `["/usr/local/bin/worker"]` {
		t.Errorf("ENTRYPOINT %s: the compose health check runs /usr/local/bin/worker", entrypoint)
	}
}
