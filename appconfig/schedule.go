package appconfig

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidSchedule is wrapped by ParseSchedule errors.
var ErrInvalidSchedule = errors.New("invalid schedule")

// Schedule is a parsed schedule expression (see ParseSchedule). The zero Schedule
// never fires: Next returns the zero time.
type Schedule struct {
	expr  string
	every time.Duration
	cron  *cronSpec
}

// keywords are the named schedules and their cron equivalents.
var keywords = map[string]string{
	"hourly":  "0 * * * *",
	"daily":   "0 0 * * *",
	"weekly":  "0 0 * * 0",
	"monthly": "0 0 1 * *",
	"yearly":  "0 0 1 1 *",
}

// ParseSchedule parses a schedule expression:
//
//   - hourly, daily, weekly, monthly, yearly (optionally with a leading @): at minute 0
//     of every hour; at midnight; on Sundays at midnight; on the 1st of the month at
//     midnight; on January 1st at midnight. @annually and @midnight are accepted too.
//   - "@every <duration>" with a Go duration ("15m", "1h30m"): that long after the
//     previous run.
//   - a standard five-field cron expression "minute hour day-of-month month
//     day-of-week" with *, numbers, ranges (1-5), lists (1,15), steps (*/15, 0-30/10,
//     5/15), month names jan-dec and weekday names sun-sat (0 and 7 are Sunday). As in
//     Vixie cron, when both day fields are restricted a day matching either one counts.
//
// Cron expressions are evaluated in the location of the time passed to Next.
func ParseSchedule(s string) (Schedule, error) {
	expr := strings.TrimSpace(s)
	lower := strings.ToLower(expr)
	if rest, ok := strings.CutPrefix(lower, "@every"); ok {
		if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
			return Schedule{}, fmt.Errorf("%w %q: want @every <duration>, e.g. @every 15m", ErrInvalidSchedule, s)
		}
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil || d <= 0 {
			return Schedule{}, fmt.Errorf("%w %q: %q is not a positive duration like 15m or 1h30m", ErrInvalidSchedule, s, strings.TrimSpace(rest))
		}
		return Schedule{expr: expr, every: d}, nil
	}
	name := strings.TrimPrefix(lower, "@")
	switch name {
	case "annually":
		name = "yearly"
	case "midnight":
		name = "daily"
	}
	spec := expr
	if c, ok := keywords[name]; ok {
		spec = c
	} else if strings.HasPrefix(lower, "@") || (!strings.ContainsAny(lower, "0123456789*") && len(strings.Fields(lower)) == 1) {
		return Schedule{}, fmt.Errorf("%w %q: unknown name (use hourly, daily, weekly, monthly, yearly, @every <duration> or a cron expression)", ErrInvalidSchedule, s)
	}
	c, err := parseCron(spec)
	if err != nil {
		return Schedule{}, fmt.Errorf("%w %q: %w", ErrInvalidSchedule, s, err)
	}
	// Reject expressions that never fire, such as February 30th. Any valid date
	// recurs within eight years (February 29th skips 2100).
	if c.next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return Schedule{}, fmt.Errorf("%w %q: never fires (no such date)", ErrInvalidSchedule, s)
	}
	return Schedule{expr: expr, cron: c}, nil
}

// MustParseSchedule is ParseSchedule for expressions known to be valid; it panics on
// an error.
func MustParseSchedule(s string) Schedule {
	sch, err := ParseSchedule(s)
	if err != nil {
		panic(err)
	}
	return sch
}

// Next returns the first time strictly after the given one at which the schedule fires,
// or the zero time for the zero Schedule. Cron times that do not exist because of a
// daylight saving change are skipped, and repeated wall-clock times fire once.
func (s Schedule) Next(after time.Time) time.Time {
	switch {
	case s.every > 0:
		return after.Add(s.every)
	case s.cron != nil:
		return s.cron.next(after)
	}
	return time.Time{}
}

// IsZero reports whether s is the zero Schedule.
func (s Schedule) IsZero() bool {
	return s.every == 0 && s.cron == nil
}

// String returns the expression s was parsed from.
func (s Schedule) String() string {
	return s.expr
}

// MarshalText implements encoding.TextMarshaler.
func (s Schedule) MarshalText() ([]byte, error) {
	return []byte(s.expr), nil
}

