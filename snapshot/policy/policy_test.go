package policy

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// at builds a UTC time; the month and day are written out so that expected IDs below
// can be checked against a calendar by hand.
func at(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, time.UTC)
}

// item builds an Item whose ID is its UTC time as "MMDD-HHMM" (plus the year when it is
// not 2024), which keeps the expectations readable.
func item(t time.Time, tags ...string) Item {
	id := t.Format("0102-1504")
	if t.Year() != 2024 {
		id = t.Format("2006-0102-1504")
	}
	return Item{ID: id, Time: t, Tags: tags}
}

// thirtyDaily returns one snapshot per day at 10:00 UTC from 2024-02-15 to 2024-03-15
// inclusive (15 days of February in a leap year plus 15 days of March), oldest first.
func thirtyDaily() []Item {
	var items []Item
	for t := at(2024, 2, 15, 10, 0); !t.After(at(2024, 3, 15, 10, 0)); t = t.AddDate(0, 0, 1) {
		items = append(items, item(t))
	}
	return items
}

type kept struct {
	id      string
	reasons string // reasons joined with "; "
}

func TestApply(t *testing.T) {
	now := at(2024, 4, 1, 0, 0)
	plus2 := time.FixedZone("UTC+2", 2*3600)

	tests := []struct {
		name   string
		items  []Item
		policy Policy
		now    time.Time
		keep   []kept
		remove []string
	}{
		{
			// Calendar for 2024: ISO week 8 is Feb 19-25, week 9 Feb 26-Mar 3, week 10
			// Mar 4-10, week 11 Mar 11-17. Daily takes the 7 newest days; weekly takes
			// the newest snapshot of weeks 11, 10, 9, 8; monthly takes March 15 and
			// February 29 and, with 4 counts left when the list runs out, the oldest
			// snapshot.
			name:   "30 daily snapshots, daily 7 weekly 4 monthly 6",
			items:  thirtyDaily(),
			policy: Policy{Daily: 7, Weekly: 4, Monthly: 6},
			keep: []kept{
				{"0315-1000", "daily snapshot; weekly snapshot; monthly snapshot"},
				{"0314-1000", "daily snapshot"},
				{"0313-1000", "daily snapshot"},
				{"0312-1000", "daily snapshot"},
				{"0311-1000", "daily snapshot"},
				{"0310-1000", "daily snapshot; weekly snapshot"},
				{"0309-1000", "daily snapshot"},
				{"0303-1000", "weekly snapshot"},
				{"0229-1000", "monthly snapshot"},
				{"0225-1000", "weekly snapshot"},
				{"0215-1000", "oldest monthly snapshot"},
			},
			remove: []string{
				"0308-1000", "0307-1000", "0306-1000", "0305-1000", "0304-1000",
				"0302-1000", "0301-1000", "0228-1000", "0227-1000", "0226-1000",
				"0224-1000", "0223-1000", "0222-1000", "0221-1000", "0220-1000",
				"0219-1000", "0218-1000", "0217-1000", "0216-1000",
			},
		},
		{
			name: "last 3, input order does not matter",
			items: []Item{
				item(at(2024, 3, 2, 0, 0)), item(at(2024, 3, 5, 0, 0)), item(at(2024, 3, 1, 0, 0)),
				item(at(2024, 3, 4, 0, 0)), item(at(2024, 3, 3, 0, 0)),
			},
			policy: Policy{Last: 3},
			keep: []kept{
				{"0305-0000", "last snapshot"},
				{"0304-0000", "last snapshot"},
				{"0303-0000", "last snapshot"},
			},
			remove: []string{"0302-0000", "0301-0000"},
		},
		{
			name: "two snapshots in the same hour: the newer one counts",
			items: []Item{
				item(at(2024, 3, 1, 9, 0)), item(at(2024, 3, 1, 10, 5)), item(at(2024, 3, 1, 10, 40)),
				item(at(2024, 3, 1, 11, 10)), item(at(2024, 3, 1, 11, 50)),
			},
			policy: Policy{Hourly: 2},
			keep: []kept{
				{"0301-1150", "hourly snapshot"},
				{"0301-1040", "hourly snapshot"},
			},
			remove: []string{"0301-1110", "0301-1005", "0301-0900"},
		},
		{
			name: "two snapshots on the same day: the newer one counts",
			items: []Item{
				item(at(2024, 3, 1, 22, 0)), item(at(2024, 3, 2, 8, 0)), item(at(2024, 3, 2, 20, 0)),
				item(at(2024, 2, 29, 12, 0)),
			},
			policy: Policy{Daily: 2},
			keep: []kept{
				{"0302-2000", "daily snapshot"},
				{"0301-2200", "daily snapshot"},
			},
			remove: []string{"0302-0800", "0229-1200"},
		},
		{
			name: "identical times keep their input order",
			items: []Item{
				{ID: "b", Time: at(2024, 3, 1, 12, 0)},
				{ID: "a", Time: at(2024, 3, 1, 12, 0)},
				{ID: "old", Time: at(2024, 2, 1, 12, 0)},
			},
			policy: Policy{Last: 1},
			keep:   []kept{{"b", "last snapshot"}},
			remove: []string{"a", "old"},
		},
		{
			name: "gaps: days without snapshots are not counted",
			items: []Item{
				item(at(2024, 3, 10, 3, 0)), item(at(2024, 3, 7, 3, 0)), item(at(2024, 3, 6, 3, 0)),
				item(at(2024, 3, 1, 3, 0)),
			},
			policy: Policy{Daily: 3},
			keep: []kept{
				{"0310-0300", "daily snapshot"},
				{"0307-0300", "daily snapshot"},
				{"0306-0300", "daily snapshot"},
			},
			remove: []string{"0301-0300"},
		},
		{
			name: "gaps: fewer days than the count keeps the oldest too",
			items: []Item{
				item(at(2024, 3, 10, 3, 0)), item(at(2024, 3, 10, 1, 0)), item(at(2024, 3, 7, 3, 0)),
				item(at(2024, 3, 7, 1, 0)),
			},
			policy: Policy{Daily: 5},
			keep: []kept{
				{"0310-0300", "daily snapshot"},
				{"0307-0300", "daily snapshot"},
				{"0307-0100", "oldest daily snapshot"},
			},
			remove: []string{"0310-0100"},
		},
		{
			name: "-1 is unlimited",
			items: []Item{
				item(at(2024, 3, 1, 8, 0)), item(at(2024, 3, 1, 20, 0)),
				item(at(2024, 3, 2, 8, 0)), item(at(2024, 3, 2, 20, 0)),
				item(at(2024, 3, 3, 8, 0)), item(at(2024, 3, 3, 20, 0)),
			},
			policy: Policy{Daily: -1},
			keep: []kept{
				{"0303-2000", "daily snapshot"},
				{"0302-2000", "daily snapshot"},
				{"0301-2000", "daily snapshot"},
				{"0301-0800", "oldest daily snapshot"},
			},
			remove: []string{"0303-0800", "0302-0800"},
		},
		{
			name: "-1 last keeps everything",
			items: []Item{
				item(at(2024, 3, 1, 8, 0)), item(at(2024, 3, 1, 8, 0)), item(at(2023, 3, 2, 8, 0)),
			},
			policy: Policy{Last: -1},
			keep: []kept{
				{"0301-0800", "last snapshot"},
				{"0301-0800", "last snapshot"},
				{"2023-0302-0800", "last snapshot"},
			},
		},
		{
			// ISO week 53 of 2020 runs from 2020-12-28 to 2021-01-03.
			name: "weekly uses ISO weeks, yearly calendar years",
			items: []Item{
				item(at(2020, 12, 31, 12, 0)), item(at(2021, 1, 3, 12, 0)), item(at(2021, 1, 4, 12, 0)),
			},
			policy: Policy{Weekly: 2, Yearly: 2},
			keep: []kept{
				{"2021-0104-1200", "weekly snapshot; yearly snapshot"},
				{"2021-0103-1200", "weekly snapshot"},
				{"2020-1231-1200", "yearly snapshot"},
			},
		},
		{
			// The newest snapshot is March 10 12:00, so the cutoff is March 8 12:00
			// (exclusive) although now is weeks later.
			name: "within 2d counts from the newest snapshot",
			items: []Item{
				item(at(2024, 3, 10, 12, 0)), item(at(2024, 3, 9, 0, 0)), item(at(2024, 3, 8, 12, 0)),
				item(at(2024, 3, 8, 11, 0)), item(at(2024, 3, 1, 0, 0)),
			},
			policy: Policy{Within: Duration{Days: 2}},
			keep: []kept{
				{"0310-1200", "within 2d"},
				{"0309-0000", "within 2d"},
			},
			remove: []string{"0308-1200", "0308-1100", "0301-0000"},
		},
		{
			// One month before 2024-03-31 00:00 normalises to February 31, which is
			// March 2 00:00.
			name: "within 1m follows the calendar",
			items: []Item{
				item(at(2024, 3, 31, 0, 0)), item(at(2024, 3, 2, 1, 0)), item(at(2024, 3, 2, 0, 0)),
				item(at(2024, 2, 29, 0, 0)),
			},
			policy: Policy{Within: Duration{Months: 1}},
			keep: []kept{
				{"0331-0000", "within 1m"},
				{"0302-0100", "within 1m"},
			},
			remove: []string{"0302-0000", "0229-0000"},
		},
		{
			name: "keep tag, single and all-of",
			items: []Item{
				item(at(2024, 3, 5, 0, 0)),
				item(at(2024, 3, 4, 0, 0), "pre-upgrade"),
				item(at(2024, 3, 3, 0, 0), "a"),
				item(at(2024, 3, 2, 0, 0), "b", "a"),
				item(at(2024, 3, 1, 0, 0), "manual", "pre-upgrade"),
			},
			policy: Policy{Tags: []string{"pre-upgrade", "a,b"}},
			keep: []kept{
				{"0304-0000", "tag pre-upgrade"},
				{"0302-0000", "tag a,b"},
				{"0301-0000", "tag pre-upgrade"},
			},
			remove: []string{"0305-0000", "0303-0000"},
		},
		{
			name: "combined reasons are listed tag, within, then count rules",
			items: []Item{
				item(at(2024, 3, 5, 18, 0), "pre-upgrade"),
				item(at(2024, 3, 5, 6, 0)),
				item(at(2024, 3, 4, 18, 0)),
				item(at(2024, 3, 3, 18, 0), "pre-upgrade"),
				item(at(2024, 3, 2, 18, 0)),
			},
			policy: Policy{Last: 1, Daily: 2, Monthly: 1, Within: Duration{Hours: 13}, Tags: []string{"pre-upgrade"}},
			keep: []kept{
				{"0305-1800", "tag pre-upgrade; within 13h; last snapshot; daily snapshot; monthly snapshot"},
				{"0305-0600", "within 13h"},
				{"0304-1800", "daily snapshot"},
				{"0303-1800", "tag pre-upgrade"},
			},
			remove: []string{"0302-1800"},
		},
		{
			// In UTC the first two items share March 1; in UTC+2 the 23:30 item is on
			// March 2.
			name: "buckets in UTC",
			items: []Item{
				item(at(2024, 3, 1, 23, 30)), item(at(2024, 3, 1, 10, 0)), item(at(2024, 2, 28, 10, 0)),
			},
			policy: Policy{Daily: 2},
			keep: []kept{
				{"0301-2330", "daily snapshot"},
				{"0228-1000", "daily snapshot"},
			},
			remove: []string{"0301-1000"},
		},
		{
			name: "buckets in Policy.Location",
			items: []Item{
				item(at(2024, 3, 1, 23, 30)), item(at(2024, 3, 1, 10, 0)), item(at(2024, 2, 28, 10, 0)),
			},
			policy: Policy{Daily: 2, Location: plus2},
			keep: []kept{
				{"0301-2330", "daily snapshot"},
				{"0301-1000", "daily snapshot"},
			},
			remove: []string{"0228-1000"},
		},
		{
			name: "buckets in the location of now",
			items: []Item{
				item(at(2024, 3, 1, 23, 30)), item(at(2024, 3, 1, 10, 0)), item(at(2024, 2, 28, 10, 0)),
			},
			policy: Policy{Daily: 2},
			now:    now.In(plus2),
			keep: []kept{
				{"0301-2330", "daily snapshot"},
				{"0301-1000", "daily snapshot"},
			},
			remove: []string{"0228-1000"},
		},
		{
			name:   "no items",
			policy: Policy{Last: 1},
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.now
			if n.IsZero() {
				n = now
			}
			keep, remove, err := Apply(tc.items, tc.policy, n)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			var gotKeep []kept
			for _, d := range keep {
				gotKeep = append(gotKeep, kept{d.ID, strings.Join(d.Reasons, "; ")})
			}
			var gotRemove []string
			for _, d := range remove {
				if len(d.Reasons) != 0 {
					t.Errorf("removed %s has reasons %v", d.ID, d.Reasons)
				}
				gotRemove = append(gotRemove, d.ID)
			}
			if !reflect.DeepEqual(gotKeep, tc.keep) {
				t.Errorf("keep:\n got  %v\n want %v", gotKeep, tc.keep)
			}
			if !reflect.DeepEqual(gotRemove, tc.remove) {
				t.Errorf("remove:\n got  %v\n want %v", gotRemove, tc.remove)
			}
			if len(keep)+len(remove) != len(tc.items) {
				t.Errorf("%d kept + %d removed != %d items", len(keep), len(remove), len(tc.items))
			}
		})
	}
}

