package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"
)

// This file turns the three sources of configuration into flag values, in
// increasing precedence: the --config file, the environment (MLES_<NAME>)
// and the command line; defaults lie under all three. Each value goes
// through pflag's Set, so it is parsed as the same flag on the command line
// would be, and the checks in parse then see only the effective values.
// parse runs all of it again on SIGHUP (reloadConfig), which is how a
// reload keeps the same precedence.

// source is where a flag's effective value came from, lowest precedence
// first.
type source int

const (
	srcDefault source = iota // the flag's default
	srcFile                  // the --config file
	srcEnv                   // MLES_<NAME>
	srcFlag                  // the command line
)

func (s source) String() string {
	return [...]string{"default", "file", "env", "flag"}[s]
}

// commandFlags are the flags that say what to do rather than how to serve:
// read from the command line only, never from the environment (MLES_VERSION
// is too common a name to obey) nor the file, and not printed by
// --print-config. --config itself may come from MLES_CONFIG.
var commandFlags = map[string]bool{"config": true, "print-config": true, "version": true}

// reloadableKeys are the keys SIGHUP applies to the running server; a
// change to any other key is logged as needing a restart.
var reloadableKeys = map[string]bool{"log-level": true}

const usageIntro = `Usage: mles [flags]

Serves Mles publish/subscribe over TLS WebSockets (without a certificate: a
self-signed one for localhost).

Every flag can also be set as MLES_<NAME> in the environment (--max-conns is
MLES_MAX_CONNS; MLES_KEY is the auth key) or as a key of the --config file,
TOML (.toml) or YAML (.yaml, .yml), named as the long flag: max-conns = 100,
domains = ["a.org", "b.org"], slow-grace = "10s", staging = true. The command
line wins over the environment, which wins over the file. SIGHUP re-reads the
file and applies log-level (and reloads --tls-cert/--tls-key).

Flags:
`

// defineCommandFlags adds --config, --print-config and --version to fs and
// sends --help to standard output (errors go to standard error from main).
func (f *flags) defineCommandFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "read flags from this TOML (.toml) or YAML (.yaml, .yml) file; keys are the long flag names (the command line and MLES_<NAME> win over it)")
	fs.BoolVar(&f.printConfig, "print-config", false, "print the effective configuration as a TOML config file, each value with its source, and exit")
	fs.BoolVar(&f.version, "version", false, "print the version, VCS commit and Go version, and exit")
	fs.SetOutput(os.Stdout)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usageIntro, fs.FlagUsages()) }
}

// applySources sets every flag the command line did not from MLES_<NAME>,
// then from the --config file, checks the log flags, and records in f each
// flag's source and value (for --print-config and SIGHUP).
func (f *flags) applySources(fs *pflag.FlagSet, args []string) error {
	f.args = args
	f.src = map[string]source{}
	fs.Visit(func(fl *pflag.Flag) { f.src[fl.Name] = srcFlag })
	if err := applyEnv(fs, f.src); err != nil {
		return err
	}
	if f.config != "" {
		if err := applyFile(fs, f.config, f.src); err != nil {
			return err
		}
	}
	if _, err := logLevel(f.logLevel); err != nil {
		if f.logLevel == "" {
			return fmt.Errorf("RUST_LOG: %w", err)
		}
		return fmt.Errorf("%s: %w", f.origin("log-level"), err)
	}
	if f.logFormat != "text" && f.logFormat != "json" {
		return fmt.Errorf("%s: unknown log format %q (text or json)", f.origin("log-format"), f.logFormat)
	}
	f.values = map[string]any{}
	fs.VisitAll(func(fl *pflag.Flag) {
		if !commandFlags[fl.Name] {
			f.values[fl.Name] = flagValue(fl)
		}
	})
	return nil
}

// origin names where flag name got its value, for an error message.
func (f *flags) origin(name string) string {
	switch f.src[name] {
	case srcFile:
		return fmt.Sprintf("--config %s: key %q", f.config, name)
	case srcEnv:
		return envName(name)
	}
	return "--" + name
}

