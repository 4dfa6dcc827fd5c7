package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/modelreg/modelreg/internal/catalog"
)

func TestParseThreshold(t *testing.T) {
	good := []struct {
		in   string
		want catalog.Threshold
	}{
		{"accuracy>=0.9", catalog.Threshold{Metric: "accuracy", Op: ">=", Value: 0.9}},
		{"accuracy>0.9", catalog.Threshold{Metric: "accuracy", Op: ">", Value: 0.9}},
		{"loss<=0.25", catalog.Threshold{Metric: "loss", Op: "<=", Value: 0.25}},
		{"loss<1", catalog.Threshold{Metric: "loss", Op: "<", Value: 1}},
		{"  auc  >=  0.95  ", catalog.Threshold{Metric: "auc", Op: ">=", Value: 0.95}},
		{"eval/f1_macro>=.5", catalog.Threshold{Metric: "eval/f1_macro", Op: ">=", Value: 0.5}},
		{"val:loss-v2.1<=1e-3", catalog.Threshold{Metric: "val:loss-v2.1", Op: "<=", Value: 1e-3}},
		{"delta>=-0.5", catalog.Threshold{Metric: "delta", Op: ">=", Value: -0.5}},
		{"delta>=+2E2", catalog.Threshold{Metric: "delta", Op: ">=", Value: 200}},
	}
	for _, c := range good {
		got, err := parseThreshold(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseThreshold(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}

	bad := []string{
		"",
		"accuracy",
		"accuracy 0.9",
		"accuracy=0.9",
		"accuracy==0.9",
		"accuracy=>0.9",
		"accuracy>>0.9",
		"accuracy!=0.9",
		">=0.9",
		"accuracy>=",
		"accuracy>=abc",
		"accuracy>=NaN",
		"accuracy>=Inf",
		"accuracy>=0.9x",
		"accuracy>=0.9 extra",
		"accuracy>=1e400", // overflows to +Inf
		"accuracy>=.",
		"accuracy>=1.2.3",
		"accuracy>=--1",
		"acc uracy>=0.9",
		"accuracy>=0.9>=0.8",
		"ac\ncuracy>=0.9",
	}
	for _, in := range bad {
		got, err := parseThreshold(in)
		if err == nil {
			t.Errorf("parseThreshold(%q) = %+v, want an error", in, got)
			continue
		}
		if !strings.Contains(err.Error(), "--threshold") || !strings.Contains(err.Error(), strconv.Quote(in)) {
			t.Errorf("parseThreshold(%q) = %q, want it to name --threshold and the input", in, err)
		}
	}
}
