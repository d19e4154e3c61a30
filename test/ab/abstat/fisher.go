package main

import "math"

// logChoose returns ln C(n, k) for 0 <= k <= n.
func logChoose(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// fisherGreater returns the one-sided Fisher exact p-value for the 2x2
// table {{aFail, aOK}, {bFail, bOK}} under the alternative "row a fails more
// often than row b": P(X >= aFail) for X hypergeometric with the table's
// margins (population aFail+aOK+bFail+bOK, aFail+bFail failures, aFail+aOK
// draws). Negative counts give NaN.
func fisherGreater(aFail, aOK, bFail, bOK int) float64 {
	if aFail < 0 || aOK < 0 || bFail < 0 || bOK < 0 {
		return math.NaN()
	}
	n := aFail + aOK + bFail + bOK
	fails := aFail + bFail
	draws := aFail + aOK
	if n == 0 {
		return 1
	}
	denom := logChoose(n, draws)
	p := 0.0
	for x := aFail; x <= min(fails, draws); x++ {
		if draws-x > n-fails {
			continue // more successes drawn than exist: impossible.
		}
		p += math.Exp(logChoose(fails, x) + logChoose(n-fails, draws-x) - denom)
	}
	return min(p, 1)
}
