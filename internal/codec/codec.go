// Package codec encrypts workflow payloads before they reach Temporal, so that the model names, metrics,
// approvers, digests and URIs the registry's workflows carry are not readable in Temporal's history (its
// database, its Web UI, `temporal workflow show`) by anyone who lacks the key.
//
// Codec is a converter.PayloadCodec: AES-256-GCM with a random 12-byte nonce per payload. An encoded
// payload has the metadata encoding "binary/encrypted" and "encryption-key-id" (which key encrypted
// it); its data is nonce || ciphertext of the whole original payload (metadata and data), so the original
// encoding is hidden too. Decoding looks the key up by that id, so keys can rotate: the first key of a
// Codec encrypts, every key decrypts. Payloads that are not "binary/encrypted" pass through Decode
// untouched (histories written before encryption was turned on, or messages sent by tools without the
// key, such as the temporal CLI).
//
// No error or String method of this package prints key material.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

const (
	// EncodingEncrypted is the metadata encoding of an encrypted payload.
	EncodingEncrypted = "binary/encrypted"
	// MetadataKeyID is the metadata key naming the key that encrypted a payload.
	MetadataKeyID = "encryption-key-id"
	// KeySize is the length of an AES-256 key in bytes.
	KeySize = 32
	// NonceSize is the length of the random GCM nonce that prefixes every encrypted payload's data.
	NonceSize = 12
)

// Key is one named AES-256 key. Its String, GoString, Format and MarshalJSON methods never show
// Material, so a Key (or a struct holding one) can be logged safely.
type Key struct {
	ID       string
	Material []byte
}

// String names the key without its material.
func (k Key) String() string { return fmt.Sprintf("codec.Key{ID:%q Material:REDACTED}", k.ID) }

// GoString is String, for %#v.
func (k Key) GoString() string { return k.String() }

// Format is String for every verb (%v, %s, %x, %d…), so no verb prints the material.
func (k Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// MarshalJSON writes the id and a redacted material.
func (k Key) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, `{"id":%q,"material":"REDACTED"}`, k.ID), nil
}

// ParseKey decodes a base64 key (standard or URL alphabet, padded or not) of exactly KeySize bytes.
// Its errors name id, never the value.
func ParseKey(id, b64 string) (Key, error) {
	if id == "" {
		return Key{}, errors.New("payload key: the key id is empty")
	}
	b64 = strings.TrimSpace(b64)
	var material []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if material, err = enc.DecodeString(b64); err == nil {
			break
		}
	}
	if err != nil {
		return Key{}, fmt.Errorf("payload key %q is not valid base64 (want the base64 of %d random bytes, e.g. from `openssl rand -base64 32`)", id, KeySize)
	}
	k := Key{ID: id, Material: material}
	if err := k.check(); err != nil {
		return Key{}, err
	}
	return k, nil
}

func (k Key) check() error {
	if k.ID == "" {
		return errors.New("payload key: the key id is empty")
	}
	if len(k.Material) != KeySize {
		return fmt.Errorf("payload key %q has %d bytes; AES-256 needs exactly %d (e.g. `openssl rand -base64 32`)", k.ID, len(k.Material), KeySize)
	}
	return nil
}

// Codec is an AES-256-GCM converter.PayloadCodec. It is safe for concurrent use.
type Codec struct {
	current string
	aeads   map[string]cipher.AEAD
	rand    io.Reader
}

var _ converter.PayloadCodec = (*Codec)(nil)

// NewCodec returns a codec that encrypts with keys[0] and decrypts with any of keys. Every key must have
// a non-empty, distinct id and exactly KeySize bytes.
func NewCodec(keys ...Key) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("payload codec: no key given")
	}
	c := &Codec{current: keys[0].ID, aeads: map[string]cipher.AEAD{}, rand: rand.Reader}
	for _, k := range keys {
		if err := k.check(); err != nil {
			return nil, err
		}
		if _, dup := c.aeads[k.ID]; dup {
			return nil, fmt.Errorf("payload key id %q is given twice", k.ID)
		}
		block, err := aes.NewCipher(k.Material)
		if err != nil {
			return nil, fmt.Errorf("payload key %q: %v", k.ID, err)
		}
		aead, err := cipher.NewGCMWithNonceSize(block, NonceSize)
		if err != nil {
			return nil, fmt.Errorf("payload key %q: %v", k.ID, err)
		}
		c.aeads[k.ID] = aead
	}
	return c, nil
}

// KeyID is the id of the key that Encode uses.
func (c *Codec) KeyID() string { return c.current }

// KeyIDs lists the ids of every key that Decode accepts, sorted.
func (c *Codec) KeyIDs() []string {
	ids := make([]string, 0, len(c.aeads))
	for id := range c.aeads {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Encode encrypts every payload with the current key. The key id is bound to the ciphertext as
// additional authenticated data, so relabelling a payload with another id makes it fail to decrypt.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := c.aeads[c.current]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return payloads, fmt.Errorf("payload codec: marshal payload %d: %w", i, err)
		}
		buf := make([]byte, NonceSize, NonceSize+len(plain)+aead.Overhead())
		if _, err := io.ReadFull(c.rand, buf); err != nil {
			return payloads, fmt.Errorf("payload codec: random nonce: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(EncodingEncrypted),
				MetadataKeyID:              []byte(c.current),
			},
			Data: aead.Seal(buf, buf, plain, []byte(c.current)),
		}
	}
	return out, nil
}

// Decode decrypts every "binary/encrypted" payload with the key its metadata names; other payloads are
// returned as they are. It fails, naming the key id, when that key is not configured or the payload does
// not decrypt (wrong key material for that id, or tampered data).
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != EncodingEncrypted {
			out[i] = p
			continue
		}
		id := string(p.GetMetadata()[MetadataKeyID])
		if id == "" {
			return payloads, fmt.Errorf("payload codec: encrypted payload has no %s metadata", MetadataKeyID)
		}
		aead, ok := c.aeads[id]
		if !ok {
			return payloads, fmt.Errorf("payload codec: payload was encrypted with key id %q, which is not configured (configured: %s); "+
				"add it as a previous key (MODELREG_PAYLOAD_KEY_PREVIOUS=%s:<base64>)", id, strings.Join(c.KeyIDs(), ", "), id)
		}
		data := p.GetData()
		if len(data) < NonceSize+aead.Overhead() {
			return payloads, fmt.Errorf("payload codec: encrypted payload (key id %q) is too short: %d bytes", id, len(data))
		}
		plain, err := aead.Open(nil, data[:NonceSize], data[NonceSize:], []byte(id))
		if err != nil {
			return payloads, fmt.Errorf("payload codec: payload encrypted with key id %q does not decrypt: the key configured under that id is not the one that encrypted it, or the payload was altered", id)
		}
		var dec commonpb.Payload
		if err := proto.Unmarshal(plain, &dec); err != nil {
			return payloads, fmt.Errorf("payload codec: decrypted payload (key id %q) is not a payload: %w", id, err)
		}
		out[i] = &dec
	}
	return out, nil
}