// envName is the environment variable of a flag: --max-conns is
// MLES_MAX_CONNS.
func envName(flag string) string {
	return "MLES_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag not given on the command line from MLES_<NAME>
// and marks it srcEnv in src.
func applyEnv(fs *pflag.FlagSet, src map[string]source) error {
	var err error
	fs.VisitAll(func(fl *pflag.Flag) {
		if err != nil || src[fl.Name] != srcDefault || commandFlags[fl.Name] && fl.Name != "config" {
			return
		}
		name := envName(fl.Name)
		if v, ok := os.LookupEnv(name); ok {
			if e := fs.Set(fl.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %s (--%s)", name, v, badValue(fl, e), fl.Name)
			}
			src[fl.Name] = srcEnv
		}
	})
	return err
}

// badValue says what is wrong with a value pflag's Set refused for fl.
func badValue(fl *pflag.Flag, err error) string {
	switch fl.Value.Type() {
	case "int", "int64":
		if errors.Is(err, strconv.ErrRange) {
			return "out of range"
		}
		return "not an integer"
	case "duration":
		return `not a duration such as "10s"`
	case "bool":
		return "not a boolean (true or false)"
	}
	if ive := (*pflag.InvalidValueError)(nil); errors.As(err, &ive) && ive.Unwrap() != nil {
		return ive.Unwrap().Error()
	}
	return err.Error()
}

// readConfig decodes the file at path as TOML or YAML, by its extension.
func readConfig(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".toml":
		if err := toml.Unmarshal(b, &m); err != nil {
			if de := (*toml.DecodeError)(nil); errors.As(err, &de) {
				row, col := de.Position()
				return nil, fmt.Errorf("line %d, column %d: %w", row, col, err)
			}
			return nil, err
		}
	case ".yaml", ".yml":
		if err := yaml.Unmarshal(b, &m); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("extension %q: want .toml, .yaml or .yml", ext)
	}
	return m, nil
}

// applyFile sets from the file at path every flag whose source in src is
// still the default, and marks it srcFile. Every key is checked, also those
// the command line or the environment override: the file must be valid on
// its own.
func applyFile(fs *pflag.FlagSet, path string, src map[string]source) error {
	m, err := readConfig(path)
	if err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		switch {
		case fs.Lookup(k) == nil:
			hint := ""
			if s := closeFlag(fs, k); s != "" {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			return fmt.Errorf("--config %s: unknown key %q%s", path, k, hint)
		case commandFlags[k]:
			return fmt.Errorf("--config %s: key %q: only on the command line", path, k)
		}
	}
	fs.VisitAll(func(fl *pflag.Flag) {
		v, ok := m[fl.Name]
		if !ok || err != nil {
			return
		}
		var vals []string
		if vals, err = fileStrings(fl, v); err != nil {
			err = fmt.Errorf("--config %s: key %q: %w", path, fl.Name, err)
			return
		}
		if src[fl.Name] != srcDefault {
			return // the command line or the environment wins
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok && len(vals) == 0 {
			_ = sv.Replace(nil) // an empty list replaces the default
		}
		for _, s := range vals {
			if e := fs.Set(fl.Name, s); e != nil {
				err = fmt.Errorf("--config %s: key %q: %q is %s", path, fl.Name, s, badValue(fl, e))
				return
			}
		}
		src[fl.Name] = srcFile
	})
	return err
}

// fileStrings checks a decoded value v against fl's type and returns the
// strings to give pflag's Set: one, or one per element of a list.
func fileStrings(fl *pflag.Flag, v any) ([]string, error) {
	typ := fl.Value.Type()
	switch typ {
	case "bool":
		if b, ok := v.(bool); ok {
			return []string{strconv.FormatBool(b)}, nil
		}
		return nil, fmt.Errorf("%s is not a boolean (true or false)", show(v))
	case "int", "int64":
		switch n := v.(type) {
		case int64:
			return []string{strconv.FormatInt(n, 10)}, nil
		case uint64: // YAML's non-negative integers
			if n > math.MaxInt64 {
				return nil, fmt.Errorf("%d is out of range", n)
			}
			return []string{strconv.FormatUint(n, 10)}, nil
		}
		return nil, fmt.Errorf("%s is not an integer", show(v))
	case "duration":
		if s, ok := v.(string); ok {
			return []string{s}, nil // Set parses it, or says it is not a duration
		}
		return nil, fmt.Errorf(`%s is not a duration such as "10s"`, show(v))
	}
	if s, ok := v.(string); ok {
		return []string{s}, nil
	}
	list, ok := v.([]any)
	if _, slice := fl.Value.(pflag.SliceValue); !slice {
		return nil, fmt.Errorf("%s is not a string", show(v))
	} else if !ok {
		return nil, fmt.Errorf("%s is not a string or a list of strings", show(v))
	}
	out := make([]string, len(list))
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("element %d: %s is not a string", i+1, show(e))
		}
		out[i] = s
	}
	return out, nil
}

// show formats a decoded value for an error message: strings quoted.
func show(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case nil:
		return "null"
	case map[string]any:
		return "a table"
	case []any:
		return "a list"
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64) + " (a fraction)"
	}
	return fmt.Sprint(v)
}

