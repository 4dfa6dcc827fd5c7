package workflows

import (
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

// RawPayload receives a signal undecoded. The SDK drops a signal whose payload does not decode into the
// receiving type, silently; receiving into RawPayload always succeeds, so the workflow can record a
// malformed message with its reason instead of losing it.
type RawPayload struct {
	Encoding string
	Data     []byte
	// DecodeError is set when the payload codec could not decode the payload (with payload encryption:
	// a key id this worker does not have, or altered data); Encoding and Data are then the payload as
	// received. The workflow refuses such a message with this reason.
	DecodeError string
	// MessageBytes and MessagePayloads are the size (as Temporal stores it) and the count of every
	// payload of the message this one came in, so an update's validator can refuse a message that is too
	// large, or that smuggles payloads its handler does not read, before Temporal records it.
	MessageBytes, MessagePayloads int
}

// NewDataConverter returns the data converter that workers and clients of the registry use: the SDK's
// default one, plus RawPayload support.
func NewDataConverter() converter.DataConverter {
	return rawAwareConverter{DataConverter: converter.GetDefaultDataConverter()}
}

// NewDataConverterWithCodec is NewDataConverter with every payload passed through codec (payload
// encryption: internal/codec): encoded after serialization, decoded before deserialization. A RawPayload
// receives the decoded payload, so a signal's JSON is checked as without a codec; a payload that the
// codec cannot decode is still delivered to a RawPayload, with DecodeError set, instead of being dropped.
func NewDataConverterWithCodec(codec converter.PayloadCodec) converter.DataConverter {
	return rawAwareConverter{
		DataConverter: converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), codec),
		codec:         codec,
	}
}

// rawAwareConverter delegates everything to DataConverter (which applies the codec, if any) except
// decoding into a RawPayload, which it does itself.
type rawAwareConverter struct {
	converter.DataConverter
	codec converter.PayloadCodec // nil: payloads are not encoded
}

func (c rawAwareConverter) FromPayload(p *commonpb.Payload, valuePtr any) error {
	if r, ok := valuePtr.(*RawPayload); ok {
		*r = RawPayload{}
		if c.codec != nil && p != nil {
			decoded, err := c.codec.Decode([]*commonpb.Payload{p})
			if err == nil && len(decoded) != 1 {
				err = fmt.Errorf("payload codec returned %d payloads for 1", len(decoded))
			}
			if err != nil {
				r.Encoding = string(p.GetMetadata()[converter.MetadataEncoding])
				r.Data = p.GetData()
				r.DecodeError = err.Error()
				return nil
			}
			p = decoded[0]
		}
		r.Encoding = string(p.GetMetadata()[converter.MetadataEncoding])
		r.Data = p.GetData()
		return nil
	}
	return c.DataConverter.FromPayload(p, valuePtr)
}

func (c rawAwareConverter) FromPayloads(ps *commonpb.Payloads, valuePtrs ...any) error {
	if ps == nil {
		return nil
	}
	size := proto.Size(ps)
	if err := checkMessageSize(size, len(ps.GetPayloads()), valuePtrs); err != nil {
		return err
	}
	for i, p := range ps.GetPayloads() {
		if i >= len(valuePtrs) {
			break
		}
		if err := c.FromPayload(p, valuePtrs[i]); err != nil {
			return fmt.Errorf("payload item %d: %w", i, err)
		}
		if r, ok := valuePtrs[i].(*RawPayload); ok {
			r.MessageBytes, r.MessagePayloads = size, len(ps.GetPayloads())
		}
	}
	return nil
}

// Bounds of an update's whole input as Temporal stores it (docs/architecture.md, "Who can send what").
// Temporal writes an accepted update's input into the workflow's history; an input over its 2 MB limit
// fails the workflow task, and Temporal then terminates the workflow. Inputs that decode into a request
// type of this package are therefore refused while they are decoded, which is before the update is
// accepted and leaves nothing in the history: above the request's own bound, or with more payloads than
// the handler takes (extra ones would be recorded without being read).
const (
	// MaxSmallRequestBytes bounds promote, rollback, redeliver, archive, restore and decisions.
	MaxSmallRequestBytes = 64 << 10
	// maxRegisterMessageBytes leaves room around MaxRequestBytes (which bounds the request re-encoded)
	// for white space, field order and a payload codec's envelope, far below Temporal's 2 MB.
	maxRegisterMessageBytes = 1 << 20
)

// checkMessageSize refuses a message decoded into a request type of this package that is larger than
// that type allows or has payloads beyond the values it is decoded into. Other types (workflow inputs,
// activity results, RawPayload, which validators check themselves) are not bounded here.
func checkMessageSize(size, payloads int, valuePtrs []any) error {
	limit := 0
	for _, v := range valuePtrs {
		switch v.(type) {
		case *RegisterRequest:
			limit = maxRegisterMessageBytes
		case *PromoteRequest, *RollbackRequest, *RedeliverRequest, *ArchiveRequest, *Decision, *Verdict:
			limit = MaxSmallRequestBytes
		}
	}
	if limit == 0 {
		return nil
	}
	return boundMessage(size, payloads, len(valuePtrs), limit)
}

// checkRawMessage is checkMessageSize for a handler that takes its input as a RawPayload.
func checkRawMessage(raw RawPayload, limit int) error {
	return boundMessage(raw.MessageBytes, raw.MessagePayloads, 1, limit)
}

func boundMessage(size, payloads, takes, limit int) error {
	if payloads > takes {
		return fmt.Errorf("the message has %d payloads; this handler takes %d", payloads, takes)
	}
	if size > limit {
		return fmt.Errorf("the message is %d bytes; this request is at most %d bytes", size, limit)
	}
	return nil
}