func TestApplyDoesNotModifyInput(t *testing.T) {
	items := []Item{item(at(2024, 3, 1, 0, 0)), item(at(2024, 3, 2, 0, 0))}
	if _, _, err := Apply(items, Policy{Last: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if items[0].ID != "0301-0000" {
		t.Errorf("input reordered: %v", items)
	}
}

func TestApplyInvalid(t *testing.T) {
	items := []Item{item(at(2024, 3, 1, 0, 0))}
	tests := []struct {
		name   string
		policy Policy
		want   error
	}{
		{"empty", Policy{}, ErrEmptyPolicy},
		{"location alone is empty", Policy{Location: time.UTC}, ErrEmptyPolicy},
		{"count below -1", Policy{Daily: -2}, ErrInvalidPolicy},
		{"empty tag", Policy{Tags: []string{""}}, ErrInvalidPolicy},
		{"empty tag in list", Policy{Tags: []string{"a,"}}, ErrInvalidPolicy},
		{"negative within", Policy{Within: Duration{Days: -1}}, ErrInvalidPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keep, remove, err := Apply(items, tc.policy, time.Now())
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if keep != nil || remove != nil {
				t.Errorf("decisions returned with an error: %v %v", keep, remove)
			}
		})
	}
}

func TestPolicyEmptyAndString(t *testing.T) {
	tests := []struct {
		p     Policy
		empty bool
		str   string
	}{
		{Policy{}, true, "empty policy"},
		{Policy{Daily: 7, Weekly: -1}, false, "keep 7 daily, all weekly"},
		{Policy{Within: Duration{Days: 2}, Tags: []string{"pre-upgrade"}}, false, "keep within 2d, tag pre-upgrade"},
		{Policy{Last: 3, Yearly: 2}, false, "keep 3 last, 2 yearly"},
	}
	for _, tc := range tests {
		if got := tc.p.Empty(); got != tc.empty {
			t.Errorf("%+v.Empty() = %v", tc.p, got)
		}
		if got := tc.p.String(); got != tc.str {
			t.Errorf("%+v.String() = %q, want %q", tc.p, got, tc.str)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want Duration
		str  string
		err  bool
	}{
		{in: "2d", want: Duration{Days: 2}, str: "2d"},
		{in: "36h", want: Duration{Hours: 36}, str: "36h"},
		{in: "1y6m3d12h", want: Duration{1, 6, 3, 12}, str: "1y6m3d12h"},
		{in: "12h3d", want: Duration{Days: 3, Hours: 12}, str: "3d12h"},
		{in: "0d", want: Duration{}, str: "0h"},
		{in: "", err: true},
		{in: "2", err: true},
		{in: "d", err: true},
		{in: "2w", err: true},
		{in: "2d3d", err: true},
		{in: "-2d", err: true},
		{in: "2 d", err: true},
		{in: "1.5d", err: true},
		{in: "99999999999999999999d", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDuration(tc.in)
			if tc.err {
				if !errors.Is(err, ErrInvalidDuration) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want ErrInvalidDuration", tc.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDuration(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseDuration(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if s := got.String(); s != tc.str {
				t.Errorf("String() = %q, want %q", s, tc.str)
			}
			var u Duration
			if err := u.UnmarshalText([]byte(tc.in)); err != nil || u != tc.want {
				t.Errorf("UnmarshalText(%q) = %+v, %v", tc.in, u, err)
			}
		})
	}
}

func TestDurationBefore(t *testing.T) {
	tests := []struct {
		d    Duration
		from time.Time
		want time.Time
	}{
		{Duration{Days: 2}, at(2024, 3, 1, 12, 0), at(2024, 2, 28, 12, 0)},
		{Duration{Hours: 36}, at(2024, 3, 1, 12, 0), at(2024, 2, 29, 0, 0)},
		{Duration{Years: 1}, at(2024, 2, 29, 0, 0), at(2023, 3, 1, 0, 0)},
		{Duration{Months: 1, Hours: 1}, at(2024, 3, 31, 0, 0), at(2024, 3, 1, 23, 0)},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.d), func(t *testing.T) {
			if got := tc.d.Before(tc.from); !got.Equal(tc.want) {
				t.Errorf("%v.Before(%v) = %v, want %v", tc.d, tc.from, got, tc.want)
			}
		})
	}
}
