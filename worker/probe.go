package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// probeTimeout bounds a probe well inside the health check's own timeout in docker-compose.yml, so a
// hung endpoint is reported by the probe rather than killed by Docker without a message.
const probeTimeout = 3 * time.Second

// probe is `worker probe URL`, the container's health check: the worker image is distroless, with no
// shell or curl, so the worker binary asks its own HTTP endpoint. It returns the exit status: 0 for a
// 2xx answer, 1 for anything else. A redirect counts as a failure, as it would for curl --fail without
// --location: a health endpoint that redirects is misconfigured.
func probe(url string, timeout time.Duration, stderr io.Writer) int {
	c := &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintf(stderr, "probe: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	// Drained (to a bound) so the connection closes cleanly instead of being reset mid-body.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(stderr, "probe: %s: %s\n", url, resp.Status)
		return 1
	}
	return 0
}

// runProbe is what main calls for `worker probe URL`.
func runProbe(url string) { os.Exit(probe(url, probeTimeout, os.Stderr)) }
