package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRelease: make release builds a static Linux binary (no interpreter,
// so no libc needed) with its checksum, and it runs. The test builds
// amd64 only: a cold arm64 cross build costs minutes on the CI machine,
// and the build command is the same for both.
func TestRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	dist := t.TempDir()
	cmd := exec.Command("make", "-C", "../..", "release", "DIST="+dist, "RELEASE_ARCHS=amd64")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	for arch, machine := range map[string]elf.Machine{"amd64": elf.EM_X86_64} {
		name := filepath.Join(dist, "mles-linux-"+arch)
		f, err := elf.Open(name)
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		if f.Machine != machine {
			t.Errorf("%s: machine %v", arch, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: dynamically linked (has an interpreter)", arch)
			}
		}
		f.Close()
	}
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil || strings.Count(string(sums), "mles-linux-") != 1 {
		t.Fatalf("SHA256SUMS: %q, %v", sums, err)
	}
	out, err := exec.Command(filepath.Join(dist, "mles-linux-amd64"), "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "go1.") {
		t.Fatalf("mles --version: %v: %s", err, out)
	}
}

// TestSystemdUnit: deploy/mles.service passes systemd-analyze verify with
// its ExecStart pointed at a real binary.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	unit, err := os.ReadFile("../../deploy/mles.service")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "mles")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	patched := strings.ReplaceAll(string(unit), "/usr/local/bin/mles", bin)
	if patched == string(unit) {
		t.Fatal("the unit does not start /usr/local/bin/mles")
	}
	if err := os.WriteFile(filepath.Join(dir, "mles.service"), []byte(patched), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(dir, "mles.service")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
