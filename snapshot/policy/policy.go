// Package policy decides which snapshots a retention policy keeps, with the same
// semantics as restic's "forget" command.
//
// Apply sorts the items newest first and evaluates every rule on each of them:
//
//   - Last n keeps the n newest items.
//   - Hourly, Daily, Weekly, Monthly and Yearly n walk the items newest to oldest and
//     keep the first (newest) item of each hour, day, ISO week, month or year not seen
//     before, until n items were kept by that rule. -1 means no limit. If the items run
//     out while a rule still has count left, the oldest item is kept as well (reason
//     "oldest daily snapshot" and so on), which stretches the kept history as far back
//     as possible — restic does the same.
//   - Within d keeps every item newer than the newest item's time minus d. The
//     reference is the newest item, not the current time, so a repository whose
//     backups stopped does not lose its history to keep-within.
//   - Tags keeps every item carrying a tag set; an entry "a,b" needs both tags.
//
// An item is kept if any rule keeps it; the reasons list every rule that did. Time
// buckets are computed in one location (Policy.Location, or the location of the
// current time passed to Apply), so a snapshot at 23:30 UTC may count for the next day
// in Europe.
//
// Unlike restic, an empty policy is an error (ErrEmptyPolicy) instead of keeping
// everything, so a missing configuration never reaches the delete step silently.
package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Sentinel errors returned by Validate and Apply.
var (
	// ErrEmptyPolicy means no rule is set; applying it would be meaningless.
	ErrEmptyPolicy = errors.New("empty retention policy: set at least one keep rule")
	// ErrInvalidPolicy means a count is below -1 or a tag is empty.
	ErrInvalidPolicy = errors.New("invalid retention policy")
)

// Item is one snapshot as seen by the policy.
type Item struct {
	ID   string
	Time time.Time
	Tags []string
}

// Policy is a set of keep rules. Counts are 0 (rule off), a positive number, or -1
// (unlimited).
type Policy struct {
	Last, Hourly, Daily, Weekly, Monthly, Yearly int
	// Within keeps items newer than the newest item's time minus Within.
	Within Duration
	// Tags keeps items carrying the tags; each entry is one tag or a comma-separated
	// list of tags that must all be present.
	Tags []string
	// Location is where hours, days, weeks, months and years are counted. Nil means
	// the location of the now argument of Apply (time.Local for time.Now()).
	Location *time.Location
}

// Decision is one item with the reasons it is kept (empty for removed items).
type Decision struct {
	Item
	Reasons []string
}

// Empty reports whether no rule is set.
func (p Policy) Empty() bool {
	return p.Last == 0 && p.Hourly == 0 && p.Daily == 0 && p.Weekly == 0 &&
		p.Monthly == 0 && p.Yearly == 0 && p.Within.IsZero() && len(p.Tags) == 0
}

// Validate returns ErrEmptyPolicy for an empty policy and an error wrapping
// ErrInvalidPolicy for counts below -1, negative durations or empty tags.
func (p Policy) Validate() error {
	if p.Empty() {
		return ErrEmptyPolicy
	}
	for _, c := range p.counts() {
		if c.n < -1 {
			return fmt.Errorf("keep %s: %d is below -1: %w", c.name, c.n, ErrInvalidPolicy)
		}
	}
	w := p.Within
	if w.Years < 0 || w.Months < 0 || w.Days < 0 || w.Hours < 0 {
		return fmt.Errorf("keep within: negative duration %s: %w", w, ErrInvalidPolicy)
	}
	for _, t := range p.Tags {
		for _, part := range strings.Split(t, ",") {
			if strings.TrimSpace(part) == "" {
				return fmt.Errorf("keep tag: empty tag in %q: %w", t, ErrInvalidPolicy)
			}
		}
	}
	return nil
}