// closeFlag returns the long name of the flag most like key (a shorthand,
// other case, underscores, a typo of at most a third of its letters), or "".
func closeFlag(fs *pflag.FlagSet, key string) string {
	if len(key) == 1 {
		if fl := fs.ShorthandLookup(key); fl != nil {
			return fl.Name
		}
	}
	norm := strings.ToLower(strings.ReplaceAll(key, "_", "-"))
	best, bestD := "", max(2, len(norm)/3)+1
	fs.VisitAll(func(fl *pflag.Flag) {
		if d := editDistance(norm, fl.Name); d < bestD && !commandFlags[fl.Name] {
			best, bestD = fl.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev, cur := make([]int, len(b)+1), make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			sub := prev[j-1]
			if a[i-1] != b[j-1] {
				sub++
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, sub)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// flagValue is fl's value as a config file holds it: bool, int64, string
// (durations too) or []string.
func flagValue(fl *pflag.Flag) any {
	s := fl.Value.String()
	switch fl.Value.Type() {
	case "bool":
		b, _ := strconv.ParseBool(s)
		return b
	case "int", "int64":
		n, _ := strconv.ParseInt(s, 10, 64)
		return n
	}
	if sv, ok := fl.Value.(pflag.SliceValue); ok {
		return append([]string{}, sv.GetSlice()...)
	}
	return s
}

// printConfig writes the effective configuration as a TOML file that
// --config reads back to the same values: every flag but the command flags,
// in --help order, each after its usage and followed by its source. It
// prints flags only, never MLES_KEY.
func printConfig(w io.Writer, fs *pflag.FlagSet, f *flags) error {
	var b strings.Builder
	b.WriteString("# mles configuration (mles --print-config): every flag with its effective value.\n")
	b.WriteString("# The comment after a value names its source, highest precedence first:\n")
	b.WriteString("# flag (command line), env (MLES_<NAME>), file (--config) or default.\n")
	if f.config != "" {
		fmt.Fprintf(&b, "# Read from --config %s (%s).\n", f.config, f.src["config"])
	}
	fs.VisitAll(func(fl *pflag.Flag) {
		if commandFlags[fl.Name] {
			return
		}
		fmt.Fprintf(&b, "\n# %s\n%s = %s  # %s\n", fl.Usage, fl.Name, tomlValue(f.values[fl.Name]), f.src[fl.Name])
	})
	_, err := io.WriteString(w, b.String())
	return err
}

// tomlValue formats a flagValue as TOML.
func tomlValue(v any) string {
	switch v := v.(type) {
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = tomlString(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return tomlString(fmt.Sprint(v))
}

// tomlString quotes s as a TOML basic string (TOML 1.0, "String"): only
// the escapes TOML has, unlike strconv.Quote's \x and \a.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// printVersion writes the module version and VCS commit of this build
// (runtime/debug.ReadBuildInfo), then the Go version and platform.
func printVersion(w io.Writer) error {
	version, rev, modified := "(unknown)", "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			} else if s.Key == "vcs.modified" && s.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	_, err := fmt.Fprintf(w, "mles %s commit %s%s\n%s %s/%s\n", version, rev, modified, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

// reloadConfig applies SIGHUP to the configuration: it parses the command
// line, the environment and the --config file again, sets the log level if
// log-level changed, and logs the keys that changed and those that need a
// restart. On any error it keeps the running configuration. It runs on
// serve's goroutine, the only one that touches f after start.
func reloadConfig(f *flags, level *slog.LevelVar, log *slog.Logger) {
	if f.config == "" {
		return
	}
	nf, fs, err := parse(f.args)
	if err != nil {
		log.Error("SIGHUP: configuration not reloaded; keeping the running one", "config", f.config, "err", err)
		return
	}
	var changed, restart []string
	var attrs []any // key=value of each applied change
	fs.VisitAll(func(fl *pflag.Flag) {
		old, ok := f.values[fl.Name]
		if !ok || fmt.Sprint(old) == fmt.Sprint(nf.values[fl.Name]) {
			return
		}
		if !reloadableKeys[fl.Name] {
			restart = append(restart, fl.Name)
			return
		}
		changed = append(changed, fl.Name)
		attrs = append(attrs, fl.Name, nf.values[fl.Name])
		f.values[fl.Name] = nf.values[fl.Name]
	})
	if nf.logLevel != f.logLevel {
		lvl, _ := logLevel(nf.logLevel) // parse checked it
		level.Set(lvl)
		f.logLevel = nf.logLevel
	}
	log.Warn("SIGHUP: configuration reloaded", append([]any{"config", f.config, "changed", strings.Join(changed, ",")}, attrs...)...)
	if len(restart) > 0 {
		log.Warn("SIGHUP: these keys differ from the running values and need a restart", "keys", strings.Join(restart, ","))
	}
}

// usageError is a configuration error found before the server starts: on
// the command line, in MLES_<NAME> or in the --config file.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode is main's exit status for run's error: 2 for a usage error, as
// Go's flag package and most Unix tools, else 1.
func exitCode(err error) int {
	if errors.As(err, new(usageError)) {
		return 2
	}
	return 1
}
