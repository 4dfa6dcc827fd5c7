package activities_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/artifact"
)

func init() {
	cases = append(cases, struct {
		name string
		run  func(t *testing.T, h *harness)
	}{"StoreFromListing", testStoreFromListing})
}

// putListing stores files' listing as a blob, as the starter does, and returns its reference.
func putListing(t *testing.T, h *harness, files []artifact.FileEntry) artifact.ListingRef {
	t.Helper()
	path, err := artifact.WriteListingFile(t.TempDir(), files)
	if err != nil {
		t.Fatal(err)
	}
	e, err := h.store.PutFile(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return artifact.ListingRef{SHA256: e.SHA256, Count: len(files)}
}

// putRawListing stores a listing's bytes as they are, and returns its reference.
func putRawListing(t *testing.T, h *harness, doc string, count int) artifact.ListingRef {
	t.Helper()
	path := filepath.Join(t.TempDir(), "listing.json")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := h.store.PutFile(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return artifact.ListingRef{SHA256: e.SHA256, Count: count}
}

// A version's files named by a listing blob become its manifest; a listing that is missing, corrupt,
// miscounted or names a blob never uploaded fails the version for good, with the reason.
func testStoreFromListing(t *testing.T, h *harness) {
	ctx := context.Background()
	createVersion(t, h, 1, nil)
	contents := map[string][]byte{}
	for i := range 40 {
		contents[fmt.Sprintf("shard-%d/part-%02d.bin", i%4, i)] = []byte(fmt.Sprintf("part %d", i))
	}
	entries := upload(t, h, contents)
	ref := putListing(t, h, entries)
	var res activities.StoreArtifactsResult
	if err := h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 1, Listing: &ref}, &res); err != nil {
		t.Fatalf("StoreArtifacts from a listing: %v", err)
	}
	m, digest, err := h.store.GetManifest(ctx, model, 1)
	if err != nil || digest != res.ManifestDigest || res.Files != len(entries) {
		t.Fatalf("manifest %s (%v), result %+v", digest, err, res)
	}
	if !reflect.DeepEqual(m.Files, sortedEntries(entries)) {
		t.Fatalf("manifest files differ from the listing's")
	}

	createVersion(t, h, 2, nil)
	missing := artifact.ListingRef{SHA256: sha([]byte("never stored")), Count: 1}
	miscounted := ref
	miscounted.Count++
	unknown := putListing(t, h, append(append([]artifact.FileEntry(nil), entries[:3]...),
		artifact.FileEntry{Path: "ghost.bin", Size: 5, SHA256: sha([]byte("ghost"))}))
	for _, c := range []struct {
		name    string
		ref     artifact.ListingRef
		mention string
	}{
		{"missing listing", missing, "never uploaded"},
		{"wrong count", miscounted, fmt.Sprintf("holds %d files, the reference says %d", ref.Count, miscounted.Count)},
		{"file never uploaded", unknown, `"ghost.bin"`},
	} {
		in := activities.StoreArtifactsInput{Model: model, Version: 2, Listing: &c.ref}
		wantBadSource(t, "StoreArtifacts with a "+c.name, h.run(t, h.acts.StoreArtifacts, in, nil), c.mention)
	}
	// A listing written by another client, naming two paths that differ only in case (EncodeListing
	// would not write it).
	cased := fmt.Sprintf(`[{"path":"Shard-0/part-00.bin","size":%d,"sha256":%q},{"path":"shard-0/part-00.bin","size":%d,"sha256":%q}]`,
		entries[0].Size, entries[0].SHA256, entries[1].Size, entries[1].SHA256)
	casedRef := putRawListing(t, h, cased, 2)
	wantBadSource(t, "StoreArtifacts with a listing of paths differing only in case",
		h.run(t, h.acts.StoreArtifacts, activities.StoreArtifactsInput{Model: model, Version: 2, Listing: &casedRef}, nil),
		`"Shard-0/part-00.bin"`, `"shard-0/part-00.bin"`, "differ only in case")
	// A listing whose stored bytes are not the ones its digest names is refused, not trusted.
	corrupt := putListing(t, h, entries[:5])
	h.overwriteBlob(t, corrupt.SHA256, []byte(`[{"path":"x","size":1,"sha256":"`+sha([]byte("x"))+`"}]`))
	in := activities.StoreArtifactsInput{Model: model, Version: 2, Listing: &corrupt}
	wantBadSource(t, "StoreArtifacts with a corrupt listing", h.run(t, h.acts.StoreArtifacts, in, nil), "hashes to")
}
