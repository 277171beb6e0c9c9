// The lab's instrumented HTTP service, run as stable and as canary (`ebpftop lab up`
// builds it with the standard library only and starts it in each service namespace):
//
//	goservice -listen 0.0.0.0:8000 -version v1.1.0 -track canary -service checkout
//
// Every request runs inside pprof.Do with the labels trace_id and span_id (its own
// W3C ids, sent back in `traceparent`) and service, version, track: a CPU sample
// taken while it works carries the trace id that its latency exemplar names.
//
//	/metrics        http_request_duration_seconds{version,track} with trace_id
//	                exemplars, http_requests_total{version,track,code}; OpenMetrics
//	                when asked (exemplars exist only there), else text 0.0.4
//	/healthz        200 whatever the knobs
//	/-/knobs        GET, PUT JSON {"latency_s", "error_ratio", "cpu"} (HAProxy denies /-/ to clients)
//	/debug/pprof/   net/http/pprof (HAProxy denies /debug/ to clients)
//	anything else   a request: natural CPU work, then the knobs
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	rpprof "runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	knobsPath = "/-/knobs"
	// CPU time the `cpu=on` path burns per request: at the default 2 canary req/s a
	// tenth of a core, and ~5 CPU samples per request at pprof's 100 Hz.
	cpuPathSeconds = 0.05
	maxLatency     = 10.0
)

// prometheus_client's default buckets, as the Python service had them.
var buckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, math.Inf(1)}

type knobs struct {
	LatencyS   float64 `json:"latency_s"`
	ErrorRatio float64 `json:"error_ratio"`
	CPU        bool    `json:"cpu"`
}

func (k knobs) describe() string {
	cpu := "off"
	if k.CPU {
		cpu = "on"
	}
	return fmt.Sprintf("latency=%gms errors=%g%% cpu=%s", k.LatencyS*1000, k.ErrorRatio*100, cpu)
}

// parseKnobs trusts nothing: unknown fields, wrong types and values out of range are refused.
func parseKnobs(body []byte) (knobs, error) {
	var k knobs
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&k); err != nil {
		return knobs{}, fmt.Errorf("knobs must be a JSON object of latency_s, error_ratio, cpu: %v", err)
	}
	if dec.More() {
		return knobs{}, fmt.Errorf("one JSON object only")
	}
	if !(k.LatencyS >= 0 && k.LatencyS <= maxLatency) {
		return knobs{}, fmt.Errorf("latency_s must be 0-%g", maxLatency)
	}
	if !(k.ErrorRatio >= 0 && k.ErrorRatio <= 1) {
		return knobs{}, fmt.Errorf("error_ratio must be 0-1")
	}
	return k, nil
}

type exemplar struct {
	traceID string
	value   float64
	at      time.Time
}

type service struct {
	name, version, track string
	baseLatency          float64
	created              time.Time

	mu        sync.Mutex
	knobs     knobs
	counts    []uint64 // per bucket, not cumulative
	exemplars []*exemplar
	sum       float64
	total     uint64
	codes     map[int]uint64
}

func newService(name, version, track string, base float64) *service {
	return &service{
		name: name, version: version, track: track, baseLatency: base, created: time.Now(),
		counts:    make([]uint64, len(buckets)),
		exemplars: make([]*exemplar, len(buckets)),
		// Pre-created so both variants' series exist in Prometheus before traffic.
		codes: map[int]uint64{200: 0, 500: 0},
	}
}

func (s *service) observe(seconds float64, code int, traceID string) {
	i := sort.SearchFloat64s(buckets, seconds)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[i]++
	s.exemplars[i] = &exemplar{traceID, seconds, time.Now()}
	s.sum += seconds
	s.total++
	s.codes[code]++
}