// String describes the policy, e.g. "keep 7 daily, 4 weekly, within 2d, tag pre-upgrade".
func (p Policy) String() string {
	var parts []string
	for _, c := range p.counts() {
		switch {
		case c.n == -1:
			parts = append(parts, "all "+c.name)
		case c.n != 0:
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.name))
		}
	}
	if !p.Within.IsZero() {
		parts = append(parts, "within "+p.Within.String())
	}
	for _, t := range p.Tags {
		parts = append(parts, "tag "+t)
	}
	if len(parts) == 0 {
		return "empty policy"
	}
	return "keep " + strings.Join(parts, ", ")
}

type namedCount struct {
	name string
	n    int
}

func (p Policy) counts() []namedCount {
	return []namedCount{
		{"last", p.Last}, {"hourly", p.Hourly}, {"daily", p.Daily},
		{"weekly", p.Weekly}, {"monthly", p.Monthly}, {"yearly", p.Yearly},
	}
}

// bucket is one count-limited rule while Apply walks the items.
type bucket struct {
	count  int
	key    func(t time.Time, nr int) int
	last   int
	reason string
}

// Apply splits items into those the policy keeps and those it removes, both newest
// first. Items with equal times keep their input order. The now argument supplies the
// bucketing location when p.Location is nil; keep-within is measured from the newest
// item (see the package documentation). It returns ErrEmptyPolicy or an
// ErrInvalidPolicy error, and then no decisions, when p does not validate.
func Apply(items []Item, p Policy, now time.Time) (keep, remove []Decision, err error) {
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	if len(items) == 0 {
		return nil, nil, nil
	}
	loc := p.Location
	if loc == nil {
		loc = now.Location()
	}

	list := slices.Clone(items)
	slices.SortStableFunc(list, func(a, b Item) int { return b.Time.Compare(a.Time) })

	buckets := []bucket{
		{p.Last, func(_ time.Time, nr int) int { return nr }, -1, "last snapshot"},
		{p.Hourly, func(t time.Time, _ int) int { return t.Year()*1000000 + int(t.Month())*10000 + t.Day()*100 + t.Hour() }, -1, "hourly snapshot"},
		{p.Daily, func(t time.Time, _ int) int { return t.Year()*10000 + int(t.Month())*100 + t.Day() }, -1, "daily snapshot"},
		{p.Weekly, func(t time.Time, _ int) int { y, w := t.ISOWeek(); return y*100 + w }, -1, "weekly snapshot"},
		{p.Monthly, func(t time.Time, _ int) int { return t.Year()*100 + int(t.Month()) }, -1, "monthly snapshot"},
		{p.Yearly, func(t time.Time, _ int) int { return t.Year() }, -1, "yearly snapshot"},
	}

	var cutoff time.Time
	if !p.Within.IsZero() {
		cutoff = p.Within.Before(list[0].Time.In(loc))
	}
	tagSets := make([][]string, len(p.Tags))
	for i, t := range p.Tags {
		for _, part := range strings.Split(t, ",") {
			tagSets[i] = append(tagSets[i], strings.TrimSpace(part))
		}
	}

	for nr, cur := range list {
		t := cur.Time.In(loc)
		var reasons []string

		for i, set := range tagSets {
			if hasAll(cur.Tags, set) {
				reasons = append(reasons, "tag "+p.Tags[i])
			}
		}
		if !p.Within.IsZero() && t.After(cutoff) {
			reasons = append(reasons, "within "+p.Within.String())
		}
		oldest := nr == len(list)-1
		for i := range buckets {
			b := &buckets[i]
			if b.count == 0 {
				continue
			}
			val := b.key(t, nr)
			switch {
			case val != b.last:
				reasons = append(reasons, b.reason)
			case oldest:
				reasons = append(reasons, "oldest "+b.reason)
			default:
				continue
			}
			b.last = val
			if b.count > 0 {
				b.count--
			}
		}

		d := Decision{Item: cur, Reasons: reasons}
		if len(reasons) > 0 {
			keep = append(keep, d)
		} else {
			remove = append(remove, d)
		}
	}
	return keep, remove, nil
}

// hasAll reports whether tags contains every element of want.
func hasAll(tags, want []string) bool {
	for _, w := range want {
		if !slices.Contains(tags, w) {
			return false
		}
	}
	return true
}
