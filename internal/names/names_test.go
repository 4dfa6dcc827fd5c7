package names

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestValidateModel(t *testing.T) {
	good := []string{
		"fraud",
		"a",
		"0",
		"fraud-detector_v2.1",
		"9lives",
		"a.b.c",
		"x-",
		strings.Repeat("m", 63),
	}
	for _, name := range good {
		if err := ValidateModel(name); err != nil {
			t.Errorf("ValidateModel(%q) = %v, want nil", name, err)
		}
	}

	bad := []struct{ name, why string }{
		{"", "empty"},
		{"Fraud", "uppercase"},
		{"fraud model", "space"},
		{" fraud", "leading space"},
		{"fraud\n", "trailing newline"},
		{"a..b", "'..'"},
		{"..", "only dots"},
		{".hidden", "leading dot"},
		{"-flag", "leading dash"},
		{"_x", "leading underscore"},
		{"a/b", "slash (would nest workflow IDs and object keys)"},
		{"/abs", "leading slash"},
		{`a\b`, "backslash"},
		{"a\x00b", "NUL"},
		{"a\tb", "control character"},
		{"frāud", "non-ASCII"},
		{"a:b", "colon"},
		{"a*", "glob character"},
		{strings.Repeat("m", 64), "64 characters"},
	}
	for _, c := range bad {
		err := ValidateModel(c.name)
		if err == nil {
			t.Errorf("ValidateModel(%q) (%s) = nil, want an error", c.name, c.why)
			continue
		}
		// The message must let the caller see what they passed.
		if c.name != "" && !strings.Contains(err.Error(), strconv.Quote(c.name)) {
			t.Errorf("ValidateModel(%q) = %q, want the message to name the input", c.name, err)
		}
	}
}

func TestCleanArtifactPath(t *testing.T) {
	good := []string{
		"model.bin",
		"weights/shard-00001.bin",
		"a/b/c/d.json",
		"with space.txt",
		"ünïcödé/名前.bin",
		".hidden",
		"a/.config",
		"...",     // three dots is a name, not a parent reference
		"a/..b/c", // likewise '..b'
		"b../c",
		strings.Repeat("x", 512),
	}
	for _, p := range good {
		got, err := CleanArtifactPath(p)
		if err != nil {
			t.Errorf("CleanArtifactPath(%q) = %v, want it accepted", p, err)
			continue
		}
		if got != p {
			t.Errorf("CleanArtifactPath(%q) = %q, want it unchanged", p, got)
		}
	}

	bad := []struct{ path, want string }{
		{"", "empty"},
		{"/etc/passwd", "absolute"},
		{"/", "absolute"},
		{"..", "escapes"},
		{"../x", "escapes"},
		{"a/../../x", "escapes"},
		{"a/..", "escapes"},
		{`weights\model.bin`, "backslash"},
		{`..\x`, "backslash"},
		{"a\x00b", "NUL"},
		{"a\nb", "control character"},
		{"a\rb", "control character"},
		{"a\x1bb", "control character"},
		{"a\x7fb", "control character"},
		{"a\u0085b", "control character"}, // C1 control (NEL)
		{"a//b", "not clean"},
		{"a/./b", "not clean"},
		{"./a", "not clean"},
		{"a/", "not clean"},
		{".", "not clean"},
		{"a/.", "not clean"},
		{"a\xffb", "UTF-8"},
		{"\xc3", "UTF-8"},
		{strings.Repeat("x", 513), "longer than 512"},
		{strings.Repeat("abc/", 200) + "x", "longer than 512"},
	}
	for _, c := range bad {
		got, err := CleanArtifactPath(c.path)
		if err == nil {
			t.Errorf("CleanArtifactPath(%q) = %q, want an error about %q", c.path, got, c.want)
			continue
		}
		if got != "" {
			t.Errorf("CleanArtifactPath(%q) returned %q along with its error", c.path, got)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("CleanArtifactPath(%q) = %q, want a message containing %q", c.path, err, c.want)
		}
	}
}

// modelCharset is the documented rule for model names (README and ValidateModel's message).
var modelCharset = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

func FuzzValidateModel(f *testing.F) {
	for _, s := range []string{"fraud", "a..b", "Fraud", "a/b", "", "x-1.2_3", strings.Repeat("z", 63), strings.Repeat("z", 64), "a\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateModel(name) != nil {
			return
		}
		if !modelCharset.MatchString(name) || len(name) > 63 || strings.Contains(name, "..") {
			t.Fatalf("ValidateModel accepted %q, which breaks the documented rule", name)
		}
		// Accepted names are used verbatim in workflow IDs and object keys.
		if strings.ContainsAny(name, "/\\") || !utf8.ValidString(name) {
			t.Fatalf("ValidateModel accepted %q, unusable in IDs and keys", name)
		}
	})
}

