package codec

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

func newKey(t *testing.T, id string) Key {
	t.Helper()
	m := make([]byte, KeySize)
	if _, err := rand.Read(m); err != nil {
		t.Fatal(err)
	}
	return Key{ID: id, Material: m}
}

func jsonPayload(t *testing.T, v any) *commonpb.Payload {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	c, err := NewCodec(newKey(t, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	in := []*commonpb.Payload{
		jsonPayload(t, map[string]any{"model": "fraud", "accuracy": 0.93}),
		jsonPayload(t, "alice"),
		jsonPayload(t, nil),
		{Metadata: map[string][]byte{"encoding": []byte("binary/plain")}, Data: nil},
	}
	enc, err := c.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) != len(in) {
		t.Fatalf("%d payloads out, %d in", len(enc), len(in))
	}
	for i, p := range enc {
		if got := string(p.Metadata[converter.MetadataEncoding]); got != EncodingEncrypted {
			t.Fatalf("payload %d encoding %q", i, got)
		}
		if got := string(p.Metadata[MetadataKeyID]); got != "k1" {
			t.Fatalf("payload %d key id %q", i, got)
		}
		if len(p.Metadata) != 2 {
			t.Fatalf("payload %d metadata leaks the inner metadata: %v", i, p.Metadata)
		}
		for _, s := range []string{"fraud", "accuracy", "alice", "json/plain"} {
			if bytes.Contains(p.Data, []byte(s)) {
				t.Fatalf("payload %d data contains %q in plaintext", i, s)
			}
		}
	}
	dec, err := c.Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if !proto.Equal(in[i], dec[i]) {
			t.Fatalf("payload %d: decoded %v, want %v", i, dec[i], in[i])
		}
	}
	// The inputs were not mutated.
	if string(in[0].Metadata[converter.MetadataEncoding]) != "json/plain" {
		t.Fatal("Encode mutated its input")
	}
}

func TestFreshNoncePerPayload(t *testing.T) {
	c, err := NewCodec(newKey(t, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	p := jsonPayload(t, "same")
	a, _ := c.Encode([]*commonpb.Payload{p})
	b, _ := c.Encode([]*commonpb.Payload{p})
	if bytes.Equal(a[0].Data, b[0].Data) || bytes.Equal(a[0].Data[:NonceSize], b[0].Data[:NonceSize]) {
		t.Fatal("two encodings of one payload share a nonce")
	}
}

func TestUnencryptedPayloadsPassThrough(t *testing.T) {
	c, err := NewCodec(newKey(t, "k1"))
	if err != nil {
		t.Fatal(err)
	}
	p := jsonPayload(t, map[string]string{"approver": "bob"})
	out, err := c.Decode([]*commonpb.Payload{p})
	if err != nil || out[0] != p {
		t.Fatalf("plain payload: %v %v", out, err)
	}
}

func TestRotation(t *testing.T) {
	old, cur := newKey(t, "2025"), newKey(t, "2026")
	before, err := NewCodec(old)
	if err != nil {
		t.Fatal(err)
	}
	encOld, _ := before.Encode([]*commonpb.Payload{jsonPayload(t, "written before rotation")})

	after, err := NewCodec(cur, old)
	if err != nil {
		t.Fatal(err)
	}
	if after.KeyID() != "2026" || strings.Join(after.KeyIDs(), ",") != "2025,2026" {
		t.Fatalf("key ids %s %v", after.KeyID(), after.KeyIDs())
	}
	encNew, _ := after.Encode([]*commonpb.Payload{jsonPayload(t, "written after")})
	if id := string(encNew[0].Metadata[MetadataKeyID]); id != "2026" {
		t.Fatalf("new payloads use key %q", id)
	}
	dec, err := after.Decode(append(encOld, encNew...))
	if err != nil {
		t.Fatal(err)
	}
	var s1, s2 string
	_ = converter.GetDefaultDataConverter().FromPayload(dec[0], &s1)
	_ = converter.GetDefaultDataConverter().FromPayload(dec[1], &s2)
	if s1 != "written before rotation" || s2 != "written after" {
		t.Fatalf("decoded %q %q", s1, s2)
	}

	// Without the previous key, the old payload names the missing id.
	onlyNew, _ := NewCodec(cur)
	_, err = onlyNew.Decode(encOld)
	if err == nil || !strings.Contains(err.Error(), `key id "2025"`) || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("unknown key id: %v", err)
	}
	assertNoKeyMaterial(t, err.Error(), old, cur)
}

func TestDecodeFailures(t *testing.T) {
	k := newKey(t, "k1")
	c, _ := NewCodec(k)
	enc, _ := c.Encode([]*commonpb.Payload{jsonPayload(t, "secret stuff")})

	clone := func() *commonpb.Payload { return proto.Clone(enc[0]).(*commonpb.Payload) }

	tampered := clone()
	tampered.Data[len(tampered.Data)-1] ^= 1
	relabelled := clone()
	// Same material under another id: the id is authenticated, so this does not decrypt either.
	relabelled.Metadata[MetadataKeyID] = []byte("k2")
	sameMaterial, _ := NewCodec(k, Key{ID: "k2", Material: k.Material})
	short := clone()
	short.Data = short.Data[:NonceSize]
	noID := clone()
	delete(noID.Metadata, MetadataKeyID)

	wrongKey := Key{ID: "k1", Material: newKey(t, "x").Material}
	other, _ := NewCodec(wrongKey)

	for _, tc := range []struct {
		name  string
		codec *Codec
		p     *commonpb.Payload
		want  string
	}{
		{"tampered data", c, tampered, "does not decrypt"},
		{"relabelled key id", sameMaterial, relabelled, "does not decrypt"},
		{"too short", c, short, "too short"},
		{"no key id", c, noID, "no encryption-key-id"},
		{"wrong key under the same id", other, clone(), "does not decrypt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.codec.Decode([]*commonpb.Payload{tc.p})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			assertNoKeyMaterial(t, err.Error(), k, wrongKey)
		})
	}
}

