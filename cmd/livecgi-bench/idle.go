package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/livecgi/livecgi/proto/control"
)

// runIdle measures what the tree costs while nobody watches: the stub
// starts livecgid with the system plugin and one bench sensor at -hz; the
// first contact is timed (cold: stub → supervisor → plugins → first
// reading), then the client leaves and the tree's CPU is read from /proc
// over -d, and a new client is timed from its hello to its first bench
// reading.
func runIdle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := fs.Duration("d", time.Minute, "measured window with no client")
	hz := fs.Float64("hz", 10, "the bench sensor's rate")
	work := fs.String("work", "", "work `dir` (default: a temporary one, removed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := newRig(ctx, *work, 250*time.Millisecond, stderr)
	if err != nil {
		return err
	}
	defer r.close(*work == "")
	if err := r.setPlugins(*hz, "system", "bench"); err != nil {
		return err
	}
	r.stopSupervisor()
	cold, err := r.firstContact(ctx, "bench.")
	if err != nil {
		return fmt.Errorf("cold first contact: %w", err)
	}
	fmt.Fprintf(stdout, "cold first contact → first reading: %v\n", cold.Round(time.Millisecond))

	st, err := control.Probe(ctx, r.state)
	if err != nil {
		return err
	}
	proc := procFS{"/proc"}
	for end := time.Now().Add(30 * time.Second); ; sleep(ctx, 100*time.Millisecond) {
		if u, err := proc.usage(st.PID, false); err == nil && u.Procs >= 3 {
			break
		}
		if time.Now().After(end) || ctx.Err() != nil {
			return fmt.Errorf("livecgid %d: want it and its two plugins running", st.PID)
		}
	}
	sleep(ctx, 5*time.Second) // the last client's leaving, and the start, settle
	before, err := proc.usage(st.PID, true)
	if err != nil {
		return err
	}
	sleep(ctx, *d)
	after, err := proc.usage(st.PID, true)
	if err != nil {
		return err
	}
	ticks := after.CPU - before.CPU
	pct := 100 * float64(ticks) / clockTick / d.Seconds()
	fmt.Fprintf(stdout, "no client, system + one %g Hz bench sensor, %v: tree CPU %d ticks = %.3f %% of a core (budget 0.05 %%)\n", *hz, *d, ticks, pct)
	for _, p := range after.List {
		cpu := p.CPU
		for _, q := range before.List {
			if q.PID == p.PID {
				cpu -= q.CPU
			}
		}
		fmt.Fprintf(stdout, "  %-10s pid %-7d RSS %6d kB  PSS %6d kB  anon %6d kB  CPU %d ticks\n", p.Comm, p.PID, p.RSS, p.PSS, p.Anon, cpu)
	}

	first, err := r.firstReading(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "first browser: hello → first bench reading %v (budget one interval + 20 ms = %v)\n",
		first.Round(100*time.Microsecond), time.Duration(float64(time.Second) / *hz + 20e6))
	return nil
}

// firstReading connects a client through the stub and returns the time
// from its hello to its first bench reading.
func (r *rig) firstReading(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	doc, err := StubConnect(ctx, r.hc, r.stubURL(), r.origin())
	if err != nil {
		return 0, err
	}
	conn, err := dialWS(ctx, r.hc, doc.URL, r.origin(), doc.Protocol)
	if err != nil {
		return 0, err
	}
	defer conn.CloseNow()
	var hello time.Time
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return 0, fmt.Errorf("waiting for the first reading: %w", err)
		}
		if hello.IsZero() && bytes.HasPrefix(b, []byte(`{"type":"hello"`)) {
			hello = time.Now()
		}
		if !hello.IsZero() && bytes.HasPrefix(b, []byte(`{"type":"reading","sensor":"bench.`)) {
			return time.Since(hello), nil
		}
	}
}
