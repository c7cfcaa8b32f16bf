// Command bench measures the BatchWriter's throughput (acknowledged points/s) over HTTP and
// over the binary wire protocol against a running server; bench/src/bin/sdk_bench.rs runs it
// with the Rust wire client's rate as -reference.
//
//	cd clients/go && go build -o /tmp/gobench ./bench
//	/tmp/gobench -url http://127.0.0.1:8080 -wire 127.0.0.1:18765 [-seconds 5] [-token T] [-reference 2500000]
//
// The data is the shared harness's: 1000 series (metric cpu_usage, entity host{s}, no tags),
// random walks with two decimals, point i of each series at 1_700_000_000_000 + i*10_000 ms,
// interleaved by time (for i, for s); 100 points per series are generated up front and sent
// over and over, as the Rust reference does. One BatchWriter per transport (MaxPoints 5000,
// Ack buffer, refusals retried every 2 ms as the reference does) puts points for -seconds and
// is then closed; the rate is the points the server acknowledged over the time including
// Close. Output, one line per transport:
//
//	go http batch writer: <N> points/s
//	go wire batch writer: <N> points/s[  = <r>x of the Rust wire client (target >= 0.50)]
//
// -cpuprofile FILE writes a CPU profile of the wire run.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand"
	"os"
	"runtime/pprof"
	"time"

	sluice "github.com/sluice-db/sluice/clients/go"
)

const (
	series          = 1000
	pointsPerSeries = 100
	batchPoints     = 5000
)

// dataset is the harness's data: random walks with two decimals, 10 s apart, by time.
func dataset() []sluice.DataPoint {
	rng := rand.New(rand.NewSource(7))
	values := make([]float64, series)
	entities := make([]string, series)
	for s := range values {
		values[s] = 10 + rng.Float64()*80
		entities[s] = fmt.Sprintf("host%d", s)
	}
	out := make([]sluice.DataPoint, 0, series*pointsPerSeries)
	for i := 0; i < pointsPerSeries; i++ {
		for s := range values {
			values[s] = math.Round((values[s]+rng.Float64()*2-1)*100) / 100
			out = append(out, sluice.DataPoint{Metric: "cpu_usage", Entity: entities[s], Value: values[s],
				TimestampMs: 1_700_000_000_000 + int64(i)*10_000})
		}
	}
	return out
}

// run puts data (cycling) through one writer for d, closes it and returns acknowledged
// points/s over the whole time.
func run(c *sluice.Client, transport string, data []sluice.DataPoint, d time.Duration) (float64, error) {
	w, err := c.TimeSeries().NewBatchWriter(sluice.BatchWriterOptions{
		Transport: transport,
		MaxPoints: batchPoints,
		Ack:       "buffer",
		Retry:     &sluice.RetryPolicy{MaxRetries: 100_000, InitialBackoff: 2 * time.Millisecond, MaxBackoff: 2 * time.Millisecond},
	})
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	start := time.Now()
	deadline := start.Add(d)
	for i := 0; ; i++ {
		if i%1024 == 0 && time.Now().After(deadline) {
			break
		}
		if err := w.Put(ctx, data[i%len(data)]); err != nil {
			_ = w.Close()
			return 0, err
		}
	}
	err = w.Close()
	return float64(w.PointsWritten()) / time.Since(start).Seconds(), err
}

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "server HTTP URL")
	wire := flag.String("wire", "", "wire listener host:port (default: the URL's host, port 18765)")
	token := flag.String("token", "", "bearer token")
	seconds := flag.Float64("seconds", 5, "seconds per transport")
	reference := flag.Float64("reference", 0, "points/s of the Rust wire client, to print the ratio")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the wire run to this file")
	flag.Parse()
	opts := []sluice.Option{sluice.WithToken(*token)}
	if *wire != "" {
		opts = append(opts, sluice.WithWireAddr(*wire))
	}
	c, err := sluice.NewClient(*url, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer c.Close()
	data := dataset()
	d := time.Duration(*seconds * float64(time.Second))
	for _, tr := range []string{"http", "wire"} {
		if tr == "wire" && *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			_ = pprof.StartCPUProfile(f)
		}
		rate, err := run(c, tr, data, d)
		if tr == "wire" && *cpuprofile != "" {
			pprof.StopCPUProfile()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "go %s batch writer: %v\n", tr, err)
			os.Exit(1)
		}
		line := fmt.Sprintf("go %s batch writer: %.0f points/s", tr, rate)
		if tr == "wire" && *reference > 0 {
			line += fmt.Sprintf("  = %.2fx of the Rust wire client (target >= 0.50)", rate/(*reference))
		}
		fmt.Println(line)
	}
}