func TestBadKeys(t *testing.T) {
	k := newKey(t, "k1")
	short := Key{ID: "short", Material: k.Material[:16]}
	for _, tc := range []struct {
		name string
		keys []Key
		want string
	}{
		{"none", nil, "no key"},
		{"16 bytes", []Key{short}, `payload key "short" has 16 bytes; AES-256 needs exactly 32`},
		{"no id", []Key{{Material: k.Material}}, "key id is empty"},
		{"duplicate id", []Key{k, k}, `"k1" is given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewCodec(tc.keys...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			assertNoKeyMaterial(t, err.Error(), k)
		})
	}

	b64 := base64.StdEncoding.EncodeToString(k.Material)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		got, err := ParseKey("k1", " "+enc.EncodeToString(k.Material)+"\n")
		if err != nil || !bytes.Equal(got.Material, k.Material) || got.ID != "k1" {
			t.Fatalf("ParseKey: %v", err)
		}
	}
	bad := "not base64!!" + b64
	if _, err := ParseKey("k1", bad); err == nil || !strings.Contains(err.Error(), "not valid base64") || strings.Contains(err.Error(), bad) {
		t.Fatalf("bad base64: %v", err)
	}
	short64 := base64.StdEncoding.EncodeToString(k.Material[:31])
	if _, err := ParseKey("k1", short64); err == nil || !strings.Contains(err.Error(), "has 31 bytes") || strings.Contains(err.Error(), short64) {
		t.Fatalf("31-byte key: %v", err)
	}
	if _, err := ParseKey("", b64); err == nil {
		t.Fatal("empty id accepted")
	}
}

func TestKeyNeverPrintsMaterial(t *testing.T) {
	k := newKey(t, "k1")
	type holder struct {
		Keys []Key
		Key  Key
	}
	h := holder{Keys: []Key{k}, Key: k}
	js, _ := json.Marshal(h)
	for _, s := range []string{
		fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %x %X %d %q", k, k, k, k, k, k, k, k),
		fmt.Sprintf("%v %+v %#v %x %d", h, h, h, h, h), string(js),
	} {
		assertNoKeyMaterial(t, s, k)
		if !strings.Contains(s, "k1") {
			t.Fatalf("the key id is not shown: %s", s)
		}
	}
}

// assertNoKeyMaterial fails when s shows any key's material in a usual encoding.
func assertNoKeyMaterial(t *testing.T, s string, keys ...Key) {
	t.Helper()
	for _, k := range keys {
		for _, form := range []string{
			base64.StdEncoding.EncodeToString(k.Material), base64.RawURLEncoding.EncodeToString(k.Material),
			fmt.Sprintf("%x", k.Material), fmt.Sprint(k.Material), string(k.Material),
		} {
			if strings.Contains(s, form) {
				t.Fatalf("key material of %q shown in %q", k.ID, s)
			}
		}
	}
}
