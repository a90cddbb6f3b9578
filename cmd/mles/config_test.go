package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
)

// cleanConfigEnv removes MLES_<NAME> and RUST_LOG for the test, so that
// parse sees only what the test sets.
func cleanConfigEnv(t *testing.T) {
	t.Helper()
	for _, e := range os.Environ() {
		if k, _, _ := strings.Cut(e, "="); strings.HasPrefix(k, "MLES_") || k == "RUST_LOG" {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
}

// writeConfig writes content to name in dir and returns its path.
func writeConfig(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigPrecedence: for flags of each type, every combination of the
// --config file, MLES_<NAME> and the command line gives the value of the
// highest present (flag > env > file > default) and records it as the
// source.
func TestConfigPrecedence(t *testing.T) {
	tests := []struct {
		flag           string
		def            string   // the default, as Value.String
		file, fileWant string   // TOML value, and the flag's value from it
		env, envWant   string   // MLES_<NAME>, and the flag's value from it
		args           []string // the command line
		argsWant       string
	}{
		// int
		{"max-conns-per-ip", "0", "7", "7", "8", "8", []string{"--max-conns-per-ip", "9"}, "9"},
		// int64
		{"history-bytes", "67108864", "7000", "7000", "8000", "8000", []string{"--history-bytes=9000"}, "9000"},
		// duration, a string in the file
		{"slow-grace", "10s", `"7s"`, "7s", "1m", "1m0s", []string{"--slow-grace", "9ms"}, "9ms"},
		// bool; the file's true must lose to the environment's false
		{"replace-duplicate", "false", "true", "true", "false", "false", []string{"--replace-duplicate"}, "true"},
		// string
		{"acme-directory", "", `"https://file.example/d"`, "https://file.example/d", "https://env.example/d", "https://env.example/d", []string{"--acme-directory", "https://flag.example/d"}, "https://flag.example/d"},
		// the repeatable -d: the file's list is replaced, not appended to
		{"domains", "[]", `["f1.org", "f2.org"]`, "[f1.org,f2.org]", "e.org", "[e.org]", []string{"-d", "x.org", "-d", "y.org"}, "[x.org,y.org]"},
		// a comma-separated list flag
		{"trusted-proxies", "[]", `["10.0.0.0/8", "192.0.2.1"]`, "[10.0.0.0/8,192.0.2.1]", "10.1.0.0/16,10.2.0.0/16", "[10.1.0.0/16,10.2.0.0/16]", []string{"--trusted-proxies", "10.9.0.0/16"}, "[10.9.0.0/16]"},
	}
	for _, tc := range tests {
		for layers := range 8 { // bit 0: file, bit 1: env, bit 2: command line
			file, env, cmd := layers&1 != 0, layers&2 != 0, layers&4 != 0
			t.Run(fmt.Sprintf("%s/file=%t,env=%t,flag=%t", tc.flag, file, env, cmd), func(t *testing.T) {
				cleanConfigEnv(t)
				var args []string
				want, wantSrc := tc.def, srcDefault
				if file {
					args = append(args, "--config", writeConfig(t, t.TempDir(), "mles.toml", tc.flag+" = "+tc.file+"\n"))
					want, wantSrc = tc.fileWant, srcFile
				}
				if env {
					t.Setenv(envName(tc.flag), tc.env)
					want, wantSrc = tc.envWant, srcEnv
				}
				if cmd {
					args = append(args, tc.args...)
					want, wantSrc = tc.argsWant, srcFlag
				}
				f, fs, err := parse(args)
				if err != nil {
					t.Fatalf("parse(%q): %v", args, err)
				}
				if got := fs.Lookup(tc.flag).Value.String(); got != want {
					t.Errorf("--%s = %s, want %s", tc.flag, got, want)
				}
				if f.src[tc.flag] != wantSrc {
					t.Errorf("source of --%s: %v, want %v", tc.flag, f.src[tc.flag], wantSrc)
				}
			})
		}
	}
}

// TestConfigErrors: a bad value names its key, its source and the value;
// an unknown key names the file and a close match when there is one.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name          string
		file, content string   // config file name ("": none) and text
		env           string   // NAME=value ("": none)
		args          []string // more of the command line
		want          []string // all in the error; "{}" is the file's path
	}{
		{"file: string for an int", "c.toml", `max-conns = "ten"`, "", nil, []string{`--config {}: key "max-conns": "ten" is not an integer`}},
		{"file: fraction for an int", "c.toml", `max-conns = 1.5`, "", nil, []string{`key "max-conns": 1.5`, "not an integer"}},
		{"file: bad duration", "c.toml", `slow-grace = "soon"`, "", nil, []string{`--config {}: key "slow-grace": "soon" is not a duration`}},
		{"file: number for a duration", "c.toml", `slow-grace = 10`, "", nil, []string{`key "slow-grace": 10 is not a duration`}},
		{"file: string for a bool", "c.toml", `staging = "yes"`, "", nil, []string{`key "staging": "yes" is not a boolean`}},
		{"file: numbers in a list", "c.toml", `domains = ["a.org", 2]`, "", nil, []string{`key "domains": element 2: 2 is not a string`}},
		{"file: list for a string", "c.toml", `addr = ["a"]`, "", nil, []string{`key "addr": a list is not a string`}},
		{"file: bad value overridden by a flag", "c.toml", `max-conns = "ten"`, "", []string{"--max-conns", "5"}, []string{`key "max-conns": "ten"`}},
		{"file: bad log level", "c.toml", `log-level = "loud"`, "", nil, []string{`--config {}: key "log-level"`, `"loud"`}},
		{"file: limit out of range", "c.toml", `limit = 0`, "", nil, []string{"--limit 0"}},
		{"yaml: string for an int", "c.yaml", `max-conns: ten`, "", nil, []string{`--config {}: key "max-conns": "ten" is not an integer`}},
		{"unknown key, close match", "c.toml", `max-con = 5`, "", nil, []string{`--config {}: unknown key "max-con" (did you mean "max-conns"?)`}},
		{"unknown key, underscores", "c.yml", `max_conns_per_ip: 5`, "", nil, []string{`unknown key "max_conns_per_ip" (did you mean "max-conns-per-ip"?)`}},
		{"unknown key, a shorthand", "c.toml", `p = 8443`, "", nil, []string{`unknown key "p" (did you mean "port"?)`}},
		{"unknown key, no match", "c.toml", `colour = "red"`, "", nil, []string{`--config {}: unknown key "colour"`}},
		{"unknown key in a table", "c.toml", "[server]\nport = 1", "", nil, []string{`unknown key "server"`}},
		{"command-line-only key", "c.toml", `version = true`, "", nil, []string{`--config {}: key "version": only on the command line`}},
		{"toml syntax", "c.toml", "port = ", "", nil, []string{"--config {}: line 1, column"}},
		{"yaml syntax", "c.yaml", "port: [", "", nil, []string{"--config {}:"}},
		{"unknown extension", "c.ini", "port = 1", "", nil, []string{`--config {}: extension ".ini"`}},
		{"env: string for an int", "", "", "MLES_MAX_CONNS=ten", nil, []string{`MLES_MAX_CONNS="ten": not an integer (--max-conns)`}},
		{"env: bad duration", "", "", "MLES_SLOW_GRACE=soon", nil, []string{`MLES_SLOW_GRACE="soon": not a duration`, "--slow-grace"}},
		{"env: bad log level", "", "", "MLES_LOG_LEVEL=loud", nil, []string{`MLES_LOG_LEVEL: unknown log level "loud"`}},
		{"command line: pflag's message", "", "", "", []string{"--max-conns", "ten"}, []string{`invalid argument "ten" for "--max-conns" flag`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cleanConfigEnv(t)
			args, path := tc.args, "(none)"
			if tc.file != "" {
				path = writeConfig(t, t.TempDir(), tc.file, tc.content+"\n")
				args = append([]string{"--config", path}, args...)
			}
			if k, v, ok := strings.Cut(tc.env, "="); ok {
				t.Setenv(k, v)
			}
			_, _, err := parse(args)
			if err == nil {
				t.Fatalf("parse(%q): no error", args)
			}
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "{}", path); !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		cleanConfigEnv(t)
		p := filepath.Join(t.TempDir(), "none.toml")
		if _, _, err := parse([]string{"--config", p}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), p) {
			t.Fatalf("err %v, want ErrNotExist naming %s", err, p)
		}
	})
}

