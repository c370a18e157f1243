// Command livecgi-bench measures livecgi against the alternatives its
// users have: websocketd (a process per connection), long polling through
// a CGI, and a bare coder/websocket broadcast server (the limit of the
// stack). Start with run.go for the subcommands:
//
//	livecgi-bench load -mode livecgi -url http://127.0.0.1:8080/cgi-bin/live.cgi -n 100 -hz 10
//	livecgi-bench serve-bare -listen 127.0.0.1:0 -hz 10
//	livecgi-bench compare -out cmd/livecgi-bench/results   (make bench-compare)
//	livecgi-bench fleet -n 50 -hz 10 -duration 30s          (make bench-fleet)
//
// load.go is the load generator, proc.go reads memory and CPU of a process
// tree from /proc, bare.go is the reference server, compare.go builds and
// runs the rigs, report.go writes the markdown table and the SVG plot;
// soak.go samples a long run, churn.go brings the field into it;
// fleet.go runs many supervisors bridged into one Mosquitto.
// sensorprog/ and pollcgi/ are the websocketd and long-poll sensors;
// tick/ is the reading schedule and format they share. README.md here
// has the measurements and how to repeat them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "livecgi-bench:", err)
		os.Exit(1)
	}
}
