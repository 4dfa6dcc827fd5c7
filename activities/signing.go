package activities

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries the signature of every POST the registry makes (deployment events, reminders,
// validation requests) when a webhook secret is configured (MODELREG_WEBHOOK_SECRET):
//
//	X-Modelreg-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// The timestamp is signed with the body, so a receiver that checks its age (VerifySignature's maxAge)
// refuses a captured request replayed later. A retried delivery is signed again with a fresh timestamp.
const SignatureHeader = "X-Modelreg-Signature"

// DefaultSignatureMaxAge is the age VerifySignature accepts when it is given no maxAge.
const DefaultSignatureMaxAge = 5 * time.Minute

// Errors of VerifySignature, for errors.Is.
var (
	ErrSignatureMissing   = errors.New("webhook signature: no " + SignatureHeader + " header")
	ErrSignatureMalformed = errors.New("webhook signature: malformed " + SignatureHeader + " header")
	ErrSignatureMismatch  = errors.New("webhook signature: no v1 signature matches the body (wrong secret, or the body was altered)")
	ErrSignatureExpired   = errors.New("webhook signature: timestamp outside the accepted window (a replay, or clocks far apart)")
)

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(signature(secret, ts, body))
}

func signature(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks a SignatureHeader value against the raw request body, as received (before any
// JSON decoding), for receivers written in Go:
//
//	body, _ := io.ReadAll(r.Body)
//	if err := activities.VerifySignature(secret, r.Header.Get(activities.SignatureHeader), body, 5*time.Minute, time.Now()); err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized)
//		return
//	}
//
// The header must hold exactly one t and at least one v1 (several v1 values are accepted, any one of
// which may match; unknown keys are ignored, for future schemes). The timestamp must be within maxAge
// of now, in either direction (clock skew); maxAge <= 0 means DefaultSignatureMaxAge. Signatures are
// compared in constant time. Receivers should still deduplicate on the event's ID: a retry within the
// window is a legitimate second delivery.
func VerifySignature(secret []byte, header string, body []byte, maxAge time.Duration, now time.Time) error {
	if len(secret) == 0 {
		return errors.New("webhook signature: no secret to verify with")
	}
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrSignatureMissing
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: %q is not key=value", ErrSignatureMalformed, part)
		}
		switch k {
		case "t":
			if ts != "" {
				return fmt.Errorf("%w: more than one t", ErrSignatureMalformed)
			}
			if v == "" {
				return fmt.Errorf("%w: empty t", ErrSignatureMalformed)
			}
			ts = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return fmt.Errorf("%w: v1 is not %d hex characters", ErrSignatureMalformed, 2*sha256.Size)
			}
			sigs = append(sigs, sig)
		}
	}
	if ts == "" {
		return fmt.Errorf("%w: no t", ErrSignatureMalformed)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: no v1", ErrSignatureMalformed)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: t=%q is not unix seconds", ErrSignatureMalformed, ts)
	}
	want := signature(secret, ts, body)
	matched := false
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			matched = true
		}
	}
	if !matched {
		return ErrSignatureMismatch
	}
	// Checked after the HMAC, so that only a timestamp the secret's holder signed is reported as stale.
	if maxAge <= 0 {
		maxAge = DefaultSignatureMaxAge
	}
	age := now.Sub(time.Unix(sec, 0))
	if age > maxAge || age < -maxAge {
		return fmt.Errorf("%w: signed at %s, %s from now (accepted: %s)", ErrSignatureExpired,
			time.Unix(sec, 0).UTC().Format(time.RFC3339), age.Round(time.Second), maxAge)
	}
	return nil
}
