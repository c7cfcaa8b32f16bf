package sluice

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// VectorsClient holds the vector routes (/vectors/…). Options: WithCollection, WithAck.
type VectorsClient struct{ c *Client }

// Add inserts or replaces one vector, searchable on return (POST /vectors/add).
func (v *VectorsClient) Add(ctx context.Context, e VectorEntity, opts ...CallOption) (*AddResult, error) {
	o, err := optsOf(opts)
	if err != nil {
		return nil, err
	}
	var out AddResult
	return &out, v.c.callJSON(ctx, "POST", "/vectors/add", true, e, true, o.query(), &out)
}

// AddBatch inserts vectors, all or none (POST /vectors/add/batch).
func (v *VectorsClient) AddBatch(ctx context.Context, entities []VectorEntity, opts ...CallOption) (*BatchAddResult, error) {
	o, err := optsOf(opts)
	if err != nil {
		return nil, err
	}
	var out BatchAddResult
	return &out, v.c.callJSON(ctx, "POST", "/vectors/add/batch", true, map[string]any{"vectors": entities}, true, o.query(), &out)
}

func (v *VectorsClient) buffered(ctx context.Context, method, path string, body any, idem bool, opts []CallOption) error {
	o, err := optsOf(opts)
	if err != nil {
		return err
	}
	q := url.Values{}
	if o.collection != "" {
		q.Set("collection", o.collection)
	}
	return v.c.callJSON(ctx, method, path, true, body, idem, q, nil)
}

// AddBuffered adds a vector through the auto-buffer (POST /vectors/add/buffered).
func (v *VectorsClient) AddBuffered(ctx context.Context, e VectorEntity, opts ...CallOption) error {
	return v.buffered(ctx, "POST", "/vectors/add/buffered", e, true, opts)
}

// UpdateBuffered updates an existing vector through the auto-buffer (404 if it does not exist).
func (v *VectorsClient) UpdateBuffered(ctx context.Context, e VectorEntity, opts ...CallOption) error {
	return v.buffered(ctx, "POST", "/vectors/update/buffered", e, true, opts)
}

// RemoveBuffered removes a vector through the auto-buffer (DELETE /vectors/remove/buffered).
func (v *VectorsClient) RemoveBuffered(ctx context.Context, pk string, opts ...CallOption) error {
	return v.buffered(ctx, "DELETE", "/vectors/remove/buffered", map[string]string{"pk": pk}, false, opts)
}

// GetBufferStats reads the vector auto-buffer's statistics.
func (v *VectorsClient) GetBufferStats(ctx context.Context) (*VectorBufferStats, error) {
	var out VectorBufferStats
	return &out, v.c.call(ctx, request{method: "GET", path: "/vectors/buffer/stats", scoped: true, idempotent: true}, &out)
}

// FlushBuffer flushes the vector auto-buffer (admin).
func (v *VectorsClient) FlushBuffer(ctx context.Context) error {
	return v.c.call(ctx, request{method: "POST", path: "/vectors/buffer/flush", scoped: true, idempotent: true}, nil)
}

// Search finds the K nearest vectors (POST /vectors/search), best first; with s.TimeRange only
// those whose timestamp is inside it, with s.Decay ranked by SearchResult.Rank, with
// s.WithSeries each carrying the aggregate of the series its metadata names (SearchResult.Series).
func (v *VectorsClient) Search(ctx context.Context, s Search, opts ...CallOption) ([]SearchResult, error) {
	o, err := optsOf(opts)
	if err != nil {
		return nil, err
	}
	body := map[string]any{"vector": s.Vector, "k": s.K}
	if s.Filter != nil {
		body["filter"] = s.Filter
	}
	if s.Ef > 0 {
		body["ef"] = s.Ef
	}
	if s.TimeRange != nil {
		body["time_range"] = s.TimeRange
	}
	if s.Decay != nil {
		body["decay"] = s.Decay
	}
	if s.WithSeries != nil {
		body["with_series"] = s.WithSeries
	}
	var out struct {
		Results []SearchResult `json:"results"`
	}
	err = v.c.callJSON(ctx, "POST", "/vectors/search", true, body, true, o.query(), &out)
	return out.Results, err
}

// Get reads one vector (GET /vectors/{pk}).
func (v *VectorsClient) Get(ctx context.Context, pk string, opts ...CallOption) (*VectorEntity, error) {
	o, err := optsOf(opts)
	if err != nil {
		return nil, err
	}
	var out VectorEntity
	return &out, v.c.call(ctx, request{method: "GET", path: "/vectors/" + url.PathEscape(pk), scoped: true, query: o.query(), idempotent: true}, &out)
}

// Delete removes one vector directly (DELETE /vectors/{pk}).
func (v *VectorsClient) Delete(ctx context.Context, pk string, opts ...CallOption) (*DeleteResult, error) {
	o, err := optsOf(opts)
	if err != nil {
		return nil, err
	}
	var out DeleteResult
	return &out, v.c.call(ctx, request{method: "DELETE", path: "/vectors/" + url.PathEscape(pk), scoped: true, query: o.query()}, &out)
}

