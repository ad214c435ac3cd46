//! A timeline of spans (which thread ran what, from when to when), drawn as a Gantt chart:
//! interleaving, oversubscription (8 busy threads on 2 cores), pool scheduling.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::chart::{gantt, GanttBar};
use crate::machine::Context;
use crate::display::{display, escape_html, table};
use crate::measure::fmt_duration;

/// A shared recorder of spans. Cloning is cheap (an `Arc`); clones record into the same
/// timeline, so give one clone to each thread.
#[derive(Clone, Debug)]
pub struct Timeline {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: Instant,
    spans: Mutex<Vec<SpanRecord>>,
}

/// One recorded span; times are relative to the timeline's creation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SpanRecord {
    lane: String,
    label: String,
    start: Duration,
    end: Duration,
}

impl SpanRecord {
    /// end − start.
    fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// A running span: recorded when dropped or when [`Span::end`] is called.
#[must_use = "a span is recorded when it is dropped: bind it, e.g. `let _span = tl.start(\"work\");`"]
#[derive(Debug)]
pub struct Span {
    timeline: Timeline,
    lane: String,
    label: String,
    start: Instant,
    done: bool,
}

impl Span {
    /// Ends the span now and records it.
    pub fn end(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.timeline.record(
                std::mem::take(&mut self.lane),
                std::mem::take(&mut self.label),
                self.start,
                Instant::now(),
            );
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

/// The lane name of the calling thread: its name, or `thread N` from its id.
fn current_lane() -> String {
    let t = std::thread::current();
    match t.name() {
        Some(name) => name.to_string(),
        None => {
            let id = format!("{:?}", t.id());
            let digits: String = id.chars().filter(|c| c.is_ascii_digit()).collect();
            format!("thread {digits}")
        }
    }
}

impl Timeline {
    /// An empty timeline; its time zero is now.
    pub fn new() -> Timeline {
        Timeline { inner: Arc::new(Inner { origin: Instant::now(), spans: Mutex::new(Vec::new()) }) }
    }

    /// Starts a span on the calling thread's lane (its name, or `thread N`).
    pub fn start(&self, label: impl Into<String>) -> Span {
        Span { timeline: self.clone(), lane: current_lane(), label: label.into(), start: Instant::now(), done: false }
    }

    /// Records a finished span measured elsewhere. Instants before the timeline's creation
    /// count as its start.
    pub fn record(&self, lane: impl Into<String>, label: impl Into<String>, start: Instant, end: Instant) {
        let since = |t: Instant| t.saturating_duration_since(self.inner.origin);
        let span = SpanRecord { lane: lane.into(), label: label.into(), start: since(start), end: since(end).max(since(start)) };
        self.inner.spans.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(span);
    }

    /// All spans recorded so far, by start time.
    pub(crate) fn spans(&self) -> Vec<SpanRecord> {
        let mut v = self.inner.spans.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        v.sort_by(|a, b| a.start.cmp(&b.start).then(a.end.cmp(&b.end)));
        v
    }

    /// Lanes in order of their first span.
    fn lanes(&self) -> Vec<String> {
        let mut lanes: Vec<String> = Vec::new();
        for s in self.spans() {
            if !lanes.contains(&s.lane) {
                lanes.push(s.lane);
            }
        }
        lanes
    }

    /// The Gantt chart (SVG): one row per lane, one bar per span.
    fn chart(&self, title: &str) -> String {
        let lanes = self.lanes();
        let bars: Vec<GanttBar> = self
            .spans()
            .into_iter()
            .map(|s| GanttBar {
                lane: lanes.iter().position(|l| *l == s.lane).unwrap_or(0),
                label: s.label,
                start_ms: s.start.as_secs_f64() * 1e3,
                end_ms: s.end.as_secs_f64() * 1e3,
            })
            .collect();
        gantt(title, &lanes, &bars)
    }

    /// Per lane: spans, first start, last end, busy time (sum of span lengths), as `(html, text)`.
    fn lane_table(&self) -> (String, String) {
        let spans = self.spans();
        let rows: Vec<Vec<String>> = self
            .lanes()
            .iter()
            .map(|lane| {
                let mine: Vec<&SpanRecord> = spans.iter().filter(|s| &s.lane == lane).collect();
                let first = mine.iter().map(|s| s.start).min().unwrap_or_default();
                let last = mine.iter().map(|s| s.end).max().unwrap_or_default();
                let busy: Duration = mine.iter().map(|s| s.duration()).sum();
                vec![lane.clone(), mine.len().to_string(), fmt_ms(first), fmt_ms(last), fmt_duration(busy)]
            })
            .collect();
        table(&["lane", "spans", "first start", "last end", "busy"], &rows)
    }

    /// The display bundle: chart and lane table (HTML); lane table (text).
    fn render(&self, title: &str) -> Vec<(&'static str, String)> {
        let ctx = Context::now();
        let summary = format!("{} spans on {} lanes; times in ms since the timeline was created.", self.spans().len(), self.lanes().len());
        let (lane_html, lane_text) = self.lane_table();
        let text = format!("{title}\n{summary}\n{lane_text}\n{}", ctx.text());
        let html = format!(
            "<div class=\"tb-timeline\"><div>{}</div><div style=\"color:#666;font-size:85%\">{}</div>{lane_html}{}</div>",
            self.chart(title),
            escape_html(&summary),
            ctx.html()
        );
        vec![("text/plain", text), ("text/html", html)]
    }

    /// Displays the Gantt chart with a per-lane table.
    pub fn show(&self, title: &str) {
        display(&self.render(title));
    }
}

fn fmt_ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chart::tests::check_xml;

    #[test]
    fn spans_record_lane_label_and_order() {
        let tl = Timeline::new();
        let t0 = tl.inner.origin;
        tl.record(
            "b",
            "late",
            t0 + Duration::from_millis(5),
            t0 + Duration::from_millis(9),
        );
        tl.record(
            "a",
            "early",
            t0 + Duration::from_millis(1),
            t0 + Duration::from_millis(3),
        );
        let spans = tl.spans();
        assert_eq!(spans[0].label, "early");
        assert_eq!(spans[0].start, Duration::from_millis(1));
        assert_eq!(spans[0].end, Duration::from_millis(3));
        assert_eq!(spans[1].duration(), Duration::from_millis(4));
        assert_eq!(tl.lanes(), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn guards_record_on_drop_and_end_from_threads() {
        let tl = Timeline::new();
        std::thread::scope(|s| {
            for i in 0..3 {
                let tl = tl.clone();
                std::thread::Builder::new()
                    .name(format!("worker {i}"))
                    .spawn_scoped(s, move || {
                        let _span = tl.start(format!("job {i}"));
                        std::thread::sleep(Duration::from_millis(2));
                    })
                    .expect("spawn");
            }
        });
        let spans = tl.spans();
        assert_eq!(spans.len(), 3);
        for i in 0..3 {
            let s = spans
                .iter()
                .find(|s| s.label == format!("job {i}"))
                .unwrap();
            assert_eq!(s.lane, format!("worker {i}"));
            assert!(s.duration() >= Duration::from_millis(2));
        }
    }

    #[test]
    fn render_lists_spans_and_draws_one_bar_each() {
        let tl = Timeline::new();
        let t0 = tl.inner.origin;
        tl.record("x", "a", t0, t0 + Duration::from_millis(2));
        tl.record(
            "y",
            "b",
            t0 + Duration::from_millis(1),
            t0 + Duration::from_millis(4),
        );
        let bundle = tl.render("two lanes");
        let text = &bundle[0].1;
        assert!(text.starts_with("two lanes\n2 spans on 2 lanes"), "{text}");
        assert!(
            text.contains("\ny         1      1.00 ms   4.00 ms  3.00 ms\n"),
            "{text}"
        );
        let svg = tl.chart("two lanes");
        check_xml(&svg).expect("well-formed SVG");
        assert_eq!(
            svg.matches("<rect").count(),
            3,
            "background + one bar per span"
        );
    }

    #[test]
    fn unnamed_threads_get_an_id_lane() {
        let lane = std::thread::spawn(current_lane).join().unwrap();
        assert!(lane.starts_with("thread "), "{lane}");
    }
}
