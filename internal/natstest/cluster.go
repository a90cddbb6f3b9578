package natstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mles/mles/internal/mlestest"
	"github.com/mles/mles/internal/poll"
	"github.com/nats-io/nats-server/v2/server"
)

// clusterName is the cluster block's name, the same for every Cluster:
// their nodes never meet, each set listening on its own ports.
const clusterName = "natstest"

// Proc is one nats-server process of a Cluster.
type Proc struct {
	tb       testing.TB
	c        *cluster
	name     string // server_name: n0, n1, ...
	dir      string // its config, JetStream store and logs
	conf     string // the config file, the same for every start
	port     int    // client port
	httpPort int    // monitoring port, for /jsz
	runs     int    // starts so far; numbers the log files
	run      *mlestest.Proc
}

// cluster is what the nodes of one Cluster share.
type cluster struct {
	bin   string
	procs []*Proc
}

// Cluster starts n nats-server processes with JetStream, routed to each
// other as one cluster (n = 1: a lone server, no cluster block), each on
// free loopback ports with its store in tb.TempDir(). It returns once every
// node accepts clients and, with n > 1, every node sees the same JetStream
// meta leader and that leader sees every other node as a current peer: a
// stream with n replicas can then be created at once. The processes are
// killed when the test ends and the tail of each log is printed if it
// failed.
func Cluster(tb testing.TB, n int) []*Proc {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natstest: Cluster(%d): need at least one node", n)
	}
	c := &cluster{bin: serverBin(tb)}
	routes := make([]int, n)
	for i := range n {
		name, dir := fmt.Sprintf("n%d", i), tb.TempDir()
		c.procs = append(c.procs, &Proc{
			tb: tb, c: c, name: name, dir: dir,
			conf:     filepath.Join(dir, name+".conf"), // named for the failure log
			port:     mlestest.FreePort(tb),
			httpPort: mlestest.FreePort(tb),
		})
		routes[i] = mlestest.FreePort(tb)
	}
	for i, p := range c.procs {
		if err := os.WriteFile(p.conf, []byte(p.config(routes, i)), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	// All start before any wait: no node has a meta leader until a quorum
	// of them runs.
	for _, p := range c.procs {
		p.start()
	}
	c.waitMeta(tb)
	return c.procs
}

// URLs returns the client URLs of ps joined by commas, as mles's --nats
// flag and nats.Connect take them.
func URLs(ps []*Proc) string {
	urls := make([]string, len(ps))
	for i, p := range ps {
		urls[i] = p.URL()
	}
	return strings.Join(urls, ",")
}

// URL returns the node's client URL, nats://127.0.0.1:PORT. It stays the
// same across Stop and Start.
func (p *Proc) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", p.port) }

// Name returns the node's server_name (n0, n1, ...): what JetStream's
// cluster information calls it.
func (p *Proc) Name() string { return p.name }

// Pid returns the process id of the node's current (or last) run.
func (p *Proc) Pid() int { return p.run.Cmd.Process.Pid }

// Running reports whether the node's process has not exited.
func (p *Proc) Running() bool { return p.run != nil && p.run.Running() }

// Kill ends the node with SIGKILL, as a crash or an OOM kill would, and
// waits until the process has exited. A node that does not run is left
// alone.
func (p *Proc) Kill() {
	if p.Running() {
		_ = p.run.Cmd.Process.Kill()
		<-p.run.Done
	}
}

// Stop ends the node with SIGTERM, which nats-server takes as a clean
// shutdown (its store flushed), and waits until the process has exited.
func (p *Proc) Stop() {
	p.tb.Helper()
	if !p.Running() {
		return
	}
	_ = p.run.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.run.Done:
	case <-time.After(readyTimeout):
		p.tb.Fatalf("natstest: %s still runs %v after SIGTERM", p.name, readyTimeout)
	}
}

// Start starts the node again after Kill or Stop, with the same config,
// ports and store, and returns once it accepts clients and has rejoined
// the meta group (the leader sees it as a current peer). Its log goes to
// a new file: one per run.
func (p *Proc) Start() {
	p.tb.Helper()
	if p.Running() {
		p.tb.Fatalf("natstest: Start: %s already runs (pid %d)", p.name, p.Pid())
	}
	p.start()
	p.c.waitMeta(p.tb)
}