func FuzzCleanArtifactPath(f *testing.F) {
	for _, s := range []string{"model.bin", "a/b/c", "../x", "a//b", "a/./b", "/abs", `a\b`, "a\x00b", "...", "a/..b", "\xff", "a/\u0085b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := CleanArtifactPath(p)
		if err != nil {
			if got != "" {
				t.Fatalf("CleanArtifactPath(%q) = %q with error %v", p, got, err)
			}
			return
		}
		if got != p {
			t.Fatalf("CleanArtifactPath(%q) = %q: an accepted path must come back unchanged", p, got)
		}
		if got == "" || got == "." || path.Clean(got) != got {
			t.Fatalf("CleanArtifactPath accepted %q, which is not clean", p)
		}
		if path.IsAbs(got) || strings.HasPrefix(got, "/") {
			t.Fatalf("CleanArtifactPath accepted %q, which is absolute", p)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == ".." || seg == "." || seg == "" {
				t.Fatalf("CleanArtifactPath accepted %q, which has a %q segment", p, seg)
			}
		}
		if strings.ContainsAny(got, "\\\x00") || len(got) > 512 || !utf8.ValidString(got) {
			t.Fatalf("CleanArtifactPath accepted %q, unusable as an object key", p)
		}
		for _, r := range got {
			if unicode.IsControl(r) {
				t.Fatalf("CleanArtifactPath accepted %q, which has control character %U", p, r)
			}
		}
		// Joined under any directory, it stays inside it.
		if j := path.Join("/root/artifacts", got); !strings.HasPrefix(j, "/root/artifacts/") {
			t.Fatalf("CleanArtifactPath accepted %q, which escapes to %q", p, j)
		}
	})
}

func TestCaseCollisions(t *testing.T) {
	collide := []struct {
		a, b string
		dir  string
	}{
		{"Model.bin", "model.bin", ""},
		{"weights/MODEL.BIN", "weights/model.bin", ""},
		{"Config/a.yaml", "config/a.yaml", ""},
		{"straße.txt", "STRASSE.txt", ""}, // full folding: ß is ss
		{"\u212a.bin", "k.bin", ""},       // KELVIN SIGN folds to k
		{"λόγος", "ΛΌΓΟΣ", ""},            // Greek: final ς and Σ both fold to σ
		{"ﬁle", "FILE", ""},               // the ligature ﬁ folds to fi
		{"Data", "data/x.bin", "data"},    // a file where a directory must be
		{"a/B", "a/b/c", "a/b"},           // the same, one level down
		{"DATA", "data/sub/x", "data"},
	}
	for _, c := range collide {
		got := CaseCollisions([]string{c.a, c.b})
		if len(got) != 1 || got[0].A != c.a || got[0].B != c.b || got[0].Dir != c.dir {
			t.Errorf("CaseCollisions(%q, %q) = %+v, want one collision of them (dir %q)", c.a, c.b, got, c.dir)
			continue
		}
		// The message names both paths, so whoever registers sees which two to rename.
		msg := got[0].Error()
		if !strings.Contains(msg, strconv.Quote(c.a)) || !strings.Contains(msg, strconv.Quote(c.b)) || !strings.Contains(msg, "case-insensitive") {
			t.Errorf("CaseCollisions(%q, %q) says %q, want both paths named", c.a, c.b, msg)
		}
		if err := CaseCollision([]string{c.a, c.b}); !IsCaseCollision(err) {
			t.Errorf("CaseCollision(%q, %q) = %v", c.a, c.b, err)
		}
		if !IsCaseCollision(fmt.Errorf("wrapped: %w", got[0])) {
			t.Errorf("IsCaseCollision does not see through wrapping")
		}
	}

	distinct := [][]string{
		{"model.bin", "model.bin.sha"},
		{"Data/a", "data/b"}, // one directory on a case-insensitive filesystem, two different files
		{"a", "a/b"},         // exact file/directory conflicts are the caller's to refuse
		{"x", "x"},           // so are exact duplicates
		{"é.txt", "e\u0301.txt"},
		{"model.bin", "model.bın"}, // dotless ı does not fold to i
	}
	for _, ps := range distinct {
		if got := CaseCollisions(ps); len(got) != 0 {
			t.Errorf("CaseCollisions(%q) = %+v, want none", ps, got)
		}
		if err := CaseCollision(ps); err != nil {
			t.Errorf("CaseCollision(%q) = %v, want nil", ps, err)
		}
	}

	// Every collision is reported, in the order given.
	got := CaseCollisions([]string{"A", "b", "a", "B", "x/y"})
	if len(got) != 2 || got[0].A != "A" || got[0].B != "a" || got[1].A != "b" || got[1].B != "B" {
		t.Errorf("CaseCollisions(A b a B) = %+v", got)
	}
}
