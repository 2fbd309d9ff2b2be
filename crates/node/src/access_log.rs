//! The access log: one line per request, JSON or plain, to stdout or a file.
//!
//! Records are handed to a writer thread through a bounded channel, so a
//! slow disk never slows a response; if the channel is full the record is
//! dropped and counted rather than blocking the request.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use anyhow::Context;
use holdfast_frontend::{AccessLog, AccessRecord};

/// Where access lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(PathBuf),
}

/// How access lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Plain,
}

/// Records waiting for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

pub struct AccessLogWriter {
    sender: SyncSender<AccessRecord>,
    dropped: AtomicU64,
}

impl AccessLogWriter {
    pub fn start(destination: Destination, format: Format) -> anyhow::Result<AccessLogWriter> {
        let out: Box<dyn Write + Send> = match &destination {
            Destination::Stdout => Box::new(std::io::stdout()),
            Destination::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open access log {}", path.display()))?,
            ),
        };
        let (sender, receiver) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("holdfast-access-log".into())
            .spawn(move || write_lines(receiver, out, format))?;
        Ok(AccessLogWriter { sender, dropped: AtomicU64::new(0) })
    }
}

impl AccessLog for AccessLogWriter {
    fn record(&self, record: AccessRecord) {
        if let Err(TrySendError::Full(_)) = self.sender.try_send(record) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn write_lines(receiver: Receiver<AccessRecord>, out: Box<dyn Write + Send>, format: Format) {
    let mut out = BufWriter::new(out);
    while let Ok(record) = receiver.recv() {
        let mut next = Some(record);
        // Write what is queued, then flush once.
        while let Some(record) = next {
            let _ = writeln!(out, "{}", line(&record, format));
            next = receiver.try_recv().ok();
        }
        let _ = out.flush();
    }
}

/// One access line.
pub fn line(r: &AccessRecord, format: Format) -> String {
    let time = humantime::format_rfc3339_millis(r.time).to_string();
    let (ttfb, total) = (r.ttfb.as_secs_f64() * 1000.0, r.total.as_secs_f64() * 1000.0);
    match format {
        Format::Json => {
            let mut line = serde_json::json!({
            "time": time,
            "site": r.site,
            "method": r.method,
            "path": r.path,
            "protocol": r.protocol,
            "status": r.status,
            "cache": r.cache,
            "bytes": r.bytes,
            "ttfb_ms": (ttfb * 1000.0).round() / 1000.0,
            "total_ms": (total * 1000.0).round() / 1000.0,
            "origin": r.origin,
            "complete": r.complete,
            });
            // Only with traces on, so lines stay as they were without.
            if let (Some(id), Some(fields)) = (&r.trace_id, line.as_object_mut()) {
                fields.insert("trace_id".to_owned(), id.clone().into());
            }
            line.to_string()
        }
        Format::Plain => format!(
            "{time} {site} {method} {path} {protocol} {status} {cache} {bytes} ttfb={ttfb:.3}ms total={total:.3}ms origin={origin}{aborted}{trace}",
            site = if r.site.is_empty() { "-" } else { &r.site },
            method = r.method,
            path = r.path,
            protocol = r.protocol,
            status = r.status,
            cache = r.cache,
            bytes = r.bytes,
            origin = r.origin.as_deref().unwrap_or("-"),
            aborted = if r.complete { "" } else { " aborted" },
            trace = r.trace_id.as_deref().map_or_else(String::new, |id| format!(" trace={id}")),
        ),
    }
}
