//! CSV traces: the header, row validation, and lazy reading (one row ahead, memory flat
//! in the file's length). The format is described in the parent module.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::TraceError;

/// Largest interval between rows, in steps, before it is a gap.
const GAP_FACTOR: f64 = 1.5;

/// Which column holds time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TimeKind {
    /// RFC 3339 instants.
    Timestamp,
    /// Seconds (offsets).
    Seconds,
}

impl TimeKind {
    fn name(self) -> &'static str {
        match self {
            Self::Timestamp => "timestamp",
            Self::Seconds => "seconds",
        }
    }
}

/// Where each column is.
#[derive(Debug, Clone)]
struct Layout {
    columns: usize,
    header: String,
    time: (usize, TimeKind),
    /// Column, its name, and the factor to arrivals per second.
    rate: (usize, &'static str, f64),
    processing: Option<usize>,
}

/// The time of the first row (offsets are measured from it).
#[derive(Debug, Clone, Copy)]
enum Origin {
    Timestamp(Timestamp),
    Seconds(f64),
}

/// One validated row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Row {
    /// Seconds since the first row.
    pub offset: f64,
    /// Arrivals per second.
    pub rate: f64,
    /// Processing time, seconds (held from the previous row when the cell is empty).
    pub processing: Option<f64>,
}

/// What the previous row looked like (for order and gap messages).
#[derive(Debug, Clone)]
struct Prev {
    line: u64,
    offset: f64,
    text: String,
}

/// Reads and validates rows one at a time.
#[derive(Debug)]
struct RowReader {
    file: PathBuf,
    input: BufReader<File>,
    buf: String,
    line: u64,
    layout: Layout,
    origin: Option<Origin>,
    prev: Option<Prev>,
    step: Option<f64>,
    processing: Option<f64>,
}

impl RowReader {
    fn open(file: &Path) -> Result<Self, TraceError> {
        let f = File::open(file).map_err(|e| TraceError::Read {
            file: file.to_path_buf(),
            line: None,
            reason: e.to_string(),
        })?;
        let mut r = Self {
            file: file.to_path_buf(),
            input: BufReader::new(f),
            buf: String::new(),
            line: 0,
            layout: Layout {
                columns: 0,
                header: String::new(),
                time: (0, TimeKind::Seconds),
                rate: (0, "rate", 1.0),
                processing: None,
            },
            origin: None,
            prev: None,
            step: None,
            processing: None,
        };
        if !r.next_line()? {
            return Err(r.file_error("empty file: expected a header line such as `timestamp,rate`"));
        }
        r.layout = r.header()?;
        Ok(r)
    }

