package workflows

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.temporal.io/sdk/workflow"
)

// What the Temporal Web UI and `temporal workflow describe` / `metadata` show a human (README, "What the
// Temporal UI shows"): a static summary and details given when a workflow starts, the current details
// each run keeps up to date (served by the SDK's __temporal_workflow_metadata query, not recorded in the
// history, so setting them is not a command and replays of older histories are unaffected), and the
// descriptions of the handlers. The SDK lists handlers sorted by name and the UI keeps that order, so
// internal handlers cannot be moved last; their descriptions say first that they are internal.

const (
	internalUpdate = "INTERNAL (sent by the registry's own workflows; refused from anyone else): "
	internalQuery  = "INTERNAL (asked by the registry's own workflows): "
	decisionShape  = `{"approver":"who","comment":"why","digest":"sha256:… (the manifest digest you reviewed)"}`
)

// Handler descriptions of the version's workflow.
var (
	descApproveUpdate = "Approve this version (a human decision; the policy may require several approvers): " + decisionShape
	descRejectUpdate  = "Reject this version (a human decision; one reject ends it Rejected): " + decisionShape
	descApproveSignal = "Approve this version, for tools that can only signal (a refusal is recorded, not returned: prefer the approve update): " + decisionShape
	descRejectSignal  = "Reject this version, for tools that can only signal (prefer the reject update): " + decisionShape
	descVerdict       = `An external validator's (CI job's) verdict: {"validator":"name","token":"from the validation request","passed":true,"reportUrl":"…","detail":"…"}`
	descArchive       = internalUpdate + "the model's workflow archives this version during a production switch (to change production, use the model's rollback)"
	descRestore       = internalUpdate + "the model's workflow puts this version back into production during a rollback (use the model's rollback)"
	descStage         = `This version's stage, e.g. "PendingApproval"`
	descDescribe      = "Everything about this version: request, stage history, manifest, validation report, decisions, refused messages"
	descPromotion     = internalQuery + "what the model's workflow checks before it promotes this version"
)

// Handler descriptions of the model's workflow.
var (
	descRegister       = "Register a new version and wait for the answer (update-with-start): RegisterRequest JSON (README). With more than 10 messages at once on one model Temporal refuses updates for a moment; the register signal queues instead (what `starter register` sends)"
	descRegisterSignal = "Register a new version without waiting for an update slot (a hot model): RegisterRequest JSON; ask the registration query with its idempotencyKey for the outcome"
	descRegistration   = `What became of the registration under an idempotency key: {"state":"unknown|pending|registered|failed","result":…,"error":…}`
	descRollback       = `Roll back to an archived version: {"schemaVersion":1,"to":N,"actor":"who","reason":"why"} (to 0: the last archived)`
	descRedeliver      = `Deliver the last deployment event again: {"schemaVersion":1}`
	descPromote        = internalUpdate + "a version's workflow asks for its promotion once it is approved; approve the version instead"
	descProduction     = "The version in production and its workflow ID"
	descModelDescribe  = "The model's state: last minted version, production, archived versions, production changes, the last deployment event"
	descSwitch         = internalQuery + "the production switch in progress, checked by version workflows"
	descUnknownVersion = "NOT A SIGNAL OF THIS WORKFLOW: a signal under this name was received and refused (this workflow takes the signals approve and reject); see describe → rejectedMessages"
	descUnknownModel   = "NOT A SIGNAL OF THIS WORKFLOW: a signal under this name was received and refused (the model's workflow takes no signals: its messages are the updates register, rollback and redeliver)"
	descUnknownModelV3 = "NOT A SIGNAL OF THIS WORKFLOW: a signal under this name was received and refused (the model's workflow takes only the signal register; its other messages are the updates register, rollback and redeliver)"
)

