package node

import (
	"log"
	"sync"
	"time"
)

// logEvery is the shortest time between two log lines of the same key.
const logEvery = time.Second

// limiter logs through the standard logger, at most one line per key per
// logEvery, and tells how many lines of that key it held back meanwhile: a
// peer refusing every message must not flood the log.
type limiter struct {
	mu   sync.Mutex
	keys map[string]*logKey
}

type logKey struct {
	last time.Time
	held int
}

func (l *limiter) printf(key, format string, args ...interface{}) {
	l.mu.Lock()
	if l.keys == nil {
		l.keys = make(map[string]*logKey)
	}
	k := l.keys[key]
	if k == nil {
		k = &logKey{}
		l.keys[key] = k
	}
	now := time.Now()
	if !k.last.IsZero() && now.Sub(k.last) < logEvery {
		k.held++
		l.mu.Unlock()
		return
	}
	held := k.held
	k.last, k.held = now, 0
	l.mu.Unlock()
	if held > 0 {
		format += " (and %d more like it)"
		args = append(args, held)
	}
	log.Printf(format, args...)
}
