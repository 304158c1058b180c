package data

import (
	"fmt"
	"maps"
	"math"
	"slices"
)

// Accuracy returns the fraction of positions where pred equals gold. The
// slices must have the same, non-zero, length.
func Accuracy(pred, gold []int) (float64, error) {
	if err := sameLen(pred, gold); err != nil {
		return 0, err
	}
	n := 0
	for i := range pred {
		if pred[i] == gold[i] {
			n++
		}
	}
	return float64(n) / float64(len(pred)), nil
}

// MCC returns the Matthews correlation coefficient of predictions pred
// against gold labels (both in [0, classes)), GLUE's CoLA metric. For two
// classes it is (TP·TN − FP·FN) / √((TP+FP)(TP+FN)(TN+FP)(TN+FN)); for more
// it is Gorodkin's generalisation, as scikit-learn's matthews_corrcoef
// computes it. It is 1 for perfect predictions, 0 for chance (and, as in
// scikit-learn, 0 when a denominator term vanishes, e.g. when every
// prediction is the same class), −1 for total disagreement.
func MCC(pred, gold []int, classes int) (float64, error) {
	if err := sameLen(pred, gold); err != nil {
		return 0, err
	}
	if classes < 2 {
		return 0, fmt.Errorf("data: MCC needs at least 2 classes, got %d", classes)
	}
	// Confusion-matrix margins: t[k] true count, p[k] predicted count.
	t := make([]float64, classes)
	p := make([]float64, classes)
	var correct float64
	for i := range pred {
		if pred[i] < 0 || pred[i] >= classes || gold[i] < 0 || gold[i] >= classes {
			return 0, fmt.Errorf("data: MCC: item %d has prediction %d and label %d; both must be in [0, %d)", i, pred[i], gold[i], classes)
		}
		t[gold[i]]++
		p[pred[i]]++
		if pred[i] == gold[i] {
			correct++
		}
	}
	s := float64(len(pred))
	var tp, tt, pp float64
	for k := range t {
		tp += t[k] * p[k]
		tt += t[k] * t[k]
		pp += p[k] * p[k]
	}
	den := math.Sqrt((s*s - pp) * (s*s - tt))
	if den == 0 {
		return 0, nil
	}
	return (correct*s - tp) / den, nil
}

// Majority returns the most frequent label of gold (the smallest on ties)
// and the accuracy of always predicting it: the baseline a classifier, or an
// LM that always answers the same, must beat.
func Majority(gold []int) (label int, accuracy float64, err error) {
	if len(gold) == 0 {
		return 0, 0, fmt.Errorf("data: majority baseline of no labels")
	}
	count := map[int]int{}
	for _, g := range gold {
		count[g]++
	}
	best := gold[0]
	for l, c := range count {
		if c > count[best] || (c == count[best] && l < best) {
			best = l
		}
	}
	return best, float64(count[best]) / float64(len(gold)), nil
}

// MajorityAnswer returns the gold answer that, generated for every row,
// would score best against golds, and the accuracy it would score: the
// baseline an LM that always answers the same must beat. Answers are
// compared as [NewExtractor]'s extractor for golds scores a generation
// (see [Extractor.Extract] and [Extractor.Correct]): numbers by value, so
// that "2", "2.0" and "2.00" are one answer, text answers ignoring case,
// and so on. On ties it returns the smallest string. It is an error for
// golds to be empty or to hold an empty answer.
func MajorityAnswer(golds []string) (answer string, accuracy float64, err error) {
	if len(golds) == 0 {
		return "", 0, fmt.Errorf("data: majority baseline of no answers")
	}
	x, err := NewExtractor(golds)
	if err != nil {
		return "", 0, err
	}
	count := map[string]int{}
	for _, g := range golds {
		count[g]++
	}
	distinct := slices.Sorted(maps.Keys(count))
	// Each distinct gold's extractor, and each candidate's extraction by
	// that extractor's kind (two kinds at most, for NumberOrLetter).
	rx := make([]*Extractor, len(distinct))
	for i, g := range distinct {
		rx[i] = x.For(g)
	}
	type extracted struct {
		pred string
		ok   bool
	}
	best, bestHits := "", -1
	for _, a := range distinct {
		preds := map[AnswerKind]extracted{}
		hits := 0
		for i, g := range distinct {
			e, seen := preds[rx[i].Kind]
			if !seen {
				e.pred, e.ok = rx[i].Extract(a)
				preds[rx[i].Kind] = e
			}
			if e.ok && rx[i].Correct(e.pred, g) {
				hits += count[g]
			}
		}
		if hits > bestHits {
			best, bestHits = a, hits
		}
	}
	return best, float64(bestHits) / float64(len(golds)), nil
}

func sameLen(pred, gold []int) error {
	if len(pred) != len(gold) {
		return fmt.Errorf("data: %d predictions for %d labels", len(pred), len(gold))
	}
	if len(pred) == 0 {
		return fmt.Errorf("data: no predictions to score")
	}
	return nil
}
