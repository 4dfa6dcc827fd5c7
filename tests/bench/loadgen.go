package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// loadResult is what a load run measured.
type loadResult struct {
	Requests int
	Rate     float64 // requests per second
	P99      time.Duration
}

// runLoad sends GET requests to urls, picked at random, from conns goroutines over as many keep-alive
// connections for d, and measures each request from sending it to reading its last byte. Any answer
// but 200 fails the run: a fast error is not a fast read.
//
// It is in this process rather than wrk because wrk is not on every machine the benchmark runs on. It
// costs more CPU per request than wrk, and the same whichever server it loads: where client and server
// share a few cores, both rates are lower than wrk's and their ratio is closer to 1 (on two cores
// internal/api's BenchmarkProductionGET, with wrk, measures the API at 4 to 6 times a raw lookup; the
// read suite, with this, at 2 to 3 times).
func runLoad(urls []string, conns int, d time.Duration) (loadResult, error) {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		lat   = make([]time.Duration, 0, 1<<16)
		first error
	)
	start := time.Now()
	deadline := start.Add(d)
	for g := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(7, uint64(g)))
			mine := make([]time.Duration, 0, 1<<12)
			var err error
			for time.Now().Before(deadline) {
				u := urls[rnd.IntN(len(urls))]
				t0 := time.Now()
				var resp *http.Response
				if resp, err = client.Get(u); err != nil {
					break
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("GET %s: %s", u, resp.Status)
				}
				if err != nil {
					break
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			if err != nil && first == nil {
				first = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		return loadResult{}, first
	}
	if len(lat) == 0 {
		return loadResult{}, fmt.Errorf("no request completed in %s", d)
	}
	return loadResult{Requests: len(lat), Rate: float64(len(lat)) / elapsed.Seconds(), P99: percentile(lat, 0.99)}, nil
}

// percentile is the q-quantile of ds (nearest rank); it sorts ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// timed runs f one call after another for d (at least once) and returns its rate and the latencies.
func timed(d time.Duration, f func() error) (rate float64, lat []time.Duration, err error) {
	start := time.Now()
	for len(lat) == 0 || time.Since(start) < d {
		t0 := time.Now()
		if err := f(); err != nil {
			return 0, nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	return float64(len(lat)) / time.Since(start).Seconds(), lat, nil
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
