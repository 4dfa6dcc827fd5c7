package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/sync/errgroup"

	"github.com/modelreg/modelreg/internal/testenv"
)

// backdoor is what the contract suite needs to observe a backend from outside the Store interface.
// The test harnesses below implement it for each backend.
type backdoor interface {
	// blobWriteStamp changes whenever the blob with this digest is written (again).
	blobWriteStamp(t *testing.T, sum string) string
	// overwriteBlob replaces a blob's stored bytes without going through the store.
	overwriteBlob(t *testing.T, sum string, data []byte)
}

// multipartCounter is implemented by backends that upload in parts.
type multipartCounter interface {
	multipartUploads() int
}

func TestDirContract(t *testing.T) {
	runContract(t, func(t *testing.T) Store { return newDirHarness(t) })
}

func TestS3Contract(t *testing.T) {
	srv := testenv.S3(t)
	runContract(t, func(t *testing.T) Store { return newS3Harness(t, srv, "registry/prod") })
	t.Run("ReusesConnections", func(t *testing.T) { testS3ReusesConnections(t, newS3Harness(t, srv, "")) })
	t.Run("TransferLimits", func(t *testing.T) {
		s := newS3Harness(t, srv, "")
		ctx := context.Background()
		huge := FileEntry{SHA256: sha([]byte("huge")), Size: MaxSinglePut + 1}
		if _, err := s.BlobUpload(ctx, huge, time.Minute); !errors.Is(err, ErrTooLarge) {
			t.Errorf("BlobUpload of more than one PUT takes = %v, want ErrTooLarge", err)
		}
		if err := s.WriteBlob(ctx, huge, strings.NewReader("")); !errors.Is(err, ErrTooLarge) {
			t.Errorf("WriteBlob of more than one PUT takes = %v, want ErrTooLarge", err)
		}
		// Presigned URLs name the endpoint clients reach, which need not be the registry's.
		cfg := s.cfg
		cfg.PublicEndpoint = "https://store.example.com:9443"
		pub, err := NewS3(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		req, err := pub.BlobUpload(ctx, FileEntry{SHA256: sha(nil)}, time.Minute)
		if err != nil || !strings.HasPrefix(req.URL, "https://store.example.com:9443/") {
			t.Errorf("BlobUpload with a public endpoint = %+v, %v", req, err)
		}
	})
	t.Run("NoPrefix", func(t *testing.T) {
		s := newS3Harness(t, srv, "")
		e := putBytes(t, s, []byte("at the bucket root"))
		if got, want := s.BlobURI(e.SHA256), "s3://"+s.bucket+"/blobs/sha256/"+e.SHA256[:2]+"/"+e.SHA256; got != want {
			t.Fatalf("BlobURI = %s, want %s", got, want)
		}
	})
}

func runContract(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := context.Background()
	t.Run("Transfer", func(t *testing.T) { runTransferContract(t, newStore) })

	t.Run("RoundTrip", func(t *testing.T) {
		s := newStore(t)
		content := randomBytes(300_000, 1)
		path := writeTemp(t, content)
		var seen []int64
		e, err := s.PutFile(ctx, path, func(d int64) { seen = append(seen, d) })
		if err != nil {
			t.Fatalf("PutFile: %v", err)
		}
		if e.Path != "" || e.Size != int64(len(content)) || e.SHA256 != sha(content) {
			t.Fatalf("PutFile = %+v, want size %d sha %s and no path", e, len(content), sha(content))
		}
		checkProgress(t, "PutFile of a new blob", seen, 2*e.Size)

		size, err := s.StatBlob(ctx, e.SHA256)
		if err != nil || size != e.Size {
			t.Fatalf("StatBlob = %d, %v; want %d", size, err, e.Size)
		}
		rc, err := s.OpenBlob(ctx, e.SHA256)
		if err != nil {
			t.Fatalf("OpenBlob: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("OpenBlob read %d bytes (err %v), want the %d stored bytes", len(got), err, len(content))
		}
		seen = nil
		if err := s.VerifyBlob(ctx, e, func(d int64) { seen = append(seen, d) }); err != nil {
			t.Fatalf("VerifyBlob: %v", err)
		}
		checkProgress(t, "VerifyBlob", seen, e.Size)
		if uri := s.BlobURI(e.SHA256); !strings.HasSuffix(uri, "/blobs/sha256/"+e.SHA256[:2]+"/"+e.SHA256) ||
			!(strings.HasPrefix(uri, "file:///") || strings.HasPrefix(uri, "s3://")) {
			t.Fatalf("BlobURI = %s", uri)
		}
	})

	t.Run("EmptyFile", func(t *testing.T) {
		s := newStore(t)
		e := putBytes(t, s, nil)
		if e.Size != 0 || e.SHA256 != sha(nil) {
			t.Fatalf("PutFile(empty) = %+v", e)
		}
		if err := s.VerifyBlob(ctx, e, nil); err != nil {
			t.Fatalf("VerifyBlob(empty): %v", err)
		}
	})

	t.Run("UnknownBlob", func(t *testing.T) {
		s := newStore(t)
		missing := sha([]byte("never stored"))
		if _, err := s.StatBlob(ctx, missing); !errors.Is(err, ErrNotFound) {
			t.Errorf("StatBlob(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := s.OpenBlob(ctx, missing); !errors.Is(err, ErrNotFound) {
			t.Errorf("OpenBlob(unknown) = %v, want ErrNotFound", err)
		}
		if err := s.VerifyBlob(ctx, FileEntry{SHA256: missing, Size: 1}, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("VerifyBlob(unknown) = %v, want ErrNotFound", err)
		}
		for _, bad := range []string{"", "abc", strings.ToUpper(missing), "../" + missing[3:]} {
			if _, err := s.StatBlob(ctx, bad); err == nil || errors.Is(err, ErrNotFound) {
				t.Errorf("StatBlob(%q) = %v, want a validation error", bad, err)
			}
		}
	})

	t.Run("LocalFileErrors", func(t *testing.T) {
		s := newStore(t)
		missing := filepath.Join(t.TempDir(), "missing.bin")
		if _, err := s.PutFile(ctx, missing, nil); err == nil || !strings.Contains(err.Error(), "missing.bin") {
			t.Errorf("PutFile(missing file) = %v, want an error naming the file", err)
		}
		if _, err := s.PutFile(ctx, t.TempDir(), nil); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("PutFile(directory) = %v, want 'not a regular file'", err)
		}
	})

	t.Run("Dedup", func(t *testing.T) {
		s := newStore(t)
		bd := s.(backdoor)
		content := randomBytes(200_000, 2)
		e1 := putBytes(t, s, content)
		stamp := bd.blobWriteStamp(t, e1.SHA256)
		var seen []int64
		// A different local file with the same bytes: the address, not the file, decides.
		e2, err := s.PutFile(ctx, writeTemp(t, content), func(d int64) { seen = append(seen, d) })
		if err != nil {
			t.Fatalf("second PutFile: %v", err)
		}
		if e2 != e1 {
			t.Fatalf("second PutFile = %+v, want %+v", e2, e1)
		}
		if got := bd.blobWriteStamp(t, e1.SHA256); got != stamp {
			t.Fatalf("second PutFile of the same content rewrote the blob (stamp %s -> %s)", stamp, got)
		}
		checkProgress(t, "PutFile of a stored blob", seen, e1.Size)
	})

	t.Run("BlobOfWrongSizeIsRewritten", func(t *testing.T) {
		s := newStore(t)
		bd := s.(backdoor)
		content := randomBytes(50_000, 3)
		e := putBytes(t, s, content)
		bd.overwriteBlob(t, e.SHA256, content[:100])
		if err := s.VerifyBlob(ctx, e, nil); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("VerifyBlob(truncated) = %v, want ErrDigestMismatch", err)
		}
		putBytes(t, s, content)
		if err := s.VerifyBlob(ctx, e, nil); err != nil {
			t.Fatalf("PutFile did not repair a blob of the wrong size: %v", err)
		}
	})

	t.Run("CorruptBlobOfRightSizeIsReplaced", func(t *testing.T) {
		s := newStore(t)
		bd := s.(backdoor)
		content := randomBytes(70_000, 9)
		e := putBytes(t, s, content)
		corrupt := bytes.Clone(content)
		corrupt[12345] ^= 0x01
		bd.overwriteBlob(t, e.SHA256, corrupt)
		if e2 := putBytes(t, s, content); e2 != e {
			t.Fatalf("PutFile = %+v, want %+v", e2, e)
		}
		if err := s.VerifyBlob(ctx, e, nil); err != nil {
			t.Fatalf("PutFile trusted a stored blob of the right size without checking its digest: %v", err)
		}
	})

	t.Run("ReferencedBlobSurvivesSourceChangedDuringStore", func(t *testing.T) {
		// Another writer (another version's registration) finishes storing the same content while this
		// upload reads a file that is being rewritten: whatever this upload does, the other writer's
		// blob, which a manifest may already reference, must stay intact.
		s := newStore(t)
		bd := s.(backdoor)
		content := randomBytes(11<<20, 10)
		path := writeTemp(t, content)
		size := int64(len(content))
		var once sync.Once
		_, err := s.PutFile(ctx, path, func(d int64) {
			if d > size {
				once.Do(func() {
					if err := os.WriteFile(path, randomBytes(len(content), 11), 0o644); err != nil {
						t.Error(err)
					}
					bd.overwriteBlob(t, sha(content), content)
				})
			}
		})
		if err == nil || !strings.Contains(err.Error(), "changed while") {
			t.Fatalf("PutFile of a file rewritten mid-store = %v, want a 'changed while' error", err)
		}
		if err := s.VerifyBlob(ctx, FileEntry{SHA256: sha(content), Size: size}, nil); err != nil {
			t.Fatalf("the blob another writer stored is gone or damaged: %v", err)
		}
	})

	t.Run("VerifyDetectsCorruption", func(t *testing.T) {
		s := newStore(t)
		bd := s.(backdoor)
		content := randomBytes(100_000, 4)
		e := putBytes(t, s, content)
		corrupt := bytes.Clone(content)
		corrupt[len(corrupt)/2] ^= 0xff
		bd.overwriteBlob(t, e.SHA256, corrupt)
		err := s.VerifyBlob(ctx, e, nil)
		if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), e.SHA256) {
			t.Fatalf("VerifyBlob(same size, flipped byte) = %v, want ErrDigestMismatch naming the blob", err)
		}
		bd.overwriteBlob(t, e.SHA256, append(bytes.Clone(content), 'x'))
		if err := s.VerifyBlob(ctx, e, nil); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("VerifyBlob(one byte longer) = %v, want ErrDigestMismatch", err)
		}
		if err := s.VerifyBlob(ctx, FileEntry{SHA256: e.SHA256, Size: e.Size + 1}, nil); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("VerifyBlob(wrong expected size) = %v, want ErrDigestMismatch", err)
		}
	})

	t.Run("SourceChangedDuringStore", func(t *testing.T) {
		s := newStore(t)
		content := randomBytes(6<<20, 5)
		path := writeTemp(t, content)
		var once sync.Once
		size := int64(len(content))
		_, err := s.PutFile(ctx, path, func(d int64) {
			// d > size means the hashing pass is over and the bytes are being stored.
			if d > size {
				once.Do(func() {
					f, err := os.OpenFile(path, os.O_WRONLY, 0)
					if err != nil {
						t.Error(err)
						return
					}
					defer f.Close()
					time.Sleep(10 * time.Millisecond) // let the mtime move on coarse clocks
					if _, err := f.WriteAt(bytes.Repeat([]byte{0xAA}, 4096), size-4096); err != nil {
						t.Error(err)
					}
				})
			}
		})
		if err == nil || !strings.Contains(err.Error(), "changed while") {
			t.Fatalf("PutFile of a file rewritten mid-store = %v, want a 'changed while' error", err)
		}
		// Whatever happened, no wrong bytes may sit at the address of what was hashed.
		e := FileEntry{SHA256: sha(content), Size: size}
		if err := s.VerifyBlob(ctx, e, nil); err != nil && !errors.Is(err, ErrNotFound) {
			t.Fatalf("after an aborted store, the blob is neither absent nor intact: %v", err)
		}
	})

	t.Run("Multipart", func(t *testing.T) {
		s := newStore(t)
		content := randomBytes(12<<20, 6)
		before := 0
		mc, isMultipart := s.(multipartCounter)
		if isMultipart {
			before = mc.multipartUploads()
		}
		e := putBytes(t, s, content)
		if e.SHA256 != sha(content) || e.Size != int64(len(content)) {
			t.Fatalf("PutFile(12 MiB) = %+v", e)
		}
		if isMultipart && mc.multipartUploads() != before+1 {
			t.Fatalf("a 12 MiB file with 5 MiB parts did not go up as one multipart upload (%d uploads)", mc.multipartUploads()-before)
		}
		if err := s.VerifyBlob(ctx, e, nil); err != nil {
			t.Fatalf("VerifyBlob(12 MiB): %v", err)
		}
		rc, err := s.OpenBlob(ctx, e.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, rc)
		rc.Close()
		if err != nil || hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
			t.Fatalf("OpenBlob(12 MiB) returned other bytes (err %v)", err)
		}
	})

	t.Run("ManifestWriteOnce", func(t *testing.T) {
		s := newStore(t)
		a := putBytes(t, s, []byte("weights"))
		b := putBytes(t, s, []byte(`{"lr":0.1}`))
		a.Path, b.Path = "weights/model.bin", "config.json"
		m := Manifest{Model: "fraud", Version: 3, Files: []FileEntry{a, b},
			CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))}
		uri, digest, err := s.PutManifest(ctx, m)
		if err != nil {
			t.Fatalf("PutManifest: %v", err)
		}
		if uri != s.ManifestURI("fraud", 3) || !strings.HasSuffix(uri, "/manifests/fraud/v3/manifest.json") {
			t.Fatalf("PutManifest uri = %s, ManifestURI = %s", uri, s.ManifestURI("fraud", 3))
		}
		encoded, _ := EncodeManifest(m)
		if digest != ManifestDigest(encoded) || !strings.HasPrefix(digest, "sha256:") {
			t.Fatalf("PutManifest digest = %s, want %s", digest, ManifestDigest(encoded))
		}
		got, gotDigest, err := s.GetManifest(ctx, "fraud", 3)
		if err != nil {
			t.Fatalf("GetManifest: %v", err)
		}
		if gotDigest != digest {
			t.Fatalf("GetManifest digest = %s, want %s", gotDigest, digest)
		}
		if len(got.Files) != 2 || got.Files[0] != b || got.Files[1] != a || got.SchemaVersion != 1 ||
			got.Model != "fraud" || got.Version != 3 || !got.CreatedAt.Equal(m.CreatedAt) {
			t.Fatalf("GetManifest = %+v, want the stored manifest with files sorted by path", got)
		}

		// A retry with the same content (here: files in another order, time in another zone) succeeds.
		retry := m
		retry.Files = []FileEntry{b, a}
		retry.CreatedAt = m.CreatedAt.UTC()
		if uri2, digest2, err := s.PutManifest(ctx, retry); err != nil || uri2 != uri || digest2 != digest {
			t.Fatalf("PutManifest(same content) = %s, %s, %v; want %s, %s, nil", uri2, digest2, err, uri, digest)
		}

		other := m
		other.Files = []FileEntry{a}
		if _, _, err := s.PutManifest(ctx, other); !errors.Is(err, ErrManifestConflict) {
			t.Fatalf("PutManifest(different content) = %v, want ErrManifestConflict", err)
		}
		if _, d, err := s.GetManifest(ctx, "fraud", 3); err != nil || d != digest {
			t.Fatalf("after a conflicting write GetManifest digest = %s, %v; want the original %s", d, err, digest)
		}
	})

	t.Run("ManifestConcurrentWriters", func(t *testing.T) {
		s := newStore(t)
		var entries []FileEntry
		for i := range 6 {
			e := putBytes(t, s, []byte(fmt.Sprintf("file %d", i)))
			e.Path = fmt.Sprintf("f%d", i)
			entries = append(entries, e)
		}
		var wins, conflicts atomic.Int32
		var wg sync.WaitGroup
		for i := range entries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _, err := s.PutManifest(ctx, Manifest{Model: "race", Version: 1, Files: entries[i : i+1]})
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, ErrManifestConflict):
					conflicts.Add(1)
				default:
					t.Errorf("PutManifest: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || conflicts.Load() != int32(len(entries)-1) {
			t.Fatalf("%d concurrent writers of different manifests: %d succeeded, %d conflicted; want exactly one winner", len(entries), wins.Load(), conflicts.Load())
		}
	})

	t.Run("ManifestNotFound", func(t *testing.T) {
		s := newStore(t)
		e := putBytes(t, s, []byte("x"))
		e.Path = "x"
		if _, _, err := s.PutManifest(ctx, Manifest{Model: "known", Version: 1, Files: []FileEntry{e}}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			model   string
			version int
		}{{"known", 2}, {"unknown", 1}} {
			_, _, err := s.GetManifest(ctx, c.model, c.version)
			if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), fmt.Sprintf("%s v%d", c.model, c.version)) {
				t.Errorf("GetManifest(%s, %d) = %v, want ErrNotFound naming the version", c.model, c.version, err)
			}
		}
		for _, c := range []struct {
			model   string
			version int
		}{{"../etc", 1}, {"Known", 1}, {"known", 0}, {"known", -1}} {
			if _, _, err := s.GetManifest(ctx, c.model, c.version); err == nil || errors.Is(err, ErrNotFound) {
				t.Errorf("GetManifest(%q, %d) = %v, want a validation error", c.model, c.version, err)
			}
		}
	})

	t.Run("ManifestRejectsInvalid", func(t *testing.T) {
		s := newStore(t)
		good := FileEntry{Path: "a", Size: 1, SHA256: sha([]byte("a"))}
		for name, m := range map[string]Manifest{
			"no files":      {Model: "m", Version: 1},
			"bad model":     {Model: "M/../x", Version: 1, Files: []FileEntry{good}},
			"zero version":  {Model: "m", Version: 0, Files: []FileEntry{good}},
			"bad path":      {Model: "m", Version: 1, Files: []FileEntry{{Path: "../a", Size: 1, SHA256: good.SHA256}}},
			"duplicate":     {Model: "m", Version: 1, Files: []FileEntry{good, good}},
			"schemaVersion": {SchemaVersion: 2, Model: "m", Version: 1, Files: []FileEntry{good}},
		} {
			if _, _, err := s.PutManifest(ctx, m); err == nil {
				t.Errorf("PutManifest(%s) succeeded", name)
			}
		}
	})

	t.Run("Archived", func(t *testing.T) {
		s := newStore(t)
		if err := s.SetArchived(ctx, "arch", 1, true); !errors.Is(err, ErrNotFound) {
			t.Fatalf("SetArchived(no manifest) = %v, want ErrNotFound", err)
		}
		if _, err := s.IsArchived(ctx, "arch", 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("IsArchived(no manifest) = %v, want ErrNotFound", err)
		}
		e := putBytes(t, s, []byte("model"))
		e.Path = "model"
		m := Manifest{Model: "arch", Version: 1, Files: []FileEntry{e}}
		_, digest, err := s.PutManifest(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		check := func(want bool) {
			t.Helper()
			got, err := s.IsArchived(ctx, "arch", 1)
			if err != nil || got != want {
				t.Fatalf("IsArchived = %t, %v; want %t", got, err, want)
			}
		}
		check(false)
		for _, step := range []bool{true, true, false, false, true} {
			if err := s.SetArchived(ctx, "arch", 1, step); err != nil {
				t.Fatalf("SetArchived(%t): %v", step, err)
			}
			check(step)
		}
		// Archiving keeps the bytes.
		if _, d, err := s.GetManifest(ctx, "arch", 1); err != nil || d != digest {
			t.Fatalf("GetManifest of an archived version = %s, %v", d, err)
		}
		if err := s.VerifyBlob(ctx, e, nil); err != nil {
			t.Fatalf("VerifyBlob of an archived version's file: %v", err)
		}
	})
}

