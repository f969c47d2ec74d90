package serve

import (
	"context"
	"time"
)

// scheduled is one scheduled job kind and its next due time.
type scheduled struct {
	kind string
	next time.Time
}

// scheduler enqueues the scheduled jobs when they are due, until ctx ends.
//
// At start it catches up: a job whose schedule fired between its last recorded run
// (or, never having run, the state file's creation) and now runs once right away. A
// job fired while the previous run of the same kind still waits in the queue is
// merged into it; runs missed while cairn serve was down are caught up once, not
// once per missed time.
func (s *Server) scheduler(ctx context.Context) {
	now := s.clock.Now()
	st := s.State()
	var entries []*scheduled
	for _, kind := range ScheduledKinds {
		sch := s.Schedule(kind)
		if sch.IsZero() {
			continue
		}
		base := st.Since
		if js := st.Jobs[kind]; js != nil && !js.LastRun.IsZero() {
			base = js.LastRun
		}
		e := &scheduled{kind: kind, next: sch.Next(base)}
		if !e.next.After(now) {
			s.log.Info("catching up a missed run", "job", kind, "was_due", e.next.Format(time.RFC3339), "last_run", base.Format(time.RFC3339))
			if _, err := s.Enqueue(kind, TriggerCatchUp); err != nil {
				return
			}
			e.next = sch.Next(now)
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		s.log.Warn("no schedules: set [schedule] backup, prune or check in cairn.toml to run jobs automatically")
		<-ctx.Done()
		return
	}
	for {
		s.mu.Lock()
		for _, e := range entries {
			s.nextRun[e.kind] = e.next
			s.log.Debug("next run", "job", e.kind, "at", e.next.Format(time.RFC3339))
		}
		s.mu.Unlock()
		soonest := entries[0].next
		for _, e := range entries[1:] {
			if e.next.Before(soonest) {
				soonest = e.next
			}
		}
		wait := soonest.Sub(s.clock.Now())
		if wait < 0 {
			wait = 0
		}
		// Wake up at least every minute: timers follow the monotonic clock, which
		// stands still while the machine sleeps, and schedules follow the wall clock.
		if wait > time.Minute {
			wait = time.Minute
		}
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(wait):
		}
		now := s.clock.Now()
		for _, e := range entries {
			if e.next.After(now) {
				continue
			}
			if _, err := s.Enqueue(e.kind, TriggerSchedule); err != nil {
				return
			}
			e.next = s.Schedule(e.kind).Next(now)
		}
	}
}
