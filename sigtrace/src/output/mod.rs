//! Sinks: the correlator's reports as text lines, JSON lines, and an end-of-run summary.
//! Formatting goes straight into a buffered writer; nothing here allocates per event except
//! names that are not static (comms).

pub mod file;
mod fold;
pub mod json;
pub(crate) mod rotate;
pub mod summary;
pub mod text;

use std::io::{self, Write};

use crate::{correlate::Report, enrich::Clock};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeMode {
    /// Local wall-clock time of day (text) / RFC 3339 UTC (JSON).
    Wall,
    /// Seconds since sigtrace started.
    Relative,
    None,
}

#[derive(Debug, Clone, Copy)]
pub struct OutputOptions {
    pub format: Format,
    pub time: TimeMode,
    pub summary: bool,
    /// No per-event lines, only the summary.
    pub summary_only: bool,
    /// Nothing at all in the output (--quiet: the metrics or the stderr line are the result),
    /// but the summary when asked for.
    pub quiet: bool,
    /// Show every exit, not only those of processes that were signalled.
    pub all_exits: bool,
    /// Text: fold bursts of identical lines into one count (not --no-fold).
    pub fold: bool,
    /// Text: the recipient's caught, ignored and blocked sets on generation lines.
    pub masks: bool,
}

/// Counters a run reports at its end.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub events: u64,
    pub lost: u64,
}

pub struct Output<W: Write> {
    writer: W,
    options: OutputOptions,
    /// How every record's time is written; fixed for the run.
    stamp: Stamp,
    summary: summary::Summary,
    /// Flush after every report (a terminal or pipe someone is reading live).
    flush_each: bool,
    /// One report is formatted here, then written with one call (small writes through a
    /// `dyn Write` cost more than the formatting).
    line: Vec<u8>,
    /// Text lines go through it unless --no-fold.
    folder: Option<fold::Folder>,
}

impl<W: Write> Output<W> {
    pub fn new(writer: W, options: OutputOptions, clock: Clock, flush_each: bool) -> Self {
        Output {
            writer,
            stamp: Stamp {
                clock,
                mode: options.time,
                utc_offset_s: crate::enrich::local_utc_offset(),
            },
            options,
            summary: summary::Summary::default(),
            flush_each,
            line: Vec::with_capacity(1024),
            folder: (options.format == Format::Text
                && options.fold
                && !options.summary_only
                && !options.quiet)
                .then(fold::Folder::default),
        }
    }

    /// The summary's table sizes (the stats line).
    pub(crate) fn table_sizes(&self) -> [(&'static str, usize); 2] {
        self.summary.table_sizes()
    }

    /// Whether `report` gets a line (or a record) of its own; the summary counts it either
    /// way.
    pub fn shows(&self, report: &Report) -> bool {
        if self.options.summary_only || self.options.quiet {
            return false;
        }
        !matches!(report, Report::Exit(exit) if !exit.relevant && !self.options.all_exits)
    }

    pub fn report(&mut self, report: &Report) -> io::Result<()> {
        if self.wants_summary() {
            self.summary.add(report);
        }
        if !self.shows(report) {
            return Ok(());
        }
        self.line.clear();
        match self.options.format {
            Format::Text => {
                let text_options = text::TextOptions {
                    masks: self.options.masks,
                };
                let written =
                    text::write_report_as(&mut self.line, report, &self.stamp, text_options)?;
                match &mut self.folder {
                    Some(folder) => folder.line(
                        &mut self.writer,
                        &self.stamp,
                        &self.line,
                        written,
                        fold::folds(report),
                    )?,
                    None => self.writer.write_all(&self.line)?,
                }
            }
            Format::Json => {
                json::write_report(&mut self.line, report, &self.stamp)?;
                self.writer.write_all(&self.line)?;
            }
        }
        if self.flush_each {
            self.writer.flush()?;
        }
        Ok(())
    }

    /// --summary or --summary-only; --quiet alone prints none.
    fn wants_summary(&self) -> bool {
        self.options.summary || self.options.summary_only
    }

    /// Events were lost in the kernel since the last call: say so at once, in the stream.
    pub fn loss(&mut self, newly_lost: u64, total_lost: u64) -> io::Result<()> {
        if self.options.quiet {
            // No stream to say it in: the end-of-run line on stderr counts them.
            return Ok(());
        }
        match self.options.format {
            Format::Text => {
                if let Some(folder) = &mut self.folder {
                    // The folded events came before the loss: their count goes first.
                    folder.interrupt(&mut self.writer, &self.stamp)?;
                }
                if !self.options.summary_only {
                    writeln!(
                        self.writer,
                        "!! {newly_lost} events lost (ring buffer full; {total_lost} in all) — try a larger --ring-size or narrower filters"
                    )?;
                }
            }
            Format::Json => {
                self.line.clear();
                json::write_loss(
                    &mut self.line,
                    &self.stamp,
                    crate::enrich::Clock::mono_now(),
                    newly_lost,
                    total_lost,
                )?;
                self.writer.write_all(&self.line)?;
            }
        }
        self.writer.flush()
    }

    pub fn finish(&mut self, totals: Totals) -> io::Result<()> {
        if let Some(folder) = &mut self.folder {
            folder.end(&mut self.writer, &self.stamp)?;
        }
        if self.wants_summary() {
            match self.options.format {
                Format::Text => self.summary.write_text(&mut self.writer, totals)?,
                Format::Json => self.summary.write_json(&mut self.writer, totals)?,
            }
        }
        self.writer.flush()
    }

    /// Called periodically (each tick of the trace loop): also ends a fold whose burst
    /// has stopped, so that a live reader is not left waiting for its count.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(folder) = &mut self.folder {
            folder.idle(&mut self.writer, &self.stamp)?;
        }
        self.writer.flush()
    }
}

/// A writer that can start writing to a new file under its name (SIGHUP with `-o`).
pub trait Reopen {
    fn reopen(&mut self) -> io::Result<()>;
}

impl<R: Reopen + ?Sized> Reopen for &mut R {
    fn reopen(&mut self) -> io::Result<()> {
        (**self).reopen()
    }
}

impl<W: Write + Reopen> Output<W> {
    /// Reopens the output file: a fold under way is counted out first, so that the old file
    /// ends complete and the new one starts afresh (its first lines are like nothing above
    /// them).
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some(folder) = &mut self.folder {
            folder.interrupt(&mut self.writer, &self.stamp)?;
        }
        self.writer.reopen()
    }
}

/// How to print an event's time.
#[derive(Clone, Copy)]
pub struct Stamp {
    pub clock: Clock,
    pub mode: TimeMode,
    pub utc_offset_s: i64,
}

#[cfg(test)]
pub(crate) mod tests;