// --- harnesses ---------------------------------------------------------------------------------------

type dirHarness struct{ *Dir }

func newDirHarness(t testing.TB) dirHarness {
	d, err := NewDir(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Staging files left behind would mean a failed or aborted write leaks disk space.
		left, _ := os.ReadDir(filepath.Join(d.Root(), "tmp"))
		if len(left) > 0 {
			t.Errorf("files left in %s/tmp: %v", d.Root(), left)
		}
	})
	return dirHarness{d}
}

func (h dirHarness) blobWriteStamp(t *testing.T, sum string) string {
	fi, err := os.Stat(h.blobPath(sum))
	if err != nil {
		t.Fatal(err)
	}
	ino := uint64(0)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("ino=%d mtime=%d", ino, fi.ModTime().UnixNano())
}

func (h dirHarness) overwriteBlob(t *testing.T, sum string, data []byte) {
	p := h.blobPath(sum)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// s3Harness counts the writes that reach the server, per key, through a client middleware.
type s3Harness struct {
	*S3
	mu         sync.Mutex
	writes     map[string]int
	multiparts int
}

var bucketSeq atomic.Int64

func newS3Harness(t testing.TB, srv testenv.S3Server, prefix string) *s3Harness {
	t.Helper()
	return newS3HarnessCfg(t, srv, S3Config{Prefix: prefix, PartSize: 5 << 20, MultipartThreshold: -1, Concurrency: 3})
}

func newS3HarnessCfg(t testing.TB, srv testenv.S3Server, cfg S3Config) *s3Harness {
	t.Helper()
	cfg.Bucket = fmt.Sprintf("t%d-%d", time.Now().UnixNano()%1e9, bucketSeq.Add(1))
	cfg.Endpoint, cfg.Region, cfg.AccessKeyID, cfg.SecretAccessKey, cfg.PathStyle = srv.Endpoint, srv.Region, srv.AccessKey, srv.SecretKey, true
	ctx := context.Background()
	s, err := NewS3(ctx, cfg)
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	if err := s.EnsureBucket(ctx); err != nil {
		t.Fatalf("EnsureBucket: %v", err)
	}
	if err := s.EnsureBucket(ctx); err != nil {
		t.Fatalf("EnsureBucket on an existing bucket: %v", err)
	}
	h := &s3Harness{S3: s, writes: map[string]int{}}
	s.setClient(s3.New(s.Client().Options(), func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("countWrites", h.count), middleware.After)
		})
	}))
	return h
}

