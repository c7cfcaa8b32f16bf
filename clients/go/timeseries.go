package sluice

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/url"
	"strconv"
	"strings"
)

// TimeSeriesClient holds the time-series routes (/ts/…, line protocol).
type TimeSeriesClient struct{ c *Client }

func checkPoint(p DataPoint) error {
	if p.Metric == "" {
		return fmt.Errorf("sluice: a point needs a metric")
	}
	if math.IsNaN(p.Value) || math.IsInf(p.Value, 0) {
		return fmt.Errorf("sluice: value must be finite, not %v", p.Value)
	}
	return nil
}

// appendPointsJSON appends {"points": [...]} as json.Marshal would write it, without
// reflection (the batch writer's and PutBatch's bodies).
func appendPointsJSON(b []byte, points []DataPoint) []byte {
	if b == nil {
		b = make([]byte, 0, 16+len(points)*80)
	}
	b = append(b, `{"points":[`...)
	for i := range points {
		p := &points[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"metric":`...)
		b = appendJSONString(b, p.Metric)
		b = append(b, `,"entity":`...)
		b = appendJSONString(b, p.Entity)
		b = append(b, `,"value":`...)
		b = appendJSONFloat(b, p.Value)
		if p.TimestampMs != 0 {
			b = append(b, `,"timestamp_ms":`...)
			b = strconv.AppendInt(b, p.TimestampMs, 10)
		}
		if len(p.Tags) > 0 {
			b = append(b, `,"tags":{`...)
			for j, k := range sortedKeys(p.Tags) {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, k)
				b = append(b, ':')
				b = appendJSONString(b, p.Tags[k])
			}
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendJSONString quotes s; strings that need escaping go through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONFloat formats a finite f as encoding/json does.
func appendJSONFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		start := len(b)
		b = strconv.AppendFloat(b, f, 'e', -1, 64)
		// e-09 -> e-9, as encoding/json writes it
		if n := len(b) - start; n >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
		return b
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

// Put writes one point directly (POST /ts/put). Options: WithAck.
func (t *TimeSeriesClient) Put(ctx context.Context, p DataPoint, opts ...CallOption) (*PutResult, error) {
	o, err := optsOf(opts)
	if err != nil {
		return nil, err
	}
	if err := checkPoint(p); err != nil {
		return nil, err
	}
	var out PutResult
	return &out, t.c.callJSON(ctx, "POST", "/ts/put", true, p, p.TimestampMs != 0, o.query(), &out)
}

// PutBatch writes points, all or none (POST /ts/put/batch). Options: WithAck.
func (t *TimeSeriesClient) PutBatch(ctx context.Context, points []DataPoint, opts ...CallOption) (*BatchPutResult, error) {
	o, err := optsOf(opts)
	if err != nil {
		return nil, err
	}
	idem := true
	for _, p := range points {
		if err := checkPoint(p); err != nil {
			return nil, err
		}
		idem = idem && p.TimestampMs != 0
	}
	var out BatchPutResult
	return &out, t.c.call(ctx, request{method: "POST", path: "/ts/put/batch", scoped: true, query: o.query(),
		body: appendPointsJSON(nil, points), contentType: "application/json", idempotent: idem}, &out)
}

// PutBuffered writes one point through the server's auto-buffer (POST /ts/put/buffered):
// answered at once, visible to queries at once.
func (t *TimeSeriesClient) PutBuffered(ctx context.Context, point DataPoint) error {
	if err := checkPoint(point); err != nil {
		return err
	}
	return t.c.callJSON(ctx, "POST", "/ts/put/buffered", true, point, point.TimestampMs != 0, nil, nil)
}

// GetBufferStats reads the auto-buffer's statistics (GET /ts/buffer/stats).
func (t *TimeSeriesClient) GetBufferStats(ctx context.Context) (*BufferStats, error) {
	var out BufferStats
	return &out, t.c.call(ctx, request{method: "GET", path: "/ts/buffer/stats", scoped: true, idempotent: true}, &out)
}

// FlushBuffer flushes the auto-buffer (POST /ts/buffer/flush; admin).
func (t *TimeSeriesClient) FlushBuffer(ctx context.Context) error {
	return t.c.call(ctx, request{method: "POST", path: "/ts/buffer/flush", scoped: true, idempotent: true}, nil)
}

// WriteLines writes InfluxDB line protocol (POST /write, or /api/v2/write with
// WithLineProtocolV2). Options: WithPrecision, WithAck, WithIdempotent (re-send after a lost
// answer; say so only when every line has a timestamp).
func (t *TimeSeriesClient) WriteLines(ctx context.Context, lines string, opts ...CallOption) error {
	o, err := optsOf(opts)
	if err != nil {
		return err
	}
	q := o.query()
	if o.precision != "" {
		switch o.precision {
		case "ns", "us", "ms", "s", "n", "u":
		default:
			return fmt.Errorf("sluice: precision must be ns, us, ms or s")
		}
		q.Set("precision", o.precision)
	}
	path := "/write"
	if o.v2 {
		path = "/api/v2/write"
	}
	return t.c.call(ctx, request{method: "POST", path: path, scoped: true, query: q, body: []byte(lines),
		contentType: "text/plain; charset=utf-8", idempotent: o.idempotent}, nil)
}

// Query runs POST /ts/query.
func (t *TimeSeriesClient) Query(ctx context.Context, q Query) (*QueryResult, error) {
	var out QueryResult
	return &out, t.c.callJSON(ctx, "POST", "/ts/query", true, q.body(), true, nil, &out)
}

// Export is the body of POST /ts/export (ToMs 0 = the end of time).
type Export struct {
	Metric   string
	FromMs   int64
	ToMs     int64
	Entity   string
	Tags     map[string]string
	Matchers []TagMatcher
}

// PointIterator reads an export's NDJSON answer as it streams:
//
//	for it.Next() { p := it.Point() }; err := it.Err(); it.Close()
type PointIterator struct {
	body io.ReadCloser
	sc   *bufio.Scanner
	cur  DataPoint
	err  error
}

// Next advances to the next point; false at the end or on an error (see Err).
func (it *PointIterator) Next() bool {
	if it.err != nil || it.sc == nil {
		return false
	}
	for it.sc.Scan() {
		line := strings.TrimSpace(it.sc.Text())
		if line == "" {
			continue
		}
		var p DataPoint
		if err := json.Unmarshal([]byte(line), &p); err != nil {
			it.err = fmt.Errorf("sluice: export line: %w", err)
			return false
		}
		it.cur = p
		return true
	}
	it.err = it.sc.Err()
	it.sc = nil
	return false
}

// Point is the current point.
func (it *PointIterator) Point() DataPoint { return it.cur }

// Err is the error that stopped Next, if any.
func (it *PointIterator) Err() error { return it.err }

// Close releases the connection (safe to call twice).
func (it *PointIterator) Close() error {
	it.sc = nil
	if it.body == nil {
		return nil
	}
	err := it.body.Close()
	it.body = nil
	return err
}

// Export streams the points of a range (POST /ts/export) without reading the whole answer.
// Close the iterator when done.
func (t *TimeSeriesClient) Export(ctx context.Context, e Export) (*PointIterator, error) {
	q := Query{Metric: e.Metric, FromMs: e.FromMs, ToMs: e.ToMs, Entity: e.Entity, Tags: e.Tags, Matchers: e.Matchers}
	r, err := jsonReq("POST", "/ts/export", true, q.body(), true)
	if err != nil {
		return nil, err
	}
	r.stream = true
	resp, err := t.c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	return &PointIterator{body: resp.Body, sc: sc}, nil
}

// TsDeleteResult answers Delete: the deletion is durable and visible to queries.
type TsDeleteResult struct {
	Success         bool   `json:"success"`
	LSN             uint64 `json:"lsn"`
	Series          uint64 `json:"series"`
	PointsDeleted   uint64 `json:"points_deleted"`
	ChunksRewritten uint64 `json:"chunks_rewritten"`
	ChunksRemoved   uint64 `json:"chunks_removed"`
}

// Delete deletes the points of the selected series in [FromMs, ToMs] (POST /ts/delete; admin).
// As for Export, ToMs 0 means the end of time: Export{Metric: m} deletes every point of m.
// Durable, replicated and visible to queries when it returns; points written later are
// untouched. Never re-sent after a lost answer (it would delete what was written meanwhile).
func (t *TimeSeriesClient) Delete(ctx context.Context, e Export) (*TsDeleteResult, error) {
	q := Query{Metric: e.Metric, FromMs: e.FromMs, ToMs: e.ToMs, Entity: e.Entity, Tags: e.Tags, Matchers: e.Matchers}
	var out TsDeleteResult
	return &out, t.c.callJSON(ctx, "POST", "/ts/delete", true, q.body(), false, nil, &out)
}

// Cardinality is the answer of GET /ts/cardinality: series totals, limits and the largest
// metrics, labels and label values by series count.
type Cardinality struct {
	TotalSeries         uint64 `json:"total_series"`
	Series              uint64 `json:"series"`
	NewSeriesLastHour   uint64 `json:"new_series_last_hour"`
	MaxSeries           uint64 `json:"max_series"`
	MaxNewSeriesPerHour uint64 `json:"max_new_series_per_hour"`
	SeriesCountByMetric []struct {
		Metric string `json:"metric"`
		Series uint64 `json:"series"`
	} `json:"series_count_by_metric"`
	SeriesCountByLabel []struct {
		Label  string `json:"label"`
		Series uint64 `json:"series"`
		Values uint64 `json:"values"`
	} `json:"series_count_by_label"`
	SeriesCountByLabelValue []struct {
		Label  string `json:"label"`
		Value  string `json:"value"`
		Series uint64 `json:"series"`
	} `json:"series_count_by_label_value"`
}

// Cardinality reads the series counts (GET /ts/cardinality) among every series, or those of
// metric when it is not empty; limit is the entries per list (0: the server's default, 10).
func (t *TimeSeriesClient) Cardinality(ctx context.Context, metric string, limit int) (*Cardinality, error) {
	q := url.Values{}
	if metric != "" {
		q.Set("metric", metric)
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out Cardinality
	return &out, t.c.call(ctx, request{method: "GET", path: "/ts/cardinality", scoped: true, query: q, idempotent: true}, &out)
}

// ExportFunc streams an export into fn; fn's error stops it and is returned.
func (t *TimeSeriesClient) ExportFunc(ctx context.Context, e Export, fn func(DataPoint) error) error {
	it, err := t.Export(ctx, e)
	if err != nil {
		return err
	}
	defer it.Close()
	for it.Next() {
		if err := fn(it.Point()); err != nil {
			return err
		}
	}
	return it.Err()
}
