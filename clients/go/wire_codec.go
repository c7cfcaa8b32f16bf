package sluice

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// Wire opcodes (docs/wire-protocol.md).
const (
	OpAuth                 byte = 0x01
	OpTSPutBuffered        byte = 0x70
	OpTSBufferStats        byte = 0x71
	OpTSBufferFlush        byte = 0x72
	OpTSPut                byte = 0x73
	OpVectorAddBuffered    byte = 0x80
	OpVectorUpdateBuffered byte = 0x81
	OpVectorRemoveBuffered byte = 0x82
	OpVectorBufferStats    byte = 0x83
	OpVectorBufferFlush    byte = 0x84
	OpWALApplyCompressed   byte = 0x90
	OpReplicationStats     byte = 0x91
	OpReplicationConfig    byte = 0x92
	OpChangesSubscribe     byte = 0x93 // WebSocket only
	OpVectorSearch         byte = 0xA0

	flagBatch    byte = 0x01
	frameHeader       = 6 // opcode/status u8, flags u8, length u32
	timestampNow      = math.MinInt64
)

// appendFrameHeader starts a frame in b; finishFrame sets its length once the payload is
// appended, so payloads are written in place, never copied.
func appendFrameHeader(b []byte, op, flags byte) []byte { return append(b, op, flags, 0, 0, 0, 0) }

// finishFrame sets the length of the frame that starts at b[start:].
func finishFrame(b []byte, start int) []byte {
	binary.LittleEndian.PutUint32(b[start+2:], uint32(len(b)-start-frameHeader))
	return b
}

// EncodeFrame makes a request frame: opcode, flags, length, payload.
func EncodeFrame(op, flags byte, payload []byte) []byte {
	f := appendFrameHeader(make([]byte, 0, frameHeader+len(payload)), op, flags)
	return finishFrame(append(f, payload...), 0)
}

func appendStr16(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// appendTags appends tags as the wire's tags_len u16 and JSON object (keys sorted; tags_len
// 0 when there are none).
func appendTags(b []byte, tags map[string]string) []byte {
	if len(tags) == 0 {
		return append(b, 0, 0)
	}
	start := len(b)
	b = append(b, 0, 0, '{')
	for i, k := range sortedKeys(tags) {
		if i > 0 {
			b = append(b, ',')
		}
		kj, _ := json.Marshal(k)
		vj, _ := json.Marshal(tags[k])
		b = append(append(append(b, kj...), ':'), vj...)
	}
	b = append(b, '}')
	binary.LittleEndian.PutUint16(b[start:], uint16(len(b)-start-2))
	return b
}

func appendPoint(b []byte, p *DataPoint) []byte {
	b = appendStr16(b, p.Metric)
	b = appendStr16(b, p.Entity)
	ts := p.TimestampMs
	if ts == 0 {
		ts = timestampNow
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(ts))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(p.Value))
	return appendTags(b, p.Tags)
}

// AppendTSPut appends points to dst as one TS_PUT_BUFFERED frame (buffered) or TS_PUT
// (direct), with the batch flag when there is not exactly one point. A point with
// TimestampMs 0 is sent as i64::MIN: the server's receive time. Reusing dst saves an
// allocation per frame.
func AppendTSPut(dst []byte, points []DataPoint, buffered bool) []byte {
	op := OpTSPut
	if buffered {
		op = OpTSPutBuffered
	}
	start := len(dst)
	if len(points) == 1 {
		dst = appendFrameHeader(dst, op, 0)
	} else {
		dst = appendFrameHeader(dst, op, flagBatch)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(points)))
	}
	for i := range points {
		dst = appendPoint(dst, &points[i])
	}
	return finishFrame(dst, start)
}

// EncodeTSPut is AppendTSPut into a new frame.
func EncodeTSPut(points []DataPoint, buffered bool) []byte {
	size := frameHeader + 4
	for i := range points {
		size += 30 + len(points[i].Metric) + len(points[i].Entity)
	}
	return AppendTSPut(make([]byte, 0, size), points, buffered)
}

// EncodeAuth encodes an AUTH frame.
func EncodeAuth(token string) []byte { return EncodeFrame(OpAuth, 0, appendStr16(nil, token)) }

func checkLen16(what, s string) error {
	if len(s) > math.MaxUint16 {
		return fmt.Errorf("sluice: %s of %d bytes does not fit the wire's 16-bit length", what, len(s))
	}
	return nil
}

// jsonObject encodes m as JSON, or nothing when it is empty (the wire's "none").
func jsonObject(what string, m map[string]any) ([]byte, error) {
	if len(m) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("sluice: encoding the %s: %w", what, err)
	}
	return b, nil
}

