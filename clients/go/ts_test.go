package sluice

import (
	"errors"
	"testing"
	"time"
)

func TestTimeSeriesRoundTrip(t *testing.T) {
	for _, s := range []*testServer{devServer, authServer} {
		s := s
		t.Run(s.name, func(t *testing.T) {
			ctx := ctxT(t)
			ts := s.client(t).TimeSeries()
			m := uniq("cpu")
			base := int64(1702645200000)
			if r, err := ts.Put(ctx, DataPoint{Metric: m, Entity: "s1", Value: 1.5, TimestampMs: base, Tags: map[string]string{"dc": "eu"}}, WithAck("wal")); err != nil || !r.Success || r.LSN == 0 {
				t.Fatalf("put: %+v %v", r, err)
			}
			br, err := ts.PutBatch(ctx, []DataPoint{
				{Metric: m, Entity: "s1", Value: 2, TimestampMs: base + 1000, Tags: map[string]string{"dc": "eu"}},
				{Metric: m, Entity: "s2", Value: 3, TimestampMs: base + 1000, Tags: map[string]string{"dc": "us"}},
			})
			if err != nil || br.PointsWritten != 2 {
				t.Fatalf("batch: %+v %v", br, err)
			}
			if err := ts.PutBuffered(ctx, DataPoint{Metric: m, Entity: "s3", Value: 4, TimestampMs: base + 2000}); err != nil {
				t.Fatal(err)
			}
			if err := ts.WriteLines(ctx, m+",entity=s4 value=5 1702645203000", WithPrecision("ms"), WithIdempotent()); err != nil {
				t.Fatal(err)
			}
			if err := ts.WriteLines(ctx, m+",entity=s5 value=6 1702645204", WithPrecision("s"), WithLineProtocolV2()); err != nil {
				t.Fatal(err)
			}
			res, err := ts.Query(ctx, Query{Metric: m})
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, se := range res.Series {
				total += len(se.Points)
			}
			if len(res.Series) != 5 || total != 6 {
				t.Fatalf("query: %d series %d points: %+v", len(res.Series), total, res)
			}
			res, err = ts.Query(ctx, Query{Metric: m, Entity: "s1", FromMs: base, ToMs: base + 1000})
			if err != nil || len(res.Series) != 1 || len(res.Series[0].Points) != 2 || res.Series[0].Points[1] != [2]float64{float64(base + 1000), 2} {
				t.Fatalf("entity query: %+v %v", res, err)
			}
			res, err = ts.Query(ctx, Query{Metric: m, Tags: map[string]string{"dc": "us"}})
			if err != nil || len(res.Series) != 1 || res.Series[0].Entity != "s2" {
				t.Fatalf("tag query: %+v %v", res, err)
			}
			res, err = ts.Query(ctx, Query{Metric: m, Matchers: []TagMatcher{{Tag: "entity", Op: "=~", Value: "s[12]"}}})
			if err != nil || len(res.Series) != 2 {
				t.Fatalf("matcher query: %+v %v", res, err)
			}
			res, err = ts.Query(ctx, Query{Metric: m, Aggregation: "sum", StepMs: 60000, GroupBy: []string{"dc"}, FromMs: base, ToMs: base + 59999})
			if err != nil || len(res.Series) == 0 {
				t.Fatalf("agg query: %+v %v", res, err)
			}
			// export: iterator and callback
			it, err := ts.Export(ctx, Export{Metric: m})
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for it.Next() {
				p := it.Point()
				if p.Metric != m || p.TimestampMs == 0 {
					t.Fatalf("export point %+v", p)
				}
				n++
			}
			if it.Err() != nil || n != 6 {
				t.Fatalf("export: %d %v", n, it.Err())
			}
			it.Close()
			n = 0
			stop := errors.New("stop")
			err = ts.ExportFunc(ctx, Export{Metric: m, Entity: "s1"}, func(p DataPoint) error {
				n++
				if n == 1 {
					return stop
				}
				return nil
			})
			if err != stop || n != 1 {
				t.Fatalf("export func: %v %d", err, n)
			}
			st, err := ts.GetBufferStats(ctx)
			if err != nil || st.PointsBuffered+st.PointsFlushed == 0 {
				t.Fatalf("stats %+v %v", st, err)
			}
			if err := ts.FlushBuffer(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPutWithoutTimestampIsStampedByServer(t *testing.T) {
	ctx := ctxT(t)
	ts := devServer.client(t).TimeSeries()
	m := uniq("now")
	before := time.Now().UnixMilli()
	if _, err := ts.Put(ctx, DataPoint{Metric: m, Entity: "e", Value: 1}); err != nil {
		t.Fatal(err)
	}
	res, err := ts.Query(ctx, Query{Metric: m})
	if err != nil || len(res.Series) != 1 || int64(res.Series[0].Points[0][0]) < before-1000 {
		t.Fatalf("%+v %v", res, err)
	}
}

func TestDeleteRemovesTheSelectedPoints(t *testing.T) {
	ctx := ctxT(t)
	ts := authServer.client(t).TimeSeries()
	m := uniq("del")
	var pts []DataPoint
	for _, e := range []string{"a", "b"} {
		for i := int64(0); i < 10; i++ {
			pts = append(pts, DataPoint{Metric: m, Entity: e, Value: float64(i), TimestampMs: 1000 + i, Tags: map[string]string{"dc": e + "-1"}})
		}
	}
	if _, err := ts.PutBatch(ctx, pts); err != nil {
		t.Fatal(err)
	}
	r, err := ts.Delete(ctx, Export{Metric: m, Entity: "a", FromMs: 1004, ToMs: 2000})
	if err != nil || !r.Success || r.Series != 1 || r.PointsDeleted != 6 || r.LSN == 0 {
		t.Fatalf("delete: %+v %v", r, err)
	}
	r, err = ts.Delete(ctx, Export{Metric: m, Matchers: []TagMatcher{{Tag: "dc", Op: "=~", Value: "b-.*"}}})
	if err != nil || r.Series != 1 || r.PointsDeleted != 10 {
		t.Fatalf("delete by matcher: %+v %v", r, err)
	}
	res, err := ts.Query(ctx, Query{Metric: m})
	if err != nil || len(res.Series) != 1 || len(res.Series[0].Points) != 4 {
		t.Fatalf("left: %+v %v", res, err)
	}
	_, err = ts.Delete(ctx, Export{Metric: m, FromMs: 10, ToMs: 5})
	var e *Error
	if !errors.As(err, &e) || e.Status != 422 || e.ErrorID == "" {
		t.Fatalf("bad range: %v", err)
	}
}

func TestCardinalityCountsSeries(t *testing.T) {
	ctx := ctxT(t)
	ts := devServer.client(t).TimeSeries()
	m := uniq("card")
	if _, err := ts.PutBatch(ctx, []DataPoint{
		{Metric: m, Entity: "a", Value: 1, TimestampMs: 1000, Tags: map[string]string{"dc": "eu"}},
		{Metric: m, Entity: "b", Value: 1, TimestampMs: 1000, Tags: map[string]string{"dc": "eu"}},
	}); err != nil {
		t.Fatal(err)
	}
	c, err := ts.Cardinality(ctx, m, 5)
	if err != nil || c.Series != 2 || len(c.SeriesCountByMetric) != 1 || c.SeriesCountByMetric[0].Series != 2 {
		t.Fatalf("cardinality: %+v %v", c, err)
	}
	if len(c.SeriesCountByLabelValue) == 0 || c.SeriesCountByLabelValue[0].Value != "eu" {
		t.Fatalf("values: %+v", c.SeriesCountByLabelValue)
	}
}