    /// Reads the next line that is not blank or a `#` comment into `buf`.
    fn next_line(&mut self) -> Result<bool, TraceError> {
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_line(&mut self.buf)
                .map_err(|e| TraceError::Read {
                    file: self.file.clone(),
                    line: Some(self.line + 1),
                    reason: e.to_string(),
                })?;
            if n == 0 {
                return Ok(false);
            }
            self.line += 1;
            let t = self.buf.trim();
            if !t.is_empty() && !t.starts_with('#') {
                return Ok(true);
            }
        }
    }

    fn file_error(&self, message: impl Into<String>) -> TraceError {
        TraceError::File {
            file: self.file.clone(),
            message: message.into(),
        }
    }

    fn line_error(&self, message: impl Into<String>) -> TraceError {
        TraceError::Line {
            file: self.file.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    fn header(&self) -> Result<Layout, TraceError> {
        let text = self.buf.trim().trim_start_matches('\u{feff}');
        let names: Vec<&str> = text.split(',').map(str::trim).collect();
        let first = names.first().copied().unwrap_or_default();
        if first.parse::<f64>().is_ok() || first.parse::<Timestamp>().is_ok() {
            return Err(self.line_error(format!(
                "missing header: the first line must name the columns, e.g. \
                 `timestamp,rate,processing_time`, not `{text}`"
            )));
        }
        let mut time: Option<(usize, TimeKind)> = None;
        let mut rate: Option<(usize, &'static str, f64)> = None;
        let mut processing: Option<usize> = None;
        for (i, name) in names.iter().enumerate() {
            let taken = match *name {
                "timestamp" => time.replace((i, TimeKind::Timestamp)).map(|t| t.0),
                "seconds" => time.replace((i, TimeKind::Seconds)).map(|t| t.0),
                "rate" => rate.replace((i, "rate", 1.0)).map(|r| r.0),
                "rate_per_minute" => rate
                    .replace((i, "rate_per_minute", 1.0 / 60.0))
                    .map(|r| r.0),
                "sessions" => rate.replace((i, "sessions", 1.0)).map(|r| r.0),
                "processing_time" => processing.replace(i),
                other => {
                    return Err(self.line_error(format!(
                        "unknown column `{other}`; known: timestamp or seconds (time), \
                         rate, rate_per_minute or sessions (arrivals), processing_time"
                    )));
                }
            };
            if let Some(j) = taken {
                return Err(self.line_error(format!(
                    "columns `{}` and `{name}` say the same thing; keep one",
                    names[j]
                )));
            }
        }
        let Some(time) = time else {
            return Err(self.line_error("no time column: add `timestamp` (RFC 3339) or `seconds`"));
        };
        let Some(rate) = rate else {
            return Err(self.line_error(
                "no arrivals column: add `rate` (per second), `rate_per_minute` or `sessions`",
            ));
        };
        Ok(Layout {
            columns: names.len(),
            header: names.join(","),
            time,
            rate,
            processing,
        })
    }

    /// The next validated row, or `None` at the end of the file.
    fn next_row(&mut self) -> Result<Option<Row>, TraceError> {
        if !self.next_line()? {
            return Ok(None);
        }
        let buf = std::mem::take(&mut self.buf);
        let row = self.row(buf.trim());
        self.buf = buf;
        row.map(Some)
    }

    /// Validates the row in `line`.
    fn row(&mut self, line: &str) -> Result<Row, TraceError> {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != self.layout.columns {
            return Err(self.line_error(format!(
                "{} fields, expected {} ({})",
                cells.len(),
                self.layout.columns,
                self.layout.header
            )));
        }
        let (ti, kind) = self.layout.time;
        let text = cells[ti];
        let offset = self.offset(kind, text)?;
        if let Some(prev) = &self.prev {
            if offset <= prev.offset {
                return Err(self.line_error(format!(
                    "{} {text} is not after line {}'s {}",
                    kind.name(),
                    prev.line,
                    prev.text
                )));
            }
            let gap = offset - prev.offset;
            match self.step {
                None => self.step = Some(gap),
                Some(step) if gap > GAP_FACTOR * step + 1e-9 => {
                    return Err(self.line_error(format!(
                        "gap of {} s after line {}; the trace's step is {} s",
                        num(gap),
                        prev.line,
                        num(step)
                    )));
                }
                Some(_) => {}
            }
        }
        let (ri, rname, factor) = self.layout.rate;
        let rate = self.number(rname, cells[ri])? * factor;
        if let Some(pi) = self.layout.processing {
            let cell = cells[pi];
            if cell.is_empty() {
                if self.processing.is_none() {
                    return Err(self.line_error(
                        "processing_time is empty and no earlier row gives one \
                         (an empty cell keeps the previous row's value)",
                    ));
                }
            } else {
                let p = self.number("processing_time", cell)?;
                if p <= 0.0 {
                    return Err(self.line_error(format!("processing_time {p} must be > 0")));
                }
                self.processing = Some(p);
            }
        }
        let prev = self.prev.get_or_insert_with(|| Prev {
            line: 0,
            offset: 0.0,
            text: String::new(),
        });
        prev.line = self.line;
        prev.offset = offset;
        prev.text.clear();
        prev.text.push_str(text);
        Ok(Row {
            offset,
            rate,
            processing: self.processing,
        })
    }

    /// Seconds since the first row.
    fn offset(&mut self, kind: TimeKind, text: &str) -> Result<f64, TraceError> {
        match kind {
            TimeKind::Timestamp => {
                let ts: Timestamp = text.parse().map_err(|e| {
                    self.line_error(format!(
                        "timestamp `{text}` is not an RFC 3339 time such as \
                         2026-03-01T00:00:00Z: {e}"
                    ))
                })?;
                match self.origin {
                    Some(Origin::Timestamp(o)) => Ok(ts.duration_since(o).as_secs_f64()),
                    _ => {
                        self.origin = Some(Origin::Timestamp(ts));
                        Ok(0.0)
                    }
                }
            }
            TimeKind::Seconds => {
                let s = self.number("seconds", text)?;
                match self.origin {
                    Some(Origin::Seconds(o)) => Ok(s - o),
                    _ => {
                        self.origin = Some(Origin::Seconds(s));
                        Ok(0.0)
                    }
                }
            }
        }
    }

    /// A finite, non-negative number from cell `text` of column `name`.
    fn number(&self, name: &str, text: &str) -> Result<f64, TraceError> {
        if text.is_empty() {
            return Err(self.line_error(format!("{name} is empty")));
        }
        let v: f64 = text
            .parse()
            .map_err(|_| self.line_error(format!("{name} `{text}` is not a number")))?;
        if !v.is_finite() {
            return Err(self.line_error(format!("{name} `{text}` is not a finite number")));
        }
        if v < 0.0 {
            return Err(self.line_error(format!("{name} {text} is negative")));
        }
        Ok(v)
    }
}

/// A number for messages: integers without a fraction, else at most 3 decimals.
fn num(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    format!("{r}")
}

/// A CSV trace being replayed.
#[derive(Debug)]
pub(crate) struct CsvTrace {
    reader: RowReader,
    current: Row,
    next: Option<Row>,
    /// Last row's offset + the step.
    length: f64,
    /// The file has a processing_time column.
    has_processing: bool,
}

impl CsvTrace {
    /// Validates the whole file (one streaming pass), then opens it for replay.
    pub(crate) fn open(file: &Path) -> Result<Self, TraceError> {
        let mut check = RowReader::open(file)?;
        let mut rows = 0u64;
        let mut last = 0.0;
        while let Some(row) = check.next_row()? {
            rows += 1;
            last = row.offset;
        }
        let Some(step) = check.step else {
            return Err(check.file_error(match rows {
                0 => "no rows after the header".to_owned(),
                n => format!("only {n} row: a trace needs at least two to know its step"),
            }));
        };
        let mut reader = RowReader::open(file)?;
        let Some(current) = reader.next_row()? else {
            return Err(reader.file_error("the file changed while being read"));
        };
        let next = reader.next_row()?;
        Ok(Self {
            has_processing: reader.layout.processing.is_some(),
            reader,
            current,
            next,
            length: last + step,
        })
    }

    /// The row in force at `t` seconds (non-decreasing between calls).
    pub(crate) fn at(&mut self, t: f64) -> Result<Row, TraceError> {
        while let Some(next) = self.next.filter(|n| n.offset <= t) {
            self.current = next;
            self.next = self.reader.next_row()?;
        }
        Ok(self.current)
    }

    /// Seconds the trace covers.
    pub(crate) fn length(&self) -> f64 {
        self.length
    }

    /// Whether rows carry a processing time.
    pub(crate) fn has_processing(&self) -> bool {
        self.has_processing
    }
}
