// etcdbench: the etcd peer of bench/ctrl_bench, durable single-key puts against a
// 3-member etcd cluster through the Go clientv3 (native gRPC, as etcd's own
// tools/benchmark), measured by bench/raft_bench.sh beside our controllers.
//
// C clients (goroutines), each with its own client and so its own gRPC connection
// (as each ctrl_bench client has its own nng socket), each with one Put in flight:
// it sends the next one when the last is acknowledged. The first -warmup seconds
// are not counted; then, for -secs seconds (or until -count puts are done), every
// acknowledged put counts (puts/s) and the latency of every put started in the
// window is a sample (p50, p99). Keys are /bench/cC/N with N cycling over 1,000
// per client; values are -val bytes.
//
// With -pids P,P,P (the etcd processes) the CPU they use (user + system, from
// /proc/PID/stat) from the window's start until the last put, per put
// acknowledged meanwhile.
//
// Output: one `RESULT key=value ...` line, or with -json one JSON object. Exit 0
// when every put succeeded, 1 when one failed, 2 for a usage or connection error.
//
// Built by bench/raft_bench.sh in GOPATH mode against Debian's
// golang-etcd-server-dev sources (/usr/share/gocode), so that no module proxy is
// needed: GOPATH=/usr/share/gocode GO111MODULE=off go build. go.mod names the
// module for tools; the build does not read it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
)

type worker struct {
	lat       []time.Duration // puts started in the window
	window    int64           // puts acknowledged in the window
	afterOpen int64           // puts acknowledged after the window opened
	errors    int64
	err       error
}

// cpuSeconds is the user + system time of the processes so far, all their threads.
func cpuSeconds(pids []int) float64 {
	ticks := 0.0
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		// The fields after the command name (which may hold spaces): utime and
		// stime are the 12th and 13th.
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		ticks += ut + st
	}
	return ticks / 100 // USER_HZ
}

func percentile(v []time.Duration, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return float64(v[int(float64(len(v)-1)*p)].Nanoseconds()) / 1e3
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated client URLs (the leader's, for the benchmark)")
	clients := flag.Int("clients", 1, "concurrent clients, one put in flight each")
	secs := flag.Float64("secs", 2, "length of the timed window")
	warmup := flag.Float64("warmup", 0.3, "seconds of puts before the window opens")
	count := flag.Int64("count", 0, "stop after this many puts in the window (0: no limit)")
	vlen := flag.Int("val", 64, "value bytes")
	timeout := flag.Duration("timeout", 5*time.Second, "per put")
	asJSON := flag.Bool("json", false, "one JSON object instead of a RESULT line")
	pidList := flag.String("pids", "", "comma-separated etcd process ids, for their CPU")
	flag.Parse()
	var pids []int
	for _, p := range strings.Split(*pidList, ",") {
		if n, err := strconv.Atoi(p); err == nil && n > 0 {
			pids = append(pids, n)
		}
	}
	if *clients < 1 || *secs <= 0 || *warmup < 0 || *vlen < 0 || (*pidList != "" && len(pids) == 0) {
		flag.Usage()
		os.Exit(2)
	}

	eps := strings.Split(*endpoints, ",")
	cs := make([]*clientv3.Client, *clients)
	for i := range cs {
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, "etcdbench: connect:", err)
			os.Exit(2)
		}
		defer c.Close()
		cs[i] = c
	}
	value := strings.Repeat("v", *vlen)
	// Every connection is up and the cluster answers before the clock starts.
	for i, c := range cs {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		_, err := c.Put(ctx, fmt.Sprintf("/bench/c%d/warm", i), value)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "etcdbench: first put:", err)
			os.Exit(2)
		}
	}

	start := time.Now()
	open := start.Add(time.Duration(*warmup * float64(time.Second)))
	closeAt := open.Add(time.Duration(*secs * float64(time.Second)))
	var mu sync.Mutex
	var counted int64
	limitReached := func() bool {
		if *count <= 0 {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		return counted >= *count
	}
	ws := make([]worker, *clients)
	var wg sync.WaitGroup
	for w := range ws {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			me := &ws[w]
			for i := 0; ; i++ {
				t0 := time.Now()
				if !t0.Before(closeAt) || limitReached() {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), *timeout)
				_, err := cs[w].Put(ctx, fmt.Sprintf("/bench/c%d/%d", w, i%1000), value)
				cancel()
				t1 := time.Now()
				if err != nil {
					me.errors++
					me.err = err
					return
				}
				if !t1.Before(open) {
					me.afterOpen++
				}
				if !t1.Before(open) && !t1.After(closeAt) {
					me.window++
					if *count > 0 {
						mu.Lock()
						counted++
						mu.Unlock()
					}
				}
				if !t0.Before(open) {
					me.lat = append(me.lat, t1.Sub(t0))
				}
			}
		}(w)
	}
	cpu0 := 0.0
	if len(pids) > 0 {
		time.Sleep(time.Until(open))
		cpu0 = cpuSeconds(pids)
	}
	wg.Wait()
	end := time.Now()
	cpu := 0.0
	if len(pids) > 0 {
		cpu = cpuSeconds(pids) - cpu0
	}
	window := closeAt.Sub(open).Seconds()
	if end.Before(closeAt) { // stopped by -count
		window = end.Sub(open).Seconds()
	}

	var all []time.Duration
	var n, errs, afterOpen int64
	for _, w := range ws {
		all = append(all, w.lat...)
		n += w.window
		afterOpen += w.afterOpen
		errs += w.errors
		if w.err != nil {
			fmt.Fprintln(os.Stderr, "etcdbench: put:", w.err)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	mean, max := 0.0, 0.0
	if len(all) > 0 {
		mean = float64(sum.Nanoseconds()) / float64(len(all)) / 1e3
		max = float64(all[len(all)-1].Nanoseconds()) / 1e3
	}
	ops := 0.0
	if window > 0 {
		ops = float64(n) / window
	}
	cpuPerOp, cores, cpuField := 0.0, 0.0, ""
	if len(pids) > 0 && afterOpen > 0 && window > 0 {
		cpuPerOp = cpu * 1e6 / float64(afterOpen)
		cores = cpu / window
		cpuField = fmt.Sprintf(" cpu_us_per_op=%.1f cores=%.2f", cpuPerOp, cores)
	}
	ok := errs == 0 && n > 0
	okInt := 0
	if ok {
		okInt = 1
	}
	if *asJSON {
		fmt.Printf("{\"bench\": \"etcdbench\", \"clients\": %d, \"ok\": %t, \"n\": %d, \"secs\": %.3f, "+
			"\"ops_s\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"mean_us\": %.1f, \"max_us\": %.1f, "+
			"\"cpu_us_per_op\": %.1f, \"cores\": %.2f, \"errors\": %d}\n", *clients, ok, n, window, ops,
			percentile(all, 0.5), percentile(all, 0.99), mean, max, cpuPerOp, cores, errs)
	} else {
		fmt.Printf("RESULT name=etcd.put.c%d ok=%d clients=%d n=%d secs=%.3f ops_s=%.0f p50_us=%.1f "+
			"p99_us=%.1f mean_us=%.1f max_us=%.1f%s errors=%d\n", *clients, okInt, *clients, n, window, ops,
			percentile(all, 0.5), percentile(all, 0.99), mean, max, cpuField, errs)
	}
	if !ok {
		os.Exit(1)
	}
}
