// Command bench measures the registry against the limits of the machine it runs on: each figure is
// measured for the registry and for a baseline that does the same work without the registry (the
// fastest upload configuration found in the same run, a no-op workflow with the same activities and
// updates, a primary-key lookup), alternated over several rounds, and reported as their ratio.
//
//	go run ./tests/bench                      # every suite, 3 rounds, 1 GiB, 100 lifecycles, 5,000 parked (about 80 minutes)
//	go run ./tests/bench -short               # small sizes, 1 round (what the test command runs)
//	go run ./tests/bench -suites ingest -rounds 5 -json bench.json
//	go run ./tests/bench -suites pending -pending 500   # 500 lifecycles parked, then approved
//
// It starts the servers it needs the way the tests do (internal/testenv: PostgreSQL, versitygw and a
// Temporal dev server on free loopback ports) and stops them before it exits. docs/benchmarks.md shows
// a full run and how to read it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/modelreg/modelreg/internal/testenv"
)

// Options choose what a run measures and how big.
type Options struct {
	Short  bool
	Rounds int
	Suites []string
	// IngestBytes is the size of the ingest suite's artifact, as one file and as IngestFiles files.
	IngestBytes int64
	IngestFiles int
	// Lifecycles is the number of registrations the orchestration suite takes to Production, from
	// Clients concurrent clients.
	Lifecycles int
	Clients    int
	// Pending is the number of lifecycles the pending suite parks in PendingApproval on one worker
	// before it approves them all, in PendingRounds rounds (it ignores Rounds: one round of 5,000 takes
	// tens of minutes a side).
	Pending       int
	PendingRounds int
	// Verbose logs what each step does to stderr.
	Verbose bool
}

// allSuites in the order they run (and are reported).
var allSuites = []string{"ingest", "orchestration", "read", "scale", "pending"}

// suites maps a suite's name to its function; each adds its figures to the report.
var suites = map[string]func(*Env, *Report){}

func defaults(short bool) Options {
	if short {
		// 12 parked, not more: an approval takes about 1.3 s to Production on each side even unloaded,
		// so with 4 clients 24 made the pending suite 33 s of TestBenchShort's minute.
		return Options{Short: true, Rounds: 1, Suites: allSuites, IngestBytes: 24 << 20, IngestFiles: 12, Lifecycles: 12, Clients: 4,
			Pending: 12, PendingRounds: 1}
	}
	// 100 lifecycles per orchestration figure keep a full run near 20 minutes on 2 cores (one model
	// promotes about one version a second, and each figure runs baseline and registry each round);
	// -lifecycles 500 is the size, about an hour. 5,000 parked is the size too: 25 to
	// 40 minutes a side on the same machine, so the pending suite runs one round.
	return Options{Rounds: 3, Suites: allSuites, IngestBytes: 1 << 30, IngestFiles: 200, Lifecycles: 100, Clients: 16,
		Pending: 5000, PendingRounds: 1}
}

// roundsOf is how many rounds a suite runs, so many registry values each of its figures has.
func (o Options) roundsOf(suite string) int {
	if suite == "pending" {
		return o.PendingRounds
	}
	return o.Rounds
}

