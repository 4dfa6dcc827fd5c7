package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.RunWithServers(m)) }

// fixture is an API server on a real PostgreSQL catalog and a directory store, without Temporal:
// everything that must work while no worker runs.
type fixture struct {
	t     *testing.T
	cat   *catalog.Catalog
	store artifact.Store
	srv   *Server
	url   string
	seq   map[string]int64 // model workflow sequence per model
}

var tokens = map[string]string{
	"alice": "tok-alice-0123456789abcdef0123456789", // approve on fraud
	"ci":    "tok-ci-0123456789abcdef0123456789abc", // register on everything
	"root":  "tok-root-0123456789abcdef01234567890", // admin on fraud*
}

func digest(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	cat, err := catalog.Open(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	if err := cat.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	store, err := artifact.NewDir(filepath.Join(t.TempDir(), "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := NewAuthenticator(TokenFile{Principals: []PrincipalEntry{
		{Name: "alice", TokenSHA256: digest(tokens["alice"]), Roles: map[string][]string{"fraud": {RoleApprove}}},
		{Name: "ci", TokenSHA256: digest(tokens["ci"]), Roles: map[string][]string{"*": {RoleRegister}}},
		{Name: "root", TokenSHA256: digest(tokens["root"]), Roles: map[string][]string{"fraud*": {RoleAdmin}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Options{Catalog: cat, Store: store, Auth: auth, WatchInterval: 50 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go srv.Run(rctx)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &fixture{t: t, cat: cat, store: store, srv: srv, url: hs.URL, seq: map[string]int64{}}
}

// version registers a version with a stored manifest of one file and walks it to stage.
func (f *fixture) version(model string, metrics map[string]float64, tags map[string]string, stage string) catalog.Version {
	f.t.Helper()
	ctx := context.Background()
	v, _, err := f.cat.MintVersion(ctx, catalog.Version{Model: model, IdempotencyKey: fmt.Sprintf("k-%d", time.Now().UnixNano()),
		Metrics: metrics, Tags: tags, RegisteredBy: "ci"})
	if err != nil {
		f.t.Fatal(err)
	}
	file := filepath.Join(f.t.TempDir(), "model.bin")
	if err := os.WriteFile(file, []byte(fmt.Sprintf("%s v%d", model, v.Version)), 0o644); err != nil {
		f.t.Fatal(err)
	}
	e, err := f.store.PutFile(ctx, file, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	e.Path = "model.bin"
	uri, dg, err := f.store.PutManifest(ctx, artifact.Manifest{SchemaVersion: artifact.ManifestSchemaVersion, Model: model, Version: v.Version,
		Files: []artifact.FileEntry{e}, CreatedAt: time.Now().UTC()})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.cat.SetManifest(ctx, model, v.Version, uri, dg); err != nil {
		f.t.Fatal(err)
	}
	path := []string{catalog.StageValidating, catalog.StagePendingApproval, catalog.StageApproved, catalog.StageProduction, catalog.StageArchived}
	if stage == catalog.StageRejected {
		path = []string{catalog.StageValidating, catalog.StageRejected}
	}
	from := catalog.StageRegistered
	for i, to := range path {
		if from == stage {
			break
		}
		if to == catalog.StageProduction {
			f.promote(model, v.Version)
		} else if _, err := f.cat.RecordTransition(ctx, catalog.Transition{Model: model, Version: v.Version, Seq: int64(i + 2), From: from, To: to, Actor: "test"}); err != nil {
			f.t.Fatal(err)
		}
		from = to
	}
	v, err = f.cat.GetVersion(ctx, model, v.Version)
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

// promote does what the model workflow does: archive the current production version, move the pointer.
func (f *fixture) promote(model string, version int) {
	f.t.Helper()
	ctx := context.Background()
	if cur, err := f.cat.Production(ctx, model); err == nil {
		if _, err := f.cat.RecordTransition(ctx, catalog.Transition{Model: model, Version: cur.Version, Seq: cur.Seq + 1, From: catalog.StageProduction, To: catalog.StageArchived, Actor: "test"}); err != nil {
			f.t.Fatal(err)
		}
	}
	v, err := f.cat.GetVersion(ctx, model, version)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.cat.RecordTransition(ctx, catalog.Transition{Model: model, Version: version, Seq: v.Seq + 1, From: v.Stage, To: catalog.StageProduction, Actor: "test"}); err != nil {
		f.t.Fatal(err)
	}
	f.seq[model]++
	if _, err := f.cat.SetProduction(ctx, model, &version, f.seq[model]); err != nil {
		f.t.Fatal(err)
	}
}

// settle waits until the server's production views have caught up with the catalog: two scans
// complete after the call (the first may have started before it).
func (f *fixture) settle() {
	f.t.Helper()
	n := f.srv.watch.scanned()
	deadline := time.Now().Add(10 * time.Second)
	for f.srv.watch.scanned() < n+2 {
		if time.Now().After(deadline) {
			f.t.Fatal("the production views are not refreshed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, into any) {
	t.Helper()
	if err := json.Unmarshal(r.body, into); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errCode is the code of a JSON error body ("" when the body is not one).
func (r response) errCode() string {
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(r.body, &e)
	if e.Message == "" {
		return ""
	}
	return e.Code
}

func (f *fixture) do(method, path, token string, body any, hdr ...string) response {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, f.url+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (f *fixture) want(r response, status int, code string) {
	f.t.Helper()
	if r.status != status || (code != "" && r.errCode() != code) {
		f.t.Fatalf("got %d %s, want %d %s", r.status, r.body, status, code)
	}
	if status >= 400 && !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		f.t.Fatalf("error Content-Type %q, want application/json", r.header.Get("Content-Type"))
	}
}

func TestReads(t *testing.T) {
	f := newFixture(t)
	v1 := f.version("fraud", map[string]float64{"accuracy": 0.91}, map[string]string{"team": "risk"}, catalog.StageArchived)
	v2 := f.version("fraud", map[string]float64{"accuracy": 0.95}, map[string]string{"team": "risk", "gpu": "a100"}, catalog.StageProduction)
	f.version("fraud", map[string]float64{"accuracy": 0.97}, nil, catalog.StagePendingApproval)
	f.version("churn", map[string]float64{"auc": 0.8}, map[string]string{"team": "growth"}, catalog.StageRejected)

	var ml ModelList
	r := f.do("GET", "/v1/models", "", nil)
	f.want(r, 200, "")
	r.json(t, &ml)
	if len(ml.Models) != 2 || ml.Models[0].Name != "churn" || ml.Models[1].Name != "fraud" || *ml.Models[1].ProductionVersion != 2 ||
		ml.Models[1].Waiting != 1 || ml.Models[1].LatestVersion != 3 {
		t.Fatalf("models = %+v", ml.Models)
	}

	var md ModelDetail
	f.do("GET", "/v1/models/fraud", "", nil).json(t, &md)
	if md.Name != "fraud" || md.Waiting != 1 || md.LatestVersion != 3 {
		t.Fatalf("model = %+v", md)
	}
	f.want(f.do("GET", "/v1/models/nope", "", nil), 404, "not_found")
	f.want(f.do("GET", "/v1/models/Bad%20Name", "", nil), 400, "bad_model_name")

	list := func(path string) []string {
		t.Helper()
		r := f.do("GET", path, "", nil)
		f.want(r, 200, "")
		var vl VersionList
		r.json(t, &vl)
		var out []string
		for _, v := range vl.Versions {
			out = append(out, fmt.Sprintf("%s/%d", v.Model, v.Version))
		}
		return out
	}
	for path, want := range map[string][]string{
		"/v1/models/fraud/versions":                                      {"fraud/3", "fraud/2", "fraud/1"},
		"/v1/models/fraud/versions?stage=Production":                     {"fraud/2"},
		"/v1/models/fraud/versions?stage=Production&stage=Archived":      {"fraud/2", "fraud/1"},
		"/v1/models/fraud/versions?tag=team=risk":                        {"fraud/2", "fraud/1"},
		"/v1/models/fraud/versions?tag=gpu":                              {"fraud/2"},
		"/v1/models/fraud/versions?metric=accuracy%3E%3D0.95":            {"fraud/3", "fraud/2"},
		"/v1/models/fraud/versions?metric=accuracy%3C0.95&tag=team=risk": {"fraud/1"},
		"/v1/versions":                             {"churn/1", "fraud/3", "fraud/2", "fraud/1"},
		"/v1/versions?stage=PendingApproval":       {"fraud/3"},
		"/v1/versions?tag=team":                    {"churn/1", "fraud/2", "fraud/1"},
		"/v1/versions?registeredBy=ci&model=churn": {"churn/1"},
		"/v1/versions?registeredBy=someone-else":   nil,
	} {
		if got := list(path); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	f.want(f.do("GET", "/v1/versions?stage=Deployed", "", nil), 400, "bad_filter")
	for _, bad := range []string{"accuracy~0.9", "accuracy%3E%3DNaN", "accuracy%3E%3DInf", "%3E%3D1"} {
		f.want(f.do("GET", "/v1/versions?metric="+bad, "", nil), 400, "bad_filter")
	}
	f.want(f.do("GET", "/v1/versions?cursor=garbage", "", nil), 400, "bad_cursor")
	f.want(f.do("GET", "/v1/versions?limit=100000", "", nil), 422, "invalid_request")
	f.want(f.do("GET", "/v1/models/nope/versions", "", nil), 404, "not_found")

	var vd VersionDetail
	r = f.do("GET", "/v1/models/fraud/versions/2", "", nil)
	f.want(r, 200, "")
	r.json(t, &vd)
	if vd.Version.Version != 2 || vd.Stage != catalog.StageProduction || len(vd.Files) != 1 || vd.Files[0].Path != "model.bin" ||
		len(vd.Transitions) < 4 || vd.Tags["gpu"] != "a100" || vd.LiveError == "" {
		t.Fatalf("version = %s", r.body)
	}
	f.want(f.do("GET", "/v1/models/fraud/versions/9", "", nil), 404, "not_found")
	f.want(f.do("GET", "/v1/models/fraud/versions/0", "", nil), 422, "invalid_request")
	f.want(f.do("GET", "/v1/models/fraud/versions/x", "", nil), 422, "invalid_request")
	f.want(f.do("GET", "/v1/models/fraud/versions/2/transitions", "", nil), 200, "")
	f.want(f.do("GET", "/v1/models/fraud/versions/2/decisions", "", nil), 200, "")
	f.want(f.do("GET", "/v1/models/fraud/policy", "", nil), 200, "")
	f.want(f.do("GET", "/v1/nothing-here", "", nil), 404, "route_not_found")

	// Production: artifacts, ETag, 304.
	f.settle()
	var p Production
	r = f.do("GET", "/v1/models/fraud/production", "", nil)
	f.want(r, 200, "")
	r.json(t, &p)
	if p.Version != v2.Version || p.ManifestDigest != v2.ManifestDigest || len(p.Artifacts) != 1 || !strings.HasPrefix(p.Artifacts[0].URI, "file://") {
		t.Fatalf("production = %s", r.body)
	}
	etag := r.header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	f.want(f.do("GET", "/v1/models/fraud/production", "", nil, "If-None-Match", etag), 304, "")
	f.want(f.do("GET", "/v1/models/fraud/production", "", nil, "If-None-Match", `"other"`), 200, "")
	f.want(f.do("GET", "/v1/models/churn/production", "", nil), 404, "no_production_version")
	f.want(f.do("GET", "/v1/models/nope/production", "", nil), 404, "not_found")
	f.want(f.do("GET", "/v1/models/fraud/production?wait=2h", "", nil), 400, "bad_wait")
	_ = v1
}

func TestProductionLongPoll(t *testing.T) {
	f := newFixture(t)
	f.version("fraud", nil, nil, catalog.StageProduction)
	v2 := f.version("fraud", nil, nil, catalog.StageApproved)
	f.settle()
	r := f.do("GET", "/v1/models/fraud/production", "", nil)
	etag := r.header.Get("ETag")

	// Nothing changes: the wait ends with 304.
	start := time.Now()
	f.want(f.do("GET", "/v1/models/fraud/production?wait=300ms", "", nil, "If-None-Match", etag), 304, "")
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("a wait of 300ms answered after %s", d)
	}

	// A switch while many wait: every watcher gets the new version.
	const watchers = 50
	var wg sync.WaitGroup
	got := make(chan response, watchers)
	for range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got <- f.do("GET", "/v1/models/fraud/production?wait=30s", "", nil, "If-None-Match", etag)
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.srv.watch.watching() < watchers && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	switched := time.Now()
	f.promote("fraud", v2.Version)
	wg.Wait()
	close(got)
	for r := range got {
		var p Production
		f.want(r, 200, "")
		r.json(t, &p)
		if p.Version != v2.Version || r.header.Get("ETag") == etag {
			t.Fatalf("after the switch: %s (ETag %s)", r.body, r.header.Get("ETag"))
		}
	}
	if d := time.Since(switched); d > 5*time.Second {
		t.Fatalf("watchers answered %s after the switch", d)
	}
	if n := f.srv.watch.watching(); n != 0 {
		t.Fatalf("%d subscriptions left after every watcher was answered", n)
	}

	// A model without a production version can be waited on until it has one.
	f.version("churn", nil, nil, catalog.StageApproved)
	f.settle()
	r = f.do("GET", "/v1/models/churn/production", "", nil)
	f.want(r, 404, "no_production_version")
	none := r.header.Get("ETag")
	if none == "" {
		t.Fatal("no ETag on no_production_version")
	}
	done := make(chan response, 1)
	go func() { done <- f.do("GET", "/v1/models/churn/production?wait=30s", "", nil, "If-None-Match", none) }()
	for f.srv.watch.watching() < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	f.promote("churn", 1)
	f.want(<-done, 200, "")

	// A model not registered yet: a 404 with an ETag, and a watch that waits for its first version.
	r = f.do("GET", "/v1/models/later/production", "", nil)
	f.want(r, 404, "not_found")
	if r.header.Get("ETag") == "" {
		t.Fatal("no ETag for a model not registered yet")
	}
	go func() {
		done <- f.do("GET", "/v1/models/later/production?wait=30s", "", nil, "If-None-Match", r.header.Get("ETag"))
	}()
	for f.srv.watch.watching() < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	f.version("later", nil, nil, catalog.StageApproved)
	f.settle()
	f.promote("later", 1)
	f.want(<-done, 200, "")

	// The model workflow moves the pointer, then the version's stage: a watch woken between the two
	// writes waits for the second instead of answering with a version not yet in Production.
	v3 := f.version("fraud", nil, nil, catalog.StageApproved)
	f.settle()
	r = f.do("GET", "/v1/models/fraud/production", "", nil)
	etag = r.header.Get("ETag")
	go func() { done <- f.do("GET", "/v1/models/fraud/production?wait=30s", "", nil, "If-None-Match", etag) }()
	for f.srv.watch.watching() < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	f.seq["fraud"]++
	if _, err := f.cat.SetProduction(ctx, "fraud", &v3.Version, f.seq["fraud"]); err != nil {
		t.Fatal(err)
	}
	f.settle()
	cur, _ := f.cat.GetVersion(ctx, "fraud", v2.Version)
	if _, err := f.cat.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: v2.Version, Seq: cur.Seq + 1, From: catalog.StageProduction, To: catalog.StageArchived}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cat.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: v3.Version, Seq: v3.Seq + 1, From: catalog.StageApproved, To: catalog.StageProduction}); err != nil {
		t.Fatal(err)
	}
	r = <-done
	f.want(r, 200, "")
	var p Production
	r.json(t, &p)
	if p.Version != v3.Version || p.Stage != catalog.StageProduction {
		t.Fatalf("the watch woken by the pointer answered %s", r.body)
	}
}

// TestProductionLongPollThroughHalfDoneSwitch: a switch moves the pointer and the version's stage in
// two writes; a long poll that catches the first must answer once the second lands, not at its deadline.
func TestProductionLongPollThroughHalfDoneSwitch(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	v := f.version("fraud", nil, nil, catalog.StageApproved)
	r := f.do("GET", "/v1/models/fraud/production", "", nil)
	f.want(r, 404, "no_production_version")
	none := r.header.Get("ETag")
	f.seq["fraud"]++
	if _, err := f.cat.SetProduction(ctx, "fraud", &v.Version, f.seq["fraud"]); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		if _, err := f.cat.RecordTransition(ctx, catalog.Transition{Model: "fraud", Version: v.Version, Seq: v.Seq + 1,
			From: catalog.StageApproved, To: catalog.StageProduction, Actor: "test"}); err != nil {
			t.Error(err)
		}
	}()
	start := time.Now()
	f.want(f.do("GET", "/v1/models/fraud/production?wait=20s", "", nil, "If-None-Match", none), 200, "")
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the long poll answered %s after the switch began", d)
	}
}

func TestAuthAndRequestLimits(t *testing.T) {
	f := newFixture(t)
	v := f.version("fraud", nil, nil, catalog.StagePendingApproval)
	approve := "/v1/models/fraud/versions/1/approve"
	body := DecisionBody{Digest: v.ManifestDigest}

	f.want(f.do("POST", approve, "", body), 401, "unauthenticated")
	r := f.do("POST", approve, "wrong-token", body)
	f.want(r, 401, "unauthenticated")
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	f.want(f.do("POST", approve, "", body, "Authorization", "Basic abc"), 401, "unauthenticated")
	f.want(f.do("POST", approve, tokens["ci"], body), 403, "forbidden")
	f.want(f.do("POST", "/v1/models/fraud/rollback", tokens["alice"], RollbackBody{}), 403, "forbidden")
	f.want(f.do("PUT", "/v1/models/fraud/policy", tokens["alice"], catalog.Policy{}), 403, "forbidden")
	f.want(f.do("PUT", "/v1/models/churn/policy", tokens["root"], catalog.Policy{}), 403, "forbidden") // fraud* only
	// A body that would take work to validate is not looked at without the role, and with it the
	// error stays small: ten problems at most, no value echoed back.
	var junk strings.Builder
	junk.WriteString(`{"digest":"` + v.ManifestDigest + `"`)
	for i := range 1000 {
		fmt.Fprintf(&junk, `,"x%d":"%s"`, i, strings.Repeat("a", 200))
	}
	junk.WriteString("}")
	r = f.do("POST", approve, "", []byte(junk.String()))
	f.want(r, 401, "unauthenticated")
	f.want(f.do("POST", approve, tokens["ci"], []byte(junk.String())), 403, "forbidden")
	r = f.do("POST", approve, tokens["alice"], []byte(junk.String()))
	f.want(r, 422, "invalid_request")
	if len(r.body) > 4096 || strings.Contains(string(r.body), "aaaa") {
		t.Fatalf("a body of 1,000 unknown fields answered %d bytes: %.300s", len(r.body), r.body)
	}
	// A reader with a bad token learns at once.
	f.want(f.do("GET", "/v1/models", "wrong-token", nil), 401, "unauthenticated")

	// Authorized, but this server has no Temporal: a clean 503, nothing written.
	f.want(f.do("POST", approve, tokens["alice"], body), 503, "temporal_unavailable")
	f.want(f.do("POST", approve, tokens["alice"], DecisionBody{Digest: "sha256:short"}), 422, "invalid_request")
	f.want(f.do("POST", approve, tokens["alice"], []byte(`{"digest":`)), 400, "")
	f.want(f.do("POST", approve, tokens["alice"], []byte("digest=x"), "Content-Type", "application/x-www-form-urlencoded"), 415, "unsupported_media_type")
	huge := []byte(`{"digest":"` + v.ManifestDigest + `","comment":"` + strings.Repeat("x", 2<<20) + `"}`)
	f.want(f.do("POST", approve, tokens["alice"], huge), 413, "body_too_large")
	if ds, _ := f.cat.Decisions(context.Background(), "fraud", 1); len(ds) != 0 {
		t.Fatalf("refused requests left decisions: %+v", ds)
	}

	// The policy write needs no Temporal: admin sets it, a bad one is refused and changes nothing.
	good := catalog.Policy{RequiredApprovals: 2, Thresholds: []catalog.Threshold{{Metric: "accuracy", Op: ">=", Value: 0.9}}}
	f.want(f.do("PUT", "/v1/models/fraud/policy", tokens["root"], good), 200, "")
	f.want(f.do("PUT", "/v1/models/fraud/policy", tokens["root"], catalog.Policy{Thresholds: []catalog.Threshold{{Metric: "accuracy", Op: "~", Value: 1}}}), 400, "bad_policy")
	var p catalog.Policy
	f.do("GET", "/v1/models/fraud/policy", "", nil).json(t, &p)
	if p.RequiredApprovals != 2 || len(p.Thresholds) != 1 {
		t.Fatalf("policy after a refused write = %+v", p)
	}

	// Webhook and validator URLs carry credentials: only an admin of the model reads them whole.
	secretive := catalog.Policy{Webhooks: []string{"https://deploy:s3cr3t@hooks.example.com/services/T0/B0/XXXX?token=abc"},
		Validators: []catalog.ExternalValidator{{Name: "ci", URL: "https://ci:citoken@ci.example.com/hook", TimeoutSeconds: 60}}}
	f.want(f.do("PUT", "/v1/models/fraud/policy", tokens["root"], secretive), 200, "")
	for _, who := range []string{"", tokens["alice"]} {
		for _, path := range []string{"/v1/models/fraud/policy", "/v1/models/fraud"} {
			r := f.do("GET", path, who, nil)
			f.want(r, 200, "")
			if b := string(r.body); strings.Contains(b, "s3cr3t") || strings.Contains(b, "citoken") || strings.Contains(b, "XXXX") || !strings.Contains(b, "https://hooks.example.com/") {
				t.Fatalf("GET %s as %q shows: %s", path, who, b)
			}
		}
	}
	if r := f.do("GET", "/v1/models/fraud/policy", tokens["root"], nil); !strings.Contains(string(r.body), "s3cr3t") {
		t.Fatalf("the admin reads the policy as %s", r.body)
	}

	var who WhoAmI
	f.do("GET", "/v1/whoami?model=fraud", tokens["root"], nil).json(t, &who)
	if who.Principal != "root" || !slices.Contains(who.Roles, RoleApprove) || !slices.Contains(who.Roles, RoleAdmin) {
		t.Fatalf("whoami = %+v", who)
	}
	f.want(f.do("GET", "/v1/whoami", "", nil), 401, "unauthenticated")
}

func TestTokenFileRefusesMistakes(t *testing.T) {
	ok := digest("x")
	for name, tf := range map[string]TokenFile{
		"duplicate principal": {Principals: []PrincipalEntry{{Name: "a", TokenSHA256: ok}, {Name: "a", TokenSHA256: digest("y")}}},
		"duplicate token":     {Principals: []PrincipalEntry{{Name: "a", TokenSHA256: ok}, {Name: "b", TokenSHA256: ok}}},
		"plain token":         {Principals: []PrincipalEntry{{Name: "a", TokenSHA256: "secret"}}},
		"unknown role":        {Principals: []PrincipalEntry{{Name: "a", TokenSHA256: ok, Roles: map[string][]string{"*": {"deploy"}}}}},
		"bad pattern":         {Principals: []PrincipalEntry{{Name: "a", TokenSHA256: ok, Roles: map[string][]string{"[": {"admin"}}}}},
		"no name":             {Principals: []PrincipalEntry{{TokenSHA256: ok}}},
	} {
		if _, err := NewAuthenticator(tf); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestOpenAPIMatchesRoutes is the drift test: every route served is in the document, and every
// operation of the document is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	f := newFixture(t)
	r := f.do("GET", OpenAPIPath+".json", "", nil)
	f.want(r, 200, "")
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	r.json(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi = %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	// The document's own routes and the web page's pages and files are the only ones not in it.
	undocumented := map[string]bool{"GET " + OpenAPIPath + ".json": true, "GET " + OpenAPIPath + ".yaml": true,
		"GET " + OpenAPIPath + "-3.0.json": true, "GET " + OpenAPIPath + "-3.0.yaml": true, "/": true,
		"GET /{$}": true, "GET /ui/": true, "GET /ui/assets/{file}": true}
	served := map[string]bool{}
	for _, p := range f.srv.Routes() {
		// ServeMux's {name...} (a parameter spanning segments) is {name} in OpenAPI, which has no such syntax.
		p = spanning.ReplaceAllString(p, "{$1}")
		served[p] = true
		if !documented[p] && !undocumented[p] {
			t.Errorf("served but not in the OpenAPI document: %s", p)
		}
	}
	for p := range documented {
		if !served[p] {
			t.Errorf("in the OpenAPI document but not served: %s", p)
		}
	}
	if len(documented) < 15 {
		t.Errorf("only %d operations documented", len(documented))
	}
}

var spanning = regexp.MustCompile(`\{([a-zA-Z0-9_]+)\.\.\.\}$`)

// TestPaginationStableWhileRegistering pages through versions while others are registered: every
// version that existed when paging began is seen exactly once, in order.
func TestPaginationStableWhileRegistering(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	mint := func(model string, i int) {
		if _, _, err := f.cat.MintVersion(ctx, catalog.Version{Model: model, IdempotencyKey: fmt.Sprintf("%s-%d", model, i)}); err != nil {
			t.Error(err)
		}
	}
	for i := range 40 {
		mint([]string{"fraud", "churn"}[i%2], i)
	}
	for _, path := range []string{"/v1/models/fraud/versions?limit=7", "/v1/versions?limit=7"} {
		var before VersionList
		f.do("GET", strings.Replace(path, "limit=7", "limit=500", 1), "", nil).json(t, &before)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1000; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mint([]string{"fraud", "churn"}[i%2], i+len(path)*10000)
			}
		}()
		var seen []catalog.Version
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 100 {
				t.Fatal("paging does not end")
			}
			p := path
			if cursor != "" {
				p += "&cursor=" + cursor
			}
			var vl VersionList
			r := f.do("GET", p, "", nil)
			f.want(r, 200, "")
			r.json(t, &vl)
			seen = append(seen, vl.Versions...)
			if cursor = vl.NextCursor; cursor == "" {
				break
			}
		}
		close(stop)
		wg.Wait()
		// Pages start from the newest at the first request: versions registered after it are not
		// in them, and every older one is, once.
		first := len(seen) - len(before.Versions)
		if first < 0 {
			t.Fatalf("%s: saw %d versions, %d existed before", path, len(seen), len(before.Versions))
		}
		key := func(v catalog.Version) string { return fmt.Sprintf("%s/%d", v.Model, v.Version) }
		got, want := []string{}, []string{}
		for _, v := range seen[first:] {
			got = append(got, key(v))
		}
		for _, v := range before.Versions {
			want = append(want, key(v))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: paged %v\nwant the versions that existed: %v", path, got, want)
		}
		dup := map[string]bool{}
		for _, v := range seen {
			if dup[key(v)] {
				t.Fatalf("%s: %s seen twice", path, key(v))
			}
			dup[key(v)] = true
		}
	}
	// A cursor of one listing is refused by the other.
	var vl VersionList
	f.do("GET", "/v1/versions?limit=1", "", nil).json(t, &vl)
	f.want(f.do("GET", "/v1/models/fraud/versions?cursor="+vl.NextCursor, "", nil), 400, "bad_cursor")
}
