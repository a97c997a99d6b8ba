package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestHelperChild is not a test: measureChild's tests run the test binary
// as a child that behaves as FOOTPRINT_HELPER says.
func TestHelperChild(t *testing.T) {
	mode := os.Getenv("FOOTPRINT_HELPER")
	if mode == "" {
		t.Skip("helper process for TestMeasureChild")
	}
	fmt.Println(`{"kind":"baseline","n":0,"rss":1000,"locked":0,"maps":10}`)
	fmt.Println(`{"kind":"progress","n":256,"rss":9000,"locked":4096,"maps":522}`)
	switch mode {
	case "done":
		fmt.Println(`{"kind":"done","n":512,"rss":17000,"locked":8192,"maps":1034,"ns_per_secret":7,"note":"fine"}`)
	case "failed":
		fmt.Println(`{"kind":"failed","n":300,"error":"panic: <memguard::core::ErrNullBuffer> cannot allocate"}`)
	case "crash":
		fmt.Fprintln(os.Stderr, "runtime: out of memory: cannot allocate 4194304-byte block")
		fmt.Fprintln(os.Stderr, "fatal error: out of memory")
		os.Exit(2)
	case "hang":
		time.Sleep(time.Minute)
	}
	// Returning lets the test binary exit 0 (os.Exit(0) in a test is an error).
}

func TestMeasureChild(t *testing.T) {
	tests := []struct {
		mode, outcome, errPart string
		held, reached          int
		rss                    int64
	}{
		{"done", "ok", "", 512, 512, 16000},
		{"failed", "failed", "ErrNullBuffer", 256, 300, 8000},
		{"crash", "crashed", "runtime: out of memory", 256, 256, 8000},
		{"hang", "timed out", "no result within", 256, 256, 8000},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Setenv("FOOTPRINT_HELPER", tt.mode)
			row := measureChild(os.Args[0], []string{"-test.run=^TestHelperChild$"}, 1500*time.Millisecond)
			if row.Outcome != tt.outcome || row.Held != tt.held || row.Reached != tt.reached || row.RSSBytes != tt.rss {
				t.Errorf("got %+v, want outcome %q held %d reached %d rss %d", row, tt.outcome, tt.held, tt.reached, tt.rss)
			}
			if !strings.Contains(row.Error, tt.errPart) {
				t.Errorf("error %q does not contain %q", row.Error, tt.errPart)
			}
		})
	}
}

// TestRunChild runs a real (small) measurement in this process.
func TestRunChild(t *testing.T) {
	for _, lib := range []string{"heap", "memshuffle"} {
		t.Run(lib, func(t *testing.T) {
			var out bytes.Buffer
			if code := runChild(&out, lib, 1000, 32); code != 0 {
				t.Fatalf("runChild exit %d, output %s", code, out.String())
			}
			var kinds []string
			sc := bufio.NewScanner(&out)
			var last event
			for sc.Scan() {
				if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
					t.Fatal(err)
				}
				kinds = append(kinds, last.Kind)
			}
			if kinds[0] != "baseline" || kinds[len(kinds)-1] != "done" || last.N != 1000 || last.RSS <= 0 || last.Maps <= 0 {
				t.Fatalf("events %v, last %+v", kinds, last)
			}
		})
	}
}

func TestStatusKB(t *testing.T) {
	status := "Name:\tx\nVmPeak:\t  1000 kB\nVmLck:\t     12 kB\nVmPin:\t 0 kB\n"
	if got, err := statusKB(status, "VmLck"); err != nil || got != 12<<10 {
		t.Fatalf("statusKB = %d, %v; want %d", got, err, 12<<10)
	}
	if _, err := statusKB(status, "VmSwap"); err == nil {
		t.Fatal("statusKB of a missing field: no error")
	}
	if _, err := statusKB("VmLck:\tlots\n", "VmLck"); err == nil {
		t.Fatal("statusKB of a malformed line: no error")
	}
}
