//! The codec's integration tests, one binary: property tests of the codec and the
//! documentation's hex examples as test vectors.

mod codec;
mod doc_examples;
