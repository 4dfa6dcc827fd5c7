package workflows

import (
	"errors"
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelreg/modelreg/internal/catalog"
)

// registrationWindow bounds the outcomes a model's workflow keeps for QueryRegistration. A client asks
// within a second or two of its signal; one that asks after more registrations than this learns nothing
// (unknown) and sends its request again, which the catalog answers from the idempotency key.
const registrationWindow = 256

// receiveRegistrations takes register signals (since modelV3). Temporal admits 10 updates in flight per
// workflow, so 16 training jobs registering on one model at the same instant had some register updates
// refused with "resource exhausted", which the SDK sent again after a pause. A signal is not bounded that
// way: every one is recorded, and one workflow task takes as many as have arrived, minting them side by
// side. The sender asks QueryRegistration for the outcome (control.Register does both).
func (m *modelWF) receiveRegistrations(ctx workflow.Context) {
	m.registerSignals = workflow.GetSignalChannelWithOptions(ctx, SignalRegister, workflow.SignalChannelOptions{Description: descRegisterSignal})
	workflow.Go(ctx, func(gctx workflow.Context) {
		for {
			// Not a blocking Receive: the SDK hands a signal to a receiver blocked on the channel before
			// that coroutine runs, outside the channel's buffer, where the continue-as-new condition
			// (registrationsIdle) cannot see it, and a run could end with it unread. Waiting on Len keeps
			// every unread signal in the buffer.
			if err := workflow.Await(gctx, func() bool { return m.registerSignals.Len() > 0 }); err != nil {
				return
			}
			var raw RawPayload
			if !m.registerSignals.ReceiveAsync(&raw) {
				continue
			}
			m.signalRegistrations++
			workflow.Go(gctx, func(rctx workflow.Context) {
				defer func() { m.signalRegistrations-- }()
				req, err := m.decodeRegisterSignal(raw)
				if err != nil {
					// Refused before it began: audited like any refused message, and answered under its key
					// when it has one that is well-formed.
					reason := clip([]byte("register signal refused: "+err.Error()), catalog.MaxRefusalReason)
					if k := req.IdempotencyKey; keyRe.MatchString(k) && !m.knownRegistration(k) {
						// Never over a registration in progress or done: whoever knows a key must not make
						// its owner read a refusal of somebody else's request.
						m.noteOutcome(rctx, k, RegisterResult{}, refused("%s", reason))
					}
					if rerr := m.recordRefusal(rctx, SignalRegister, "signal", 0, []byte(clip(raw.Data, catalog.MaxRefusalPayload)), reason); rerr != nil {
						workflow.GetLogger(rctx).Error("refused message not recorded in the catalog", "name", SignalRegister, "error", rerr)
					}
					return
				}
				_, _ = m.registerV1(rctx, req)
			})
		}
	})
}

// decodeRegisterSignal checks a register signal as the register update's validator and the data
// converter check the update. A request with a key but otherwise refused is returned with its key.
func (m *modelWF) decodeRegisterSignal(raw RawPayload) (RegisterRequest, error) {
	var req RegisterRequest
	if raw.DecodeError != "" {
		return req, fmt.Errorf("payload does not decode: %s", raw.DecodeError)
	}
	if raw.Encoding != "json/plain" {
		return req, fmt.Errorf("payload encoding %q is not json/plain", raw.Encoding)
	}
	// A request refused before it decodes whole is still answered under its key when the key can be
	// read: the sender asks by it.
	var keyOnly struct {
		Key string `json:"idempotencyKey"`
	}
	_ = decodeJSON(raw.Data, &keyOnly)
	req.IdempotencyKey = keyOnly.Key
	if err := checkRawMessage(raw, maxRegisterMessageBytes); err != nil {
		return req, err
	}
	if err := decodeJSON(raw.Data, &req); err != nil {
		return RegisterRequest{IdempotencyKey: keyOnly.Key}, fmt.Errorf("payload is not a RegisterRequest: %v", err)
	}
	if err := req.Validate(); err != nil {
		return req, err
	}
	if req.Model != m.in.Model {
		return req, fmt.Errorf("request is for model %q but this is the workflow of model %q", req.Model, m.in.Model)
	}
	return req, nil
}

// noteOutcome keeps a registration's outcome for QueryRegistration (since modelV3), replacing an earlier
// one under the same key.
func (m *modelWF) noteOutcome(ctx workflow.Context, key string, res RegisterResult, err error) {
	if m.v < modelV3 {
		return
	}
	o := RegistrationOutcome{Key: key, At: workflow.Now(ctx).UTC()}
	if err != nil {
		o.Error = rootMessage(err)
		var app *temporal.ApplicationError
		if errors.As(err, &app) {
			o.ErrorType = app.Type()
		}
	} else {
		o.Result = &res
	}
	m.st.Registrations = slices.DeleteFunc(m.st.Registrations, func(r RegistrationOutcome) bool { return r.Key == key })
	m.st.Registrations = append(m.st.Registrations, o)
	if n := len(m.st.Registrations); n > registrationWindow {
		m.st.Registrations = slices.Delete(m.st.Registrations, 0, n-registrationWindow)
	}
}

func (m *modelWF) knownRegistration(key string) bool {
	st, _ := m.registration(key)
	return st.State != RegistrationUnknown
}

// registration answers QueryRegistration.
func (m *modelWF) registration(key string) (RegistrationStatus, error) {
	st := RegistrationStatus{SchemaVersion: SchemaVersion, Key: key, State: RegistrationUnknown}
	if !m.loaded {
		return st, errors.New("the model's workflow is rebuilding its state from the catalog; ask again in a moment")
	}
	if _, ok := m.pending[key]; ok {
		st.State = RegistrationPending
		return st, nil
	}
	for i := len(m.st.Registrations) - 1; i >= 0; i-- {
		o := m.st.Registrations[i]
		if o.Key != key {
			continue
		}
		if o.Result != nil {
			st.State, st.Result = RegistrationRegistered, o.Result
		} else {
			st.State, st.Error, st.ErrorType = RegistrationFailed, o.Error, o.ErrorType
		}
		return st, nil
	}
	return st, nil
}

// registrationsIdle is true when no register signal is waiting or being worked on, so that a
// continue-as-new loses none (the SDK does not carry unread signals over).
func (m *modelWF) registrationsIdle() bool {
	return m.registerSignals == nil || m.signalRegistrations == 0 && m.registerSignals.Len() == 0
}