// decisionDescription describes the approve or reject update (signal: its signal); runs from before
// approval policies refuse a decision that names a digest, so theirs does not ask for one.
func (w *versionWF) decisionDescription(kind string, signal bool) string {
	d := descApproveUpdate
	switch {
	case kind == UpdateReject && signal:
		d = descRejectSignal
	case kind == UpdateReject:
		d = descRejectUpdate
	case signal:
		d = descApproveSignal
	}
	if !w.policyV1 {
		d = strings.Replace(d, decisionShape, `{"approver":"who","comment":"why"}`, 1)
	}
	return d
}

// maxDetailsBytes bounds what a workflow puts in its user metadata: the UI renders it on every visit.
const maxDetailsBytes = 4096

// ModelStartMetadata is the static summary and details of a model's workflow, given by whoever starts it
// (the starter, or a version's workflow that starts it again for its promotion).
func ModelStartMetadata(model string) (summary, details string) {
	summary = fmt.Sprintf("%s · model registry: mints versions, owns the production pointer", model)
	wl := fmt.Sprintf(`temporal workflow list --query 'ModelName="%s" AND ModelStage="PendingApproval"'`, model)
	details = fmt.Sprintf(`The registry's workflow of model **%[1]s**: it mints version numbers, owns the production pointer and serializes promotions and rollbacks. Its current details say what is in production now.

- Register a version: `+"`starter register --model %[1]s --dir DIR`"+` (update `+"`register`"+`)
- Roll back: `+"`starter rollback --model %[1]s`"+` (update `+"`rollback`"+`)
- Send the last deployment event again: `+"`starter redeliver --model %[1]s`"+` (update `+"`redeliver`"+`)
- Versions waiting for a human: `+"`%[2]s`"+`

`+"`system:promote`"+` and `+"`internal:switch`"+` are internal: only the registry's own workflows use them.`, model, wl)
	return summary, details
}

// versionStartMetadata is the static summary and details of a version's workflow, given by the model's
// workflow when it starts the child.
func versionStartMetadata(in VersionInput) (summary, details string) {
	r := in.Request
	summary = fmt.Sprintf("%s v%d · model version lifecycle", in.Model, in.Version)
	if r.RegisteredBy != "" {
		summary += " · registered by " + code(r.RegisteredBy, 64)
	}
	var b strings.Builder
	wr(&b, "Lifecycle of **%s v%d**: Registered → Validating → PendingApproval → Approved → Production → Archived, or Rejected / Failed. Its current details say where it is and what a human can do.\n\n", in.Model, in.Version)
	if r.RegisteredBy != "" {
		wr(&b, "- Registered by: %s\n", code(r.RegisteredBy, 200))
	}
	if r.SourceRun != "" {
		wr(&b, "- Source run: %s\n", code(withoutCredentials(r.SourceRun), 300))
	}
	switch s := r.Source; {
	case s.URI != "":
		wr(&b, "- Artifacts: imported from %s\n", code(withoutCredentials(s.URI), 300))
	case s.Listing != nil:
		wr(&b, "- Artifacts: %d files, uploaded with a listing\n", s.Listing.Count)
	default:
		wr(&b, "- Artifacts: %d files, uploaded to the registry's store\n", len(s.Files))
	}
	if m := metricsList(r.Metrics, 5); m != "" {
		wr(&b, "- Metrics: %s\n", m)
	}
	wr(&b, "\nEverything about it: `starter status --model %s --version %d`, or the `describe` query.", in.Model, in.Version)
	return summary, bounded(b.String())
}

// refreshDetails sets the version's current details from its state; called on every change a human
// would want to see (stage, step, decisions, verdicts, refused messages).
func (w *versionWF) refreshDetails(ctx workflow.Context) {
	if w.draining {
		// A burst of signals is read in one go (a storm can bring thousands): one refresh after it.
		w.detailsStale = true
		return
	}
	workflow.SetCurrentDetails(ctx, w.currentDetails())
}

