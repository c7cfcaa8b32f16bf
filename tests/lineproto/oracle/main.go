// The InfluxDB line protocol reference parser as a differential oracle for Sluice's parser.
//
// Reads cases from stdin separated by NUL bytes; for each, prints one JSON line: the points
// InfluxDB's models.ParsePointsWithPrecision makes of it (precision ns), or ok=false. Names
// are also checked with models.ValidKeyTokens, as InfluxDB's write path does (control
// characters and invalid UTF-8 are refused there). Built from Debian's
// golang-github-influxdb-influxdb-dev (GOPATH mode; no network).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io/ioutil"
	"os"
	"time"

	"github.com/influxdata/influxdb/models"
)

type field struct {
	Key   string      `json:"key"`
	Type  string      `json:"type"`
	Value interface{} `json:"value"`
}

type point struct {
	Measurement string      `json:"measurement"`
	Tags        [][2]string `json:"tags"`
	Fields      []field     `json:"fields"`
	Time        *int64      `json:"time"`
}

type answer struct {
	Ok     bool    `json:"ok"`
	Points []point `json:"points"`
	Error  string  `json:"error,omitempty"`
}

func parse(c []byte) answer {
	// Two default times tell a line without a timestamp from one that has it.
	a, errA := models.ParsePointsWithPrecision(c, time.Unix(0, 11), "n")
	b, errB := models.ParsePointsWithPrecision(c, time.Unix(0, 13), "n")
	if errA != nil || errB != nil || len(a) != len(b) {
		msg := "parse error"
		if errA != nil {
			msg = errA.Error()
		}
		return answer{Ok: false, Error: msg}
	}
	out := answer{Ok: true, Points: []point{}}
	for i, p := range a {
		if !models.ValidKeyTokens(string(p.Name()), p.Tags()) {
			return answer{Ok: false, Error: "invalid key tokens"}
		}
		pt := point{Measurement: string(p.Name()), Tags: [][2]string{}, Fields: []field{}}
		for _, t := range p.Tags() {
			pt.Tags = append(pt.Tags, [2]string{string(t.Key), string(t.Value)})
		}
		fields, err := p.Fields()
		if err != nil {
			return answer{Ok: false, Error: err.Error()}
		}
		for k, v := range fields {
			f := field{Key: k, Value: v}
			switch v.(type) {
			case float64:
				f.Type = "float"
			case int64:
				f.Type = "integer"
			case uint64:
				f.Type = "unsigned"
			case bool:
				f.Type = "boolean"
			case string:
				f.Type = "string"
			}
			pt.Fields = append(pt.Fields, f)
		}
		ta, tb := p.UnixNano(), b[i].UnixNano()
		if !(ta == 11 && tb == 13) {
			pt.Time = &ta
		}
		out.Points = append(out.Points, pt)
	}
	return out
}

func main() {
	models.EnableUintSupport()
	in, err := ioutil.ReadAll(os.Stdin)
	if err != nil {
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	for _, c := range bytes.Split(in, []byte{0}) {
		if err := enc.Encode(parse(c)); err != nil {
			os.Exit(2)
		}
	}
	w.Flush()
}