func main() {
	short := flag.Bool("short", false, "small sizes and one round (a check that every suite still runs, not a measurement)")
	rounds := flag.Int("rounds", 0, "rounds of baseline and registry, alternated (default 3, 1 with -short)")
	suiteList := flag.String("suites", strings.Join(allSuites, ","), "suites to run, comma-separated: "+strings.Join(allSuites, ", "))
	size := flag.Int64("ingest-mib", 0, "ingest suite: artifact size in MiB (default 1024, 24 with -short)")
	files := flag.Int("ingest-files", 0, "ingest suite: the number of files the artifact is split into for the many-files figure (default 200)")
	lifecycles := flag.Int("lifecycles", 0, "orchestration suite: registrations taken to Production per figure (default 100)")
	clients := flag.Int("clients", 0, "orchestration and pending suites: concurrent clients (default 16)")
	pending := flag.Int("pending", 0, "pending suite: lifecycles parked in PendingApproval on one worker, then approved (default 5000, 12 with -short)")
	pendingRounds := flag.Int("pending-rounds", 0, "pending suite: rounds, whatever -rounds says (default 1)")
	jsonPath := flag.String("json", "bench.json", "write the report as JSON to this file (empty: do not)")
	verbose := flag.Bool("v", false, "log each step to stderr")
	plotDir := flag.String("plot-dir", "", "draw the report's plots (SVG) into this directory")
	mdPath := flag.String("md", "", "also write the table as Markdown to this file")
	plotFrom := flag.String("plot", "", "draw the plots of a report written earlier with -json, into -plot-dir, and exit")
	flag.Parse()
	if *plotFrom != "" {
		if *plotDir == "" {
			*plotDir = "."
		}
		files, err := plotFromFile(*plotFrom, *plotDir, *mdPath)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		fmt.Println(strings.Join(files, "\n"))
		return
	}

	opts := defaults(*short)
	if *rounds > 0 {
		opts.Rounds = *rounds
	}
	if *size > 0 {
		opts.IngestBytes = *size << 20
	}
	if *files > 0 {
		opts.IngestFiles = *files
	}
	if *lifecycles > 0 {
		opts.Lifecycles = *lifecycles
	}
	if *clients > 0 {
		opts.Clients = *clients
	}
	if *pending > 0 {
		opts.Pending = *pending
	}
	if *pendingRounds > 0 {
		opts.PendingRounds = *pendingRounds
	}
	opts.Verbose = *verbose
	opts.Suites = nil
	for _, s := range strings.Split(*suiteList, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if _, ok := suites[s]; !ok {
			fmt.Fprintf(os.Stderr, "bench: unknown suite %q (want some of %s)\n", s, strings.Join(allSuites, ", "))
			os.Exit(2)
		}
		opts.Suites = append(opts.Suites, s)
	}

	r := newRunner(opts.Verbose)
	// Ctrl-C stops the servers instead of leaving them running.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		fmt.Fprintln(os.Stderr, "bench: interrupted; stopping the servers")
		r.cleanup()
		testenv.Shutdown()
		os.Exit(130)
	}()
	rep, err := r.run(func() *Report { return Run(r, opts) })
	r.cleanup()
	testenv.Shutdown()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	rep.WriteTable(os.Stdout)
	if *jsonPath != "" {
		if err := rep.WriteJSON(*jsonPath); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		fmt.Printf("\nreport written to %s\n", *jsonPath)
	}
	if *mdPath != "" {
		var b strings.Builder
		rep.WriteMarkdown(&b)
		if err := os.WriteFile(*mdPath, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if *plotDir != "" {
		files, err := writePlots(rep, *plotDir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		fmt.Printf("plots: %s\n", strings.Join(files, ", "))
	}
}

// Run starts the servers and the registry on t, runs the suites of opts and returns their report.
func Run(t testenv.TB, opts Options) *Report {
	start := time.Now()
	env := newEnv(t, opts)
	rep := &Report{Started: start.UTC(), Options: opts, Machine: machine(), Settings: settings()}
	for _, s := range allSuites {
		if !contains(opts.Suites, s) {
			continue
		}
		t0 := time.Now()
		env.logf("== suite %s", s)
		suites[s](env, rep)
		env.logf("== suite %s took %s", s, time.Since(t0).Round(time.Millisecond))
	}
	rep.WallSeconds = time.Since(start).Seconds()
	return rep
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runner is the testenv.TB of the command: cleanups run before it exits, and a fatal error ends the
// run (by panicking up to run) instead of the process, so that the servers are stopped.
type runner struct {
	verbose  bool
	cleanups []func()
	tmp      string
}

type fatal struct{ msg string }

func newRunner(verbose bool) *runner {
	dir, err := os.MkdirTemp("", "modelreg-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	r := &runner{verbose: verbose, tmp: dir}
	r.Cleanup(func() { os.RemoveAll(dir) })
	return r
}

func (r *runner) run(f func() *Report) (rep *Report, err error) {
	defer func() {
		if v := recover(); v != nil {
			if f, ok := v.(fatal); ok {
				err = errors.New(f.msg)
				return
			}
			panic(v)
		}
	}()
	return f(), nil
}

func (r *runner) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
	r.cleanups = nil
}

func (r *runner) Helper()                   {}
func (r *runner) Fatal(args ...any)         { panic(fatal{strings.TrimSuffix(fmt.Sprintln(args...), "\n")}) }
func (r *runner) Fatalf(f string, a ...any) { panic(fatal{fmt.Sprintf(f, a...)}) }

// Skipf is fatal here: every server the benchmark needs is installed by scripts/install-tools.sh.
func (r *runner) Skipf(f string, a ...any) { panic(fatal{fmt.Sprintf(f, a...)}) }
func (r *runner) Logf(f string, a ...any) {
	if r.verbose {
		fmt.Fprintf(os.Stderr, f+"\n", a...)
	}
}
func (r *runner) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *runner) TempDir() string {
	d, err := os.MkdirTemp(r.tmp, "t")
	if err != nil {
		r.Fatal(err)
	}
	return d
}
