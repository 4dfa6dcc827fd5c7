package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/modelreg/modelreg/internal/api"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/testenv"
)

// TestWebPage drives the web page in a real headless Chromium against the real worker: the models page
// lists what waits, the model page charts its metrics, and on the version page the API's refusals show
// (no token, no approve role, not an allowed approver), then an allowed approver approves and watches
// the version reach Production.
// With MODELREG_SCREENSHOTS=1 it registers a little more (a rejected version, a second model) and saves
// the README's screenshots into docs/screenshots.
func TestWebPage(t *testing.T) {
	chromium, ok := testenv.Binary("MODELREG_CHROMIUM_BIN", "chromium")
	if !ok {
		testenv.Unavailable(t, "chromium is not installed")
	}
	shots := os.Getenv("MODELREG_SCREENSHOTS") == "1"
	start := time.Now()

	tok := map[string]string{"alice": "web-alice-0123456789abcdef0123456789", "bob": "web-bob-0123456789abcdef01234567890",
		"dave": "web-dave-0123456789abcdef0123456789"}
	sum := func(s string) string { d := sha256.Sum256([]byte(s)); return hex.EncodeToString(d[:]) }
	tf, _ := json.Marshal(api.TokenFile{Principals: []api.PrincipalEntry{
		{Name: "alice", TokenSHA256: sum(tok["alice"]), Roles: map[string][]string{"fraud": {api.RoleApprove}}},
		{Name: "bob", TokenSHA256: sum(tok["bob"]), Roles: map[string][]string{"*": {api.RoleRegister}}},
		{Name: "dave", TokenSHA256: sum(tok["dave"]), Roles: map[string][]string{"*": {api.RoleApprove}}},
	}})
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(tokens, tf, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	base := "http://" + addr
	h := newHarnessWith(t, harnessOptions{env: []string{"MODELREG_HTTP_ADDR=" + addr, "MODELREG_API_TOKENS_FILE=" + tokens}})
	if err := testenv.WaitTCP(addr, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	h.mustStarter("policy", "set", "--model", "fraud", "--threshold", "accuracy>=0.9",
		"--champion-metric", "accuracy", "--champion-tolerance", "0.01", "--allowed-approver", "carol", "--allowed-approver", "alice")
	register := func(model string, n int, metrics string) int {
		t.Helper()
		dir := filepath.Join(h.dir, fmt.Sprintf("web-%s-%d", model, n))
		writeFiles(t, dir, map[string]string{"model.bin": fmt.Sprintf("weights %s %d", model, n), "config.json": `{"layers": 4}`})
		m := filepath.Join(h.dir, fmt.Sprintf("web-%s-%d.json", model, n))
		writeFiles(t, filepath.Dir(m), map[string]string{filepath.Base(m): metrics})
		out := h.mustStarter("register", "--model", model, "--dir", dir, "--metrics", m, "--source-run", fmt.Sprintf("mlflow:run-%d", 40+n),
			"--param", "lr=0.001", "--param", "note=<img src=x onerror=alert(1)>", "--registered-by", "ci-pipeline", "--json", "--wait")
		var r struct {
			Version int `json:"version"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("register output %q: %v", out, err)
		}
		return r.Version
	}
	promote := func(v int) {
		t.Helper()
		h.mustStarter("approve", "--model", "fraud", "--version", fmt.Sprint(v), "--approver", "carol", "--comment", "offline eval ok")
		// The next version is validated against production: it must have moved first.
		h.waitStage("fraud", v, catalog.StageProduction)
	}
	promote(register("fraud", 1, `{"accuracy": 0.912, "auc": 0.951, "latency_ms": 41}`))
	promote(register("fraud", 2, `{"accuracy": 0.921, "auc": 0.957, "latency_ms": 44}`))
	if shots {
		v := register("fraud", 3, `{"accuracy": 0.918, "auc": 0.960, "latency_ms": 38}`)
		h.mustStarter("reject", "--model", "fraud", "--version", fmt.Sprint(v), "--approver", "carol", "--comment", "latency budget")
		h.mustStarter("policy", "set", "--model", "churn", "--threshold", "auc>=0.8")
		register("churn", 1, `{"auc": 0.83, "recall": 0.71}`)
	}
	waiting := register("fraud", 4, `{"accuracy": 0.934, "auc": 0.962, "latency_ms": 39}`)
	t.Logf("registry ready after %s", time.Since(start).Round(time.Millisecond))

	resp, err := http.Get(base + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("page Content-Security-Policy = %q", csp)
	}

	b := newBrowser(t, chromium)
	b.open(base + "/ui/")
	b.waitText("#waiting", fmt.Sprintf("fraud v%d", waiting))
	b.waitText("#models", "fraud")
	b.screenshot(shots, "models")

	b.open(base + "/ui/models/fraud")
	b.wait("#charts .pt-production")
	b.wait("#charts .pt-archived")
	b.wait("#legend")
	b.waitText("#versions", fmt.Sprintf("v%d", waiting))
	b.screenshot(shots, "model")

	b.open(fmt.Sprintf("%s/ui/models/fraud/versions/%d", base, waiting))
	b.wait("#approve")
	// Refused, each with the API's own message on the page: no token (401), a token without the role
	// (403), and one with the role whom the version's workflow refuses (409).
	b.click("#approve")
	b.waitText("#action-error", "needs a bearer token")
	b.signIn(tok["bob"], "bob")
	b.waitText("#roles", "register on fraud")
	b.click("#approve")
	b.waitText("#action-error", `principal "bob" does not hold the approve role on model "fraud"`)
	b.click("#signout")
	b.signIn(tok["dave"], "dave")
	b.click("#approve")
	b.waitText("#action-error", "409 refused")
	b.waitText("#action-error", "dave is not an allowed approver of model fraud")
	// What users wrote shows as text: the param's markup neither renders nor runs.
	b.waitText("#lineage", "<img src=x onerror=alert(1)>")
	if n := b.eval(`document.querySelectorAll('#main img').length`); n != "0" {
		t.Fatalf("%s img elements on the page, want none", n)
	}

	b.click("#signout")
	b.signIn(tok["alice"], "alice")
	b.waitText("#decisions", "refused: dave is not an allowed approver")
	b.waitText("#roles", "approve on fraud")
	b.waitText("#metrics", "better")
	b.typeInto("#comment", "offline eval ok <b>no markup</b>")
	b.screenshot(shots, "version")
	b.click("#approve")
	b.waitText("#action-result", "Approved as alice")
	b.waitText("#stage", "Production")
	b.waitText("#decisions", "offline eval ok <b>no markup</b>")
	b.waitText("#history", "Production")

	v, err := h.catalog.GetVersion(context.Background(), "fraud", waiting)
	if err != nil || v.Stage != catalog.StageProduction {
		t.Fatalf("fraud v%d after the page approved it: %+v %v", waiting, v, err)
	}
	ds, err := h.catalog.Decisions(context.Background(), "fraud", waiting)
	if err != nil {
		t.Fatal(err)
	}
	var by []string
	for _, d := range ds {
		if d.Accepted && d.Kind == "approve" {
			by = append(by, d.Approver)
		}
	}
	if strings.Join(by, ",") != "alice" {
		t.Fatalf("accepted approvals of fraud v%d: %v, want alice's only (%+v)", waiting, by, ds)
	}
	b.check()
	t.Logf("web page test took %s", time.Since(start).Round(time.Millisecond))
}

// browser is one headless Chromium tab, with what its pages reported that should never happen.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []string
}

func newBrowser(t *testing.T, bin string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // the tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 900),
		// Without these it dials Google's services, which a closed network refuses or leaves hanging.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("hide-scrollbars", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, b.listen); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

// listen keeps script errors and CSP violations: either means the page is broken even when the steps
// happen to pass. Failed requests are expected (the refusals) and only logged.
func (b *browser) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch e := ev.(type) {
	case *runtime.EventExceptionThrown:
		msg := e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
		b.problems = append(b.problems, "exception: "+msg)
	case *log.EventEntryAdded:
		if strings.Contains(e.Entry.Text, "Content Security Policy") {
			b.problems = append(b.problems, "CSP: "+e.Entry.Text)
		}
	}
}

func (b *browser) check() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		b.t.Fatalf("the page reported:\n%s", strings.Join(b.problems, "\n"))
	}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.check()
		body, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("body")))
		b.t.Fatalf("%s: %v\npage text:\n%s", what, err, body)
	}
}

func (b *browser) open(url string) { b.t.Helper(); b.do("open "+url, chromedp.Navigate(url)) }
func (b *browser) wait(sel string) {
	b.t.Helper()
	b.do("wait for "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
}
func (b *browser) click(sel string) {
	b.t.Helper()
	b.do("click "+sel, chromedp.Click(chromedp.CSS(sel)))
}
func (b *browser) typeInto(sel, s string) {
	b.t.Helper()
	b.do("type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), s))
}

// waitText waits until sel is visible and its text contains want: the page renders after its requests
// answer, so a first look may come too early.
func (b *browser) waitText(sel, want string) {
	b.t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.offsetParent !== null && e.innerText.includes(%q); })()`, sel, want)
	b.do(fmt.Sprintf("wait for %s to show %q", sel, want), waitTrue(js))
}

func waitTrue(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second))
}

func (b *browser) eval(js string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return fmt.Sprint(v)
}

func (b *browser) signIn(token, principal string) {
	b.t.Helper()
	b.do("sign in as "+principal, chromedp.WaitVisible(chromedp.CSS("#token")), chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#signin-button")))
	b.waitText("#principal", principal)
}

// screenshot saves the whole page as docs/screenshots/name.png for the README.
func (b *browser) screenshot(enabled bool, name string) {
	b.t.Helper()
	if !enabled {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join("..", "docs", "screenshots", name+".png")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("saved %s", path)
}
