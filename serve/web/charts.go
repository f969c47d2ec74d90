package web

import (
	"fmt"
	"strings"
	"time"

	"github.com/cairn-backup/cairn/snapshot"
)

// Chart geometry, in SVG user units.
const (
	chartW   = 900
	chartPad = 40
)

// timeline places one app's snapshots on a time axis, marking version changes.
type timeline struct {
	W, H   int
	AxisY  int
	X0, X1 int
	Dots   []timelineDot
	Marks  []timelineMark
	Ticks  []tick
}

type timelineDot struct {
	X, Y  float64
	Href  string
	Title string
	Class string
}

type timelineMark struct {
	X      float64
	Y      int
	Label  string
	LabelY int
}

type tick struct {
	X, Y  float64
	Label string
	Class string
}

// xScale maps times between t0 and t1 onto [x0, x1].
func xScale(t0, t1 time.Time, x0, x1 float64) func(time.Time) float64 {
	span := t1.Sub(t0)
	return func(t time.Time) float64 {
		if span <= 0 {
			return (x0 + x1) / 2
		}
		return x0 + float64(t.Sub(t0))/float64(span)*(x1-x0)
	}
}

func buildTimeline(rows []*snapRow) *timeline {
	if len(rows) == 0 {
		return nil
	}
	tl := &timeline{W: chartW, H: 110, AxisY: 70, X0: chartPad, X1: chartW - chartPad}
	t0, t1 := rows[0].Time, rows[len(rows)-1].Time
	x := xScale(t0, t1, float64(tl.X0), float64(tl.X1))
	level := 0
	lastMarkX := -1000.0
	for i, r := range rows {
		cx := x(r.Time)
		title := fmt.Sprintf("%s · %s", r.Short, formatTime(r.Time))
		if r.Version != "" {
			title += " · version " + r.Version
		}
		if r.Migrations != "" {
			title += " · migrations " + r.Migrations
		}
		if len(r.Tags) > 0 {
			title += " · tags " + strings.Join(r.Tags, ",")
		}
		class := "dot"
		switch {
		case i > 0 && r.VersionChange:
			class += " dot-version"
		case i > 0 && r.MigChange:
			class += " dot-migration"
		}
		tl.Dots = append(tl.Dots, timelineDot{X: cx, Y: float64(tl.AxisY), Href: "/snapshots/" + r.ID.String(), Title: title, Class: class})
		if i == 0 || r.VersionChange {
			label := r.Version
			if label == "" {
				label = "(no version)"
			}
			// Alternate label heights when marks are close, so they stay readable.
			if cx-lastMarkX < 90 {
				level = 1 - level
			} else {
				level = 0
			}
			lastMarkX = cx
			tl.Marks = append(tl.Marks, timelineMark{X: cx, Y: tl.AxisY - 8, Label: label, LabelY: 22 + 16*level})
		}
	}
	tl.Ticks = timeTicks(t0, t1, x, float64(tl.AxisY+24))
	return tl
}

// timeTicks labels the start, end and a few points between.
func timeTicks(t0, t1 time.Time, x func(time.Time) float64, y float64) []tick {
	layout := "2006-01-02"
	span := t1.Sub(t0)
	if span < 48*time.Hour {
		layout = "01-02 15:04"
	}
	if span <= 0 {
		return []tick{{X: x(t0), Y: y, Label: t0.Local().Format(layout), Class: "tick"}}
	}
	n := 4
	out := make([]tick, 0, n+1)
	for i := 0; i <= n; i++ {
		t := t0.Add(time.Duration(float64(span) * float64(i) / float64(n)))
		k := tick{X: x(t), Y: y, Label: t.Local().Format(layout), Class: "tick"}
		switch i {
		case 0:
			k.Class = "tick tick-start"
		case n:
			k.Class = "tick tick-end"
		}
		out = append(out, k)
	}
	return out
}

