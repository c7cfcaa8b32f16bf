// Package sluice is the Go client of Sluice, a time-series and vector database.
//
// A Client speaks the HTTP API; its groups (TimeSeries, Vectors, Collections, Databases,
// Replication, WALShipper) hold the operations. The binary wire protocol is spoken by
// WireClient, and BatchWriter batches points over either transport.
package sluice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Client is a Sluice HTTP client. It is safe for concurrent use.
type Client struct {
	base     string
	token    string
	database string
	timeout  time.Duration
	retry    RetryPolicy
	wireAddr string
	hc       *http.Client
}

// Option configures NewClient.
type Option func(*Client)

// WithToken sends "Authorization: Bearer token" (and AUTH on the wire).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithDatabase scopes every data route to /v1/databases/{name}/…
func WithDatabase(name string) Option { return func(c *Client) { c.database = name } }

// WithTimeout bounds each HTTP attempt (default 30 s; 0 = none). Exports are bounded by
// their context only.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithRetries sets the number of retries of the default policy (0 = never retry).
func WithRetries(n int) Option { return func(c *Client) { c.retry.MaxRetries = n } }

// WithRetryPolicy replaces the retry policy.
func WithRetryPolicy(p RetryPolicy) Option { return func(c *Client) { c.retry = p } }

// WithHTTPClient uses hc (its Timeout is left as it is).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithWireAddr sets the wire listener's "host:port" (default: the URL's host, port 18765).
func WithWireAddr(addr string) Option { return func(c *Client) { c.wireAddr = addr } }

// NewClient makes a client of the server at baseURL ("http://127.0.0.1:8080").
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("sluice: invalid URL %q", baseURL)
	}
	c := &Client{
		base:    strings.TrimRight(baseURL, "/"),
		timeout: 30 * time.Second,
		retry:   DefaultRetryPolicy(),
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		c.hc = &http.Client{Transport: tr}
	}
	if c.wireAddr == "" {
		c.wireAddr = net.JoinHostPort(u.Hostname(), "18765")
	}
	return c, nil
}

// Database returns a client for database name (same connection pool and options).
func (c *Client) Database(name string) *Client {
	d := *c
	d.database = name
	return &d
}

// DatabaseName is the database the data routes act on ("" = default).
func (c *Client) DatabaseName() string { return c.database }

// WireAddr is the wire listener's address used by Wire and wire batch writers.
func (c *Client) WireAddr() string { return c.wireAddr }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

func (c *Client) TimeSeries() *TimeSeriesClient   { return &TimeSeriesClient{c} }
func (c *Client) Vectors() *VectorsClient         { return &VectorsClient{c} }
func (c *Client) Collections() *CollectionsClient { return &CollectionsClient{c} }
func (c *Client) Databases() *DatabasesClient     { return &DatabasesClient{c} }
func (c *Client) Replication() *ReplicationClient { return &ReplicationClient{c} }
func (c *Client) WALShipper() *WALShipperClient   { return &WALShipperClient{c} }

// request is one HTTP call.
type request struct {
	method      string
	path        string // without the database prefix
	scoped      bool   // a data route: prefixed with /v1/databases/{db} when a database is set
	query       url.Values
	body        []byte
	contentType string
	header      http.Header
	idempotent  bool // sending it twice has the outcome of once
	stream      bool // no per-attempt timeout; the caller reads and closes the body
	retry       *RetryPolicy
}

func jsonReq(method, path string, scoped bool, body any, idempotent bool) (request, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return request{}, fmt.Errorf("sluice: encoding the request: %w", err)
	}
	return request{method: method, path: path, scoped: scoped, body: b, contentType: "application/json", idempotent: idempotent}, nil
}

func (c *Client) url(r request) string {
	p := r.path
	if r.scoped && c.database != "" {
		p = "/v1/databases/" + url.PathEscape(c.database) + p
	}
	u := c.base + p
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	return u
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelBody) Close() error { err := b.ReadCloser.Close(); b.cancel(); return err }

