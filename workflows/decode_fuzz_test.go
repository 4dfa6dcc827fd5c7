package workflows

// Fuzz tests for every decoder of outside input in this package: the register request a training job
// sends (any SDK, any language), the approve/reject payloads people and tools send as signals, and the
// data converter's RawPayload path that receives those signals undecoded. Seeds live in
// testdata/fuzz/<FuzzName>/ and run as ordinary tests with `go test`; fuzz one with e.g.
//
//	go test -run '^$' -fuzz '^FuzzRegisterRequest$' -fuzztime 60s ./workflows/

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/names"
)

// FuzzRegisterRequest decodes bytes the way the SDK's JSON converter does and checks that whatever
// Validate accepts is safe to mint a version for: a valid model name, clean distinct artifact paths with
// valid digests or a parseable s3:// URI (exactly one of the two), finite metrics, files that can form a
// manifest, and a request that survives the JSON round trip through workflow payloads.
func FuzzRegisterRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var r RegisterRequest
		if err := json.Unmarshal(data, &r); err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			return
		}
		if err := names.ValidateModel(r.Model); err != nil {
			t.Fatalf("Validate accepted model %q: %v", r.Model, err)
		}
		if !keyRe.MatchString(r.IdempotencyKey) {
			t.Fatalf("Validate accepted idempotencyKey %q", r.IdempotencyKey)
		}
		for k, v := range r.Metrics {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("Validate accepted metric %q = %v", k, v)
			}
		}
		if err := ValidateMetrics(r.Metrics); err != nil {
			t.Fatalf("Validate accepted metrics that ValidateMetrics refuses: %v", err)
		}
		hasURI, hasFiles := r.Source.URI != "", len(r.Source.Files) > 0
		if hasURI == hasFiles {
			t.Fatalf("Validate accepted a source with uri %q and %d files: want exactly one", r.Source.URI, len(r.Source.Files))
		}
		if hasURI {
			// The worker imports the prefix with ParseS3URI; a URI it cannot parse only fails after the
			// version was minted.
			if _, _, err := artifact.ParseS3URI(r.Source.URI); err != nil {
				t.Fatalf("Validate accepted source.uri %q that the import refuses: %v", r.Source.URI, err)
			}
		}
		seen := map[string]bool{}
		for _, fe := range r.Source.Files {
			c, err := names.CleanArtifactPath(fe.Path)
			if err != nil || c != fe.Path {
				t.Fatalf("Validate accepted artifact path %q: clean %q, %v", fe.Path, c, err)
			}
			if seen[fe.Path] {
				t.Fatalf("Validate accepted path %q twice", fe.Path)
			}
			seen[fe.Path] = true
			if fe.Size < 0 || !isSHA256(fe.SHA256) {
				t.Fatalf("Validate accepted file entry %+v", fe)
			}
		}
		if hasFiles {
			// StoreArtifacts writes exactly these entries as the version's manifest.
			m := artifact.Manifest{Model: r.Model, Version: 1, Files: r.Source.Files, CreatedAt: time.Unix(0, 0)}
			if _, err := artifact.EncodeManifest(m); err != nil {
				t.Fatalf("Validate accepted files that cannot form a manifest: %v", err)
			}
		}

		// The request travels in workflow payloads (the update's input, then VersionInput): it must come
		// back valid and the same.
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("marshal an accepted request: %v", err)
		}
		var r2 RegisterRequest
		if err := json.Unmarshal(b, &r2); err != nil {
			t.Fatalf("unmarshal %s: %v", b, err)
		}
		if err := r2.Validate(); err != nil {
			t.Fatalf("request no longer valid after a JSON round trip (%s): %v", b, err)
		}
		b2, err := json.Marshal(r2)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("JSON round trip changed the request:\n%s\n%s (%v)", b, b2, err)
		}
	})
}

// FuzzDecodeDecision feeds arbitrary signal payloads to decodeDecision. What it accepts must be exactly
// one JSON object of the Decision shape (no trailing data), carry no digest in pre-policy mode, and
// re-encode to a payload that decodes to the same Decision.
func FuzzDecodeDecision(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, withDigest bool) {
		d, err := decodeDecision(RawPayload{Encoding: "json/plain", Data: data}, withDigest)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("decodeDecision accepted %q, which is not one JSON value", data)
		}
		if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
			t.Fatalf("decodeDecision accepted %q, which is not a JSON object", data)
		}
		if !withDigest && d.Digest != "" {
			t.Fatalf("decodeDecision accepted digest %q before approval policies", d.Digest)
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("marshal %+v: %v", d, err)
		}
		d2, err := decodeDecision(RawPayload{Encoding: "json/plain", Data: b}, withDigest)
		if err != nil {
			t.Fatalf("re-encoded decision %s refused: %v", b, err)
		}
		if d2 != d {
			t.Fatalf("decision changed on re-encoding: %+v -> %s -> %+v", d, b, d2)
		}
	})
}

// FuzzRawPayload checks that receiving a signal into RawPayload never fails, whatever the payload's
// metadata and data: this is what lets the version workflow record a malformed message instead of
// losing it.
func FuzzRawPayload(f *testing.F) {
	dc := NewDataConverter()
	f.Fuzz(func(t *testing.T, encoding string, data []byte, shape uint8) {
		var p *commonpb.Payload
		wantEnc := encoding
		switch shape % 5 {
		case 0: // what an SDK sends
			p = &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte(encoding)}, Data: data}
		case 1: // no metadata at all
			p = &commonpb.Payload{Data: data}
			wantEnc = ""
		case 2: // other metadata keys only
			p = &commonpb.Payload{Metadata: map[string][]byte{encoding: data}, Data: data}
			if encoding != converter.MetadataEncoding {
				wantEnc = ""
			} else {
				wantEnc = string(data)
			}
		case 3: // encoding plus unrelated keys, received through FromPayloads with one value
			p = &commonpb.Payload{Metadata: map[string][]byte{converter.MetadataEncoding: []byte(encoding), "messageType": data}, Data: data}
		case 4: // a nil payload
			wantEnc = ""
		}
		var r RawPayload
		var err error
		if shape%5 == 3 {
			err = dc.FromPayloads(&commonpb.Payloads{Payloads: []*commonpb.Payload{p, p}}, &r)
		} else {
			err = dc.FromPayload(p, &r)
		}
		if err != nil {
			t.Fatalf("FromPayload into *RawPayload failed: %v", err)
		}
		if r.Encoding != wantEnc {
			t.Fatalf("encoding = %q, want %q", r.Encoding, wantEnc)
		}
		wantData := data
		if p == nil {
			wantData = nil
		}
		if !bytes.Equal(r.Data, wantData) {
			t.Fatalf("data = %q, want %q", r.Data, wantData)
		}
		// Whatever arrived, the decision decoder must only refuse it, never panic.
		_, _ = decodeDecision(r, true)
		_, _ = decodeDecision(r, false)
	})
}
