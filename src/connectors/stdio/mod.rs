//! Standard input (`type = "stdin"` source) and standard output (`type = "stdout"` sink).

pub mod stdin;
pub mod stdout;

pub use stdin::{StdinSource, StdinSourceConfig};
pub use stdout::{StdoutSink, StdoutSinkConfig};
