package main

import (
	"net"
	"testing"

	"github.com/mles/mles/benchmarks/peers/peertest"
)

func TestMles(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go newServer().RunListener(ln)
	peertest.Check(t, "ws://"+ln.Addr().String()+"/")
}
