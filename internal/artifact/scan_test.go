package artifact

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mkfile(t *testing.T, root, rel, content string) string {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestScanDir(t *testing.T) {
	root := t.TempDir()
	a := mkfile(t, root, "a.b", "dot")
	mkfile(t, root, "a/b", "slash")
	mkfile(t, root, "weights/model.bin", "0123456789")
	mkfile(t, root, ".hidden", "h")
	if err := os.MkdirAll(filepath.Join(root, "empty/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Relative and absolute symlinks to files inside root are stored as the files they point to.
	symlink(t, "../a.b", filepath.Join(root, "weights", "alias"))
	symlink(t, a, filepath.Join(root, "abs-alias"))

	files, err := ScanDir(root)
	if err != nil {
		t.Fatalf("ScanDir: %v", err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Path)
		if !filepath.IsAbs(f.Abs) {
			t.Errorf("%s: Abs %q is not absolute", f.Path, f.Abs)
		}
		b, err := os.ReadFile(f.Abs)
		if err != nil || int64(len(b)) != f.Size {
			t.Errorf("%s: reading Abs %s gave %d bytes (%v), Size says %d", f.Path, f.Abs, len(b), err, f.Size)
		}
	}
	// Byte order of whole paths, not walk order: "a.b" < "a/b" because '.' < '/'.
	want := ".hidden,a.b,a/b,abs-alias,weights/alias,weights/model.bin"
	if strings.Join(got, ",") != want {
		t.Fatalf("ScanDir paths = %s, want %s", strings.Join(got, ","), want)
	}

	// A root reached through a symlink scans the same.
	linkedRoot := filepath.Join(t.TempDir(), "outputs")
	symlink(t, root, linkedRoot)
	files2, err := ScanDir(linkedRoot)
	if err != nil || len(files2) != len(files) {
		t.Fatalf("ScanDir(symlink to root) = %d files, %v; want %d", len(files2), err, len(files))
	}
}

func TestScanDirErrors(t *testing.T) {
	outside := t.TempDir()
	secret := mkfile(t, outside, "secret", "s")

	cases := []struct {
		name  string
		setup func(t *testing.T) string
		want  string
	}{
		{"missing root", func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, "does not exist"},
		{"root is a file", func(t *testing.T) string { return mkfile(t, t.TempDir(), "f", "x") }, "is not a directory"},
		{"empty", func(t *testing.T) string { return t.TempDir() }, "contains no regular files"},
		{"only directories", func(t *testing.T) string {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "a/b/c"), 0o755); err != nil {
				t.Fatal(err)
			}
			return root
		}, "contains no regular files"},
		{"symlink escaping root", func(t *testing.T) string {
			root := t.TempDir()
			mkfile(t, root, "ok", "x")
			symlink(t, secret, filepath.Join(root, "leak"))
			return root
		}, `symlink "leak" points to ` + secret + `, outside the artifact directory`},
		{"relative symlink escaping root", func(t *testing.T) string {
			root := filepath.Join(t.TempDir(), "root")
			mkfile(t, root, "ok", "x")
			mkfile(t, filepath.Dir(root), "sibling", "y")
			symlink(t, "../sibling", filepath.Join(root, "leak"))
			return root
		}, "outside the artifact directory"},
		{"dangling symlink", func(t *testing.T) string {
			root := t.TempDir()
			mkfile(t, root, "ok", "x")
			symlink(t, "missing", filepath.Join(root, "dangling"))
			return root
		}, `symlink "dangling" cannot be resolved`},
		{"symlinked directory", func(t *testing.T) string {
			root := t.TempDir()
			mkfile(t, root, "real/f", "x")
			symlink(t, "real", filepath.Join(root, "alias"))
			return root
		}, "symlinked directories are not followed"},
		{"socket", func(t *testing.T) string {
			root := t.TempDir()
			mkfile(t, root, "ok", "x")
			l, err := net.Listen("unix", filepath.Join(root, "sock"))
			if err != nil {
				t.Skipf("unix sockets unavailable: %v", err)
			}
			t.Cleanup(func() { l.Close() })
			return root
		}, `"sock" is a socket, not a regular file`},
		{"backslash in a name", func(t *testing.T) string {
			root := t.TempDir()
			mkfile(t, root, `weights\model.bin`, "x")
			return root
		}, "backslash"},
		{"control character in a name", func(t *testing.T) string {
			root := t.TempDir()
			mkfile(t, root, "sub/new\nline", "x")
			return root
		}, "control character"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := c.setup(t)
			files, err := ScanDir(root)
			if err == nil {
				t.Fatalf("ScanDir succeeded with %+v", files)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ScanDir error = %q, want it to contain %q", err, c.want)
			}
		})
	}

	t.Run("paths differing only in case", func(t *testing.T) {
		root := t.TempDir()
		mkfile(t, root, "model.bin", "x")
		mkfile(t, root, "Model.bin", "y")
		if _, err := os.Stat(filepath.Join(root, "MODEL.BIN")); err == nil {
			t.Skip("this filesystem is case-insensitive: it cannot hold both names")
		}
		mkfile(t, root, "cfg/a.yaml", "z")
		mkfile(t, root, "CFG", "w")
		_, err := ScanDir(root)
		for _, want := range []string{
			`paths "Model.bin" and "model.bin" differ only in case`,
			`paths "CFG" and "cfg/a.yaml" collide on a case-insensitive filesystem`,
		} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("ScanDir error = %v, want it to contain %q", err, want)
			}
		}
	})

	t.Run("reports every problem", func(t *testing.T) {
		root := t.TempDir()
		mkfile(t, root, "ok", "x")
		symlink(t, secret, filepath.Join(root, "leak1"))
		symlink(t, secret, filepath.Join(root, "leak2"))
		_, err := ScanDir(root)
		if err == nil || !strings.Contains(err.Error(), "leak1") || !strings.Contains(err.Error(), "leak2") {
			t.Fatalf("ScanDir error = %v, want both bad links named", err)
		}
	})
}