// growthChart draws the repository's growth: the data each backup added (stored,
// after deduplication and compression), summed over time, and each snapshot's own
// size.
type growthChart struct {
	W, H         int
	Left, Right  int
	Top, Bottom  int
	Stored       string // polyline points
	Area         string // polygon points
	Logical      string
	Dots         []timelineDot
	YTicks       []tick
	XTicks       []tick
	TotalStored  uint64
	RepoSize     uint64
	MaxLogical   uint64
	Count        int
	HasSummaries bool
}

func buildGrowth(snaps []*snapshot.Snapshot, repoSize uint64) *growthChart {
	if len(snaps) == 0 {
		return nil
	}
	g := &growthChart{W: chartW, H: 240, Left: 70, Right: chartW - 20, Top: 15, Bottom: 200, RepoSize: repoSize, Count: len(snaps)}
	cum := make([]uint64, len(snaps))
	logical := make([]uint64, len(snaps))
	var sum, max uint64
	for i, sn := range snaps {
		if sn.Summary != nil {
			sum += sn.Summary.BytesStored
			logical[i] = sn.Summary.TotalBytes
			g.HasSummaries = true
		}
		if sn.Database != nil {
			logical[i] += sn.Database.Size
		}
		cum[i] = sum
		if sum > max {
			max = sum
		}
		if logical[i] > max {
			max = logical[i]
		}
		if logical[i] > g.MaxLogical {
			g.MaxLogical = logical[i]
		}
	}
	g.TotalStored = sum
	if max == 0 {
		max = 1
	}
	max = niceCeil(max)
	x := xScale(snaps[0].Time, snaps[len(snaps)-1].Time, float64(g.Left+10), float64(g.Right-10))
	y := func(v uint64) float64 {
		return float64(g.Bottom) - float64(v)/float64(max)*float64(g.Bottom-g.Top)
	}
	var stored, area, logi strings.Builder
	fmt.Fprintf(&area, "%.1f,%d ", x(snaps[0].Time), g.Bottom)
	for i, sn := range snaps {
		px := x(sn.Time)
		fmt.Fprintf(&stored, "%.1f,%.1f ", px, y(cum[i]))
		fmt.Fprintf(&area, "%.1f,%.1f ", px, y(cum[i]))
		fmt.Fprintf(&logi, "%.1f,%.1f ", px, y(logical[i]))
		g.Dots = append(g.Dots, timelineDot{X: px, Y: y(cum[i]), Href: "/snapshots/" + sn.ID.String(), Class: "gdot",
			Title: fmt.Sprintf("%s · %s · %s stored in all · snapshot %s", sn.ID.Short(), formatTime(sn.Time), formatBytes(cum[i]), formatBytes(logical[i]))})
	}
	fmt.Fprintf(&area, "%.1f,%d", x(snaps[len(snaps)-1].Time), g.Bottom)
	g.Stored, g.Area, g.Logical = strings.TrimSpace(stored.String()), area.String(), strings.TrimSpace(logi.String())
	for i := 0; i <= 4; i++ {
		v := max / 4 * uint64(i)
		g.YTicks = append(g.YTicks, tick{X: float64(g.Left - 8), Y: y(v), Label: formatBytes(v)})
	}
	g.XTicks = timeTicks(snaps[0].Time, snaps[len(snaps)-1].Time, x, float64(g.Bottom+22))
	return g
}

// niceCeil rounds v up to four times a round step (1, 2 or 5 times a power of ten of
// B, KiB, MiB, …), so that the ticks of the y axis read as round sizes.
func niceCeil(v uint64) uint64 {
	for unit := uint64(1); ; unit *= 1024 {
		for _, m := range []uint64{1, 2, 5, 10, 20, 50, 100, 200, 500} {
			if step := m * unit; 4*step >= v {
				return 4 * step
			}
		}
		if unit >= 1<<50 {
			return v
		}
	}
}
