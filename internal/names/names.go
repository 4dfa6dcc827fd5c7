// Package names validates the identifiers and paths that reach the registry from outside: model names
// end up in workflow IDs, object keys and SQL rows, and artifact paths end up in object keys.
package names

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
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

// folder is stateless and safe for concurrent use (cases.Fold's documentation).
var folder = cases.Fold()

// FoldCase returns p under Unicode case folding (golang.org/x/text/cases, full folding: "Straße" and
// "STRASSE" fold alike, and so do "Σ", "σ" and "ς"), which is stricter than strings.EqualFold's simple
// folding: two paths equal under it may be one name on a case-insensitive filesystem. It does not
// normalize ("é" precomposed and "e" followed by U+0301 fold differently).
func FoldCase(p string) string { return folder.String(p) }

// CaseCollisionError names two paths of one version that a case-insensitive filesystem (macOS,
// Windows) takes for the same name: pulled there, one file would overwrite the other (or a file would
// stand where a directory must).
type CaseCollisionError struct {
	// A and B are the two paths, A first in the order given.
	A, B string
	// Dir is set when A is a file and B lies below the directory Dir, which folds like A.
	Dir string
}

func (e *CaseCollisionError) Error() string {
	if e.Dir != "" {
		return fmt.Sprintf("paths %q and %q collide on a case-insensitive filesystem (macOS, Windows): the file %q and the directory %q are equal under Unicode case folding; rename one",
			e.A, e.B, e.A, e.Dir)
	}
	return fmt.Sprintf("paths %q and %q differ only in case (they are equal under Unicode case folding): pulled onto a case-insensitive filesystem (macOS, Windows) one would overwrite the other; rename one",
		e.A, e.B)
}

// IsCaseCollision is whether err is or wraps a *CaseCollisionError.
func IsCaseCollision(err error) bool {
	var c *CaseCollisionError
	return errors.As(err, &c)
}

// CaseCollisions returns every pair of paths (a version's files, in the order given) that are distinct
// but equal under FoldCase, and every file whose name folds like a directory of another path ("Data"
// and "data/x"), each as a *CaseCollisionError naming both paths. Exact duplicates, and a path that is
// exactly a directory of another, are not reported here: callers refuse them with their own message.
// It iterates the slice only, so its answer is the same on every run (it runs in workflow validators).
func CaseCollisions(paths []string) []*CaseCollisionError {
	var out []*CaseCollisionError
	files := make(map[string]string, len(paths)) // folded path -> the first path that folds to it
	for _, p := range paths {
		f := FoldCase(p)
		if q, ok := files[f]; ok {
			if q != p {
				out = append(out, &CaseCollisionError{A: q, B: p})
			}
			continue
		}
		files[f] = p
	}
	for _, p := range paths {
		for i := range len(p) {
			if p[i] != '/' {
				continue
			}
			if q, ok := files[FoldCase(p[:i])]; ok && q != p[:i] {
				out = append(out, &CaseCollisionError{A: q, B: p, Dir: p[:i]})
			}
		}
	}
	return out
}

// CaseCollision returns the first of CaseCollisions(paths), or nil.
func CaseCollision(paths []string) error {
	if c := CaseCollisions(paths); len(c) > 0 {
		return c[0]
	}
	return nil
}
