// goservice burns CPU inside pprof label sets so ebpftop's pprof tests have a real
// profile to read: two "requests" (trace_id/span_id labels), each in its own hot
// function, plus net/http/pprof on a loopback port printed on stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime/pprof"
	"sync/atomic"
)

var sink uint64

//go:noinline
func hotCheckout(n int) uint64 {
	var x uint64 = 1
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

//go:noinline
func hotSearch(n int) uint64 {
	var x uint64 = 7
	for i := 0; i < n; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

func request(traceID, spanID string, hot func(int) uint64) {
	labels := pprof.Labels("trace_id", traceID, "span_id", spanID)
	pprof.Do(context.Background(), labels, func(context.Context) {
		for {
			atomic.AddUint64(&sink, hot(1<<16))
		}
	})
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address for net/http/pprof")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	go request("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", hotCheckout)
	go request("a3ce929d0e0e47364bf92f3577b34da6", "b7ad6b7169203331", hotSearch)
	fmt.Printf("listening on http://%s\n", ln.Addr())
	os.Stdout.Sync()
	if err := http.Serve(ln, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