func (h *s3Harness) count(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
	h.mu.Lock()
	switch p := in.Parameters.(type) {
	case *s3.PutObjectInput:
		h.writes[aws.ToString(p.Key)]++
	case *s3.CreateMultipartUploadInput:
		h.writes[aws.ToString(p.Key)]++
		h.multiparts++
	}
	h.mu.Unlock()
	return next.HandleInitialize(ctx, in)
}

func (h *s3Harness) blobWriteStamp(t *testing.T, sum string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("writes=%d", h.writes[h.blobKey(sum)])
}

func (h *s3Harness) multipartUploads() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.multiparts
}

func (h *s3Harness) overwriteBlob(t *testing.T, sum string, data []byte) {
	key := h.blobKey(sum)
	_, err := h.Client().PutObject(context.Background(), &s3.PutObjectInput{
		Bucket: aws.String(h.Bucket()), Key: &key, Body: bytes.NewReader(data)})
	if err != nil {
		t.Fatalf("raw PutObject %s: %v", key, err)
	}
}

// --- memory and throughput ---------------------------------------------------------------------------

// TestS3PutFileMemoryBounded guards the reason uploads go from a seekable file: handing the upload
// manager a plain reader (say an io.TeeReader into a hash) makes it buffer whole parts.
func TestS3PutFileMemoryBounded(t *testing.T) {
	srv := testenv.S3(t)
	const partSize, size = 8 << 20, 96 << 20
	s := newS3HarnessCfg(t, srv, S3Config{PartSize: partSize, MultipartThreshold: -1, Concurrency: 4})
	path := writeTemp(t, randomBytes(size, 7))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := s.PutFile(context.Background(), path, nil); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("PutFile of %d MiB in %d MiB parts allocated %.1f MiB in total", size>>20, partSize>>20, float64(allocated)/(1<<20))
	// Buffering even one part per worker would allocate ≥ (4+1)×8 MiB = 40 MiB.
	if allocated > 2*partSize {
		t.Fatalf("PutFile allocated %d MiB for a %d MiB file; the upload is buffering parts", allocated>>20, size>>20)
	}
}