// UnmarshalText implements encoding.TextUnmarshaler using ParseSchedule.
func (s *Schedule) UnmarshalText(b []byte) error {
	v, err := ParseSchedule(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// cronSpec holds one bit per allowed value of each field.
type cronSpec struct {
	minute, hour, dom, month, dow uint64
	domStar, dowStar              bool
}

var (
	monthNames = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}
	dayNames   = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}
)

func parseCron(s string) (*cronSpec, error) {
	f := strings.Fields(s)
	if len(f) != 5 {
		return nil, fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week), got %d", len(f))
	}
	var c cronSpec
	var err error
	fields := []struct {
		name     string
		dst      *uint64
		min, max int
		names    []string
		nameBase int
	}{
		{"minute", &c.minute, 0, 59, nil, 0},
		{"hour", &c.hour, 0, 23, nil, 0},
		{"day-of-month", &c.dom, 1, 31, nil, 0},
		{"month", &c.month, 1, 12, monthNames, 1},
		{"day-of-week", &c.dow, 0, 7, dayNames, 0},
	}
	for i, fd := range fields {
		*fd.dst, err = parseField(strings.ToLower(f[i]), fd.min, fd.max, fd.names, fd.nameBase)
		if err != nil {
			return nil, fmt.Errorf("%s field %q: %w", fd.name, f[i], err)
		}
	}
	if c.dow&(1<<7) != 0 {
		c.dow = c.dow&^(1<<7) | 1
	}
	c.domStar = strings.HasPrefix(f[2], "*")
	c.dowStar = strings.HasPrefix(f[4], "*")
	return &c, nil
}

func parseField(s string, min, max int, names []string, nameBase int) (uint64, error) {
	var bits uint64
	value := func(v string) (int, error) {
		for i, n := range names {
			if v == n {
				return i + nameBase, nil
			}
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", v)
		}
		if n < min || n > max {
			return 0, fmt.Errorf("%d is outside %d-%d", n, min, max)
		}
		return n, nil
	}
	for _, part := range strings.Split(s, ",") {
		rng, stepStr, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("step %q is not a positive number", stepStr)
			}
			step = n
		}
		var lo, hi int
		switch {
		case rng == "*":
			lo, hi = min, max
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = value(a); err != nil {
				return 0, err
			}
			if hi, err = value(b); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("range %s is backwards", rng)
			}
		case rng == "":
			return 0, errors.New("empty list element")
		default:
			var err error
			if lo, err = value(rng); err != nil {
				return 0, err
			}
			hi = lo
			if hasStep {
				hi = max
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

func (c *cronSpec) dayMatches(t time.Time) bool {
	dom := c.dom&(1<<uint(t.Day())) != 0
	dow := c.dow&(1<<uint(t.Weekday())) != 0
	if c.domStar || c.dowStar {
		return dom && dow
	}
	return dom || dow
}

// next walks wall-clock time forward from the minute after `after`, skipping whole
// months, days and hours that cannot match.
func (c *cronSpec) next(after time.Time) time.Time {
	loc := after.Location()
	y, mo, d := after.Date()
	t := time.Date(y, mo, d, after.Hour(), after.Minute()+1, 0, 0, loc)
	if !t.After(after) {
		t = after.Truncate(time.Minute).Add(time.Minute)
	}
	limit := after.AddDate(9, 0, 0)
	advance := func(n time.Time) {
		if !n.After(t) {
			n = t.Add(time.Minute)
		}
		t = n
	}
	for t.Before(limit) {
		y, mo, d := t.Date()
		switch {
		case c.month&(1<<uint(mo)) == 0:
			advance(time.Date(y, mo+1, 1, 0, 0, 0, 0, loc))
		case !c.dayMatches(t):
			advance(time.Date(y, mo, d+1, 0, 0, 0, 0, loc))
		case c.hour&(1<<uint(t.Hour())) == 0:
			advance(time.Date(y, mo, d, t.Hour()+1, 0, 0, 0, loc))
		case c.minute&(1<<uint(t.Minute())) == 0:
			advance(time.Date(y, mo, d, t.Hour(), t.Minute()+1, 0, 0, loc))
		default:
			return t
		}
	}
	return time.Time{}
}
