package artifact

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/modelreg/modelreg/internal/testenv"
)

func TestParseS3URI(t *testing.T) {
	for _, c := range []struct{ uri, bucket, prefix, err string }{
		{uri: "s3://b/runs/r1", bucket: "b", prefix: "runs/r1"},
		{uri: "s3://b/runs/r1/", bucket: "b", prefix: "runs/r1"},
		{uri: "s3://b", bucket: "b"},
		{uri: "s3://b/", bucket: "b"},
		{uri: "s3:///runs", err: "names no bucket"},
		{uri: "s3://", err: "names no bucket"},
		{uri: "gs://b/runs", err: `scheme "gs"`},
		{uri: "https://b.s3.amazonaws.com/x", err: `scheme "https"`},
		{uri: "/data/runs", err: "not an S3 URI"},
		{uri: "s3://my bucket/x", err: "not valid"},
	} {
		b, p, err := ParseS3URI(c.uri)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseS3URI(%q) = %q, %q, %v; want error containing %q", c.uri, b, p, err, c.err)
			}
			continue
		}
		if err != nil || b != c.bucket || p != c.prefix {
			t.Errorf("ParseS3URI(%q) = %q, %q, %v; want %q, %q", c.uri, b, p, err, c.bucket, c.prefix)
		}
	}
}

// failingStore fails every PutFile, to check that an import cleans up after a destination error.
type failingStore struct{ Store }

func (failingStore) PutFile(context.Context, string, Progress) (FileEntry, error) {
	return FileEntry{}, errors.New("destination is full")
}

func TestImportS3Prefix(t *testing.T) {
	srv := testenv.S3(t)
	ctx := context.Background()
	src := newS3Harness(t, srv, "")
	client, bucket := src.Client(), src.Bucket()
	put := func(key string, body []byte) {
		t.Helper()
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatalf("PutObject %s: %v", key, err)
		}
	}
	objects := map[string][]byte{
		"model.bin":           randomBytes(1<<20+17, 10),
		"config/params.json":  []byte(`{"lr":0.01}`),
		"big/shard-00001.bin": randomBytes(7<<20, 11),
		"empty.txt":           nil,
	}
	for rel, body := range objects {
		put("runs/r1/"+rel, body)
	}
	put("runs/r1/", nil)                            // a console "folder" marker
	put("runs/r10/not-included.bin", []byte("r10")) // shares the string prefix "runs/r1"
	put(`runs/bad/weights\model.bin`, []byte("b"))
	put("runs/cased/Model.bin", []byte("upper"))
	put("runs/cased/model.bin", []byte("lower"))

	dests := map[string]func(t *testing.T) Store{
		"Dir": func(t *testing.T) Store { return newDirHarness(t) },
		"S3":  func(t *testing.T) Store { return newS3Harness(t, srv, "registry") },
	}
	for name, newDst := range dests {
		t.Run(name, func(t *testing.T) {
			for _, uri := range []string{"s3://" + bucket + "/runs/r1", "s3://" + bucket + "/runs/r1/"} {
				dst, tmp := newDst(t), t.TempDir()
				var last int64
				entries, err := ImportS3Prefix(ctx, client, uri, dst, tmp, func(d int64) {
					if d < last {
						t.Errorf("progress went backwards: %d then %d", last, d)
					}
					last = d
				})
				if err != nil {
					t.Fatalf("ImportS3Prefix(%s): %v", uri, err)
				}
				var paths []string
				var total int64
				for _, e := range entries {
					paths = append(paths, e.Path)
					want, ok := objects[e.Path]
					if !ok || e.SHA256 != sha(want) || e.Size != int64(len(want)) {
						t.Errorf("entry %+v does not match the source object", e)
						continue
					}
					total += e.Size
					if err := dst.VerifyBlob(ctx, e, nil); err != nil {
						t.Errorf("VerifyBlob(%s): %v", e.Path, err)
					}
				}
				if got := strings.Join(paths, ","); got != "big/shard-00001.bin,config/params.json,empty.txt,model.bin" {
					t.Fatalf("imported paths = %s", got)
				}
				if last < total {
					t.Errorf("progress ended at %d, below the %d bytes imported", last, total)
				}
				assertEmptyDir(t, tmp)
				// The entries make a valid manifest as they are.
				if _, _, err := dst.PutManifest(ctx, Manifest{Model: "imported", Version: 1, Files: entries}); err != nil {
					t.Fatalf("PutManifest(imported entries): %v", err)
				}
			}
		})
	}

	t.Run("Errors", func(t *testing.T) {
		dst := newDirHarness(t)
		for _, c := range []struct {
			uri      string
			notFound bool
			want     string
		}{
			{"s3://no-such-bucket-" + bucket + "/runs/r1", true, "no-such-bucket-"},
			{"s3://" + bucket + "/runs/nothing-here", true, "runs/nothing-here"},
			{"s3://" + bucket + "/runs/r1/model.bin", true, "model.bin"}, // an object is not a prefix
			{"s3://" + bucket + "/runs/bad", false, `runs/bad/weights\\model.bin`},
			{"s3://" + bucket + "/runs/cased", false, `paths "Model.bin" and "model.bin" differ only in case`},
			{"file:///tmp/x", false, "scheme"},
		} {
			tmp := t.TempDir()
			_, err := ImportS3Prefix(ctx, client, c.uri, dst, tmp, nil)
			if err == nil || errors.Is(err, ErrNotFound) != c.notFound || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ImportS3Prefix(%s) = %v; want an error containing %q, ErrNotFound=%t", c.uri, err, c.want, c.notFound)
			}
			if c.notFound && !strings.Contains(err.Error(), c.uri) {
				t.Errorf("ImportS3Prefix(%s) = %v; the error does not name the URI", c.uri, err)
			}
			assertEmptyDir(t, tmp)
		}
	})

	t.Run("DestinationFails", func(t *testing.T) {
		tmp := t.TempDir()
		_, err := ImportS3Prefix(ctx, client, "s3://"+bucket+"/runs/r1", failingStore{newDirHarness(t)}, tmp, nil)
		if err == nil || !strings.Contains(err.Error(), "destination is full") {
			t.Fatalf("ImportS3Prefix into a failing store = %v", err)
		}
		assertEmptyDir(t, tmp)
	})

	t.Run("Cancelled", func(t *testing.T) {
		tmp := t.TempDir()
		cctx, cancel := context.WithCancel(ctx)
		_, err := ImportS3Prefix(cctx, client, "s3://"+bucket+"/runs/r1", newDirHarness(t), tmp, func(d int64) {
			if d > 1<<20 {
				cancel()
			}
		})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled ImportS3Prefix = %v, want context.Canceled", err)
		}
		assertEmptyDir(t, tmp)
	})

	t.Run("WholeBucket", func(t *testing.T) {
		other := newS3Harness(t, srv, "")
		ob := other.Bucket()
		for i := range 3 {
			if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &ob, Key: aws.String(fmt.Sprintf("f%d", i)), Body: strings.NewReader("x")}); err != nil {
				t.Fatal(err)
			}
		}
		entries, err := ImportS3Prefix(ctx, client, "s3://"+ob, newDirHarness(t), t.TempDir(), nil)
		if err != nil || len(entries) != 3 || entries[0].Path != "f0" {
			t.Fatalf("ImportS3Prefix(whole bucket) = %+v, %v", entries, err)
		}
	})
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		var names []string
		for _, e := range left {
			names = append(names, e.Name())
		}
		t.Errorf("temporary files left in %s: %v", dir, names)
	}
}
