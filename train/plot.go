package train

import (
	"bytes"
	"fmt"
	"math"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/sora-go/sora/peft"
)

// Names of the plots in the output folder.
const (
	LossPlot     = "loss.png"
	SpectrumPlot = "spectrum.png"
	SpectrumJSON = "spectrum.json"
)

// LayerStats is one layer's line of spectrum.json and of "sora spectrum".
type LayerStats struct {
	Layer             string  `json:"layer"`
	Rows              int     `json:"rows"`
	Cols              int     `json:"cols"`
	Entropy           float64 `json:"svd_entropy"`
	NormalizedEntropy float64 `json:"svd_entropy_normalized"`
	StableRank        float64 `json:"stable_rank"`
	NumericalRank     int     `json:"numerical_rank"`
	Frobenius         float64 `json:"frobenius_norm"`
	Spectral          float64 `json:"spectral_norm"`
}

// Summary is the spectrum of every adapted layer and their means.
type Summary struct {
	Layers                []LayerStats `json:"layers"`
	MeanEntropy           float64      `json:"mean_svd_entropy"`
	MeanNormalizedEntropy float64      `json:"mean_svd_entropy_normalized"`
	MeanStableRank        float64      `json:"mean_stable_rank"`
}

// SpectrumSummary condenses per-layer spectra into a Summary.
func SpectrumSummary(spectra []peft.LayerSpectrum) Summary {
	var s Summary
	for _, l := range spectra {
		s.Layers = append(s.Layers, LayerStats{Layer: l.Name, Rows: l.Rows, Cols: l.Cols, Entropy: l.Entropy,
			NormalizedEntropy: l.NormalizedEntropy, StableRank: l.StableRank, NumericalRank: l.NonZero,
			Frobenius: l.Frobenius, Spectral: l.Spectral})
		s.MeanEntropy += l.Entropy
		s.MeanNormalizedEntropy += l.NormalizedEntropy
		s.MeanStableRank += l.StableRank
	}
	if n := float64(len(spectra)); n > 0 {
		s.MeanEntropy /= n
		s.MeanNormalizedEntropy /= n
		s.MeanStableRank /= n
	}
	return s
}

// LossCurve is one named series of (step, loss) points.
type LossCurve struct {
	Name   string
	Steps  []float64
	Losses []float64
	// Points draws markers (evaluations) instead of a line.
	Points bool
}

// CurvesFromMetrics returns the training loss (smoothed by a running mean
// over window steps, 1 for none) and the evaluation loss of a metrics log.
func CurvesFromMetrics(rs []Record, window int) []LossCurve {
	tr := LossCurve{Name: "train loss"}
	ev := LossCurve{Name: "eval loss", Points: true}
	var recent []float64
	for _, r := range rs {
		if r.Loss != nil {
			recent = append(recent, *r.Loss)
			if len(recent) > max(1, window) {
				recent = recent[1:]
			}
			var s float64
			for _, v := range recent {
				s += v
			}
			tr.Steps = append(tr.Steps, float64(r.Step))
			tr.Losses = append(tr.Losses, s/float64(len(recent)))
		}
		if r.EvalLoss != nil {
			ev.Steps = append(ev.Steps, float64(r.Step))
			ev.Losses = append(ev.Losses, *r.EvalLoss)
		}
	}
	if window > 1 {
		tr.Name = fmt.Sprintf("train loss (mean of %d steps)", window)
	}
	var out []LossCurve
	if len(tr.Steps) > 0 {
		out = append(out, tr)
	}
	if len(ev.Steps) > 0 {
		out = append(out, ev)
	}
	return out
}