// send sends r, retrying per the rules: 429/503 (except config_drift) always, a connection
// that could not be opened always, a lost answer only when r is idempotent. It returns a 2xx
// response whose body the caller closes.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	pol := c.retry
	if r.retry != nil {
		pol = *r.retry
	}
	var waited time.Duration
	for attempt := 1; ; attempt++ {
		resp, err := c.once(ctx, r)
		var wait time.Duration
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			te := &TransportError{MaybeApplied: !isDialError(err), Attempts: attempt, Err: err}
			if (te.MaybeApplied && !r.idempotent) || attempt > pol.MaxRetries {
				return nil, te
			}
			wait = pol.Wait(attempt, 0)
			if pol.MaxElapsed > 0 && waited+wait > pol.MaxElapsed {
				return nil, te
			}
		} else if resp.StatusCode < 400 {
			return resp, nil
		} else {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			e := newError(resp.StatusCode, body, parseRetryAfter(resp.Header))
			e.Attempts = attempt
			if !e.Refused() || e.Code == "config_drift" || attempt > pol.MaxRetries {
				return nil, e
			}
			wait = pol.Wait(attempt, e.RetryAfter)
			if pol.MaxElapsed > 0 && waited+wait > pol.MaxElapsed {
				return nil, e
			}
		}
		waited += wait
		if err := sleepCtx(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (c *Client) once(ctx context.Context, r request) (*http.Response, error) {
	actx, cancel := ctx, context.CancelFunc(func() {})
	if c.timeout > 0 && !r.stream {
		actx, cancel = context.WithTimeout(ctx, c.timeout)
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, c.url(r), body)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	req.Header.Set("User-Agent", "sluice-go/0.1")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelBody{resp.Body, cancel}
	return resp, nil
}

func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return false
}

// call sends r and decodes a JSON answer into out (nil: discarded).
func (c *Client) call(ctx context.Context, r request, out any) error {
	resp, err := c.send(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if s, ok := out.(*string); ok {
		b, err := io.ReadAll(resp.Body)
		*s = string(b)
		return err
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("sluice: decoding the answer of %s %s: %w", r.method, r.path, err)
	}
	return nil
}

func (c *Client) callJSON(ctx context.Context, method, path string, scoped bool, body any, idempotent bool, q url.Values, out any) error {
	r, err := jsonReq(method, path, scoped, body, idempotent)
	if err != nil {
		return err
	}
	r.query = q
	return c.call(ctx, r, out)
}

// ---- call options ----

// CallOption tunes one call: WithAck, WithCollection, WithIdempotent, WithPrecision,
// WithLineProtocolV2.
type CallOption func(*callOpts)

type callOpts struct {
	ack, collection, precision string
	idempotent, v2             bool
}

// WithAck sets the write's acknowledgement: "buffer", "wal" or "fsync".
func WithAck(ack string) CallOption { return func(o *callOpts) { o.ack = ack } }

// WithCollection names the vector collection (default "default").
func WithCollection(name string) CallOption { return func(o *callOpts) { o.collection = name } }

// WithIdempotent declares a line-protocol write safe to re-send after a lost answer (every
// line has a timestamp).
func WithIdempotent() CallOption { return func(o *callOpts) { o.idempotent = true } }

// WithPrecision sets the line-protocol timestamp precision: ns (default), us, ms or s.
func WithPrecision(p string) CallOption { return func(o *callOpts) { o.precision = p } }

// WithLineProtocolV2 sends line protocol to /api/v2/write instead of /write.
func WithLineProtocolV2() CallOption { return func(o *callOpts) { o.v2 = true } }

func optsOf(opts []CallOption) (callOpts, error) {
	var o callOpts
	for _, f := range opts {
		f(&o)
	}
	switch o.ack {
	case "", "buffer", "wal", "fsync":
	default:
		return o, fmt.Errorf("sluice: ack must be buffer, wal or fsync, not %q", o.ack)
	}
	return o, nil
}

func (o callOpts) query() url.Values {
	q := url.Values{}
	if o.ack != "" {
		q.Set("ack", o.ack)
	}
	if o.collection != "" {
		q.Set("collection", o.collection)
	}
	return q
}
