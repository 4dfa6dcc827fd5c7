package workflows

import (
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
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
	for i, p := range ps.GetPayloads() {
		if i >= len(valuePtrs) {
			break
		}
		if err := c.FromPayload(p, valuePtrs[i]); err != nil {
			return fmt.Errorf("payload item %d: %w", i, err)
		}
	}
	return nil
}