// PlotLoss draws loss curves against the step into a PNG file at path
// (written atomically).
func PlotLoss(path, title string, curves []LossCurve) error {
	if len(curves) == 0 {
		return fmt.Errorf("train: no loss values to plot")
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "optimizer step"
	p.Y.Label.Text = "loss (cross-entropy per target)"
	p.Add(plotter.NewGrid())
	for i, c := range curves {
		pts := make(plotter.XYs, 0, len(c.Steps))
		for j := range c.Steps {
			if !math.IsNaN(c.Losses[j]) && !math.IsInf(c.Losses[j], 0) {
				pts = append(pts, plotter.XY{X: c.Steps[j], Y: c.Losses[j]})
			}
		}
		if len(pts) == 0 {
			continue
		}
		if c.Points {
			s, err := plotter.NewScatter(pts)
			if err != nil {
				return err
			}
			s.Color = plotutil.Color(i)
			s.Radius = vg.Points(3)
			p.Add(s)
			p.Legend.Add(c.Name, s)
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.2)
		p.Add(l)
		p.Legend.Add(c.Name, l)
	}
	p.Legend.Top = true
	return savePlot(path, p, 16*vg.Centimeter, 10*vg.Centimeter)
}

// PlotSpectra draws the singular value spectra of the layers' updates
// into a PNG file at path: on the left σᵢ/σ₁ against i for every layer
// (coloured by module: q, k, v, o, gate, up, down), on the right each
// layer's singular value entropy.
func PlotSpectra(path, title string, spectra []peft.LayerSpectrum) error {
	if len(spectra) == 0 {
		return fmt.Errorf("train: no layers to plot")
	}
	left := plot.New()
	left.Title.Text = title
	left.X.Label.Text = "index i"
	left.Y.Label.Text = "σᵢ / σ₁ (log scale)"
	left.Y.Scale = plot.LogScale{}
	left.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	left.Add(plotter.NewGrid())
	kinds := map[string]int{}
	var order []string
	for _, s := range spectra {
		k := moduleKind(s.Name)
		if _, ok := kinds[k]; !ok {
			kinds[k] = len(kinds)
			order = append(order, k)
		}
	}
	legend := map[string]bool{}
	const floor = 1e-6 // the log axis cannot show zeros
	for _, s := range spectra {
		if len(s.Singular) == 0 || !(s.Singular[0] > 0) {
			continue
		}
		n := min(len(s.Singular), 64)
		pts := make(plotter.XYs, n)
		for i := range n {
			pts[i] = plotter.XY{X: float64(i + 1), Y: math.Max(floor, s.Singular[i]/s.Singular[0])}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		k := moduleKind(s.Name)
		l.Color = plotutil.Color(kinds[k])
		l.Width = vg.Points(0.8)
		left.Add(l)
		if !legend[k] {
			legend[k] = true
			left.Legend.Add(k, l)
		}
	}
	left.Legend.Top = true

	right := plot.New()
	right.Title.Text = "singular value entropy per layer"
	right.X.Label.Text = "layer (in model order)"
	right.Y.Label.Text = "entropy (nats)"
	right.Add(plotter.NewGrid())
	byKind := map[string]plotter.XYs{}
	for i, s := range spectra {
		k := moduleKind(s.Name)
		byKind[k] = append(byKind[k], plotter.XY{X: float64(i), Y: s.Entropy})
	}
	sort.Strings(order)
	for _, k := range order {
		sc, err := plotter.NewScatter(byKind[k])
		if err != nil {
			return err
		}
		sc.Color = plotutil.Color(kinds[k])
		sc.Radius = vg.Points(2.5)
		right.Add(sc)
		right.Legend.Add(k, sc)
	}
	right.Legend.Top = true

	img := vgimg.New(28*vg.Centimeter, 11*vg.Centimeter)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Centimeter, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2,
		PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{{left, right}}, tiles, dc)
	left.Draw(canvases[0][0])
	right.Draw(canvases[0][1])
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return fmt.Errorf("train: drawing %s: %w", path, err)
	}
	return writeFileAtomic(path, buf.Bytes())
}

// moduleKind returns the last component of a layer name ("q_proj").
func moduleKind(name string) string {
	return name[strings.LastIndexByte(name, '.')+1:]
}

func savePlot(path string, p *plot.Plot, w, h vg.Length) error {
	wt, err := p.WriterTo(w, h, "png")
	if err != nil {
		return fmt.Errorf("train: drawing %s: %w", path, err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return fmt.Errorf("train: drawing %s: %w", path, err)
	}
	return writeFileAtomic(path, buf.Bytes())
}
