//! Unit tests of the enrich operator.
