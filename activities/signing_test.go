package activities

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testSecret = []byte("whsec-test-3f9a1c")
	testBody   = []byte(`{"schemaVersion":1,"eventId":"fraud/1/promote/v1","kind":"promote","model":"fraud","version":1}`)
	signedAt   = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
)

func TestSignVerifyRoundTrip(t *testing.T) {
	h := Sign(testSecret, signedAt, testBody)
	// The documented scheme, computed independently: t=<unix>,v1=hex(HMAC-SHA256(secret, "<t>.<body>")).
	m := hmac.New(sha256.New, testSecret)
	fmt.Fprintf(m, "%d.%s", signedAt.Unix(), testBody)
	want := fmt.Sprintf("t=%d,v1=%s", signedAt.Unix(), hex.EncodeToString(m.Sum(nil)))
	if h != want {
		t.Fatalf("Sign = %s, want %s", h, want)
	}
	for _, now := range []time.Time{signedAt, signedAt.Add(4 * time.Minute), signedAt.Add(-30 * time.Second)} {
		if err := VerifySignature(testSecret, h, testBody, 5*time.Minute, now); err != nil {
			t.Fatalf("verify at %s: %v", now, err)
		}
	}
	// maxAge 0 is the default window.
	if err := VerifySignature(testSecret, h, testBody, 0, signedAt.Add(DefaultSignatureMaxAge-time.Second)); err != nil {
		t.Fatal(err)
	}
	// Several v1 values (a receiver rotating secrets may see this) and unknown keys are accepted; spaces too.
	other := hex.EncodeToString(make([]byte, sha256.Size))
	multi := fmt.Sprintf("t=%d, v1=%s, v0=whatever, %s", signedAt.Unix(), other, strings.Split(h, ",")[1])
	if err := VerifySignature(testSecret, multi, testBody, time.Minute, signedAt); err != nil {
		t.Fatalf("multi: %v", err)
	}
}

func TestVerifyTamperedBody(t *testing.T) {
	h := Sign(testSecret, signedAt, testBody)
	tampered := []byte(strings.Replace(string(testBody), `"version":1`, `"version":2`, 1))
	for _, body := range [][]byte{tampered, append(append([]byte{}, testBody...), ' '), nil} {
		if err := VerifySignature(testSecret, h, body, time.Minute, signedAt); !errors.Is(err, ErrSignatureMismatch) {
			t.Fatalf("body %q: %v", body, err)
		}
	}
	// Moving the timestamp breaks the signature too: t is signed.
	moved := strings.Replace(h, fmt.Sprint(signedAt.Unix()), fmt.Sprint(signedAt.Unix()+60), 1)
	if err := VerifySignature(testSecret, moved, testBody, time.Hour, signedAt); !errors.Is(err, ErrSignatureMismatch) {
		t.Fatalf("moved timestamp: %v", err)
	}
}

func TestVerifyWrongSecret(t *testing.T) {
	h := Sign(testSecret, signedAt, testBody)
	if err := VerifySignature([]byte("another-secret"), h, testBody, time.Minute, signedAt); !errors.Is(err, ErrSignatureMismatch) {
		t.Fatalf("wrong secret: %v", err)
	}
	if err := VerifySignature(nil, h, testBody, time.Minute, signedAt); err == nil {
		t.Fatal("an empty secret verified a signature")
	}
}

func TestVerifyStaleTimestamp(t *testing.T) {
	h := Sign(testSecret, signedAt, testBody)
	for _, now := range []time.Time{signedAt.Add(5*time.Minute + time.Second), signedAt.Add(24 * time.Hour), signedAt.Add(-6 * time.Minute)} {
		err := VerifySignature(testSecret, h, testBody, 5*time.Minute, now)
		if !errors.Is(err, ErrSignatureExpired) {
			t.Fatalf("now %s: %v", now, err)
		}
	}
	// A stale header with a wrong signature reports the mismatch, not the age.
	if err := VerifySignature([]byte("x"), h, testBody, time.Minute, signedAt.Add(time.Hour)); !errors.Is(err, ErrSignatureMismatch) {
		t.Fatalf("stale and wrong: %v", err)
	}
}

func TestVerifyMalformedHeader(t *testing.T) {
	good := Sign(testSecret, signedAt, testBody)
	v1 := strings.Split(good, ",")[1]
	ts := fmt.Sprint(signedAt.Unix())
	if err := VerifySignature(testSecret, "", testBody, time.Minute, signedAt); !errors.Is(err, ErrSignatureMissing) {
		t.Fatalf("empty header: %v", err)
	}
	for _, h := range []string{
		"garbage",
		v1,                                // no t
		"t=" + ts,                         // no v1
		"t=" + ts + ",v1=zz",              // not hex
		"t=" + ts + ",v1=abcd",            // too short
		"t=abc," + v1,                     // t not a number
		"t=," + v1,                        // empty t
		"t=" + ts + ",t=" + ts + "," + v1, // two t
		"t=" + ts + ";" + v1,              // wrong separator
		"sha256=" + strings.TrimPrefix(v1, "v1="),
	} {
		if err := VerifySignature(testSecret, h, testBody, time.Minute, signedAt); !errors.Is(err, ErrSignatureMalformed) {
			t.Fatalf("header %q: %v", h, err)
		}
	}
}

// capture records the requests a test server receives.
type capture struct {
	mu   sync.Mutex
	hdrs []http.Header
	body [][]byte
}

func (c *capture) server(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.hdrs = append(c.hdrs, r.Header.Clone())
		c.body = append(c.body, b)
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestPostsAreSignedWithTheWebhookSecret(t *testing.T) {
	var got capture
	srv := got.server(t)
	req := ValidationRequest{SchemaVersion: 1, Validator: "ci", URL: srv.URL, Model: "fraud", Version: 1,
		WorkflowID: "model/fraud/v1", Token: "tok"}

	signed := &Activities{HTTP: srv.Client(), WebhookSecret: testSecret}
	if err := signed.RequestValidation(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	unsigned := &Activities{HTTP: srv.Client()}
	if err := unsigned.RequestValidation(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	if len(got.hdrs) != 2 {
		t.Fatalf("%d requests", len(got.hdrs))
	}
	sig := got.hdrs[0].Get(SignatureHeader)
	if err := VerifySignature(testSecret, sig, got.body[0], time.Minute, time.Now()); err != nil {
		t.Fatalf("signature %q: %v", sig, err)
	}
	if strings.Contains(sig, string(testSecret)) {
		t.Fatal("the header shows the secret")
	}
	if h := got.hdrs[1].Values(SignatureHeader); len(h) != 0 {
		t.Fatalf("without a secret the request is signed: %v", h)
	}
}

func TestPostErrorsDoNotShowURLPasswords(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	a := &Activities{HTTP: &http.Client{Timeout: 5 * time.Second}}
	err = a.RequestValidation(context.Background(), ValidationRequest{Validator: "ci", URL: "http://ci:hunter2pw@" + addr + "/hook"})
	if err == nil || strings.Contains(err.Error(), "hunter2pw") {
		t.Fatalf("error %v", err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) }))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://ci:hunter2pw@", 1)
	err = a.RequestValidation(context.Background(), ValidationRequest{Validator: "ci", URL: u})
	if err == nil || !strings.Contains(err.Error(), "503") || strings.Contains(err.Error(), "hunter2pw") {
		t.Fatalf("error %v", err)
	}
}
