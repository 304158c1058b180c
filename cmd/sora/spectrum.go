package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/sora-go/sora/models/llama"
	"github.com/sora-go/sora/train"
)

func init() {
	register(command{
		name:    "spectrum",
		summary: "singular value entropy and stable rank of an adapter's weight updates, with a plot",
		run:     runSpectrum,
	})
}

var spectrumDoc = usageDoc{
	synopsis: "spectrum --adapter DIR [--model FILE|DIR] [--plot FILE.png] [--json FILE] [--backend NAME]",
	description: "Applies the adapter to its base model and analyses, layer by layer, the update it makes to the " +
		"weights, ΔW = W' − W0 (W' the merged weight), in float64: for LoRA, LoRA+, Pre-Ortho and Post-Ortho, whose " +
		"updates are low-rank by construction, from the update's factors (thin QRs and the SVD of a small core, " +
		"never forming ΔW); for the other methods by a full SVD of ΔW, the layers spread over the cores. It reports " +
		"the singular value entropy " +
		"H = −Σ pᵢ ln pᵢ with pᵢ = σᵢ²/Σⱼσⱼ² (how evenly the update spreads over directions; also divided by the " +
		"log of the numerical rank), the stable rank ‖ΔW‖_F²/‖ΔW‖₂², the numerical rank and the norms. It prints " +
		"one line per layer and the means, and draws the normalised spectra and the entropies into a PNG.",
	examples: []string{
		"sora spectrum --model stories260K.bin --adapter runs/boolq-sora/adapter",
		"sora spectrum --adapter runs/boolq-lora/adapter --plot lora-spectrum.png --json lora-spectrum.json",
	},
}

func runSpectrum(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("spectrum")
	name := addBackendFlag(fs)
	modelPath := fs.String("model", "", "`PATH` of the base model (a llama2.c file or Hugging Face folder); default: the base_model_name_or_path of --adapter")
	adapterDir := fs.String("adapter", "", "`DIR` of the adapter to analyse (required)")
	plotPath := fs.String("plot", "spectrum.png", "`FILE` to draw the spectra into (\"\" for none)")
	jsonPath := fs.String("json", "", "`FILE` to write the per-layer figures to as JSON")
	if code, ok := parseFlags(fs, spectrumDoc, args, stdout, stderr); !ok {
		return code
	}
	if *adapterDir == "" {
		fmt.Fprintln(stderr, "sora spectrum: --adapter is required (a folder with adapter_config.json)")
		return exitUsage
	}
	// The files are written after the analysis, which takes minutes on a
	// large model: a path they cannot be written to is refused now.
	for _, out := range []struct{ flag, path string }{{"json", *jsonPath}, {"plot", *plotPath}} {
		if out.path == "" {
			continue
		}
		if _, err := checkOutputFile(out.path); err != nil {
			fmt.Fprintf(stderr, "sora spectrum: --%s: %v\n", out.flag, err)
			return exitFailure
		}
	}
	ad, err := readAdapter("spectrum", *adapterDir)
	if err != nil {
		fmt.Fprintf(stderr, "sora spectrum: %v\n", err)
		return exitFailure
	}
	if *modelPath, err = ad.modelPath(*modelPath); err != nil {
		fmt.Fprintf(stderr, "sora spectrum: %v\n", err)
		return exitUsage
	}
	b, code := openBackend(*name, stderr)
	if b == nil {
		return code
	}
	defer b.Close()
	base, err := openBase(*modelPath)
	if err != nil {
		fmt.Fprintf(stderr, "sora spectrum: %v\n", err)
		return exitFailure
	}
	defer base.close()
	m, release, code := openBaseModel("spectrum", b, base, llama.Options{}, stderr)
	if m == nil {
		return code
	}
	defer release()
	// apply gives m the score head a classifier's adapter carries, so
	// classifiers load too; the head itself is no weight update to analyse.
	pm, _, err := ad.apply(m)
	if err != nil {
		fmt.Fprintf(stderr, "sora spectrum: %v\n", err)
		return exitFailure
	}
	defer pm.Unload()
	spectra, err := pm.Spectra()
	if err != nil {
		fmt.Fprintf(stderr, "sora spectrum: %v\n", err)
		return exitFailure
	}
	sum := train.SpectrumSummary(spectra)
	method := pm.Config().Method
	fmt.Fprintf(stdout, "%s adapter %s on %s: spectra of ΔW = W' − W0\n\n", method, *adapterDir, *modelPath)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layer\tshape\tSVD entropy\tnormalised\tstable rank\trank\t‖ΔW‖_F\t‖ΔW‖₂\t")
	for _, l := range sum.Layers {
		fmt.Fprintf(tw, "%s\t%d×%d\t%.4f\t%.4f\t%.3f\t%d\t%.4g\t%.4g\t\n", l.Layer, l.Rows, l.Cols, l.Entropy, l.NormalizedEntropy,
			l.StableRank, l.NumericalRank, l.Frobenius, l.Spectral)
	}
	fmt.Fprintf(tw, "mean of %d layers\t\t%.4f\t%.4f\t%.3f\t\t\t\t\n", len(sum.Layers), sum.MeanEntropy, sum.MeanNormalizedEntropy, sum.MeanStableRank)
	tw.Flush()
	// The JSON goes first: it is the cheaper file to write, and a plot that
	// fails all the same (the folders were checked before the analysis)
	// then leaves the numbers of the whole analysis behind.
	if *jsonPath != "" {
		if err := writeJSON(*jsonPath, sum); err != nil {
			fmt.Fprintf(stderr, "sora spectrum: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "wrote %s\n", *jsonPath)
	}
	if *plotPath != "" {
		// PlotSpectra makes missing folders, as writeJSON does for --json.
		if err := train.PlotSpectra(*plotPath, fmt.Sprintf("spectra of ΔW, %s", method), spectra); err != nil {
			fmt.Fprintf(stderr, "sora spectrum: writing the plot: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "wrote %s\n", *plotPath)
	}
	return exitOK
}
