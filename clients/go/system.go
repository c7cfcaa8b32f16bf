package sluice

import (
	"context"
	"encoding/json"
)

// Health reads GET /healthz.
func (c *Client) Health(ctx context.Context) (map[string]any, error) {
	var out map[string]any
	return out, c.call(ctx, request{method: "GET", path: "/healthz", idempotent: true}, &out)
}

// Ready reads GET /readyz (503 while not ready).
func (c *Client) Ready(ctx context.Context) (map[string]any, error) {
	var out map[string]any
	return out, c.call(ctx, request{method: "GET", path: "/readyz", idempotent: true, retry: &RetryPolicy{}}, &out)
}

// Version reads GET /version.
func (c *Client) Version(ctx context.Context) (*Version, error) {
	var out Version
	return &out, c.call(ctx, request{method: "GET", path: "/version", idempotent: true}, &out)
}

// Metrics reads GET /metrics (Prometheus text).
func (c *Client) Metrics(ctx context.Context) (string, error) {
	var out string
	return out, c.call(ctx, request{method: "GET", path: "/metrics", idempotent: true}, &out)
}

// OpenAPI reads GET /openapi.json.
func (c *Client) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.call(ctx, request{method: "GET", path: "/openapi.json", idempotent: true}, &out)
}