func num(v float64) string {
	if math.IsInf(v, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func stamp(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', 3, 64)
}

// metrics writes the exposition by hand: OpenMetrics (with exemplars) or text 0.0.4.
func (s *service) metrics(w io.Writer, openMetrics bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	labels := fmt.Sprintf(`track="%s",version="%s"`, s.track, s.version)
	fmt.Fprintln(w, "# HELP http_request_duration_seconds Time spent answering an HTTP request.")
	fmt.Fprintln(w, "# TYPE http_request_duration_seconds histogram")
	var cumulative uint64
	for i, le := range buckets {
		cumulative += s.counts[i]
		line := fmt.Sprintf(`http_request_duration_seconds_bucket{le="%s",%s} %d`, num(le), labels, cumulative)
		if ex := s.exemplars[i]; openMetrics && ex != nil {
			line += fmt.Sprintf(` # {trace_id="%s"} %s %s`, ex.traceID, num(ex.value), stamp(ex.at))
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "http_request_duration_seconds_count{%s} %d\n", labels, s.total)
	fmt.Fprintf(w, "http_request_duration_seconds_sum{%s} %s\n", labels, num(s.sum))
	if openMetrics {
		fmt.Fprintf(w, "http_request_duration_seconds_created{%s} %s\n", labels, stamp(s.created))
		fmt.Fprintln(w, "# HELP http_requests HTTP requests answered, by status code.")
		fmt.Fprintln(w, "# TYPE http_requests counter")
	} else {
		fmt.Fprintln(w, "# HELP http_requests_total HTTP requests answered, by status code.")
		fmt.Fprintln(w, "# TYPE http_requests_total counter")
	}
	codes := make([]int, 0, len(s.codes))
	for c := range s.codes {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		fmt.Fprintf(w, "http_requests_total{code=\"%d\",%s} %d\n", c, labels, s.codes[c])
		if openMetrics {
			fmt.Fprintf(w, "http_requests_created{code=\"%d\",%s} %s\n", c, labels, stamp(s.created))
		}
	}
	if openMetrics {
		fmt.Fprintln(w, "# EOF")
	}
}

//go:noinline
func burn(deadline time.Time) int {
	rounds := 0
	digest := sha256.Sum256([]byte("ebpftop-lab"))
	for time.Now().Before(deadline) {
		for i := 0; i < 200; i++ {
			digest = sha256.Sum256(digest[:])
		}
		rounds++
	}
	return rounds
}

// naturalWork is the request's own CPU time (exponential around the base latency), so
// the slowest requests are the ones a CPU profile sees most.
//
//go:noinline
func naturalWork(seconds float64) int {
	return burn(time.Now().Add(time.Duration(seconds * float64(time.Second))))
}

// cpuHeavyPath is the knob `cpu=on`: a hashing loop a CPU profile shows by name.
//
//go:noinline
func cpuHeavyPath() int {
	return burn(time.Now().Add(time.Duration(cpuPathSeconds * float64(time.Second))))
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func send(w http.ResponseWriter, code int, ctype string, body []byte) {
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}

func (s *service) serveRequest(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	traceID, spanID := randomHex(16), randomHex(8)
	s.mu.Lock()
	k := s.knobs
	s.mu.Unlock()
	code := http.StatusOK
	labels := rpprof.Labels(
		"trace_id", traceID, "span_id", spanID, "service", s.name, "version", s.version, "track", s.track,
	)
	rpprof.Do(r.Context(), labels, func(context.Context) {
		if s.baseLatency > 0 {
			naturalWork(math.Min(mrand.ExpFloat64()*s.baseLatency, 20*s.baseLatency))
		}
		if k.CPU {
			cpuHeavyPath()
		}
		if k.LatencyS > 0 {
			time.Sleep(time.Duration(k.LatencyS * float64(time.Second)))
		}
		if k.ErrorRatio > 0 && mrand.Float64() < k.ErrorRatio {
			code = http.StatusInternalServerError
		}
	})
	body, _ := json.Marshal(map[string]any{
		"track": s.track, "version": s.version, "trace_id": traceID, "span_id": spanID, "ok": code == 200,
	})
	w.Header().Set("traceparent", fmt.Sprintf("00-%s-%s-01", traceID, spanID))
	send(w, code, "application/json", body)
	s.observe(time.Since(start).Seconds(), code, traceID)
}

func (s *service) serveKnobs(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.mu.Lock()
		body, _ := json.Marshal(s.knobs)
		s.mu.Unlock()
		send(w, 200, "application/json", body)
	case http.MethodPut:
		body, err := io.ReadAll(io.LimitReader(r.Body, 4097))
		if err == nil && (len(body) == 0 || len(body) > 4096) {
			err = fmt.Errorf("body must be 1-4096 bytes of JSON")
		}
		var k knobs
		if err == nil {
			k, err = parseKnobs(body)
		}
		if err != nil {
			msg, _ := json.Marshal(map[string]string{"error": err.Error()})
			send(w, 400, "application/json", msg)
			return
		}
		s.mu.Lock()
		s.knobs = k
		s.mu.Unlock()
		fmt.Printf("knobs set: %s\n", k.describe())
		out, _ := json.Marshal(k)
		send(w, 200, "application/json", out)
	default:
		send(w, 405, "application/json", []byte(`{"error": "only GET and PUT /-/knobs"}`))
	}
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch path := r.URL.Path; {
	case path == "/metrics":
		if strings.Contains(r.Header.Get("Accept"), "application/openmetrics-text") {
			w.Header().Set("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
			s.metrics(w, true)
		} else {
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			s.metrics(w, false)
		}
	case path == "/healthz":
		send(w, 200, "text/plain", []byte("ok\n"))
	case path == knobsPath:
		s.serveKnobs(w, r)
	case path == "/debug/pprof/profile":
		pprof.Profile(w, r)
	case strings.HasPrefix(path, "/debug/pprof/"):
		pprof.Index(w, r) // the index serves heap, goroutine... by name
	default:
		s.serveRequest(w, r)
	}
}

func main() {
	listen := flag.String("listen", "0.0.0.0:8000", "host:port")
	version := flag.String("version", "", "value of the `version` label (required)")
	track := flag.String("track", "", "value of the `track` label: stable, canary (required)")
	name := flag.String("service", os.Getenv("OTEL_SERVICE_NAME"), "value of the `service` pprof label")
	base := flag.Float64("base-latency-ms", 3.0, "mean of the natural CPU work per request")
	flag.Parse()
	if *version == "" || *track == "" || *base < 0 {
		fmt.Fprintln(os.Stderr, "goservice: -version and -track are required; -base-latency-ms must be >= 0")
		os.Exit(2)
	}
	s := newService(*name, *version, *track, *base/1000)
	server := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	// Listen before saying "serving": whoever waits for that line may connect at once.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("serving %s %s on %s (service %s, pprof labels trace_id span_id)\n", *track, *version, *listen, *name)
	if err := server.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
