package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mles/mles/internal/mlestest"
)

// TestBigChannelBurstJoin: one channel of 15,000 members that join in a
// burst, one publisher at 5 msg/s. With default flags (--plain aside) every
// member gets every message of the measured window and the server closes
// no member. A burst of joins larger than the channel ring (1024 slots by
// default) used to lap idle members and close them 1008 as slow consumers.
//
// 15,000 clients do not fit in this process under -race (8128 goroutines at
// most) nor beside the server (20,000 open files per process here), so the
// server (built without -race) and the clients (the benchmark load
// generator, benchmarks/loadgen, reading every member from one epoll loop)
// are two processes of their own.
func TestBigChannelBurstJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips the 15,000-member channel (builds mles and benchmarks/loadgen, runs about a minute)")
	}
	const (
		members = 15000
		rate    = 5
	)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Max < members+1000 {
		t.Skipf("open-files hard limit %d: the server and the load generator each need %d", lim.Max, members+1000)
	}

	dir := t.TempDir()
	loadgen := buildLoadgen(t, dir)
	srv, addr := startLoopbackMles(t, dir, "--plain")

	// The generator exits non-zero only when it could not set the run up
	// (a member could not connect); poor delivery is in its JSON.
	out := filepath.Join(dir, "result.json")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	lg := exec.CommandContext(ctx, loadgen,
		"-url", "ws://"+addr+"/", "-label", "mles", "-scenario", "fanout",
		"-members", strconv.Itoa(members), "-rate", strconv.Itoa(rate),
		"-reader", "epoll", "-dialers", "64",
		"-warmup", "8s", "-duration", "10s",
		// Late messages count as lost only after the drain: generous on a
		// busy machine; the generator stops draining once all arrived.
		"-drain", "30s",
		"-server-pid", strconv.Itoa(srv.Cmd.Process.Pid), "-out", out)
	lg.Env = mlestest.CleanEnv()
	lgOut := &mlestest.LockedBuffer{}
	lg.Stdout, lg.Stderr = lgOut, lgOut
	start := time.Now()
	runErr := lg.Run()
	t.Logf("loadgen (%.1fs): %s", time.Since(start).Seconds(), strings.TrimSpace(lgOut.String()))
	select {
	case <-srv.Done:
		t.Fatalf("the server exited during the run")
	default:
	}
	if runErr != nil {
		t.Fatalf("loadgen: %v (no result: the run could not be set up)", runErr)
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Expected     int64          `json:"expected"`
		Delivered    int64          `json:"delivered"`
		Sent         int64          `json:"sent"`
		Scheduled    int64          `json:"scheduled"`
		P99Ms        float64        `json:"p99_ms"`
		OutOfOrder   int64          `json:"out_of_order"`
		Gaps         int64          `json:"gaps"`
		ServerClosed int            `json:"server_closed"`
		CloseCodes   map[string]int `json:"close_codes"`
		Errors       int            `json:"errors"`
		FirstError   string         `json:"first_error"`
		RSS          int64          `json:"server_rss_after_bytes"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("loadgen result %s: %v", b, err)
	}
	t.Logf("%d members, %d msg/s: delivered %d of %d expected (%d of %d scheduled messages sent), p99 %.1f ms, server RSS %.1f MiB",
		members, rate, res.Delivered, res.Expected, res.Sent, res.Scheduled, res.P99Ms, float64(res.RSS)/(1<<20))
	if res.Expected == 0 || res.Sent < res.Scheduled {
		t.Errorf("the publisher sent %d of %d scheduled messages (expected deliveries %d)", res.Sent, res.Scheduled, res.Expected)
	}
	if res.ServerClosed != 0 {
		t.Errorf("the server closed %d of %d members (close codes %v; first error %q)", res.ServerClosed, members-1, res.CloseCodes, res.FirstError)
	}
	if res.Delivered != res.Expected {
		t.Errorf("delivered %d of %d expected messages (%.4f): %d missing", res.Delivered, res.Expected,
			float64(res.Delivered)/float64(max(res.Expected, 1)), res.Expected-res.Delivered)
	}
	if res.OutOfOrder != 0 || res.Gaps != 0 {
		t.Errorf("anomalies: out_of_order=%d gaps=%d", res.OutOfOrder, res.Gaps)
	}
}

// buildLoadgen builds the benchmark load generator (module
// github.com/mles/mles/benchmarks, beside this one) into dir.
func buildLoadgen(t *testing.T, dir string) string {
	t.Helper()
	bench, err := filepath.Abs(filepath.Join("..", "..", "benchmarks"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "loadgen")
	cmd := exec.Command("go", "build", "-o", out, "./loadgen")
	cmd.Dir = bench
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build benchmarks/loadgen: %v\n%s", err, b)
	}
	return out
}
