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
}

// NewDataConverter returns the data converter that workers and clients of the registry use: the SDK's
// default one, plus RawPayload support.
func NewDataConverter() converter.DataConverter {
	return rawAwareConverter{converter.GetDefaultDataConverter()}
}

type rawAwareConverter struct{ converter.DataConverter }

func (c rawAwareConverter) FromPayload(p *commonpb.Payload, valuePtr any) error {
	if r, ok := valuePtr.(*RawPayload); ok {
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
