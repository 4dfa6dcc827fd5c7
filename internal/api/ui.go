package api

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// The web page is static files that read and write through the JSON API like any other client, so it
// needs no server-side rendering and cannot do anything a token could not do with curl.
//
//go:embed ui
var uiFiles embed.FS

// uiCSP allows nothing but this server's own files and API: names, comments and params on the page
// come from users, and were one ever to slip into markup, it could neither run inline script nor load
// or send anything elsewhere.
const uiCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type uiAsset struct {
	body []byte
	etag string
}

// uiRoutes serves the web page. Its routes are pages and files, not API operations, so they are not in
// the OpenAPI document.
func (s *Server) uiRoutes() {
	assets := map[string]uiAsset{}
	_ = fs.WalkDir(uiFiles, "ui", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := uiFiles.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		assets[path.Base(p)] = uiAsset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	page := assets["index.html"]
	delete(assets, "index.html")
	serve := func(w http.ResponseWriter, r *http.Request, name string, a uiAsset) {
		h := w.Header()
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Revalidated on every load (a 304 is cheap), so a new worker's page never runs an old script.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
	}
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})
	// Every path under /ui/ is the same page; its script picks what to show from the path, so a link
	// to a model or a version can be shared and reloaded.
	s.mux.HandleFunc("GET /ui/", func(w http.ResponseWriter, r *http.Request) { serve(w, r, "index.html", page) })
	s.mux.HandleFunc("GET /ui/assets/{file}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		a, ok := assets[name]
		if !ok {
			writeError(w, http.StatusNotFound, "not_found", "the web page has no file "+name)
			return
		}
		serve(w, r, name, a)
	})
}
