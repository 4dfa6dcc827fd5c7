package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress draws one updating line on a terminal and stays silent otherwise, so logs of training jobs
// are not filled with carriage returns.
type progress struct {
	verb  string // what is being done: uploading (the default), hashing, downloading
	w     io.Writer
	tty   bool
	total int64
	last  time.Time
	start time.Time
}

func newProgress(w io.Writer, total int64) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			tty = st.Mode()&os.ModeCharDevice != 0
		}
	}
	return &progress{w: w, tty: tty, total: total, start: time.Now()}
}

func (p *progress) update(name string, done int64) {
	if !p.tty || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	pct := 100.0
	if p.total > 0 {
		pct = float64(done) * 100 / float64(p.total)
	}
	rate := float64(done) / time.Since(p.start).Seconds() / (1 << 20)
	verb := p.verb
	if verb == "" {
		verb = "uploading"
	}
	fmt.Fprintf(p.w, "\r\033[K%s %s  %s / %s  %5.1f%%  %.0f MiB/s", verb, name, human(done), human(p.total), pct, rate)
}

func (p *progress) finish() {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
