package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// readmeFlag is one flag of README's "Command line" table.
type readmeFlag struct {
	short, def, meaning string
}

// readmeFlags reads the table under "## Command line" in README.md: flag
// cells such as "`-p, --port`" or "`--max-uid`, `--max-channel`", then the
// default and the meaning.
func readmeFlags(t *testing.T) map[string]readmeFlag {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Command line\n")
	if i < 0 {
		t.Fatal(`README has no "## Command line" section`)
	}
	s = s[i+1:]
	if j := strings.Index(s[3:], "\n## "); j >= 0 {
		s = s[:j+3]
	}
	flagRE := regexp.MustCompile("`(?:-([a-zA-Z]), )?--([a-z0-9-]+)`")
	got := map[string]readmeFlag{}
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(line, "| `-") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 3 {
			t.Fatalf("README flag row without three cells: %q", line)
		}
		ms := flagRE.FindAllStringSubmatch(cells[0], -1)
		if len(ms) == 0 {
			t.Fatalf("README flag row names no flag: %q", line)
		}
		for _, m := range ms {
			if _, dup := got[m[2]]; dup {
				t.Fatalf("README lists --%s twice", m[2])
			}
			got[m[2]] = readmeFlag{short: m[1], def: strings.TrimSpace(cells[1]), meaning: strings.TrimSpace(cells[2])}
		}
	}
	return got
}

// TestREADMEFlagTable: README's flag table and `mles --help` list the same
// flags with the same shorthands and defaults, and every flag has a meaning
// in both. A flag added without a README row fails here, as does a default
// changed in one place only.
func TestREADMEFlagTable(t *testing.T) {
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); strings.HasPrefix(k, "MLES_") {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
	readme := readmeFlags(t)
	_, fs, err := parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) {
		seen[f.Name] = true
		r, ok := readme[f.Name]
		if !ok {
			t.Errorf("--%s is not in README's flag table", f.Name)
			return
		}
		if r.short != f.Shorthand {
			t.Errorf("--%s: README shorthand %q, --help %q", f.Name, r.short, f.Shorthand)
		}
		if r.meaning == "" || f.Usage == "" {
			t.Errorf("--%s: no meaning (README %q, --help %q)", f.Name, r.meaning, f.Usage)
		}
		if err := sameDefault(f, r.def); err != "" {
			t.Errorf("--%s: %s", f.Name, err)
		}
	})
	for name := range readme {
		if !seen[name] {
			t.Errorf("README lists --%s, which mles does not have", name)
		}
	}
}

// sameDefault compares a flag's default with README's default cell, which
// starts with the value and may explain it: "16777216", "10s", "720h (30
// days)", "off" for false. A zero number, empty string or empty list is a default that
// mles computes or leaves out ("CPUs", "none"): the usage must then say
// what it is, unless README says 0 or off.
func sameDefault(f *pflag.Flag, cell string) string {
	first := strings.Trim(strings.Fields(cell + " ")[0], "`,")
	switch f.Value.Type() {
	case "bool":
		want := map[string]string{"false": "off", "true": "on"}[f.DefValue]
		if first != want {
			return "README default " + cell + ", --help " + f.DefValue
		}
	case "duration":
		d, _ := time.ParseDuration(f.DefValue)
		c, err := time.ParseDuration(first)
		if err != nil || c != d {
			return "README default " + cell + ", --help " + f.DefValue
		}
	case "int", "int64":
		if f.DefValue == "0" && first != "0" {
			if !strings.Contains(f.Usage, "(default: ") {
				return "default 0 means something README says (" + cell + ") but --help does not"
			}
		} else if first != f.DefValue {
			return "README default " + cell + ", --help " + f.DefValue
		}
	default:
		if f.DefValue != "" && f.DefValue != "[]" && first != f.DefValue {
			return "README default " + cell + ", --help " + f.DefValue
		}
	}
	return ""
}
