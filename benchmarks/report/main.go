package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	out := flag.String("o", "", "Markdown report to write (default: stdout)")
	svg := flag.String("svg", "", "SVG chart of the fan-out runs to write (none when empty)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: report [-o REPORT.md] [-svg fanout.svg] FILE.jsonl...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	groups, err := load(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
	var sb strings.Builder
	names := make([]string, flag.NArg())
	for i, f := range flag.Args() {
		names[i] = "`" + filepath.Base(f) + "`"
	}
	writeMarkdown(&sb, groups, names)
	if *svg != "" {
		if s, ok := writeSVG(groups); ok {
			if err := writeFile(*svg, s); err != nil {
				fmt.Fprintln(os.Stderr, "report:", err)
				os.Exit(1)
			}
			rel := *svg
			if *out != "" {
				if r, err := filepath.Rel(filepath.Dir(*out), *svg); err == nil {
					rel = r
				}
			}
			fmt.Fprintf(&sb, "![fan-out: delivered and p99 against offered rate](%s)\n", rel)
		} else {
			fmt.Fprintln(os.Stderr, "report: no fan-out runs: no chart")
		}
	}
	if *out == "" {
		fmt.Print(sb.String())
		return
	}
	if err := writeFile(*out, sb.String()); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func writeFile(path, s string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
