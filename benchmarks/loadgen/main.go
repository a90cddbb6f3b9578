package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

func main() {
	var o Options
	fs := flag.NewFlagSet("loadgen", flag.ExitOnError)
	o.register(fs)
	fs.Parse(os.Args[1:])
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := o.validate(set); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	// Publishers' timers need a P while the epoll reader blocks in
	// epoll_wait, even when taskset gives the process a single CPU.
	if o.Reader == ReaderEpoll && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var (
		res *Result
		err error
	)
	switch o.Scenario {
	case ScenarioFanout, ScenarioBigChannel, ScenarioHTTPBurst, ScenarioChat, ScenarioSlow, ScenarioPersist, ScenarioPersistPub, ScenarioPeered, ScenarioAdmin, ScenarioNATS:
		res, err = runPubSub(ctx, &o)
	case ScenarioStatic:
		res, err = runStatic(ctx, &o)
	case ScenarioIdle:
		res, err = runIdle(ctx, &o)
	case ScenarioConnect:
		res, err = runConnect(ctx, &o)
	case ScenarioHistory:
		res, err = runHistory(ctx, &o)
	case ScenarioStorm:
		res, err = runStorm(ctx, &o)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %s %s %s: setup failed: %v\n", o.Label, o.Scenario, o.URL, err)
		os.Exit(1)
	}
	if err := res.write(o.Out); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, res.summary())
}