// TestPrintConfigRoundTrip: --print-config names every flag with its value
// and source, never MLES_KEY, and the file it prints, read back with
// --config and nothing else, gives every flag the same value.
func TestPrintConfigRoundTrip(t *testing.T) {
	cleanConfigEnv(t)
	t.Setenv("MLES_KEY", "s3cret-auth-key")
	t.Setenv("MLES_SLOW_GRACE", "3s")
	t.Setenv("MLES_DOMAINS", "env.org")
	dir := t.TempDir()
	in := writeConfig(t, dir, "in.toml", `max-conns = 100
domains = ["file.org"]
trusted-proxies = ["10.0.0.0/8", "192.0.2.1"]
log-level = "info"
channel-idle = "1h30m"
wwwroot = "dir \"quoted\"\tand\\back\u0001slash"
`)
	f, fs, err := parse([]string{"--config", in, "-p", "8443", "--replace-duplicate", "-P", "/a=http://x", "-P", "/b=http://y"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printConfig(&out, fs, f); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, line := range []string{
		"\nport = 8443  # flag\n",
		"\nproxy = [\"/a=http://x\", \"/b=http://y\"]  # flag\n",
		"\nslow-grace = \"3s\"  # env\n",
		"\ndomains = [\"env.org\"]  # env\n",
		"\nmax-conns = 100  # file\n",
		"\nchannel-idle = \"1h30m0s\"  # file\n",
		"\nlimit = 200  # default\n",
		"\nreactors = 0  # default\n", // as configured, not the CPU count it defaults to
	} {
		if !strings.Contains(text, line) {
			t.Errorf("--print-config lacks %q", strings.TrimSpace(line))
		}
	}
	if strings.Contains(text, "s3cret") {
		t.Errorf("--print-config prints MLES_KEY")
	}
	fs.VisitAll(func(fl *pflag.Flag) {
		if has := strings.Contains(text, "\n"+fl.Name+" = "); has == commandFlags[fl.Name] {
			t.Errorf("--print-config: key %q present %t, want %t", fl.Name, has, !commandFlags[fl.Name])
		}
	})

	cleanConfigEnv(t)
	back := writeConfig(t, dir, "out.toml", text)
	f2, fs2, err := parse([]string{"--config", back})
	if err != nil {
		t.Fatalf("reading --print-config's output back: %v\n%s", err, text)
	}
	fs.VisitAll(func(fl *pflag.Flag) {
		if commandFlags[fl.Name] {
			return
		}
		if a, b := fl.Value.String(), fs2.Lookup(fl.Name).Value.String(); a != b {
			t.Errorf("--%s: %s, read back %s", fl.Name, a, b)
		}
		if a, b := fmt.Sprint(f.values[fl.Name]), fmt.Sprint(f2.values[fl.Name]); a != b {
			t.Errorf("--%s as configured: %s, read back %s", fl.Name, a, b)
		}
	})
}

// TestConfigReload: SIGHUP's reload applies the file's log-level unless a
// flag or MLES_LOG_LEVEL set it, logs the keys that need a restart (not
// those the command line holds), and keeps everything on a bad file.
func TestConfigReload(t *testing.T) {
	tests := []struct {
		name      string
		args, env []string // beside --config; env as NAME=value
		next      string   // the file at SIGHUP
		want      slog.Level
		log       []string // in the log
	}{
		{"file change applies", nil, nil, `log-level = "debug"`, slog.LevelDebug, []string{"changed=log-level log-level=debug"}},
		{"flag wins", []string{"--log-level", "error"}, nil, `log-level = "debug"`, slog.LevelError, []string{`changed=""`}},
		{"env wins", nil, []string{"MLES_LOG_LEVEL=error"}, `log-level = "debug"`, slog.LevelError, []string{`changed=""`}},
		{"restart keys", []string{"-p", "9000"}, nil, "log-level = \"info\"\nmax-conns = 5\nport = 8443", slog.LevelInfo, []string{"changed=log-level log-level=info", "need a restart\" keys=max-conns\n"}},
		{"bad file keeps the running one", nil, nil, `log-level = "loud"`, slog.LevelWarn, []string{"not reloaded", `\"loud\"`}},
		{"unreadable file keeps the running one", nil, nil, "port = [", slog.LevelWarn, []string{"not reloaded", "line 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cleanConfigEnv(t)
			for _, e := range tc.env {
				k, v, _ := strings.Cut(e, "=")
				t.Setenv(k, v)
			}
			p := writeConfig(t, t.TempDir(), "mles.toml", "log-level = \"warn\"\n")
			f, _, err := parse(append([]string{"--config", p}, tc.args...))
			if err != nil {
				t.Fatal(err)
			}
			lvl, _ := logLevel(f.logLevel)
			level := new(slog.LevelVar)
			level.Set(lvl)
			writeConfig(t, filepath.Dir(p), "mles.toml", tc.next+"\n")
			var buf bytes.Buffer
			reload(f, nil, level, slog.New(slog.NewTextHandler(&buf, nil)))
			if level.Level() != tc.want {
				t.Errorf("level %v, want %v", level.Level(), tc.want)
			}
			for _, w := range tc.log {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, buf.String())
				}
			}
		})
	}
}

