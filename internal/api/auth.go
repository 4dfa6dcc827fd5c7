package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
)

// Roles a principal can hold on a model. admin holds every other role and may change the policy.
const (
	RoleRegister = "register"
	RoleApprove  = "approve"
	RoleRollback = "rollback"
	RoleAdmin    = "admin"
)

var knownRoles = []string{RoleRegister, RoleApprove, RoleRollback, RoleAdmin}

// TokenFile is the JSON file that maps bearer tokens to principals (MODELREG_API_TOKENS_FILE). Only
// SHA-256 digests of tokens are stored, so the file does not hand out credentials to whoever reads it.
//
//	{"principals": [{"name": "alice", "tokenSha256": "<hex>", "roles": {"fraud": ["approve"], "*": ["register"]}}]}
//
// Model keys are names or path.Match patterns ("*", "fraud-*"); a principal's roles on a model are the
// union over every key that matches it.
type TokenFile struct {
	Principals []PrincipalEntry `json:"principals"`
}

// PrincipalEntry is one principal of a TokenFile.
type PrincipalEntry struct {
	Name        string              `json:"name"`
	TokenSHA256 string              `json:"tokenSha256"`
	Roles       map[string][]string `json:"roles"`
}

// Principal is who a request's bearer token says it is.
type Principal struct {
	Name  string
	roles map[string][]string
}

// Can reports whether the principal holds role on model (admin holds every role).
func (p *Principal) Can(model, role string) bool {
	if p == nil {
		return false
	}
	for pattern, roles := range p.roles {
		if ok, _ := path.Match(pattern, model); !ok {
			continue
		}
		if slices.Contains(roles, role) || slices.Contains(roles, RoleAdmin) {
			return true
		}
	}
	return false
}

// RolesOn lists the roles the principal holds on model, for the web page and whoami.
func (p *Principal) RolesOn(model string) []string {
	var out []string
	for _, r := range knownRoles {
		if p.Can(model, r) {
			out = append(out, r)
		}
	}
	return out
}

// Authenticator resolves bearer tokens.
type Authenticator struct {
	byDigest map[string]*Principal
}

// NewAuthenticator checks a TokenFile and indexes it. Mistakes that would silently lock someone out
// or let someone in (a duplicate digest, an unknown role, a malformed pattern) are errors.
func NewAuthenticator(f TokenFile) (*Authenticator, error) {
	a := &Authenticator{byDigest: map[string]*Principal{}}
	names := map[string]bool{}
	for i, e := range f.Principals {
		if e.Name == "" || len(e.Name) > 200 || strings.ContainsFunc(e.Name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("tokens file: principal %d: name must be 1-200 printable characters", i+1)
		}
		if names[e.Name] {
			return nil, fmt.Errorf("tokens file: principal %q appears twice", e.Name)
		}
		names[e.Name] = true
		d := strings.ToLower(e.TokenSHA256)
		if b, err := hex.DecodeString(d); err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("tokens file: principal %q: tokenSha256 must be the 64 hex digits of the token's SHA-256 (printf %%s \"$TOKEN\" | sha256sum)", e.Name)
		}
		if _, dup := a.byDigest[d]; dup {
			return nil, fmt.Errorf("tokens file: principal %q has the same token as another principal", e.Name)
		}
		for pattern, roles := range e.Roles {
			if _, err := path.Match(pattern, ""); err != nil || pattern == "" {
				return nil, fmt.Errorf("tokens file: principal %q: model pattern %q is malformed", e.Name, pattern)
			}
			for _, r := range roles {
				if !slices.Contains(knownRoles, r) {
					return nil, fmt.Errorf("tokens file: principal %q: unknown role %q on %q (roles are %s)", e.Name, r, pattern, strings.Join(knownRoles, ", "))
				}
			}
		}
		a.byDigest[d] = &Principal{Name: e.Name, roles: e.Roles}
	}
	return a, nil
}

// LoadTokenFile reads and checks a TokenFile.
func LoadTokenFile(file string) (*Authenticator, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var f TokenFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("tokens file %s: %w", file, err)
	}
	return NewAuthenticator(f)
}

// errBadToken is a token that names no principal.
var errBadToken = errors.New("the bearer token is not valid")

// Resolve returns the principal of an Authorization header value; nil, nil when there is none.
func (a *Authenticator) Resolve(header string) (*Principal, error) {
	if header == "" {
		return nil, nil
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return nil, errors.New(`the Authorization header must be "Bearer <token>"`)
	}
	if a == nil {
		return nil, errBadToken
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	// Looking up the digest, not the token, leaks nothing about valid tokens through timing.
	p, ok := a.byDigest[hex.EncodeToString(sum[:])]
	if !ok {
		return nil, errBadToken
	}
	return p, nil
}

// DevTokens makes the embedded default's tokens file: one admin principal with a fresh random token,
// written to tokenPath (0600) for the starter and the browser to pick up. An existing token is kept, so
// restarting the worker does not sign everyone out.
func DevTokens(tokenPath, principal string) (*Authenticator, error) {
	tok, err := os.ReadFile(tokenPath)
	if err != nil || len(strings.TrimSpace(string(tok))) < 32 {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		tok = []byte("mr_" + hex.EncodeToString(b))
		if err := os.WriteFile(tokenPath, append(tok, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("write the dev API token: %w", err)
		}
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(string(tok))))
	return NewAuthenticator(TokenFile{Principals: []PrincipalEntry{{
		Name: principal, TokenSHA256: hex.EncodeToString(sum[:]), Roles: map[string][]string{"*": {RoleAdmin}},
	}}})
}
