//! The parser's tests, one binary: the grammar class by class with a round-trip property, and
//! the differential test against InfluxDB's own parser.

mod grammar;
mod influxdb_oracle;
