// Quickstart: one buffered point, then the buffer's statistics, with the seed's names.
//
//	cd examples/go && go run ./quickstart [http://127.0.0.1:8080]
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	sluice "github.com/sluice-db/sluice/clients/go"
)

func main() {
	url := "http://127.0.0.1:8080"
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	client, err := sluice.NewClient(url, sluice.WithToken(os.Getenv("SLUICE_TOKEN")), sluice.WithTimeout(10*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	ts := client.TimeSeries()

	err = ts.PutBuffered(ctx, sluice.DataPoint{
		Metric:      "cpu_usage",
		Entity:      "server01",
		Value:       75.5,
		TimestampMs: time.Now().UnixMilli(),
		Tags:        map[string]string{"datacenter": "eu-west-1"},
	})
	if err != nil {
		log.Fatal(err)
	}
	stats, err := ts.GetBufferStats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("points buffered: %d, flushed: %d, flushes: %d, compression ratio: %.2f\n",
		stats.PointsBuffered, stats.PointsFlushed, stats.FlushCount, stats.AvgCompressionRatio)
}
