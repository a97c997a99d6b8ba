package memshuffle

import (
	"context"
	"errors"
	"expvar"
	"fmt"
	"log/slog"
	"sync"
)

// ErrNameTaken is returned by PublishExpvar when an expvar of that name
// exists already.
var ErrNameTaken = errors.New("memshuffle: expvar name already published")

var expvarMu sync.Mutex

// PublishExpvar publishes the Shuffler's Stats as the expvar name, so they
// appear at /debug/vars with the standard library's expvar handler. The
// value is computed at each read. Stats carry no secret, key or address.
// expvar has no way to unpublish a name: publish once per process, for a
// Shuffler that lives as long as the process.
func (s *Shuffler) PublishExpvar(name string) error {
	if s == nil || s.closed.Load() || len(s.shards) == 0 {
		return ErrClosed
	}
	expvarMu.Lock()
	defer expvarMu.Unlock()
	if expvar.Get(name) != nil {
		return fmt.Errorf("%w: %q", ErrNameTaken, name)
	}
	expvar.Publish(name, expvar.Func(func() any { return s.Stats() }))
	return nil
}

// tamperDetected counts and reports an entry that failed authentication.
func (s *Shuffler) tamperDetected(h Handle) {
	s.tampered.Add(1)
	s.log(slog.LevelError, "memshuffle: entry failed authentication", slog.String("handle", h.String()))
}

// log sends an event to the WithLogger logger, if any. Callers never pass a
// secret, a key or an address.
func (s *Shuffler) log(level slog.Level, msg string, attrs ...slog.Attr) {
	if l := s.cfg.logger; l != nil {
		l.LogAttrs(context.Background(), level, msg, attrs...)
	}
}
