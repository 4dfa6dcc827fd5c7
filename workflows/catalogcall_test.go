package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A catalog call without a schedule-to-close timeout is retried as long as an activity would be: as a
// local activity the SDK would otherwise cut it off at its start-to-close (10 s), and a catalog outage
// of a minute would fail a model's workflow.
func TestLocalCatalogCallsOutlastAnOutage(t *testing.T) {
	lo := localOptions(catalogActivityOptions)
	require.Equal(t, catalogActivityOptions.StartToCloseTimeout, lo.StartToCloseTimeout)
	require.GreaterOrEqual(t, lo.ScheduleToCloseTimeout, 24*time.Hour)
	require.Equal(t, catalogActivityOptions.RetryPolicy, lo.RetryPolicy)
	// Minting keeps its own bound: ten minutes, then the registration fails back to its caller.
	require.Equal(t, 10*time.Minute, localOptions(mintActivityOptions).ScheduleToCloseTimeout)
}