func (w *versionWF) currentDetails() string {
	st := w.st
	var b strings.Builder
	b.WriteString(fmt.Sprintf("%s v%d · %s", w.in.Model, w.in.Version, st.Stage))
	if m := w.metricHeadline(); m != "" {
		b.WriteString(" · " + m)
	}
	b.WriteString("\n\n")
	last := StageChange{}
	if n := len(st.History); n > 0 {
		last = st.History[n-1]
	}
	since := func() string {
		if last.At.IsZero() {
			return ""
		}
		return " since " + stamp(last.At)
	}
	at := func() string {
		if last.At.IsZero() {
			return ""
		}
		return " at " + stamp(last.At)
	}
	switch st.Stage {
	case StageRegistered:
		b.WriteString("Storing the artifacts: every file is copied into the content-addressed store and the manifest is written.\n")
	case StageValidating:
		b.WriteString("Validating: integrity of every file, required files, metric thresholds, the comparison with the production version")
		if len(st.Gates) > 0 {
			b.WriteString(", then the external validators:\n\n")
			for i, g := range st.Gates {
				if i == 10 {
					wr(&b, "- … and %d more\n", len(st.Gates)-i)
					break
				}
				wr(&b, "- %s: %s", code(g.Name, 64), g.Status)
				if g.Status == GateRequested {
					wr(&b, ", verdict due by %s", stamp(g.Deadline))
				} else if g.Detail != "" {
					wr(&b, " (%s)", code(g.Detail, 200))
				}
				b.WriteString("\n")
			}
			b.WriteString("\nA validator reports with the `verdict` update (`starter verdict`), with the token of its validation request.\n")
		} else {
			b.WriteString(".\n")
		}
	case StagePendingApproval:
		w.pendingDetails(&b)
	case StageApproved:
		by := codeList(w.approvers(), 10)
		if by == "" {
			by = code(last.Actor, 64)
		}
		wr(&b, "Approved by %s%s; the model's workflow is asked to switch production to it.\n", by, since())
	case StageProduction:
		wr(&b, "In production%s (%s). Roll back to the previous version: `starter rollback --model %s`.\n", since(), code(last.Reason, 200), w.in.Model)
	case StageArchived:
		wr(&b, "Archived%s (%s). Put it back into production: `starter rollback --model %s --to %d`.\n", since(), code(last.Reason, 200), w.in.Model, w.in.Version)
	case StageRejected:
		wr(&b, "**Rejected** by %s%s: %s\n", code(last.Actor, 64), at(), code(last.Reason, 1024))
	case StageFailed:
		reason := st.FailureReason
		if reason == "" {
			reason = last.Reason
		}
		wr(&b, "**Failed**%s: %s\n", at(), code(reason, 1024))
	}
	if st.Step != "" && st.Stage != StageRejected && st.Stage != StageFailed {
		b.WriteString("\nNow: " + code(st.Step, 300))
		if st.StepSince != nil {
			b.WriteString(" (since " + stamp(*st.StepSince) + ")")
		}
		b.WriteString("\n")
	}
	var facts []string
	if rep := st.Validation; rep != nil && st.Stage != StageValidating {
		verdict := "passed"
		if !rep.Passed {
			verdict = "failed"
		}
		f := fmt.Sprintf("Validation %s (%s)", verdict, plural(len(rep.Checks), "check"))
		if fails := rep.Failures(); len(fails) > 0 {
			f += ": " + code(strings.Join(fails, "; "), 600)
		}
		facts = append(facts, f+".")
	}
	if st.ManifestDigest != "" {
		facts = append(facts, fmt.Sprintf("Manifest `%s` (%s, %d bytes).", st.ManifestDigest, plural(st.Files, "file"), st.TotalBytes))
	}
	if len(facts) > 0 {
		b.WriteString("\n" + strings.Join(facts, " ") + "\n")
	}
	// Runs from before versionV1 keep every refused message and no count.
	if total := max(st.RejectedTotal, len(st.Rejected)); total > 0 {
		wr(&b, "\nRefused messages: %d", total)
		if n := len(st.Rejected); n > 0 {
			r := st.Rejected[n-1]
			wr(&b, "; the last, %s by %s: %s", code(r.Name, 64), r.Via, code(r.Reason, 300))
		}
		b.WriteString(" (`describe` lists them).\n")
	}
	return bounded(b.String())
}

