package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
)

func verdict(ok bool, what string) string {
	if ok {
		return what + " met"
	}
	return what + " MISSED"
}

// summary is one column's runs of one metric.
type summary struct {
	med, spread float64
	n, failed   int
}

// summarize is the median of metric m over the runs that gave numbers and
// half their range relative to it.
func summarize(runs [][]float64, m int) summary {
	var x []float64
	s := summary{}
	for _, v := range runs {
		if v == nil {
			s.failed++
			continue
		}
		x = append(x, v[m])
	}
	s.n = len(x)
	if s.n == 0 {
		return s
	}
	sort.Float64s(x)
	s.med = x[s.n/2]
	if s.n%2 == 0 {
		s.med = (x[s.n/2-1] + x[s.n/2]) / 2
	}
	s.spread = (x[s.n-1] - x[0]) / 2 / math.Abs(s.med)
	return s
}

// String is the median ± half the range, and the failed runs.
func (s summary) String() string {
	if s.n == 0 {
		if s.failed > 0 {
			return "FAIL"
		}
		return "-"
	}
	out := fmt.Sprintf("%s ±%.0f%%", fmtNum(s.med), s.spread*100)
	if s.failed > 0 {
		out += fmt.Sprintf(" (%d FAIL)", s.failed)
	}
	return out
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "gobench: "+format+"\n", args...)
	os.Exit(1)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			return strings.TrimSpace(l[strings.Index(l, ":")+1:])
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
