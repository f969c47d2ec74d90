package appconfig

import (
	"errors"
	"testing"
	"time"
)

func TestScheduleNext(t *testing.T) {
	utc := func(y int, m time.Month, d, h, min, s int) time.Time {
		return time.Date(y, m, d, h, min, s, 0, time.UTC)
	}
	// 2024-03-15 is a Friday.
	from := utc(2024, 3, 15, 10, 20, 30)
	tests := []struct {
		expr  string
		after time.Time
		want  []time.Time // successive Next results
	}{
		{"hourly", from, []time.Time{utc(2024, 3, 15, 11, 0, 0), utc(2024, 3, 15, 12, 0, 0)}},
		{"@hourly", utc(2024, 3, 15, 11, 0, 0), []time.Time{utc(2024, 3, 15, 12, 0, 0)}},
		{"daily", from, []time.Time{utc(2024, 3, 16, 0, 0, 0), utc(2024, 3, 17, 0, 0, 0)}},
		{"@midnight", from, []time.Time{utc(2024, 3, 16, 0, 0, 0)}},
		{"weekly", from, []time.Time{utc(2024, 3, 17, 0, 0, 0), utc(2024, 3, 24, 0, 0, 0)}},
		{"monthly", from, []time.Time{utc(2024, 4, 1, 0, 0, 0), utc(2024, 5, 1, 0, 0, 0)}},
		{"Yearly", from, []time.Time{utc(2025, 1, 1, 0, 0, 0)}},
		{"@annually", from, []time.Time{utc(2025, 1, 1, 0, 0, 0)}},
		{"@every 15m", from, []time.Time{utc(2024, 3, 15, 10, 35, 30), utc(2024, 3, 15, 10, 50, 30)}},
		{"@every 1h30m", from, []time.Time{utc(2024, 3, 15, 11, 50, 30)}},
		{"* * * * *", from, []time.Time{utc(2024, 3, 15, 10, 21, 0), utc(2024, 3, 15, 10, 22, 0)}},
		{"*/15 * * * *", from, []time.Time{utc(2024, 3, 15, 10, 30, 0), utc(2024, 3, 15, 10, 45, 0), utc(2024, 3, 15, 11, 0, 0)}},
		{"5/20 * * * *", from, []time.Time{utc(2024, 3, 15, 10, 25, 0), utc(2024, 3, 15, 10, 45, 0), utc(2024, 3, 15, 11, 5, 0)}},
		{"0-30/10 9-10 * * *", from, []time.Time{utc(2024, 3, 15, 10, 30, 0), utc(2024, 3, 16, 9, 0, 0)}},
		{"0 8,12,18 * * *", from, []time.Time{utc(2024, 3, 15, 12, 0, 0), utc(2024, 3, 15, 18, 0, 0), utc(2024, 3, 16, 8, 0, 0)}},
		{"30 2 * * mon-fri", from, []time.Time{utc(2024, 3, 18, 2, 30, 0), utc(2024, 3, 19, 2, 30, 0)}},
		{"0 0 * * 7", from, []time.Time{utc(2024, 3, 17, 0, 0, 0)}},
		{"0 0 * * SUN", from, []time.Time{utc(2024, 3, 17, 0, 0, 0)}},
		{"0 0 1 jan,jul *", from, []time.Time{utc(2024, 7, 1, 0, 0, 0), utc(2025, 1, 1, 0, 0, 0)}},
		{"0 0 31 * *", from, []time.Time{utc(2024, 3, 31, 0, 0, 0), utc(2024, 5, 31, 0, 0, 0)}},
		{"0 0 29 2 *", from, []time.Time{utc(2028, 2, 29, 0, 0, 0)}},
		// Both day fields restricted: the 1st of the month or any Monday.
		{"0 0 1 * mon", from, []time.Time{utc(2024, 3, 18, 0, 0, 0), utc(2024, 3, 25, 0, 0, 0), utc(2024, 4, 1, 0, 0, 0), utc(2024, 4, 8, 0, 0, 0)}},
		// Day of month restricted, weekday "*": only the 13th.
		{"0 0 13 * *", from, []time.Time{utc(2024, 4, 13, 0, 0, 0)}},
		// Exactly on a firing time: the next one is strictly later.
		{"0 * * * *", utc(2024, 3, 15, 10, 0, 0), []time.Time{utc(2024, 3, 15, 11, 0, 0)}},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			s, err := ParseSchedule(tc.expr)
			if err != nil {
				t.Fatalf("ParseSchedule: %v", err)
			}
			if s.String() != tc.expr || s.IsZero() {
				t.Errorf("String() = %q, IsZero() = %v", s.String(), s.IsZero())
			}
			cur := tc.after
			for i, want := range tc.want {
				cur = s.Next(cur)
				if !cur.Equal(want) {
					t.Fatalf("Next #%d = %v, want %v", i+1, cur, want)
				}
			}
		})
	}
}

