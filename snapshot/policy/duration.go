package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidDuration is wrapped by ParseDuration errors.
var ErrInvalidDuration = errors.New("invalid duration")

// Duration is a calendar-aware span of years, months, days and hours, as used by
// keep-within rules. Unlike time.Duration, "1m" is one calendar month and "1d" is one
// calendar day, so subtracting it from a time follows the calendar (time.AddDate).
type Duration struct {
	Years, Months, Days, Hours int
}

// ParseDuration parses a duration such as "2d", "36h", "6m" or "1y6m3d12h": one or
// more non-negative integers, each followed by a unit y (years), m (months), d (days)
// or h (hours). Units may come in any order but each at most once; spaces are not
// allowed.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	if s == "" {
		return d, fmt.Errorf("empty string: %w", ErrInvalidDuration)
	}
	seen := map[byte]bool{}
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return Duration{}, fmt.Errorf("%q: expected a number at %q: %w", s, rest, ErrInvalidDuration)
		}
		n, err := strconv.Atoi(rest[:i])
		if err != nil {
			return Duration{}, fmt.Errorf("%q: number %q out of range: %w", s, rest[:i], ErrInvalidDuration)
		}
		if i == len(rest) {
			return Duration{}, fmt.Errorf("%q: missing unit after %d (use y, m, d or h): %w", s, n, ErrInvalidDuration)
		}
		unit := rest[i]
		if seen[unit] {
			return Duration{}, fmt.Errorf("%q: unit %q given twice: %w", s, unit, ErrInvalidDuration)
		}
		seen[unit] = true
		switch unit {
		case 'y':
			d.Years = n
		case 'm':
			d.Months = n
		case 'd':
			d.Days = n
		case 'h':
			d.Hours = n
		default:
			return Duration{}, fmt.Errorf("%q: unknown unit %q (use y, m, d or h): %w", s, unit, ErrInvalidDuration)
		}
		rest = rest[i+1:]
	}
	return d, nil
}

// IsZero reports whether every component is zero.
func (d Duration) IsZero() bool {
	return d == Duration{}
}

// String formats d in the form ParseDuration accepts, omitting zero components
// ("1y6m3d12h", "2d"); the zero Duration is "0h".
func (d Duration) String() string {
	var b strings.Builder
	for _, c := range []struct {
		n    int
		unit string
	}{{d.Years, "y"}, {d.Months, "m"}, {d.Days, "d"}, {d.Hours, "h"}} {
		if c.n != 0 {
			b.WriteString(strconv.Itoa(c.n))
			b.WriteString(c.unit)
		}
	}
	if b.Len() == 0 {
		return "0h"
	}
	return b.String()
}

// Before returns t moved back by d: calendar years, months and days first (in t's
// location, normalised like time.AddDate, so one month before March 31 is March 2 or
// 3), then the hours as elapsed time.
func (d Duration) Before(t time.Time) time.Time {
	return t.AddDate(-d.Years, -d.Months, -d.Days).Add(-time.Duration(d.Hours) * time.Hour)
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler using ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