// pendingDetails says what a version waiting for approval needs, who may give it, and how.
func (w *versionWF) pendingDetails(b *strings.Builder) {
	p := w.policy()
	have := w.approvers()
	q := w.quorum()
	wr(b, "**Waiting for approval**: %d of the %s the policy requires", len(have), plural(q, "approval"))
	if len(have) > 0 {
		wr(b, " (%s)", codeList(have, 10))
	}
	b.WriteString(".")
	if w.policyV1 {
		registrant := w.in.Request.RegisteredBy
		selfBarred := registrant != "" && !p.AllowSelfApproval
		decided := func(a string) bool {
			return slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, a) }) ||
				selfBarred && strings.EqualFold(a, registrant)
		}
		if len(p.AllowedApprovers) > 0 {
			var may []string
			for _, a := range p.AllowedApprovers {
				if !decided(a) {
					may = append(may, a)
				}
			}
			wr(b, " May still approve: %s; any of the allowed approvers (%s) may reject.", orNobody(codeList(may, 20)), codeList(p.AllowedApprovers, 20))
		} else {
			b.WriteString(" Anyone with access to the Temporal namespace may decide")
			var not []string
			if selfBarred {
				not = append(not, code(registrant, 64)+" (who registered it) may not approve it")
			}
			if len(have) > 0 {
				not = append(not, "those who approved may not approve again")
			}
			if len(not) > 0 {
				b.WriteString("; " + strings.Join(not, ", "))
			}
			b.WriteString(".")
		}
		b.WriteString(" One reject ends it Rejected.")
	}
	if d := w.st.Deadline; d != nil {
		wr(b, " Deadline %s: undecided then, it is Rejected as expired.", stamp(*d))
	}
	id := VersionWorkflowID(w.in.Model, w.in.Version)
	input := `{"approver":"YOUR-NAME"}`
	if w.policyV1 {
		input = fmt.Sprintf(`{"approver":"YOUR-NAME","digest":"%s"}`, w.st.ManifestDigest)
	}
	wr(b, "\n\nApprove with the Temporal CLI (your name as approver; the Web UI's Update `approve` takes the same JSON):\n\n```\ntemporal workflow update execute --workflow-id %s --name approve --input '%s'\n```\n\n", id, input)
	digestFlag := ""
	if w.policyV1 {
		digestFlag = " --digest " + w.st.ManifestDigest
	}
	wr(b, "or with the registry's CLI (the approver is your user name unless you give `--approver`):\n\n```\nstarter approve --model %s --version %d%s\n```\n\n", w.in.Model, w.in.Version, digestFlag)
	wr(b, "Reject the same way (`--name reject`, `starter reject`); add a comment (`\"comment\"`, `--comment`) to say why. Review it first: `starter status --model %s --version %d`.\n", w.in.Model, w.in.Version)
}

// metricHeadline is the one metric a human compares first: the policy's champion metric against the
// production version it was validated against, else the first metrics by name.
func (w *versionWF) metricHeadline() string {
	metrics := w.in.Request.Metrics
	rep := w.st.Validation
	if rep == nil || rep.Policy.ChampionMetric == "" {
		return metricsList(metrics, 3)
	}
	name := rep.Policy.ChampionMetric
	v, ok := metrics[name]
	if !ok {
		return plain(name, 60) + " not reported"
	}
	s := plain(name, 60) + " " + num(v)
	switch {
	case rep.ChampionVersion == 0:
		return s + " (nothing in production to compare with)"
	case w.st.Stage == StageProduction || w.st.Stage == StageArchived:
		// Production has moved on since the comparison; it is history now.
		if rep.ChampionValue != nil {
			return fmt.Sprintf("%s (v%d had %s when this one was validated)", s, rep.ChampionVersion, num(*rep.ChampionValue))
		}
		return fmt.Sprintf("%s (compared with v%d when it was validated)", s, rep.ChampionVersion)
	case rep.ChampionValue != nil:
		return fmt.Sprintf("%s vs %s in production (v%d)", s, num(*rep.ChampionValue), rep.ChampionVersion)
	}
	return fmt.Sprintf("%s vs production v%d", s, rep.ChampionVersion)
}

