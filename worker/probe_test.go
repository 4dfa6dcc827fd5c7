package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProbe(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/unready", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "temporal unreachable", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/healthz"
	l.Close() // nothing listens there now

	for _, tc := range []struct {
		url       string
		want      int
		stderrHas string
	}{
		{srv.URL + "/ok", 0, ""},
		{srv.URL + "/nocontent", 0, ""},
		{srv.URL + "/unready", 1, "503 Service Unavailable"},
		{srv.URL + "/missing", 1, "404 Not Found"},
		{srv.URL + "/moved", 1, "302 Found"},
		{srv.URL + "/slow", 1, "Timeout"},
		{closed, 1, "connection refused"},
		{"not a url", 1, "probe:"},
	} {
		var stderr bytes.Buffer
		start := time.Now()
		got := probe(tc.url, 300*time.Millisecond, &stderr)
		if got != tc.want || !strings.Contains(stderr.String(), tc.stderrHas) || (tc.want == 0) != (stderr.Len() == 0) {
			t.Errorf("probe(%s) = %d, stderr %q; want %d and %q", tc.url, got, stderr.String(), tc.want, tc.stderrHas)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("probe(%s) took %s, past its timeout", tc.url, d)
		}
	}
}