func TestScheduleLocation(t *testing.T) {
	plus2 := time.FixedZone("UTC+2", 2*3600)
	s := MustParseSchedule("daily")
	got := s.Next(time.Date(2024, 3, 15, 21, 0, 0, 0, time.UTC).In(plus2))
	if want := time.Date(2024, 3, 16, 0, 0, 0, 0, plus2); !got.Equal(want) {
		t.Errorf("Next = %v, want %v", got, want)
	}
}

func TestScheduleDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	tests := []struct {
		expr  string
		after time.Time
		want  []time.Time
	}{
		// 2024-03-10 02:00-03:00 does not exist: that day is skipped.
		{"30 2 * * *", time.Date(2024, 3, 9, 12, 0, 0, 0, ny), []time.Time{
			time.Date(2024, 3, 11, 2, 30, 0, 0, ny),
		}},
		// 2024-11-03 01:00-02:00 happens twice: it fires once.
		{"30 1 * * *", time.Date(2024, 11, 2, 12, 0, 0, 0, ny), []time.Time{
			time.Date(2024, 11, 3, 1, 30, 0, 0, ny),
			time.Date(2024, 11, 4, 1, 30, 0, 0, ny),
		}},
		{"hourly", time.Date(2024, 11, 3, 0, 30, 0, 0, ny), []time.Time{
			time.Date(2024, 11, 3, 1, 0, 0, 0, ny),
			time.Date(2024, 11, 3, 2, 0, 0, 0, ny),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			s := MustParseSchedule(tc.expr)
			cur := tc.after
			for i, want := range tc.want {
				cur = s.Next(cur)
				if !cur.Equal(want) {
					t.Fatalf("Next #%d = %v, want %v", i+1, cur, want)
				}
			}
		})
	}
}

func TestParseScheduleErrors(t *testing.T) {
	for _, expr := range []string{
		"", "sometimes", "@reboot", "@every", "@every 0s", "@every -5m", "@every soon", "@everyday",
		"* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *",
		"* * * 13 *", "* * * * 8", "5-1 * * * *", "*/0 * * * *", "*/x * * * *", "1,,2 * * * *",
		"a * * * *", "* * * foo *", "0 0 30 2 *", "0 0 31 4 *",
	} {
		t.Run(expr, func(t *testing.T) {
			s, err := ParseSchedule(expr)
			if !errors.Is(err, ErrInvalidSchedule) {
				t.Fatalf("ParseSchedule(%q) = %v, %v; want ErrInvalidSchedule", expr, s, err)
			}
		})
	}
}

func TestScheduleZeroAndText(t *testing.T) {
	var z Schedule
	if !z.IsZero() || !z.Next(time.Now()).IsZero() {
		t.Error("zero Schedule fires")
	}
	var s Schedule
	if err := s.UnmarshalText([]byte("@every 1s")); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.MarshalText(); string(b) != "@every 1s" {
		t.Errorf("MarshalText = %q", b)
	}
	if err := s.UnmarshalText([]byte("nope")); err == nil {
		t.Error("UnmarshalText accepted nope")
	}
	defer func() {
		if recover() == nil {
			t.Error("MustParseSchedule did not panic")
		}
	}()
	MustParseSchedule("nope")
}