// TestConfigCLI runs the binary: --help and --version go to standard
// output with status 0; a usage error, from the command line, the
// environment or the file, goes to standard error with status 2.
func TestConfigCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mles")
	// GOFLAGS may say -buildvcs=false; the flag wins, if git is there.
	rev, gitErr := exec.Command("git", "rev-parse", "HEAD").Output()
	if b, err := exec.Command("go", "build", "-buildvcs="+strconv.FormatBool(gitErr == nil), "-o", bin, "github.com/mles/mles/cmd/mles").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	bad := writeConfig(t, dir, "bad.toml", "max-conns = \"ten\"\n")
	version := []string{"mles ", "\n" + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"}
	if gitErr == nil {
		version = append(version, " commit "+strings.TrimSpace(string(rev)))
	}
	tests := []struct {
		name   string
		args   []string
		env    string // NAME=value
		code   int
		stdout []string // all in stdout; nil: stdout empty
		stderr []string // all in stderr; nil: stderr empty
	}{
		{"--help", []string{"--help"}, "", 0, []string{"Usage: mles", "--config", "TOML (.toml) or YAML (.yaml, .yml)", "--print-config", "--version"}, nil},
		{"-h", []string{"-h"}, "", 0, []string{"Usage: mles", "--max-conns"}, nil},
		{"--version", []string{"--version"}, "", 0, version, nil},
		{"--version before a broken file", []string{"--config", bad, "--version"}, "", 0, version[:2], nil},
		{"--print-config", []string{"--print-config", "-p", "8443"}, "MLES_MAX_CONNS=7", 0, []string{"\nport = 8443  # flag\n", "\nmax-conns = 7  # env\n"}, nil},
		{"unknown flag", []string{"--bogus"}, "", 2, nil, []string{"unknown flag: --bogus"}},
		{"bad flag value", []string{"--max-conns", "ten"}, "", 2, nil, []string{`invalid argument "ten" for "--max-conns" flag`}},
		{"bad env value", nil, "MLES_MAX_CONNS=ten", 2, nil, []string{`MLES_MAX_CONNS="ten": not an integer`}},
		{"bad file value", []string{"--config", bad}, "", 2, nil, []string{`--config ` + bad + `: key "max-conns": "ten" is not an integer`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = mlestest.CleanEnv()
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit status %d (%v), want %d", code, err, tc.code)
			}
			for _, c := range []struct {
				name string
				got  string
				want []string
			}{{"stdout", stdout.String(), tc.stdout}, {"stderr", stderr.String(), tc.stderr}} {
				if c.want == nil && c.got != "" {
					t.Errorf("%s not empty:\n%s", c.name, c.got)
				}
				for _, w := range c.want {
					if !strings.Contains(c.got, w) {
						t.Errorf("%s lacks %q:\n%s", c.name, w, c.got)
					}
				}
			}
		})
	}
}