// start runs the process and waits until its client port accepts.
func (p *Proc) start() {
	p.tb.Helper()
	p.runs++
	f, err := os.Create(filepath.Join(p.dir, fmt.Sprintf("%s.%d.log", p.name, p.runs)))
	if err != nil {
		p.tb.Fatal(err)
	}
	// Registered before StartProc's cleanup, so it runs after the kill.
	p.tb.Cleanup(func() { f.Close() })
	addr := fmt.Sprintf("127.0.0.1:%d", p.port)
	p.run = mlestest.StartProc(p.tb, p.c.bin, addr, logFile{f}, nil, "-c", p.conf)
}

// config returns the node's config file: node i of a cluster whose route
// ports are routes.
func (p *Proc) config(routes []int, i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %s\nlisten: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\n", p.name, p.port, p.httpPort)
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n}\n", filepath.Join(p.dir, "store"))
	if len(routes) == 1 {
		return b.String()
	}
	fmt.Fprintf(&b, "cluster {\n  name: %s\n  listen: \"127.0.0.1:%d\"\n  routes: [\n", clusterName, routes[i])
	for j, port := range routes {
		if j != i {
			fmt.Fprintf(&b, "    \"nats-route://127.0.0.1:%d\"\n", port)
		}
	}
	b.WriteString("  ]\n}\n")
	return b.String()
}

// jsz returns the node's /jsz monitoring page.
func (p *Proc) jsz() (*server.JSInfo, error) {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", p.httpPort))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /jsz: %s", p.name, resp.Status)
	}
	var info server.JSInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nil, fmt.Errorf("%s /jsz: %w", p.name, err)
	}
	if info.Disabled {
		return nil, fmt.Errorf("%s: JetStream disabled", p.name)
	}
	return &info, nil
}

// waitMeta waits until metaReady holds.
func (c *cluster) waitMeta(tb testing.TB) {
	tb.Helper()
	if err := poll.Until(tb.Context(), readyTimeout, 50*time.Millisecond, c.metaReady); err != nil {
		tb.Fatalf("natstest: JetStream not ready: %v", err)
	}
}

// metaReady returns nil when JetStream runs on every running node and,
// in a cluster, all of them see the same meta leader, which sees each of
// the others as a current peer. Nodes that were killed or stopped are not
// waited for.
func (c *cluster) metaReady() error {
	infos := map[string]*server.JSInfo{}
	leader := ""
	for _, p := range c.procs {
		if !p.Running() {
			continue
		}
		info, err := p.jsz()
		if err != nil {
			return err
		}
		infos[p.name] = info
		if len(c.procs) == 1 {
			return nil // a lone server has no meta group
		}
		switch {
		case info.Meta == nil || info.Meta.Leader == "":
			return fmt.Errorf("%s: no meta leader yet", p.name)
		case leader == "":
			leader = info.Meta.Leader
		case info.Meta.Leader != leader:
			return fmt.Errorf("%s sees meta leader %s, others %s", p.name, info.Meta.Leader, leader)
		}
	}
	li := infos[leader]
	if li == nil {
		return fmt.Errorf("meta leader %q is not a running node", leader)
	}
	for name := range infos {
		if name == leader {
			continue
		}
		ok := false
		for _, r := range li.Meta.Replicas {
			ok = ok || r.Name == name && r.Current && !r.Offline
		}
		if !ok {
			return fmt.Errorf("meta leader %s does not see %s as a current peer yet", leader, name)
		}
	}
	return nil
}

// logFile is a node's log for one run. The process writes to it; String
// returns what it holds, for mlestest's tail on failure.
type logFile struct{ f *os.File }

func (l logFile) Write(b []byte) (int, error) { return l.f.Write(b) }

func (l logFile) String() string {
	b, err := os.ReadFile(l.f.Name())
	if err != nil {
		return fmt.Sprintf("(log %s: %v)", l.f.Name(), err)
	}
	return string(b)
}
