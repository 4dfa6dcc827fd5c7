package workflows

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"

	"github.com/modelreg/modelreg/activities"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/codec"
)

func testCodec(t *testing.T, id string) *codec.Codec {
	t.Helper()
	m := make([]byte, codec.KeySize)
	_, _ = rand.Read(m)
	c, err := codec.NewCodec(codec.Key{ID: id, Material: m})
	require.NoError(t, err)
	return c
}

func TestCodecConverterRoundTripsDecisionAndRawPayload(t *testing.T) {
	dc := NewDataConverterWithCodec(testCodec(t, "k1"))
	d := Decision{Approver: "alice", Comment: "offline eval ok", Digest: digest}

	p, err := dc.ToPayload(d)
	require.NoError(t, err)
	require.Equal(t, codec.EncodingEncrypted, string(p.Metadata[converter.MetadataEncoding]))
	require.Equal(t, "k1", string(p.Metadata[codec.MetadataKeyID]))
	for _, s := range []string{"alice", "offline", digest, "approver", "json/plain"} {
		require.False(t, bytes.Contains(p.Data, []byte(s)), "ciphertext contains %q", s)
	}

	// Into the type itself.
	var back Decision
	require.NoError(t, dc.FromPayload(p, &back))
	require.Equal(t, d, back)

	// Into a RawPayload (how signals are received): the codec decodes before the raw JSON is handed over,
	// so the workflow checks the same JSON it checks without a codec.
	var raw RawPayload
	require.NoError(t, dc.FromPayload(p, &raw))
	require.Equal(t, "json/plain", raw.Encoding)
	require.Empty(t, raw.DecodeError)
	got, err := decodeDecision(raw, true)
	require.NoError(t, err)
	require.Equal(t, d, got)

	// FromPayloads, mixing both kinds of target.
	ps, err := dc.ToPayloads(d, d)
	require.NoError(t, err)
	var back2 Decision
	var raw2 RawPayload
	require.NoError(t, dc.FromPayloads(ps, &back2, &raw2))
	require.Equal(t, d, back2)
	require.JSONEq(t, string(raw.Data), string(raw2.Data))

	// A payload sent without the codec (the temporal CLI, a tool without the key) still arrives.
	plain, err := NewDataConverter().ToPayload(d)
	require.NoError(t, err)
	raw = RawPayload{}
	require.NoError(t, dc.FromPayload(plain, &raw))
	got, err = decodeDecision(raw, true)
	require.NoError(t, err)
	require.Equal(t, d, got)

	// A payload encrypted with a key this converter lacks reaches a RawPayload with the reason, instead
	// of being dropped by the SDK, and decodeDecision refuses it.
	rogue, err := NewDataConverterWithCodec(testCodec(t, "rogue")).ToPayload(d)
	require.NoError(t, err)
	raw = RawPayload{}
	require.NoError(t, dc.FromPayload(rogue, &raw))
	require.Equal(t, codec.EncodingEncrypted, raw.Encoding)
	require.Contains(t, raw.DecodeError, `key id "rogue"`)
	_, err = decodeDecision(raw, true)
	require.ErrorContains(t, err, "payload does not decode")
	// Into any other type it is an error, as without a codec.
	require.Error(t, dc.FromPayload(rogue, &back))

	// The plain converter is unchanged: encrypted payloads are not JSON to it.
	raw = RawPayload{}
	require.NoError(t, NewDataConverter().FromPayload(p, &raw))
	require.Equal(t, codec.EncodingEncrypted, raw.Encoding)
	require.Empty(t, raw.DecodeError)
}

// switchCodec encrypts with whichever codec the test sets, and decrypts with the worker's codec only:
// it lets a test send a message encrypted with a key the worker does not have.
type switchCodec struct {
	mu     sync.Mutex
	worker *codec.Codec
	enc    *codec.Codec
}

func (s *switchCodec) Encode(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.enc.Encode(ps)
}

func (s *switchCodec) Decode(ps []*commonpb.Payload) ([]*commonpb.Payload, error) {
	return s.worker.Decode(ps)
}

func (s *switchCodec) use(c *codec.Codec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enc = c
}

// TestVersionWorkflowWithPayloadCodec runs a version to production with every payload encrypted: the
// input, activity results, queries, signals and updates; a signal encrypted with a foreign key is
// recorded as refused, not lost.
func TestVersionWorkflowWithPayloadCodec(t *testing.T) {
	workerCodec := testCodec(t, "k1")
	sc := &switchCodec{worker: workerCodec, enc: workerCodec}
	env, tr := newVersionEnv(t)
	env.SetDataConverter(NewDataConverterWithCodec(sc))
	storeOK(env)
	validateWith(env, true, catalog.Policy{RequiredApprovals: 2})
	env.OnActivity(a.UpdateWorkflow, mock.Anything, mock.Anything).Return(func(_ context.Context, in activities.UpdateWorkflowInput) (json.RawMessage, error) {
		return json.RawMessage(`{"schemaVersion":1,"model":"fraud","version":1}`), nil
	})
	var approve *updateResult
	env.RegisterDelayedCallback(func() {
		require.Equal(t, StagePendingApproval, describe(t, env).State.Stage)
		sc.use(testCodec(t, "rogue"))
		env.SignalWorkflow(SignalApprove, Decision{Approver: "mallory", Digest: digest})
		sc.use(workerCodec)
		env.SignalWorkflow(SignalApprove, Decision{Approver: "alice", Digest: digest})
	}, time.Minute)
	env.RegisterDelayedCallback(func() {
		d := describe(t, env)
		require.Equal(t, StagePendingApproval, d.State.Stage)
		require.Len(t, d.State.Rejected, 1)
		require.Contains(t, d.State.Rejected[0].Reason, `payload does not decode: payload codec: payload was encrypted with key id "rogue"`)
		approve = update(env, UpdateApprove, Decision{Approver: "bob", Digest: digest})
	}, 2*time.Minute)
	env.RegisterDelayedCallback(func() {
		require.True(t, approve.done)
		require.NoError(t, approve.rejected)
		require.NoError(t, approve.completeErr)
		// The result may already say Production: the promotion can run before the update's result is read.
		require.Contains(t, []string{StageApproved, StageProduction}, approve.result.(DecisionResult).Stage)
		require.Equal(t, StageProduction, describe(t, env).State.Stage)
		env.CancelWorkflow()
	}, 3*time.Minute)
	env.ExecuteWorkflow(ModelVersionWorkflow, versionInput())
	require.Equal(t, []string{StageValidating, StagePendingApproval, StageApproved, StageProduction}, tr.stages()[:4])
	require.Equal(t, "bob", tr.got[2].Actor)
	require.Len(t, tr.decisions, 3)
	require.False(t, tr.decisions[0].Accepted)
	require.Contains(t, tr.decisions[0].Reason, "does not decode")
}