// refreshDetails sets the model's current details; called whenever production, a switch, the queue of
// switches, the delivery of the last event or the minted versions change.
func (m *modelWF) refreshDetails(ctx workflow.Context) {
	workflow.SetCurrentDetails(ctx, m.currentDetails())
}

func (m *modelWF) currentDetails() string {
	st := m.st
	model := m.in.Model
	var b strings.Builder
	b.WriteString(model)
	if st.Production > 0 {
		wr(&b, " · production v%d (seq %d)", st.Production, st.Seq)
	} else {
		b.WriteString(" · nothing in production")
	}
	if n := len(m.queued); n > 0 {
		wr(&b, " · %d waiting to switch", n)
	}
	if d := st.Delivery; d != nil {
		wr(&b, " · last delivery %s", d.Status)
	}
	b.WriteString("\n\n")
	if m.v >= modelV1 && !m.loaded {
		b.WriteString("Rebuilding its state from the catalog; it answers once that is done.\n")
		return b.String()
	}
	if n := len(st.History); n > 0 && st.History[n-1].Version == st.Production {
		c := st.History[n-1]
		wr(&b, "- Production: **v%d** since %s, %s", c.Version, stamp(c.At), c.Kind)
		if c.Previous > 0 {
			wr(&b, " replacing v%d", c.Previous)
		}
		if c.Actor != "" {
			wr(&b, " by %s", code(c.Actor, 64))
		}
		b.WriteString("\n")
	} else if st.Production > 0 {
		wr(&b, "- Production: **v%d**\n", st.Production)
	}
	last := st.LastVersion
	if m.v < modelV1 {
		last = st.NextVersion - 1
	}
	if last > 0 {
		wr(&b, "- Versions: v1 to v%d\n", last)
	}
	if s := m.switching; s != nil {
		wr(&b, "- Switching now: %s v%d", s.Kind, s.Version)
		if s.Prior > 0 {
			wr(&b, ", archiving v%d", s.Prior)
		}
		b.WriteString("\n")
	}
	if len(m.queued) > 0 {
		var names []string
		for i, q := range m.queued {
			if i == 10 {
				names = append(names, fmt.Sprintf("%d more", len(m.queued)-i))
				break
			}
			names = append(names, q.what)
		}
		wr(&b, "- Waiting for the switch in progress: %s\n", strings.Join(names, ", "))
	}
	if n := len(m.pending); n > 0 {
		wr(&b, "- Registrations in progress: %d\n", n)
	}
	if n := len(st.Archived); n > 0 {
		recent := slices.Clone(st.Archived[max(0, n-5):])
		slices.Reverse(recent)
		var vs []string
		for _, v := range recent {
			vs = append(vs, "v"+strconv.Itoa(v))
		}
		wr(&b, "- Archived (latest first): %s", strings.Join(vs, ", "))
		if n > 5 {
			wr(&b, " and %d more", n-5)
		}
		b.WriteString("\n")
	}
	if d := st.Delivery; d != nil {
		wr(&b, "- Last deployment event: `%s` (%s of v%d), %s", clip([]byte(d.Event.EventID), 200), d.Event.Kind, d.Event.Version, d.Status)
		if d.At != nil {
			wr(&b, " at %s", stamp(*d.At))
		}
		if d.Error != "" {
			wr(&b, ": %s", code(d.Error, 400))
		}
		if d.Status == DeliveryRefused || d.Status == DeliveryFailed {
			wr(&b, ". Send it again: `starter redeliver --model %s`", model)
		}
		b.WriteString("\n")
	}
	if st.CancelRequests > 0 {
		wr(&b, "- Cancel requests ignored: %d (the model's workflow keeps running; terminate it to stop it)\n", st.CancelRequests)
	}
	wr(&b, "\nVersions waiting for a human: `temporal workflow list --query 'ModelName=\"%s\" AND ModelStage=\"PendingApproval\"'`\n", model)
	return bounded(b.String())
}