// CollectionsClient holds /v1/collections.
type CollectionsClient struct{ c *Client }

// Create makes a collection (POST /v1/collections).
func (cc *CollectionsClient) Create(ctx context.Context, spec CreateCollection) (*CollectionInfo, error) {
	var out CollectionInfo
	return &out, cc.c.callJSON(ctx, "POST", "/v1/collections", true, spec, false, nil, &out)
}

// List lists the collections.
func (cc *CollectionsClient) List(ctx context.Context) ([]CollectionInfo, error) {
	var out struct {
		Collections []CollectionInfo `json:"collections"`
	}
	err := cc.c.call(ctx, request{method: "GET", path: "/v1/collections", scoped: true, idempotent: true}, &out)
	return out.Collections, err
}

// Get describes one collection.
func (cc *CollectionsClient) Get(ctx context.Context, name string) (*CollectionInfo, error) {
	var out CollectionInfo
	return &out, cc.c.call(ctx, request{method: "GET", path: "/v1/collections/" + url.PathEscape(name), scoped: true, idempotent: true}, &out)
}

// Delete drops a collection.
func (cc *CollectionsClient) Delete(ctx context.Context, name string) (*DeleteResult, error) {
	var out DeleteResult
	return &out, cc.c.call(ctx, request{method: "DELETE", path: "/v1/collections/" + url.PathEscape(name), scoped: true}, &out)
}

// EntityIterator reads a collection export's NDJSON answer as it streams:
//
//	for it.Next() { e := it.Entity() }; err := it.Err(); it.Close()
type EntityIterator struct {
	body io.ReadCloser
	sc   *bufio.Scanner
	cur  VectorEntity
	err  error
}

// Next advances to the next entity; false at the end or on an error (see Err).
func (it *EntityIterator) Next() bool {
	if it.err != nil || it.sc == nil {
		return false
	}
	for it.sc.Scan() {
		line := strings.TrimSpace(it.sc.Text())
		if line == "" {
			continue
		}
		var e VectorEntity
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			it.err = fmt.Errorf("sluice: export line: %w", err)
			return false
		}
		it.cur = e
		return true
	}
	it.err = it.sc.Err()
	it.sc = nil
	return false
}

// Entity is the current entity.
func (it *EntityIterator) Entity() VectorEntity { return it.cur }

// Err is the error that stopped Next, if any.
func (it *EntityIterator) Err() error { return it.err }

// Close releases the connection (safe to call twice).
func (it *EntityIterator) Close() error {
	it.sc = nil
	if it.body == nil {
		return nil
	}
	err := it.body.Close()
	it.body = nil
	return err
}

// Export streams a collection's entities in pk order (GET /v1/collections/{name}/export, NDJSON;
// buffered entities included, expired ones not) without reading the whole answer. An unknown
// collection is ErrNotFound (collection_not_found). Close the iterator when done.
func (cc *CollectionsClient) Export(ctx context.Context, name string) (*EntityIterator, error) {
	r := request{
		method: "GET", path: "/v1/collections/" + url.PathEscape(name) + "/export", scoped: true, idempotent: true, stream: true,
		// Uncompressed: the NDJSON is consumed as it streams.
		header: http.Header{"Accept-Encoding": {"identity"}, "Accept": {"application/x-ndjson"}},
	}
	resp, err := cc.c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	return &EntityIterator{body: resp.Body, sc: sc}, nil
}

// ExportFunc streams a collection export into fn; fn's error stops it and is returned.
func (cc *CollectionsClient) ExportFunc(ctx context.Context, name string, fn func(VectorEntity) error) error {
	it, err := cc.Export(ctx, name)
	if err != nil {
		return err
	}
	defer it.Close()
	for it.Next() {
		if err := fn(it.Entity()); err != nil {
			return err
		}
	}
	return it.Err()
}

// DatabasesClient holds /v1/databases.
type DatabasesClient struct{ c *Client }

// Create makes a database.
func (d *DatabasesClient) Create(ctx context.Context, spec CreateDatabase) (*DatabaseInfo, error) {
	var out DatabaseInfo
	return &out, d.c.callJSON(ctx, "POST", "/v1/databases", false, spec, false, nil, &out)
}

// List lists the databases the caller has a role on.
func (d *DatabasesClient) List(ctx context.Context) ([]DatabaseInfo, error) {
	var out struct {
		Databases []DatabaseInfo `json:"databases"`
	}
	err := d.c.call(ctx, request{method: "GET", path: "/v1/databases", idempotent: true}, &out)
	return out.Databases, err
}

// Delete drops a database and its data.
func (d *DatabasesClient) Delete(ctx context.Context, name string) error {
	return d.c.call(ctx, request{method: "DELETE", path: "/v1/databases/" + url.PathEscape(name)}, nil)
}
