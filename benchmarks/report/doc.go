// Command report turns loadgen's JSON lines into the benchmark report: runs
// are grouped by scenario, parameters and label, each metric is the median of
// the repetitions, and every peer is compared with ours (label "mles") as a
// ratio ours/peer. For the fan-out scenario it also finds each server's
// highest rate with at least 99.9% delivered and p99 under 100 ms, and draws
// an SVG chart of delivered rate and p99 against the offered rate.
//
// Usage:
//
//	report -o benchmarks/results/REPORT.md -svg benchmarks/results/fanout.svg FILES...
package main
