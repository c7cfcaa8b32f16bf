package sluice

import (
	"context"
	"net/url"
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

// Search finds the K nearest vectors (POST /vectors/search), best first.
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
