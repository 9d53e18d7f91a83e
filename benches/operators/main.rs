//! Operator algorithm benches, one module per operator. Run:
//! `cargo bench --profile dev --bench operators [-- <filter>]`.

mod matrix_profile;
mod rcf;

criterion::criterion_main!(matrix_profile::benches, rcf::benches);
