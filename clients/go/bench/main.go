// Command bench measures the BatchWriter's throughput (points/s) over HTTP and over the
// binary wire protocol against a running server:
//
//	go run ./bench -url http://127.0.0.1:8080 -wire 127.0.0.1:18765 [-n 500000] [-token T]
//	go run ./bench http://127.0.0.1:8080 127.0.0.1:18765
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	sluice "github.com/sluice-db/sluice/clients/go"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "server HTTP URL")
	wire := flag.String("wire", "", "wire listener host:port (default: the URL's host, port 18765)")
	n := flag.Int("n", 500000, "points per transport")
	batch := flag.Int("batch", 5000, "points per batch")
	series := flag.Int("series", 100, "distinct series")
	token := flag.String("token", "", "bearer token")
	transports := flag.String("transports", "http,wire", "transports to measure")
	flag.Parse()
	if a := flag.Args(); len(a) > 0 {
		*url = a[0]
		if len(a) > 1 {
			*wire = a[1]
		}
	}
	opts := []sluice.Option{sluice.WithToken(*token)}
	if *wire != "" {
		opts = append(opts, sluice.WithWireAddr(*wire))
	}
	c, err := sluice.NewClient(*url, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	failed := false
	for _, tr := range strings.Split(*transports, ",") {
		w, err := c.TimeSeries().NewBatchWriter(sluice.BatchWriterOptions{Transport: tr, MaxPoints: *batch, QueueSize: 4 * *batch})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		metric := fmt.Sprintf("bench_go_%s_%d", tr, time.Now().UnixNano())
		base := time.Now().UnixMilli() - int64(*n)
		start := time.Now()
		for i := 0; i < *n; i++ {
			p := sluice.DataPoint{Metric: metric, Entity: fmt.Sprintf("host%03d", i%*series), Value: float64(i), TimestampMs: base + int64(i)}
			if err := w.Put(ctx, p); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		err = w.Close()
		el := time.Since(start)
		status := "ok"
		if err != nil {
			status, failed = "error: "+err.Error(), true
		}
		fmt.Printf("%-5s %9d points in %7.3fs: %10.0f points/s (%d batches of %d) %s\n",
			tr, w.PointsWritten(), el.Seconds(), float64(w.PointsWritten())/el.Seconds(), w.Batches(), *batch, status)
	}
	if failed {
		os.Exit(1)
	}
}