// queuedSwitch is a promotion or rollback waiting for the model's lock, shown in the current details.
type queuedSwitch struct {
	id   int
	what string
}

// waitForSwitch shows what waits for the lock while it waits; the returned func takes it off the list.
func (m *modelWF) waitForSwitch(ctx workflow.Context, what string) func() {
	m.queueSeq++
	id := m.queueSeq
	m.queued = append(m.queued, queuedSwitch{id: id, what: what})
	m.refreshDetails(ctx)
	return func() {
		m.queued = slices.DeleteFunc(m.queued, func(q queuedSwitch) bool { return q.id == id })
		m.refreshDetails(ctx)
	}
}

// metricsList is "name value, …" for the first n metrics by name.
func metricsList(metrics map[string]float64, n int) string {
	if len(metrics) == 0 {
		return ""
	}
	//workflowcheck:ignore
	names := slices.Sorted(maps.Keys(metrics))
	var parts []string
	for i, k := range names {
		if i == n {
			parts = append(parts, fmt.Sprintf("%d more", len(names)-n))
			break
		}
		parts = append(parts, plain(k, 60)+" "+num(metrics[k]))
	}
	return strings.Join(parts, ", ")
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func orNobody(s string) string {
	if s == "" {
		return "nobody"
	}
	return s
}

// code shows text that came from outside (names, reasons) as an inline code span, so the UI's Markdown
// renders it literally: on one line, without backticks, at most n bytes.
func code(s string, n int) string {
	if s == "" {
		return "`-`"
	}
	return "`" + strings.ReplaceAll(oneLine(s, n), "`", "'") + "`"
}

func codeList(names []string, n int) string {
	var parts []string
	for i, s := range names {
		if i == n {
			parts = append(parts, fmt.Sprintf("%d more", len(names)-n))
			break
		}
		parts = append(parts, code(s, 64))
	}
	return strings.Join(parts, ", ")
}

// plain is outside text inside Markdown prose (a metric name in the headline): on one line, at most n
// bytes, with the characters that would make it a link, markup or HTML escaped.
func plain(s string, n int) string {
	var b strings.Builder
	for _, r := range oneLine(s, n) {
		if strings.ContainsRune("\\`*_<>[]|#~", r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// oneLine replaces control characters (newlines included) with spaces and cuts s to at most n bytes on
// a character boundary.
func oneLine(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// bounded cuts details to maxDetailsBytes on a character boundary.
func bounded(s string) string {
	if len(s) <= maxDetailsBytes {
		return s
	}
	cut := maxDetailsBytes - len("\n…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "\n…"
}

// withoutCredentials drops a URL's user info, query and fragment, where tokens and passwords go.
func withoutCredentials(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		if strings.ContainsAny(s, "@?#") {
			return "(not shown: it may carry credentials)"
		}
		return s
	}
	u.User, u.RawQuery, u.Fragment, u.RawFragment, u.ForceQuery = nil, "", "", "", false
	return u.String()
}

// wr is fmt.Fprintf into a strings.Builder, which workflowcheck cannot tell from a write to any io.Writer.
func wr(b *strings.Builder, format string, args ...any) { b.WriteString(fmt.Sprintf(format, args...)) }