// TestConfigSIGHUP runs the binary with log-level warn from its --config
// file, rewrites the file to info and sends SIGHUP: an info line that a
// connection causes appears only after it. A broken file on a later SIGHUP
// is logged and changes nothing.
func TestConfigSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := mlestest.BuildBin(t, dir, "mles", "github.com/mles/mles/cmd/mles")
	port := mlestest.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	base := fmt.Sprintf("port = %d\naddr = \"127.0.0.1\"\nreactors = 1\n", port)
	cfg := writeConfig(t, dir, "mles.toml", base+"log-level = \"warn\"\n")
	srv := mlestest.StartProc(t, bin, addr, nil, nil, "--config", cfg)

	// poke sends plain HTTP to the TLS port and reads until the server
	// closes: it logs "tls handshake failed" at info before that.
	const infoLine = "tls handshake failed"
	poke := func() {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("waiting for the server to close: %v", err)
		}
	}
	// hup rewrites the file, sends SIGHUP and waits for the reload's log
	// line ("configuration reloaded" or "not reloaded").
	hup := func(content string) {
		t.Helper()
		n := strings.Count(srv.Output(), "SIGHUP: configuration")
		writeConfig(t, dir, "mles.toml", content)
		if err := srv.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		poll.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if !srv.Running() {
				t.Fatalf("the server exited on SIGHUP: %v", srv.Err)
			}
			if strings.Count(srv.Output(), "SIGHUP: configuration") == n {
				return errors.New("no reload line yet")
			}
			return nil
		})
	}
	// waitInfo waits until the output holds n info lines.
	waitInfo := func(n int) {
		t.Helper()
		poll.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if got := strings.Count(srv.Output(), infoLine); got < n {
				return fmt.Errorf("%d %q lines, want %d", got, infoLine, n)
			}
			return nil
		})
	}

	poke() // at warn: not logged
	hup(base + "log-level = \"info\"\nmax-conns = 50\n")
	for _, w := range []string{"changed=log-level log-level=info", "keys=max-conns\n"} {
		if !strings.Contains(srv.Output(), w) {
			t.Errorf("log lacks %q after SIGHUP", w)
		}
	}
	poke()
	waitInfo(1)
	// The pipe keeps the order: had the first poke been logged, its line
	// would be here too.
	if got := strings.Count(srv.Output(), infoLine); got != 1 {
		t.Errorf("%d %q lines, want 1 (the poke at warn was logged)", got, infoLine)
	}

	hup(base + "log-level = \"loud\"\n")
	if !strings.Contains(srv.Output(), "not reloaded") {
		t.Errorf("a bad file on SIGHUP is not logged as such")
	}
	poke()
	waitInfo(2) // still at info
	if !srv.Running() {
		t.Fatalf("the server exited: %v", srv.Err)
	}
}