func appendVector(b []byte, v []float32) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// EncodeVectorPut encodes entities as one VECTOR_ADD_BUFFERED frame (VECTOR_UPDATE_BUFFERED
// when update), with the batch flag when there is not exactly one. They go to collection
// default of the connection's database.
func EncodeVectorPut(entities []VectorEntity, update bool) ([]byte, error) {
	if len(entities) == 0 {
		return nil, fmt.Errorf("sluice: no vectors to send")
	}
	op := OpVectorAddBuffered
	if update {
		op = OpVectorUpdateBuffered
	}
	size := frameHeader + 4
	for i := range entities {
		size += 10 + len(entities[i].PK) + 4*len(entities[i].Vector)
	}
	b := make([]byte, 0, size)
	if len(entities) == 1 {
		b = appendFrameHeader(b, op, 0)
	} else {
		b = appendFrameHeader(b, op, flagBatch)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(entities)))
	}
	for i := range entities {
		e := &entities[i]
		if err := checkLen16("pk", e.PK); err != nil {
			return nil, err
		}
		if e.TimestampMs != 0 || e.ExpiresAtMs != 0 {
			return nil, fmt.Errorf("sluice: the wire protocol carries no timestamp_ms or expires_at_ms (pk %q): use the HTTP methods", e.PK)
		}
		md, err := jsonObject("metadata", e.Metadata)
		if err != nil {
			return nil, err
		}
		b = appendStr16(b, e.PK)
		b = appendVector(b, e.Vector)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(md)))
		b = append(b, md...)
	}
	return finishFrame(b, 0), nil
}

// EncodeVectorRemove encodes pks as one VECTOR_REMOVE_BUFFERED frame (batch flag when there is
// not exactly one).
func EncodeVectorRemove(pks []string) ([]byte, error) {
	if len(pks) == 0 {
		return nil, fmt.Errorf("sluice: no pks to remove")
	}
	size := frameHeader + 4
	for _, pk := range pks {
		size += 2 + len(pk)
	}
	b := make([]byte, 0, size)
	if len(pks) == 1 {
		b = appendFrameHeader(b, OpVectorRemoveBuffered, 0)
	} else {
		b = appendFrameHeader(b, OpVectorRemoveBuffered, flagBatch)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(pks)))
	}
	for _, pk := range pks {
		if err := checkLen16("pk", pk); err != nil {
			return nil, err
		}
		b = appendStr16(b, pk)
	}
	return finishFrame(b, 0), nil
}

// EncodeVectorSearch encodes a VECTOR_SEARCH frame: s on collection ("" = default). Ef 0 is
// the collection's ef_search; a nil Filter is none.
func EncodeVectorSearch(collection string, s Search) ([]byte, error) {
	if err := checkLen16("collection name", collection); err != nil {
		return nil, err
	}
	if s.K < 0 || int64(s.K) > math.MaxUint32 || s.Ef < 0 || int64(s.Ef) > math.MaxUint32 {
		return nil, fmt.Errorf("sluice: k and ef must fit in 32 bits")
	}
	if s.TimeRange != nil || s.Decay != nil || s.WithSeries != nil {
		return nil, fmt.Errorf("sluice: the wire protocol carries no time_range, decay or with_series: use Vectors().Search")
	}
	var filter []byte
	if s.Filter != nil {
		var err error
		if filter, err = json.Marshal(s.Filter); err != nil {
			return nil, fmt.Errorf("sluice: encoding the filter: %w", err)
		}
	}
	b := make([]byte, 0, frameHeader+2+len(collection)+12+4*len(s.Vector)+4+len(filter))
	b = appendFrameHeader(b, OpVectorSearch, 0)
	b = appendStr16(b, collection)
	b = binary.LittleEndian.AppendUint32(b, uint32(s.K))
	b = binary.LittleEndian.AppendUint32(b, uint32(s.Ef))
	b = appendVector(b, s.Vector)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(filter)))
	b = append(b, filter...)
	return finishFrame(b, 0), nil
}

// DecodeSearchHits decodes the ok payload of VECTOR_SEARCH: count u32, then per hit, best
// first, pk_len u16, pk, distance f32, score f32, metadata_len u32, metadata (JSON; none: a
// nil map).
func DecodeSearchHits(payload []byte) ([]SearchResult, error) {
	bad := func(what string) ([]SearchResult, error) {
		return nil, fmt.Errorf("sluice: malformed VECTOR_SEARCH answer: %s", what)
	}
	if len(payload) < 4 {
		return bad("no count")
	}
	n := binary.LittleEndian.Uint32(payload)
	p := payload[4:]
	if uint64(n) > uint64(len(p)/14) { // the smallest hit: empty pk, two f32, metadata_len
		return bad(fmt.Sprintf("%d hits cannot fit in %d bytes", n, len(p)))
	}
	out := make([]SearchResult, 0, n)
	for i := uint32(0); i < n; i++ {
		if len(p) < 2 {
			return bad("truncated pk length")
		}
		l := int(binary.LittleEndian.Uint16(p))
		if len(p) < 2+l+12 {
			return bad("truncated hit")
		}
		h := SearchResult{PK: string(p[2 : 2+l])}
		p = p[2+l:]
		h.Distance = float64(math.Float32frombits(binary.LittleEndian.Uint32(p)))
		h.Score = float64(math.Float32frombits(binary.LittleEndian.Uint32(p[4:])))
		ml := binary.LittleEndian.Uint32(p[8:])
		p = p[12:]
		if uint64(len(p)) < uint64(ml) {
			return bad("truncated metadata")
		}
		if ml > 0 {
			if err := json.Unmarshal(p[:ml], &h.Metadata); err != nil {
				return bad("metadata: " + err.Error())
			}
		}
		p = p[ml:]
		out = append(out, h)
	}
	if len(p) != 0 {
		return bad(fmt.Sprintf("%d trailing bytes", len(p)))
	}
	return out, nil
}
