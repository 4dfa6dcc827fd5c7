package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkWorkerWatchers measures what 1,000 open long polls on GET …/production cost the worker
// process (resident memory, CPU) over 10 s in which nothing changes, against the same 10 s before they
// were opened, in the same run. The watchers are clients in the benchmark's process, not the worker's.
//
//	go test ./tests -run '^$' -bench WorkerWatchers -benchtime 1x
func BenchmarkWorkerWatchers(b *testing.B) {
	const watchers, models = 1000, 100
	h := newHarnessWith(b, harnessOptions{api: true})
	h.waitAPI()
	for i := range models {
		h.mustAPI(200, "PUT", fmt.Sprintf("/v1/models/watched-%d/policy", i), "ops", map[string]any{}, nil)
	}
	pid := h.worker.Process.Pid
	idle := func() (rssMiB, cpuPct float64) {
		cpu0 := procCPU(b, pid)
		start := time.Now()
		time.Sleep(10 * time.Second)
		return procRSSMiB(b, pid), 100 * (procCPU(b, pid) - cpu0).Seconds() / time.Since(start).Seconds()
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: watchers, MaxConnsPerHost: watchers}}
	for b.Loop() {
		baseRSS, baseCPU := idle()
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i := range watchers {
			m := fmt.Sprintf("watched-%d", i%models)
			_, hdr, _ := h.apiCall("GET", "/v1/models/"+m+"/production", "", nil)
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, "GET", h.apiURL+"/v1/models/"+m+"/production?wait=60s", nil)
				req.Header.Set("If-None-Match", hdr.Get("ETag"))
				if resp, err := client.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
		}
		// Let them all arrive before measuring.
		time.Sleep(3 * time.Second)
		rss, cpu := idle()
		stop()
		wg.Wait()
		b.ReportMetric(baseRSS, "idle-rss-MiB")
		b.ReportMetric(rss, "watch-rss-MiB")
		b.ReportMetric(baseCPU, "idle-cpu-%")
		b.ReportMetric(cpu, "watch-cpu-%")
	}
}

func procRSSMiB(b *testing.B, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// procCPU is the process's user and system time (clock ticks of 10 ms, the kernel's USER_HZ).
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(raw)[strings.LastIndexByte(string(raw), ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
