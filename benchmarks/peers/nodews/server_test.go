// Package nodews holds only the check of the node ws peer (server.js).
package nodews

import (
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/mles/mles/benchmarks/peers/peertest"
)

func TestMles(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed")
	}
	if _, err := os.Stat("node_modules/ws"); err != nil {
		t.Skip("node_modules missing: run npm ci in benchmarks/peers/nodews")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command("node", "server.js", "-addr", addr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	peertest.Check(t, "ws://"+addr+"/")
}
