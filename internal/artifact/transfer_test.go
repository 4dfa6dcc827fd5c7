package artifact

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// runTransferContract is the part of the contract the HTTP API relies on to move bytes for clients
// without store credentials: whatever a client sends, nothing but the right bytes ever lands at a
// blob's address.
func runTransferContract(t *testing.T, newStore func(t *testing.T) Store) {
	ctx := context.Background()
	open := func(t *testing.T) (Store, Transfer) {
		s := newStore(t)
		x, ok := s.(Transfer)
		if !ok {
			t.Fatalf("%T does not implement Transfer", s)
		}
		return s, x
	}
	absent := func(t *testing.T, s Store, e FileEntry, after string) {
		t.Helper()
		if _, err := s.StatBlob(ctx, e.SHA256); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after %s the blob's address holds something (StatBlob: %v)", after, err)
		}
	}

	t.Run("WriteBlob", func(t *testing.T) {
		s, x := open(t)
		content := randomBytes(300_000, 20)
		e := FileEntry{SHA256: sha(content), Size: int64(len(content))}
		if ok, err := x.HasBlob(ctx, e); err != nil || ok {
			t.Fatalf("HasBlob before any write = %t, %v", ok, err)
		}
		for range 2 { // the second time is a client's retry
			if err := x.WriteBlob(ctx, e, bytes.NewReader(content)); err != nil {
				t.Fatalf("WriteBlob: %v", err)
			}
		}
		if err := s.VerifyBlob(ctx, e, nil); err != nil {
			t.Fatalf("VerifyBlob after WriteBlob: %v", err)
		}
		if ok, err := x.HasBlob(ctx, e); err != nil || !ok {
			t.Fatalf("HasBlob after WriteBlob = %t, %v", ok, err)
		}
		if ok, _ := x.HasBlob(ctx, FileEntry{SHA256: e.SHA256, Size: e.Size + 1}); ok {
			t.Fatal("HasBlob with another size = true")
		}
		empty := FileEntry{SHA256: sha(nil)}
		if err := x.WriteBlob(ctx, empty, bytes.NewReader(nil)); err != nil {
			t.Fatalf("WriteBlob(empty): %v", err)
		}
		if err := s.VerifyBlob(ctx, empty, nil); err != nil {
			t.Fatalf("VerifyBlob(empty): %v", err)
		}
	})

	t.Run("WriteBlobRefusesOtherBytes", func(t *testing.T) {
		s, x := open(t)
		content := randomBytes(200_000, 21)
		e := FileEntry{SHA256: sha(content), Size: int64(len(content))}
		flipped := bytes.Clone(content)
		flipped[len(flipped)/3] ^= 0x10
		for name, body := range map[string][]byte{
			"a flipped byte": flipped,
			"one byte short": content[:len(content)-1],
			"one byte more":  append(bytes.Clone(content), 'x'),
			"no bytes":       nil,
		} {
			err := x.WriteBlob(ctx, e, bytes.NewReader(body))
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("WriteBlob(%s) = %v, want ErrDigestMismatch", name, err)
			}
			absent(t, s, e, "WriteBlob of "+name)
		}
		if err := x.WriteBlob(ctx, FileEntry{SHA256: sha(nil)}, strings.NewReader("x")); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("WriteBlob(1 byte as the empty blob) = %v, want ErrDigestMismatch", err)
		}
		absent(t, s, FileEntry{SHA256: sha(nil)}, "a byte written as the empty blob")
		// A blob that is there stays intact through a refused write of other bytes.
		if err := x.WriteBlob(ctx, e, bytes.NewReader(content)); err != nil {
			t.Fatal(err)
		}
		if err := x.WriteBlob(ctx, e, bytes.NewReader(flipped)); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("WriteBlob(flipped) over a stored blob = %v", err)
		}
		if err := s.VerifyBlob(ctx, e, nil); err != nil {
			t.Fatalf("a refused write damaged the stored blob: %v", err)
		}
		if err := x.WriteBlob(ctx, FileEntry{SHA256: "nothex", Size: 1}, strings.NewReader("x")); err == nil || errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("WriteBlob(bad digest) = %v, want a validation error", err)
		}
	})

	t.Run("HasBlob", func(t *testing.T) {
		s, x := open(t)
		bd := s.(backdoor)
		// Big enough to go up in parts on S3 (this harness sends every file over 5 MiB in parts), whose
		// checksum is then a composite one: S3 cannot attest its SHA-256, so it does not count (an
		// upload through the API replaces it with a single PUT that S3 checks whole).
		content := randomBytes(6<<20, 22)
		e := putBytes(t, s, content)
		_, onS3 := s.(interface{ Bucket() string })
		if ok, err := x.HasBlob(ctx, e); err != nil || ok == onS3 {
			t.Fatalf("HasBlob of a blob PutFile stored (in parts on S3: %t) = %t, %v", onS3, ok, err)
		}
		if onS3 {
			one := putBytes(t, s, randomBytes(1<<20, 24))
			if ok, err := x.HasBlob(ctx, one); err != nil || !ok {
				t.Fatalf("HasBlob of a blob PutFile stored in one PUT = %t, %v", ok, err)
			}
		}
		bd.overwriteBlob(t, e.SHA256, content[:1000])
		if ok, err := x.HasBlob(ctx, e); err != nil || ok {
			t.Fatalf("HasBlob of a truncated blob = %t, %v", ok, err)
		}
		if _, err := x.HasBlob(ctx, FileEntry{SHA256: "../x", Size: 1}); err == nil {
			t.Fatal("HasBlob(bad digest) accepted it")
		}
	})

	t.Run("BlobDownload", func(t *testing.T) {
		s, x := open(t)
		content := randomBytes(150_000, 23)
		e := putBytes(t, s, content)
		d, err := x.BlobDownload(ctx, e.SHA256, time.Minute)
		if err != nil {
			t.Fatalf("BlobDownload: %v", err)
		}
		if d.Size != e.Size {
			t.Fatalf("BlobDownload size = %d, want %d", d.Size, e.Size)
		}
		var got []byte
		switch {
		case d.URL != "":
			if !d.Expires.After(time.Now()) || d.Expires.After(time.Now().Add(2*time.Minute)) {
				t.Fatalf("presigned URL expires at %s, asked for a minute", d.Expires)
			}
			// No credentials of any kind: the URL is all a client has.
			resp, err := http.Get(d.URL)
			if err != nil {
				t.Fatal(err)
			}
			got, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET presigned URL: %d %s", resp.StatusCode, got)
			}
		case d.Content != nil:
			if _, err := d.Content.Seek(100, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			tail, _ := io.ReadAll(d.Content)
			if !bytes.Equal(tail, content[100:]) {
				t.Fatal("BlobDownload content after Seek(100) is not the blob's")
			}
			_, _ = d.Content.Seek(0, io.SeekStart)
			got, _ = io.ReadAll(d.Content)
			d.Content.Close()
		default:
			t.Fatal("BlobDownload gave neither a URL nor content")
		}
		if !bytes.Equal(got, content) {
			t.Fatalf("downloaded %d bytes that are not the blob's %d", len(got), len(content))
		}
		if _, err := x.BlobDownload(ctx, sha([]byte("never stored")), time.Minute); !errors.Is(err, ErrNotFound) {
			t.Fatalf("BlobDownload(unknown) = %v, want ErrNotFound", err)
		}
	})

	t.Run("BlobUpload", func(t *testing.T) {
		s, x := open(t)
		content := randomBytes(120_000, 24)
		e := FileEntry{SHA256: sha(content), Size: int64(len(content))}
		req, err := x.BlobUpload(ctx, e, time.Minute)
		if err != nil {
			t.Fatalf("BlobUpload: %v", err)
		}
		if req == nil {
			return // this store takes bytes through WriteBlob only, tested above
		}
		send := func(body []byte) (int, string) {
			t.Helper()
			r, err := http.NewRequest(req.Method, req.URL, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range req.Header {
				r.Header.Set(k, v)
			}
			r.ContentLength = int64(len(body))
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b)
		}
		flipped := bytes.Clone(content)
		flipped[7] ^= 1
		for name, body := range map[string][]byte{"a flipped byte": flipped, "one byte short": content[1:], "one byte more": append(bytes.Clone(content), 0)} {
			if st, b := send(body); st < 400 {
				t.Fatalf("presigned upload of %s: %d %s, want a refusal", name, st, b)
			}
			absent(t, s, e, "a presigned upload of "+name)
		}
		if st, b := send(content); st != http.StatusOK {
			t.Fatalf("presigned upload of the right bytes: %d %s", st, b)
		}
		if err := s.VerifyBlob(ctx, e, nil); err != nil {
			t.Fatal(err)
		}
		if ok, err := x.HasBlob(ctx, e); err != nil || !ok {
			t.Fatalf("HasBlob after a presigned upload = %t, %v", ok, err)
		}
		// What a presigned upload stores, PutFile recognises: the same content is not sent again.
		stamp := s.(backdoor).blobWriteStamp(t, e.SHA256)
		putBytes(t, s, content)
		if s.(backdoor).blobWriteStamp(t, e.SHA256) != stamp {
			t.Fatal("PutFile uploaded again a blob a presigned upload had stored")
		}
	})
}
