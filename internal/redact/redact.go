// Package redact removes secrets from connection URLs before they reach a log line or an error message.
// It is the one place that knows what a secret in a URL looks like, so the worker's logs and the
// catalog's errors cannot disagree about it.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces every secret value.
const Mask = "xxxxx"

// secretWords mark a query parameter (or key=value pair) as secret when its name contains one of them.
// The list is deliberately broad: lib/pq alone reads password, sslpassword and sslkey from the query,
// other drivers and proxies add token, secret or *_key, and hiding a harmless value costs nothing.
var secretWords = []string{"pass", "pwd", "secret", "token", "key", "credential", "auth", "sig"}

// IsSecretName reports whether a parameter called name is treated as a secret.
func IsSecretName(name string) bool {
	n := strings.ToLower(name)
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// URL returns raw fit for logs and error messages: the password of its user info and the value of every
// secret-looking query parameter replaced with Mask. A string that does not parse as a URL is still
// cleaned: user info between "://" and "@" is replaced whole, and so is the value of every secret-looking
// name=value pair (which also covers lib/pq's "host=… password=…" form).
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return unparsed(raw)
	}
	// An unescaped '/' or '#' in a password ends the authority early, and the rest of the password
	// lands in the host, port or path: the '@' that should have ended the user info shows it.
	if before, _, _ := strings.Cut(raw, "?"); u.User == nil && strings.Contains(before, "@") {
		return unparsed(raw)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Mask)
		}
	}
	u.RawQuery = query(u.RawQuery)
	// No driver reads credentials from a fragment, but a pasted URL may carry one there anyway.
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = pairs(u.Fragment), ""
	}
	return u.String()
}

// query masks secret parameters in a raw query, keeping every other byte (order, escaping) as it was.
func query(raw string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		name, _, ok := strings.Cut(p, "=")
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
		if ok && IsSecretName(name) {
			parts[i] = p[:strings.Index(p, "=")+1] + Mask
		}
	}
	return strings.Join(parts, "&")
}

var (
	// Up to the last '@' of the run: a password may hold any byte but white space, escaped or not.
	userInfo = regexp.MustCompile(`://\S*@`)
	// name=value, where value runs to the next separator (& ; space) or is single-quoted as lib/pq allows.
	pair = regexp.MustCompile(`([A-Za-z0-9_.%-]+)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^&;\s]*)`)
)

func unparsed(raw string) string {
	s := userInfo.ReplaceAllString(raw, "://REDACTED@")
	return pairs(s)
}

func pairs(s string) string {
	return pair.ReplaceAllStringFunc(s, func(m string) string {
		sub := pair.FindStringSubmatch(m)
		if !IsSecretName(sub[1]) {
			return m
		}
		return sub[1] + sub[2] + Mask
	})
}