func BenchmarkPutFile(b *testing.B) {
	const size = 64 << 20
	content := randomBytes(size, 8)
	path := filepath.Join(b.TempDir(), "model.bin")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, s Store, remove func(sum string)) {
		ctx := context.Background()
		b.SetBytes(size)
		b.ReportAllocs()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		var stamp [8]byte
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			// New content every round, or every round after the first would be deduplicated.
			stamp[0], stamp[1], stamp[2], stamp[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
			stamp[4] = byte(time.Now().UnixNano())
			if _, err := f.WriteAt(stamp[:], 0); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			e, err := s.PutFile(ctx, path, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			remove(e.SHA256) // keep the disk footprint at one blob
			b.StartTimer()
		}
	}
	b.Run("Dir", func(b *testing.B) {
		d := newDirHarness(b)
		run(b, d, func(sum string) { os.Remove(d.blobPath(sum)) })
	})
	b.Run("S3", func(b *testing.B) {
		srv := testenv.S3(b)
		s := newS3HarnessCfg(b, srv, S3Config{PartSize: 16 << 20, MultipartThreshold: -1, Concurrency: 4})
		run(b, s, func(sum string) {
			key := s.blobKey(sum)
			if _, err := s.Client().DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket()), Key: &key}); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// --- helpers -----------------------------------------------------------------------------------------

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0] = byte(seed)
	_, _ = rand.NewChaCha8(s).Read(b)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeTemp(t testing.TB, content []byte) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "src-*.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func putBytes(t testing.TB, s Store, content []byte) FileEntry {
	t.Helper()
	e, err := s.PutFile(context.Background(), writeTemp(t, content), nil)
	if err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	return e
}

