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
	addr := ln.Addr().String()
	ln.Close()
	e := newEngine(addr)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	peertest.Check(t, "ws://"+addr+"/")
}
