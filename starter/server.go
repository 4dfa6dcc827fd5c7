package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modelreg/modelreg/internal/api"
)

// With --server (MODELREG_SERVER) the starter talks to the registry's HTTP API only: a training job or
// a deployer then needs a URL and a bearer token, not credentials for Temporal, the catalog or the
// artifact store.

// serverSettings resolves --server and --token: flags first, then MODELREG_SERVER and MODELREG_TOKEN, then
// the token file `worker --dev` writes (<data dir>/api-token, or ./.modelreg/api-token).
func (a *app) serverSettings(dataDir string) error {
	if a.serverURL == "" {
		a.serverURL = a.cfg.Server
	}
	if a.serverURL == "" {
		return nil
	}
	u, err := url.Parse(a.serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("--server %q is not the registry's URL (like http://127.0.0.1:8080)", a.serverURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if a.token == "" {
		a.token = string(a.cfg.Token)
	}
	if a.token == "" {
		for _, p := range []string{filepath.Join(dataDir, "api-token"), filepath.Join(".modelreg", "api-token")} {
			if b, err := os.ReadFile(p); err == nil && len(bytes.TrimSpace(b)) > 0 {
				a.token = string(bytes.TrimSpace(b))
				break
			}
		}
	}
	a.api = &apiClient{base: u, token: a.token, http: &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: api.MaxWait + 30*time.Second,
			IdleConnTimeout: time.Minute, MaxIdleConnsPerHost: 16},
		// Redirects are followed by hand: a presigned URL must not receive the bearer token (Go would
		// send it to another port of the same host), and the store refuses a second credential anyway.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	return nil
}

// noServer refuses a command that has no HTTP API equivalent when --server is given.
func (a *app) noServer(cmd string) error {
	if a.api == nil {
		return nil
	}
	return fmt.Errorf("starter %s has no HTTP API equivalent: run it without --server (and MODELREG_SERVER unset), with access to Temporal and the catalog", cmd)
}

// notWithServer refuses a flag whose value the server decides.
func notWithServer(flag, why string) error {
	return fmt.Errorf("%s cannot be used with --server: %s", flag, why)
}

type apiClient struct {
	base  *url.URL
	token string
	http  *http.Client
}

// apiError is an error answer of the API.
type apiError struct {
	Status  int
	Code    string
	Message string
	Details []string
	noToken bool
}

func (e *apiError) Error() string {
	msg := e.Message
	if len(e.Details) > 0 {
		msg += " (" + strings.Join(e.Details, "; ") + ")"
	}
	msg = fmt.Sprintf("%s [HTTP %d %s]", safe(msg), e.Status, e.Code)
	if e.Status == http.StatusUnauthorized && e.noToken {
		msg += "; give a token with --token or MODELREG_TOKEN"
	}
	return msg
}

func codeIs(err error, code string) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == code
}

// url is the API's URL of path, which pathOf escaped.
func (c *apiClient) url(path string, q url.Values) string {
	u := c.base.String() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// pathOf is the escaped URL path of its parts; a part may hold slashes (an artifact's path), which
// stay separators.
func pathOf(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		for _, seg := range strings.Split(p, "/") {
			b.WriteByte('/')
			b.WriteString(url.PathEscape(seg))
		}
	}
	return b.String()
}

// request sends one API request, with body (when not nil) as JSON. An answer of 400 or above comes back
// as an *apiError, with the response (its body closed) for its headers.
func (c *apiClient) request(ctx context.Context, method, path string, q url.Values, body any, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the registry at %s did not answer: %w", c.base, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return resp, c.errorOf(resp)
	}
	return resp, nil
}

func (c *apiClient) errorOf(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &apiError{Status: resp.StatusCode, noToken: c.token == ""}
	var body struct {
		Code    string   `json:"code"`
		Message string   `json:"message"`
		Details []string `json:"details"`
	}
	if json.Unmarshal(b, &body) == nil && body.Message != "" {
		e.Code, e.Message, e.Details = body.Code, body.Message, body.Details
	} else {
		e.Code, e.Message = "http_"+fmt.Sprint(resp.StatusCode), strings.TrimSpace(string(b))
		if e.Message == "" {
			e.Message = resp.Status
		}
	}
	return e
}

// call sends a JSON request and decodes the JSON answer into out (when not nil).
func (c *apiClient) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.request(ctx, method, path, nil, body, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("the registry's answer to %s %s is not what this starter expects: %w", method, path, err)
	}
	return nil
}

func (c *apiClient) get(ctx context.Context, path string, q url.Values, out any) error {
	resp, err := c.request(ctx, http.MethodGet, path, q, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}
