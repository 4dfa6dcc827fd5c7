package artifact

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
)

// The one-read hashing pass gives the same digests as hashing the file whole and part by part, at every
// boundary: empty, within one part, exactly on a part or read-buffer edge, and past them.
func TestHashFilePartsMatchesSeparateHashes(t *testing.T) {
	dir := t.TempDir()
	for _, ps := range []int64{1000, copyBufSize, 3 * copyBufSize / 2} {
		for _, size := range []int64{0, 1, ps - 1, ps, ps + 1, 3 * ps, 3*ps + 7, copyBufSize - 1, copyBufSize, copyBufSize + 1, 4*copyBufSize + 5} {
			data := randomBytes(int(size), uint64(size+ps))
			path := filepath.Join(dir, "f")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			d, err := hashFileParts(context.Background(), f, ps, nil)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if d.sum != sha256.Sum256(data) || d.size != size {
				t.Fatalf("part size %d, file %d: whole digest or size wrong", ps, size)
			}
			var want [][32]byte
			for off := int64(0); off < size || (size == 0 && off == 0); off += ps {
				want = append(want, sha256.Sum256(data[off:min(off+ps, size)]))
				if size == 0 {
					break
				}
			}
			if len(d.parts) != len(want) {
				t.Fatalf("part size %d, file %d: %d parts, want %d", ps, size, len(d.parts), len(want))
			}
			for i := range want {
				if d.parts[i] != want[i] {
					t.Fatalf("part size %d, file %d: part %d digest wrong", ps, size, i)
				}
			}
		}
	}
}

// A cancelled context stops the pass with its error, and every buffer goes back (the test would hang
// or race otherwise).
func TestHashFilePartsCancelled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, randomBytes(8*copyBufSize, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := hashFileParts(ctx, f, copyBufSize, nil); err == nil {
		t.Fatal("hashing with a cancelled context succeeded")
	}
}

func BenchmarkHashFileParts(b *testing.B) {
	path := filepath.Join(b.TempDir(), "f")
	const size = 256 << 20
	if err := os.WriteFile(path, randomBytes(size, 1), 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(size)
	for b.Loop() {
		if _, err := hashFileParts(context.Background(), f, 64<<20, nil); err != nil {
			b.Fatal(err)
		}
	}
}
