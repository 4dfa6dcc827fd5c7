package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"sort"
	"sync"
)

// copyBufSize is large enough that syscalls and hash calls are amortised, small enough to keep memory flat.
const copyBufSize = 1 << 20

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// progressWriter counts bytes written through it and reports base+count, so several passes over data can
// report one monotonic figure.
type progressWriter struct {
	base     int64
	n        int64
	progress Progress
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.progress != nil {
		p.progress(p.base + p.n)
	}
	return len(b), nil
}

// copyHashing copies src to dst (which may be nil) while hashing, and reports progress from base.
func copyHashing(dst io.Writer, src io.Reader, base int64, progress Progress) (sum string, n int64, err error) {
	h := sha256.New()
	pw := &progressWriter{base: base, progress: progress}
	w := io.MultiWriter(h, pw)
	if dst != nil {
		w = io.MultiWriter(dst, h, pw)
	}
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	// io.CopyBuffer would hand the copy to *os.File's ReadFrom/WriteTo and skip the buffer; wrapping src
	// in a plain reader keeps the single bounded buffer in charge.
	n, err = io.CopyBuffer(w, struct{ io.Reader }{src}, *bp)
	return hexSum(h), n, err
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// hashLocalFile hashes f from its start and leaves the offset at the end.
func hashLocalFile(ctx context.Context, f *os.File, progress Progress) (sum string, size int64, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, fmt.Errorf("seek %s: %w", f.Name(), err)
	}
	sum, size, err = copyHashing(nil, ctxReader{ctx, f}, 0, progress)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return sum, size, nil
}

// sameFile reports whether two stats of a local file describe the same, unmodified content as far as the
// filesystem can tell; it is the guard against a file being rewritten between hashing and uploading.
func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// coverageReaderAt passes ReadAt through and reports how many distinct bytes have been read so far.
// The upload manager reads parts concurrently, out of order, and sometimes twice (checksums, retries), so
// counting bytes naively would overshoot; tracking covered intervals keeps progress monotonic and ≤ size.
type coverageReaderAt struct {
	*io.SectionReader
	base     int64
	progress Progress

	mu      sync.Mutex
	spans   [][2]int64 // sorted, disjoint, non-adjacent [start, end)
	covered int64
}

func newCoverageReaderAt(f *os.File, size, base int64, progress Progress) *coverageReaderAt {
	return &coverageReaderAt{SectionReader: io.NewSectionReader(f, 0, size), base: base, progress: progress}
}

func (c *coverageReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.SectionReader.ReadAt(p, off)
	c.report(off, n)
	return n, err
}

// Read is what the manager uses for a single-part upload.
func (c *coverageReaderAt) Read(p []byte) (int, error) {
	off, _ := c.SectionReader.Seek(0, io.SeekCurrent)
	n, err := c.SectionReader.Read(p)
	c.report(off, n)
	return n, err
}

// report calls progress under the lock, so that calls from concurrent part uploads are serialised and
// arrive in increasing order.
func (c *coverageReaderAt) report(off int64, n int) {
	if n <= 0 || c.progress == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.covered
	c.add(off, off+int64(n))
	if c.covered > before {
		c.progress(c.base + c.covered)
	}
}

func (c *coverageReaderAt) add(start, end int64) {
	i := sort.Search(len(c.spans), func(i int) bool { return c.spans[i][1] >= start })
	j := i
	for j < len(c.spans) && c.spans[j][0] <= end {
		start = min(start, c.spans[j][0])
		end = max(end, c.spans[j][1])
		c.covered -= c.spans[j][1] - c.spans[j][0]
		j++
	}
	c.covered += end - start
	c.spans = append(c.spans[:i], append([][2]int64{{start, end}}, c.spans[j:]...)...)
}
