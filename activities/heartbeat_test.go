package activities

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
)

// Progress is reported at most once a second and not in an activity's first second: work that is over
// quickly makes no call to the server, and long work still shows it is alive.
func TestHeartbeatSkipsQuickWork(t *testing.T) {
	work := func(ctx context.Context, d time.Duration) error {
		progress := heartbeat(ctx)
		for end := time.Now().Add(d); time.Now().Before(end); {
			progress(1)
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	}
	for _, tc := range []struct {
		run         time.Duration
		least, most int64
	}{
		{100 * time.Millisecond, 0, 0},
		{2500 * time.Millisecond, 1, 3},
	} {
		var s testsuite.WorkflowTestSuite
		env := s.NewTestActivityEnvironment()
		var beats atomic.Int64
		env.SetOnActivityHeartbeatListener(func(*activity.Info, converter.EncodedValues) { beats.Add(1) })
		env.RegisterActivity(work)
		if _, err := env.ExecuteActivity(work, tc.run); err != nil {
			t.Fatal(err)
		}
		if n := beats.Load(); n < tc.least || n > tc.most {
			t.Errorf("%s of work with progress every 5 ms sent %d heartbeats, want %d to %d", tc.run, n, tc.least, tc.most)
		}
	}
}
