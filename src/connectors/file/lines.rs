//! Splitting a byte stream into lines without ever buffering more than the record limit: the
//! line reader of the file and stdin sources.

use std::sync::Arc;

use crate::connectors::RawItem;
use crate::core::Origin;

/// Bytes of an oversized line kept for the dead-letter record.
const OVERSIZE_PREFIX: usize = 1024;

/// Incremental line splitter. Feed chunks, take complete lines; a line over `max` bytes is
/// returned as a `too_large` item holding its first bytes, and the rest is skipped.
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Start of the unread part of `buf`; the consumed prefix is dropped on the next `feed`,
    /// so each byte is moved at most once instead of once per line.
    start: usize,
    max: usize,
    /// Inside an oversized line: its length so far and its prefix.
    skipping: Option<(usize, Vec<u8>)>,
    /// Offset (in the whole stream) of `buf[start]`.
    base: u64,
}

/// A complete line with the stream offset just past its newline.
pub struct Line {
    /// The item.
    pub item: RawItem,
    /// Offset right after the line's newline.
    pub end: u64,
}

impl LineSplitter {
    /// A splitter whose first byte is at stream offset `base`.
    pub fn new(max: usize, base: u64) -> Self {
        LineSplitter {
            buf: Vec::new(),
            start: 0,
            max,
            skipping: None,
            base,
        }
    }

    /// Appends a chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The next complete line, if any. `stream` names the source for the items.
    pub fn next_line(&mut self, stream: &Arc<str>) -> Option<Line> {
        loop {
            let nl = memchr::memchr(b'\n', self.pending());
            if let Some((len, prefix)) = &mut self.skipping {
                match nl {
                    Some(i) => {
                        *len += i;
                        let item = RawItem {
                            data: std::mem::take(prefix),
                            stream: Arc::clone(stream),
                            origin: Origin::default(),
                            header: false,
                            too_large: Some(*len),
                            record: None,
                        };
                        self.skipping = None;
                        self.consume(i + 1);
                        return Some(Line {
                            item,
                            end: self.base,
                        });
                    }
                    None => {
                        let n = self.buf.len() - self.start;
                        *len += n;
                        self.consume(n);
                        return None;
                    }
                }
            }
            match nl {
                Some(i) if i <= self.max => {
                    let mut data = self.pending()[..i].to_vec();
                    self.consume(i + 1);
                    if data.last() == Some(&b'\r') {
                        data.pop();
                    }
                    return Some(Line {
                        item: RawItem::new(data, Arc::clone(stream)),
                        end: self.base,
                    });
                }
                Some(_) => self.start_skipping(),
                None if self.pending().len() > self.max => self.start_skipping(),
                None => return None,
            }
        }
    }

    fn start_skipping(&mut self) {
        let p = self.pending();
        let prefix = p[..OVERSIZE_PREFIX.min(p.len())].to_vec();
        self.skipping = Some((0, prefix));
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.base += n as u64;
    }

    /// At end of input: the last line if it had no trailing newline.
    pub fn finish(&mut self, stream: &Arc<str>) -> Option<Line> {
        if let Some((len, prefix)) = self.skipping.take() {
            let n = self.pending().len();
            self.consume(n);
            return Some(Line {
                item: RawItem {
                    data: prefix,
                    stream: Arc::clone(stream),
                    origin: Origin::default(),
                    header: false,
                    too_large: Some(len + n),
                    record: None,
                },
                end: self.base,
            });
        }
        if self.pending().is_empty() {
            return None;
        }
        let data = self.pending().to_vec();
        let n = data.len();
        self.consume(n);
        Some(Line {
            item: RawItem::new(data, Arc::clone(stream)),
            end: self.base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_skips_oversized_lines() {
        let s: Arc<str> = Arc::from("f");
        let mut l = LineSplitter::new(8, 0);
        l.feed(b"ab\r\ncd\n0123456789");
        assert_eq!(l.next_line(&s).unwrap().item.data, b"ab");
        let cd = l.next_line(&s).unwrap();
        assert_eq!((cd.item.data.as_slice(), cd.end), (&b"cd"[..], 7));
        assert!(l.next_line(&s).is_none());
        l.feed(b"abcdef\nok\nlast");
        let big = l.next_line(&s).unwrap();
        assert_eq!(big.item.too_large, Some(16));
        assert_eq!(big.end, 24);
        assert_eq!(l.next_line(&s).unwrap().item.data, b"ok");
        assert!(l.next_line(&s).is_none());
        let last = l.finish(&s).unwrap();
        assert_eq!((last.item.data.as_slice(), last.end), (&b"last"[..], 31));
    }
}
