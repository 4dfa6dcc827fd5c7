// Package names validates the identifiers and paths that reach the registry from outside: model names
// end up in workflow IDs, object keys and SQL rows, and artifact paths end up in object keys.
package names

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

var modelRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// ValidateModel reports why name is not a safe model identifier.
func ValidateModel(name string) error {
	if name == "" {
		return fmt.Errorf("model name is empty")
	}
	if !modelRe.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("model name %q is not a safe identifier: use 1-63 characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit, with no '..'", name)
	}
	return nil
}

// CleanArtifactPath returns p as a clean, relative, slash-separated path inside an artifact directory,
// or an error naming why it would escape it or is unusable as an object key.
func CleanArtifactPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("artifact path is empty")
	}
	if strings.ContainsAny(p, "\\\x00") {
		return "", fmt.Errorf("artifact path %q contains a backslash or NUL byte", p)
	}
	// Object keys and the manifest's JSON are UTF-8: invalid bytes would be rewritten to U+FFFD on the
	// way, so two distinct local names could become the same manifest path.
	if !utf8.ValidString(p) {
		return "", fmt.Errorf("artifact path %q is not valid UTF-8", p)
	}
	for _, r := range p {
		if unicode.IsControl(r) { // C0, DEL and C1 (U+0080-U+009F)
			return "", fmt.Errorf("artifact path %q contains a control character", p)
		}
	}
	if strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("artifact path %q is absolute", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("artifact path %q escapes the artifact directory", p)
		}
	}
	c := path.Clean(p)
	if c == "." || c != p {
		return "", fmt.Errorf("artifact path %q is not clean (want %q)", p, c)
	}
	if len(c) > 512 {
		return "", fmt.Errorf("artifact path %q is longer than 512 bytes", p)
	}
	return c, nil
}
