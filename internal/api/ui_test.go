package api

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestUIRoutes checks what the browser test cannot see from inside the page: the headers every page
// and file carries, and the routes around them. tests/web_test.go drives the page itself.
func TestUIRoutes(t *testing.T) {
	f := newFixture(t)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(f.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("GET / = %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for path, ctype := range map[string]string{
		"/ui/":                             "text/html",
		"/ui/models/fraud":                 "text/html",
		"/ui/models/fraud/versions/3":      "text/html",
		"/ui/assets/app.js":                "text/javascript",
		"/ui/assets/style.css":             "text/css",
		"/ui/assets/favicon.svg":           "image/svg+xml",
		"/ui/models/%3Cscript%3E/versions": "text/html", // any path: the script says there is no such page
	} {
		r := f.do("GET", path, "", nil)
		f.want(r, 200, "")
		if got := r.header.Get("Content-Type"); !strings.HasPrefix(got, ctype) {
			t.Errorf("%s: Content-Type %q, want %s", path, got, ctype)
		}
		if csp := r.header.Get("Content-Security-Policy"); csp != uiCSP {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options: nosniff", path)
		}
		etag := r.header.Get("ETag")
		f.want(f.do("GET", path, "", nil, "If-None-Match", etag), 304, "")
	}
	f.want(f.do("GET", "/ui/assets/nothing.js", "", nil), 404, "not_found")
	f.want(f.do("GET", "/ui/assets/index.html", "", nil), 404, "not_found")
	f.want(f.do("POST", "/ui/", "", nil), 404, "route_not_found")
	// The API's own 404 for everything else is unchanged.
	f.want(f.do("GET", "/nothing", "", nil), 404, "route_not_found")
}

// TestUIBuildsNoMarkupFromData keeps the page's script to the DOM calls that cannot interpret data as
// markup, and its HTML to what the Content-Security-Policy lets run (no inline script or style).
func TestUIBuildsNoMarkupFromData(t *testing.T) {
	js, err := uiFiles.ReadFile("ui/app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "javascript:"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	html, err := uiFiles.ReadFile("ui/index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(string(html), -1) {
		if !strings.Contains(tag, `src="/ui/assets/`) {
			t.Errorf("index.html: inline script %s", tag)
		}
	}
	if regexp.MustCompile(`<style|\sstyle=|\son[a-z]+=`).Match(html) {
		t.Error("index.html has inline style or an event handler attribute, which the CSP blocks")
	}
}
