package memshuffle

import (
	"bytes"
	"encoding/json"
	"errors"
	"expvar"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/memshuffle/memshuffle/internal/osmem"
)

var expvarRuns int

func TestPublishExpvar(t *testing.T) {
	s := newTest(t)
	CopyFrom(s, []byte("expvar-secret-value"))
	// expvar names last for the process: a fresh one per run of the test.
	expvarRuns++
	name := fmt.Sprintf("memshuffle_test_%d", expvarRuns)
	if err := s.PublishExpvar(name); err != nil {
		t.Fatal(err)
	}
	if err := s.PublishExpvar(name); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("second publish: %v", err)
	}
	raw := expvar.Get(name).String()
	var st Stats
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatal(err)
	}
	if st.Entries != 1 || st.LiveBytes != 19 {
		t.Fatalf("published %s", raw)
	}
	if strings.Contains(raw, "expvar-secret") {
		t.Fatal("secret in expvar")
	}
}

// TestPublishExpvarNameTakenMeanwhile: a name that code outside the
// package publishes between PublishExpvar's check and its publication
// fails with ErrNameTaken, where expvar.Publish panics, and the other
// publication stays.
func TestPublishExpvarNameTakenMeanwhile(t *testing.T) {
	s := newTest(t)
	expvarRuns++
	name := fmt.Sprintf("memshuffle_test_%d", expvarRuns)
	theirs := expvar.Func(func() any { return "theirs" })
	expvarHookForTest = func() { expvar.Publish(name, theirs) }
	defer func() { expvarHookForTest = nil }()
	if err := s.PublishExpvar(name); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("publishing a name taken meanwhile: %v, want ErrNameTaken", err)
	}
	if got := expvar.Get(name).String(); got != `"theirs"` {
		t.Fatalf("the name publishes %s, want the other publication's", got)
	}
}

func TestLoggerEvents(t *testing.T) {
	var buf bytes.Buffer
	s := newTest(t, WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	key := [32]byte{0xAB, 0xCD}
	if err := s.RotateKey(&key, nil); err != nil {
		t.Fatal(err)
	}
	osmem.SetFault(func(op osmem.Op) error {
		if op == osmem.OpLock {
			return osmem.ErrInjected
		}
		return nil
	})
	Alloc[byte](s, 1<<20) // needs a new arena, which is not locked
	osmem.SetFault(nil)
	out := buf.String()
	if !strings.Contains(out, "key rotated") || !strings.Contains(out, "not locked") {
		t.Fatalf("events: %s", out)
	}
	if strings.Contains(strings.ToLower(out), "abcd") {
		t.Fatal("key material in the log")
	}
}
