// Package footprint holds the result format of cmd/footprint, which
// cmd/report reads.
package footprint

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Result is cmd/footprint's JSON output.
type Result struct {
	Size         int    `json:"size"`          // bytes per secret
	Timeout      string `json:"timeout"`       // limit for each child process
	MemlockLimit string `json:"memlock_limit"` // soft RLIMIT_MEMLOCK, as /proc/self/limits says
	MaxMapCount  string `json:"max_map_count"` // vm.max_map_count
	UID          int    `json:"uid"`
	Rows         []Row  `json:"rows"`
}

// Row is one (library, count) measurement, made in a process of its own.
// The byte and mapping figures are increases over that process's state
// just before it made its first secret.
type Row struct {
	Lib     string `json:"lib"`
	Count   int    `json:"count"`   // secrets asked for
	Outcome string `json:"outcome"` // "ok", "failed", "crashed" or "timed out"
	// Held is how many secrets were live when the figures were taken:
	// Count when the outcome is "ok", else the last checkpoint's count.
	Held int `json:"held"`
	// Reached is how many secrets were made before the failure (for a
	// crash or time-out, at least this many); Count when the outcome is "ok".
	Reached  int    `json:"reached"`
	Error    string `json:"error,omitempty"`
	RSSBytes int64  `json:"rss_bytes"`
	// RefBytes is the part of RSSBytes the program itself holds to reach
	// the secrets: Held handles, pointers or slice headers.
	RefBytes    int64   `json:"ref_bytes"`
	LockedBytes int64   `json:"locked_bytes"`
	Mappings    int     `json:"mappings"`
	NsPerSecret float64 `json:"ns_per_secret"` // time to make one secret, checkpoints excluded
	Seconds     float64 `json:"seconds"`       // wall time of the child process
	Note        string  `json:"note,omitempty"`
}

// Read reads a Result written by cmd/footprint.
func Read(path string) (*Result, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Describe says in words how a row ended.
func (r Row) Describe() string {
	switch r.Outcome {
	case "ok":
		return "ok"
	case "failed":
		return fmt.Sprintf("failed after %s secrets: %s", thousands(r.Reached), r.Error)
	}
	return fmt.Sprintf("%s after %s+ secrets: %s", r.Outcome, thousands(r.Reached), r.Error)
}

// thousands writes n with commas between groups of three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && c != '-' && s[i-1] != '-' && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
