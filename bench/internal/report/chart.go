package report

import (
	"fmt"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// CompareName is the name of the comparison benchmark, whose sub-benchmarks
// are lib=<library>/size=<bytes>.
const CompareName = "BenchmarkRentReturn/"

// Chart draws Rent+Return time against entry size on log-log axes, one
// line per library, from the comparison benchmarks, and saves it to path
// (the format follows the extension: .svg, .png, .pdf).
func Chart(cmp *Set, path string) error {
	libs := cmp.Values(CompareName, "lib")
	if len(libs) == 0 {
		return fmt.Errorf("no %slib=... benchmarks to chart", CompareName)
	}
	p := plot.New()
	p.Title.Text = "Rent+Return or the library's equivalent: median time per operation (lower is better)"
	p.X.Label.Text = "entry size"
	p.Y.Label.Text = "time per operation"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.Add(plotter.NewGrid())
	// Bottom right is empty (every line climbs with the size, and the axis
	// starts well below the lowest point).
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs, p.Legend.YOffs = -vg.Points(10), vg.Points(10)

	var xTicks []plot.Tick
	lo, hi := math.Inf(1), math.Inf(-1)

	for i, lib := range libs {
		var pts plotter.XYs
		for _, size := range cmp.Values(CompareName+"lib="+lib+"/", "size") {
			n, err := strconv.Atoi(size)
			if err != nil {
				return fmt.Errorf("lib=%s: size %q: %w", lib, size, err)
			}
			v, err := cmp.Median(CompareName+"lib="+lib+"/size="+size, "ns/op")
			if err != nil {
				return err
			}
			pts = append(pts, plotter.XY{X: float64(n), Y: v})
			lo, hi = min(lo, v), max(hi, v)
			if i == 0 {
				xTicks = append(xTicks, plot.Tick{Value: float64(n), Label: sizeLabel(size)})
			}
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return fmt.Errorf("lib=%s: %w", lib, err)
		}
		line.Color = plotutil.Color(i)
		line.Dashes = plotutil.Dashes(i)
		line.Width = vg.Points(1.5)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(lib, line, points)
	}
	// A decade and a half of room under the lowest point for the legend.
	p.Y.Min = lo / 30
	p.X.Tick.Marker = plot.ConstantTicks(xTicks)
	p.Y.Tick.Marker = plot.ConstantTicks(decadeTicks(p.Y.Min, hi))
	return p.Save(9*vg.Inch, 6*vg.Inch, path)
}

// decadeTicks are ticks at the powers of ten from below lo to above hi
// nanoseconds, labelled as durations.
func decadeTicks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		v := math.Pow(10, e)
		ts = append(ts, plot.Tick{Value: v, Label: FormatTime(v * 1e-9)})
	}
	return ts
}