// checkProgress wants a non-empty, non-decreasing sequence ending at want.
func checkProgress(t *testing.T, what string, seen []int64, want int64) {
	t.Helper()
	if len(seen) == 0 {
		if want == 0 {
			return
		}
		t.Fatalf("%s reported no progress", what)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("%s progress went backwards: %d then %d", what, seen[i-1], seen[i])
		}
	}
	if last := seen[len(seen)-1]; last != want {
		t.Fatalf("%s progress ended at %d, want %d", what, last, want)
	}
}

// testS3ReusesConnections: more requests at once than the SDK's 10 idle connections per host (the
// worker's activities use the store side by side), and again: the second and third waves dial nothing.
// Dialling per request had cost a busy worker 2.5 % of its CPU, and the store as much in accepting.
func testS3ReusesConnections(t *testing.T, s *s3Harness) {
	ctx := context.Background()
	key := "conn-probe"
	if _, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	var dialled atomic.Int64
	tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			dialled.Add(1)
		}
	}})
	const width = 32
	wave := func() int64 {
		dialled.Store(0)
		var g errgroup.Group
		for range width {
			g.Go(func() error {
				_, err := s.client.HeadObject(tctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
				return err
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		return dialled.Load()
	}
	// The first wave opens as many connections as were in flight at its peak, which can be fewer than
	// width; a later wave whose peak is higher dials the difference. Dialling per request (no keep-alive)
	// or a pool of 10 dials most of width again in every wave.
	first := wave()
	if again := wave() + wave(); again > width/4 {
		t.Fatalf("%d requests at once dialled %d connections, then %d more in two more waves: the S3 client does not keep them (MaxIdleConnsPerHost), or the server closes them (versitygw without --keep-alive)", width, first, again)
	}
}
