//! Local files: the `type = "file"` source (a path or glob, read to the end) and sink (rolling
//! part files published per checkpoint), and the line reader the file and stdin sources
//! share.

pub mod lines;
pub mod sink;
pub mod source;

pub use sink::{FileSink, FileSinkConfig, default_max_file_bytes, epoch_of_part};
pub use source::{FileSource, FileSourceConfig};
