//! SVG charts drawn with plotters' SVG backend into a `String`: bars of durations or counts, an
//! x/y line chart (and, for the toolkit itself, speedup lines and a Gantt chart).
//!
//! Text uses plotters' built-in font estimate (no font files are read): labels are written as
//! SVG `<text>` elements and the browser renders them; only the space reserved for them is an
//! estimate. Drawing never panics: a plotters error becomes a small SVG stating the error.

use std::error::Error;
use std::time::Duration;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Colours of series and bars (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(78, 121, 167),
    RGBColor(242, 142, 43),
    RGBColor(89, 161, 79),
    RGBColor(225, 87, 89),
    RGBColor(176, 122, 161),
    RGBColor(118, 183, 178),
    RGBColor(237, 201, 72),
    RGBColor(156, 117, 95),
    RGBColor(255, 157, 167),
    RGBColor(186, 176, 172),
];
/// Colour of ordinary bars.
const BAR: RGBColor = PALETTE[0];
/// Colour of a bar whose checksum disagrees with the first variant's.
const BAD_BAR: RGBColor = RGBColor(200, 30, 30);
/// Colour of the measured speedup line.
const MEASURED: RGBColor = PALETTE[0];
/// Colour of the ideal line (speedup = threads).
const IDEAL: RGBColor = RGBColor(150, 150, 150);
/// Colour of Amdahl's curve.
const AMDAHL: RGBColor = PALETTE[1];

const FONT: &str = "sans-serif";

type DrawResult = Result<(), Box<dyn Error>>;

/// Runs `draw` on a fresh SVG canvas of `size` and returns the SVG text.
fn render_svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> DrawResult,
) -> String {
    let mut out = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        let r = root.fill(&WHITE).map_err(|e| e.into()).and_then(|_| draw(&root));
        r.and_then(|_| root.present().map_err(|e| e.into()))
    };
    match result {
        Ok(()) => out,
        Err(e) => error_svg(&format!("chart could not be drawn: {e}")),
    }
}

/// A small SVG that states an error instead of a chart.
fn error_svg(message: &str) -> String {
    format!(
        "<svg width=\"600\" height=\"40\" viewBox=\"0 0 600 40\" xmlns=\"http://www.w3.org/2000/svg\">\n\
         <text x=\"10\" y=\"25\" font-family=\"sans-serif\" font-size=\"14\" fill=\"#b00020\">{}</text>\n</svg>\n",
        crate::display::escape_html(message)
    )
}

/// A time unit that keeps the largest value between 1 and 1000: (name, nanoseconds per unit).
fn time_unit(max: Duration) -> (&'static str, f64) {
    let ns = max.as_secs_f64() * 1e9;
    match ns {
        x if x < 1e3 => ("ns", 1.0),
        x if x < 1e6 => ("µs", 1e3),
        x if x < 1e9 => ("ms", 1e6),
        _ => ("s", 1e9),
    }
}

/// Estimated pixel width of a label at the given font size (plotters' own estimate, bytes
/// counted as characters, is too wide for `µ`, so count characters).
fn text_width(s: &str, size: f64) -> u32 {
    (s.chars().count() as f64 * size * 0.55).ceil() as u32
}

/// The y range of a chart with `n` rows: row `r` is centred on `r`, so plotters' tick
/// algorithm (asked for `n` labels) puts one tick on each row.
fn rows_range(n: usize) -> std::ops::Range<f64> {
    -0.5..(n as f64 - 0.5)
}

/// The row a y tick belongs to, if it sits on a row centre.
fn row_index(v: f64, n: usize) -> Option<usize> {
    let r = v.round();
    ((v - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < n).then_some(r as usize)
}

/// One horizontal bar of [`hbars`]: its label, length, an optional black tick (e.g. the fastest
/// sample), its colour and the text written after it.
struct HBar {
    label: String,
    value: f64,
    tick: Option<f64>,
    color: RGBColor,
    text: String,
}

/// Horizontal bars, first on top, each with its text after it.
fn hbars(title: &str, x_desc: &str, bars: &[HBar]) -> String {
    let n = bars.len().max(1);
    let label_w = bars.iter().map(|b| text_width(&b.label, 13.0)).max().unwrap_or(40).clamp(40, 300) + 12;
    let longest = bars.iter().map(|b| b.value.max(b.tick.unwrap_or(0.0))).fold(0.0, f64::max);
    let xmax = longest.max(f64::MIN_POSITIVE) * 1.25;
    render_svg((720, 90 + 36 * n as u32), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(38)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0f64..xmax, rows_range(n))?;
        let row = |i: usize| (n - 1 - i) as f64; // centre of bar i's row; first bar on top
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| row_index(*v, n).and_then(|r| bars.get(n - 1 - r)).map(|b| b.label.clone()).unwrap_or_default())
            .x_desc(x_desc)
            .label_style((FONT, 13))
            .draw()?;
        chart.draw_series(
            bars.iter().enumerate().map(|(i, b)| Rectangle::new([(0.0, row(i) - 0.3), (b.value, row(i) + 0.3)], b.color.filled())),
        )?;
        chart.draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            b.tick.map(|t| PathElement::new(vec![(t, row(i) - 0.42), (t, row(i) + 0.42)], BLACK.stroke_width(2)))
        }))?;
        let style = TextStyle::from((FONT, 13).into_font()).color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| Text::new(format!("  {}", b.text), (b.value, row(i)), style.clone())))?;
        Ok(())
    })
}

/// One bar of [`time_bars`]: a label, its median and (optionally) its fastest sample.
#[derive(Clone, Debug)]
pub(crate) struct TimeBar {
    pub label: String,
    pub median: Duration,
    pub min: Option<Duration>,
    /// Drawn in red (e.g. its checksum disagrees).
    pub bad: bool,
}

/// Horizontal bars of medians, first on top, a black tick at each fastest sample.
pub(crate) fn time_bars(title: &str, bars: &[TimeBar]) -> String {
    let max = bars.iter().map(|b| b.median.max(b.min.unwrap_or_default())).max().unwrap_or_default();
    let (unit, per) = time_unit(max);
    let value = |d: Duration| d.as_secs_f64() * 1e9 / per;
    let ticks = bars.iter().any(|b| b.min.is_some());
    let x_desc = if ticks { format!("median time ({unit}); black tick = fastest sample") } else { format!("time ({unit})") };
    let bars: Vec<HBar> = bars
        .iter()
        .map(|b| HBar {
            label: b.label.clone(),
            value: value(b.median),
            tick: b.min.map(value),
            color: if b.bad { BAD_BAR } else { BAR },
            text: crate::measure::fmt_duration(b.median),
        })
        .collect();
    hbars(title, &x_desc, &bars)
}

/// Horizontal bars of durations, first on top, each labelled with its value.
pub fn duration_bars(title: &str, bars: &[(String, Duration)]) -> String {
    let bars: Vec<TimeBar> = bars.iter().map(|(l, d)| TimeBar { label: l.clone(), median: *d, min: None, bad: false }).collect();
    time_bars(title, &bars)
}

/// Horizontal bars of plain numbers (counts, MB/s, …), first on top, each labelled with its value.
pub fn bars(title: &str, x_desc: &str, bars: &[(String, f64)]) -> String {
    let text = |v: f64| if v.abs() >= 100.0 || v.fract() == 0.0 { format!("{v:.0}") } else { crate::measure::sig3(v) };
    let bars: Vec<HBar> = bars
        .iter()
        .enumerate()
        .map(|(i, (label, v))| HBar { label: label.clone(), value: *v, tick: None, color: PALETTE[i % PALETTE.len()], text: text(*v) })
        .collect();
    hbars(title, x_desc, &bars)
}

/// Speedup against thread count: the measured points joined by a line, the ideal line
/// (speedup = threads, cut at the top of the chart), Amdahl's curve when a serial fraction is
/// given, and a grey band where there are more threads than cores.
///
/// Speedups are relative to the smallest thread count measured (normally 1); the ideal line and
/// Amdahl's curve are scaled the same way.
pub(crate) fn speedup_chart(title: &str, measured: &[(usize, f64)], serial_fraction: Option<f64>, cores: usize) -> String {
    let t_min = measured.iter().map(|p| p.0).min().unwrap_or(1).max(1) as f64;
    let t_max = measured.iter().map(|p| p.0).max().unwrap_or(1).max(1) as f64;
    let amdahl_at = |n: f64| serial_fraction.map(|s| crate::sweep::amdahl(1.0 - s, n) / crate::sweep::amdahl(1.0 - s, t_min));
    let best = measured.iter().map(|p| p.1).filter(|v| v.is_finite()).fold(0.0, f64::max);
    let ymax = (best.max(amdahl_at(t_max).unwrap_or(0.0)).max((cores as f64).min(t_max) / t_min) * 1.15).max(1.2);
    let x_lo = t_min - 0.5;
    let x_hi = t_max + 0.5;
    render_svg((720, 440), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x_lo..x_hi, 0f64..ymax)?;
        chart
            .configure_mesh()
            .x_labels(((t_max - t_min) as usize + 2).min(16))
            .x_label_formatter(&|v| if (v - v.round()).abs() < 1e-6 && *v >= 0.5 { format!("{}", v.round() as i64) } else { String::new() })
            .y_label_formatter(&|v| format!("{v:.1}x"))
            .x_desc("threads")
            .y_desc("speedup")
            .label_style((FONT, 13))
            .draw()?;
        let cores_f = cores as f64;
        if cores_f + 0.5 < x_hi {
            let band_start = (cores_f + 0.5).max(x_lo);
            chart.draw_series(std::iter::once(Rectangle::new([(band_start, 0.0), (x_hi, ymax)], RGBColor(235, 235, 235).filled())))?;
            let grey = TextStyle::from((FONT, 12).into_font()).color(&RGBColor(110, 110, 110)).pos(Pos::new(HPos::Left, VPos::Bottom));
            let note = format!(" more threads than cores ({cores})");
            chart.draw_series(std::iter::once(Text::new(note, (band_start, ymax * 0.02), grey)))?;
        }
        let ideal_end = t_max.min(ymax * t_min);
        let ideal = if t_min == 1.0 { "ideal: speedup = threads".to_string() } else { format!("ideal: speedup = threads / {t_min}") };
        chart
            .draw_series(LineSeries::new(vec![(t_min, 1.0), (ideal_end, ideal_end / t_min)], IDEAL.stroke_width(2)))?
            .label(ideal)
            .legend(|(x, y)| Rectangle::new([(x, y - 2), (x + 16, y + 2)], IDEAL.filled()));
        if let Some(s) = serial_fraction {
            let steps = ((t_max - t_min) * 20.0).ceil().max(1.0) as usize;
            let curve: Vec<(f64, f64)> = (0..=steps)
                .map(|i| t_min + (t_max - t_min) * i as f64 / steps as f64)
                .map(|n| (n, amdahl_at(n).unwrap_or(1.0)))
                .collect();
            chart
                .draw_series(LineSeries::new(curve, AMDAHL.stroke_width(2)))?
                .label(format!("Amdahl, serial fraction {}", fmt_fraction(s)))
                .legend(|(x, y)| Rectangle::new([(x, y - 2), (x + 16, y + 2)], AMDAHL.filled()));
        }
        let points: Vec<(f64, f64)> = measured.iter().map(|&(t, v)| (t as f64, v)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), MEASURED.stroke_width(3)))?
            .label("measured (median)")
            .legend(|(x, y)| Rectangle::new([(x, y - 3), (x + 16, y + 3)], MEASURED.filled()));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, MEASURED.filled())))?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font((FONT, 13))
            .draw()?;
        Ok(())
    })
}

/// `0.1` → `10 %`, `0.05` → `5 %`, `0.125` → `12.5 %`.
pub(crate) fn fmt_fraction(f: f64) -> String {
    let pct = f * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{:.0} %", pct)
    } else {
        format!("{} %", crate::measure::sig3(pct))
    }
}

/// One bar of a [`gantt`] chart.
#[derive(Clone, Debug)]
pub(crate) struct GanttBar {
    /// Row index into the `lanes` given to [`gantt`].
    pub lane: usize,
    pub label: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// A Gantt chart: one row per lane (first lane on top), one bar per span, time in ms.
/// Bars with the same label share a colour; a label is written inside a bar wide enough for it.
pub(crate) fn gantt(title: &str, lanes: &[String], bars: &[GanttBar]) -> String {
    let n = lanes.len().max(1);
    let row_h: u32 = if n <= 16 { 28 } else { (700 / n as u32).max(10) };
    let font = if row_h >= 20 { 13 } else { 10 };
    let label_w = lanes.iter().map(|l| text_width(l, font as f64)).max().unwrap_or(40).clamp(40, 200) + 12;
    let width: u32 = 760;
    let height = 100 + row_h * n as u32;
    let t_end = bars.iter().map(|b| b.end_ms).fold(0.0, f64::max).max(1e-3) * 1.02;
    let plot_w = (width - label_w - 30) as f64;
    let mut label_colors: Vec<&str> = Vec::new();
    for b in bars {
        if !label_colors.contains(&b.label.as_str()) {
            label_colors.push(&b.label);
        }
    }
    let color_of = |label: &str| {
        let i = label_colors.iter().position(|l| *l == label).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    render_svg((width, height), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0f64..t_end, rows_range(n))?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| row_index(*v, n).and_then(|r| lanes.get(n - 1 - r)).cloned().unwrap_or_default())
            .x_desc("time since the timeline was created (ms)")
            .label_style((FONT, font))
            .draw()?;
        chart.draw_series(bars.iter().filter(|b| b.lane < n).map(|b| {
            let row = (n - 1 - b.lane) as f64;
            let mut r = Rectangle::new([(b.start_ms, row - 0.38), (b.end_ms.max(b.start_ms), row + 0.38)], color_of(&b.label).filled());
            r.set_margin(0, 0, 0, 1); // a pixel gap between consecutive spans
            r
        }))?;
        let style = TextStyle::from((FONT, font.min(12)).into_font()).color(&WHITE).pos(Pos::new(HPos::Center, VPos::Center));
        let fits = |b: &&GanttBar| (b.end_ms - b.start_ms) / t_end * plot_w > text_width(&b.label, font.min(12) as f64) as f64 + 6.0;
        chart.draw_series(bars.iter().filter(|b| b.lane < n).filter(fits).map(|b| {
            Text::new(b.label.clone(), ((b.start_ms + b.end_ms) / 2.0, (n - 1 - b.lane) as f64), style.clone())
        }))?;
        Ok(())
    })
}

/// A general line chart: each series is drawn as one line with dots at its points.
pub fn lines(title: &str, x_desc: &str, y_desc: &str, series: &[(&str, Vec<(f64, f64)>)]) -> String {
    let all = || series.iter().flat_map(|(_, pts)| pts.iter().copied());
    let x_min = all().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = all().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let y_max = all().map(|p| p.1).fold(0.0, f64::max);
    let (x_min, x_max) = if x_min.is_finite() && x_max > x_min {
        (x_min, x_max)
    } else if x_min.is_finite() {
        (x_min - 1.0, x_min + 1.0)
    } else {
        (0.0, 1.0)
    };
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    render_svg((720, 420), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x_min..x_max, 0f64..y_max)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).label_style((FONT, 13)).draw()?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 3), (x + 16, y + 3)], color.filled()));
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        if series.len() > 1 || series.iter().any(|(n, _)| !n.is_empty()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font((FONT, 13))
                .draw()?;
        }
        Ok(())
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small well-formedness check for the XML that plotters writes: every start tag is closed
    /// by the matching end tag, in order; self-closing tags and quoted attributes are handled.
    /// Returns the element names in document order.
    pub(crate) fn check_xml(s: &str) -> Result<Vec<String>, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = s;
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            if text.contains('>') {
                return Err(format!("stray '>' in text {text:?}"));
            }
            let after = &rest[lt + 1..];
            if let Some(body) = after.strip_prefix("!--") {
                let end = body.find("-->").ok_or("unclosed comment")?;
                rest = &body[end + 3..];
                continue;
            }
            if let Some(body) = after.strip_prefix('?') {
                let end = body.find("?>").ok_or("unclosed declaration")?;
                rest = &body[end + 2..];
                continue;
            }
            // Find the end of the tag, skipping '>' inside quoted attribute values.
            let mut quote = None;
            let mut end = None;
            for (i, c) in after.char_indices() {
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, '"') | (None, '\'') => quote = Some(c),
                    (None, '<') => return Err("'<' inside a tag".into()),
                    (None, '>') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unclosed tag")?;
            let tag = &after[..end];
            rest = &after[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack
                    .pop()
                    .ok_or(format!("</{name}> without a start tag"))?;
                if open != name.trim() {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
            } else {
                let name: String = tag
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '/')
                    .collect();
                if name.is_empty() {
                    return Err("empty tag name".into());
                }
                names.push(name.clone());
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
        }
        if rest.contains('>') {
            return Err("stray '>' after the last tag".into());
        }
        match stack.pop() {
            Some(open) => Err(format!("<{open}> never closed")),
            None => Ok(names),
        }
    }

    /// The elements `<name …/>` of an SVG as (attribute text) strings.
    pub(crate) fn elements<'a>(svg: &'a str, name: &str) -> Vec<&'a str> {
        let open = format!("<{name} ");
        svg.match_indices(&open)
            .map(|(i, _)| {
                let tail = &svg[i..];
                &tail[..tail.find('>').unwrap_or(tail.len())]
            })
            .collect()
    }

    /// The value of attribute `attr` in an element's text.
    pub(crate) fn attr(element: &str, attr: &str) -> Option<String> {
        let key = format!(" {attr}=\"");
        let start = element.find(&key)? + key.len();
        let len = element[start..].find('"')?;
        Some(element[start..start + len].to_string())
    }

    /// Polylines that are data series: plotters draws axes and ticks as black polylines.
    pub(crate) fn series_lines(svg: &str) -> Vec<String> {
        elements(svg, "polyline")
            .into_iter()
            .filter_map(|p| attr(p, "stroke"))
            .filter(|c| c != "#000000")
            .collect()
    }

    pub(crate) fn hex(c: RGBColor) -> String {
        format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
    }

    #[test]
    fn xml_checker_rejects_broken_documents() {
        assert!(check_xml("<svg><rect/></svg>").is_ok());
        assert!(check_xml("<svg><g></svg>").is_err());
        assert!(check_xml("<svg><rect></svg>").is_err());
        assert!(check_xml("<svg a=\"x>y\"></svg>").is_ok());
        assert!(check_xml("<svg>").is_err());
    }

    #[test]
    fn time_bars_draw_one_proportional_bar_per_entry() {
        let bars: Vec<TimeBar> = [("one", 1), ("two", 2), ("four", 4)]
            .iter()
            .map(|&(l, ms)| TimeBar {
                label: l.to_string(),
                median: Duration::from_millis(ms),
                min: Some(Duration::from_micros(ms * 900)),
                bad: false,
            })
            .collect();
        let svg = time_bars("bars <&>", &bars);
        let names = check_xml(&svg).expect("well-formed SVG");
        assert_eq!(names[0], "svg");
        let bar_rects: Vec<&str> = elements(&svg, "rect")
            .into_iter()
            .filter(|r| attr(r, "fill").as_deref() == Some(hex(BAR).as_str()))
            .collect();
        assert_eq!(bar_rects.len(), 3, "one bar per variant");
        let widths: Vec<f64> = bar_rects
            .iter()
            .map(|r| attr(r, "width").unwrap().parse().unwrap())
            .collect();
        assert!((widths[1] / widths[0] - 2.0).abs() < 0.1, "{widths:?}");
        assert!((widths[2] / widths[0] - 4.0).abs() < 0.1, "{widths:?}");
        // Labels are rendered as text (naive font fallback works).
        for label in ["one", "two", "four", "bars &lt;&amp;&gt;", "4.00 ms"] {
            assert!(svg.contains(label), "missing text {label}");
        }
    }

    #[test]
    fn a_single_bar_fills_its_chart() {
        let one = vec![TimeBar {
            label: "only".into(),
            median: Duration::from_millis(3),
            min: None,
            bad: false,
        }];
        let svg = time_bars("one", &one);
        check_xml(&svg).expect("well-formed SVG");
        let bars: Vec<&str> = elements(&svg, "rect")
            .into_iter()
            .filter(|r| attr(r, "fill").as_deref() == Some(hex(BAR).as_str()))
            .collect();
        assert_eq!(bars.len(), 1);
        // The bar takes 60 % of the only row (no empty extra row).
        let height: i64 = attr(bars[0], "height").unwrap().parse().unwrap();
        assert!(height > 20, "bar height {height}");
        assert_eq!(svg.matches(">\nonly\n</text>").count(), 1, "one row label");
    }

    #[test]
    fn bad_bars_are_red() {
        let bars = vec![
            TimeBar {
                label: "a".into(),
                median: Duration::from_millis(1),
                min: None,
                bad: false,
            },
            TimeBar {
                label: "b".into(),
                median: Duration::from_millis(1),
                min: None,
                bad: true,
            },
        ];
        let svg = time_bars("t", &bars);
        let fills: Vec<String> = elements(&svg, "rect")
            .iter()
            .filter_map(|r| attr(r, "fill"))
            .collect();
        assert_eq!(fills.iter().filter(|f| **f == hex(BAR)).count(), 1);
        assert_eq!(fills.iter().filter(|f| **f == hex(BAD_BAR)).count(), 1);
    }

    #[test]
    fn speedup_chart_has_three_lines_with_serial_fraction_and_two_without() {
        let measured = vec![(1, 1.0), (2, 1.8), (3, 1.7), (4, 1.75)];
        let with = speedup_chart("sweep", &measured, Some(0.1), 2);
        check_xml(&with).expect("well-formed SVG");
        assert_eq!(
            series_lines(&with),
            vec![hex(IDEAL), hex(AMDAHL), hex(MEASURED)]
        );
        assert_eq!(
            elements(&with, "circle").len(),
            4,
            "one dot per measured point"
        );
        assert!(with.contains("Amdahl, serial fraction 10 %"));
        let without = speedup_chart("sweep", &measured, None, 2);
        check_xml(&without).expect("well-formed SVG");
        assert_eq!(series_lines(&without), vec![hex(IDEAL), hex(MEASURED)]);
        assert!(!without.contains("Amdahl"));
    }

    #[test]
    fn gantt_has_one_bar_per_span() {
        let lanes = vec!["main".to_string(), "worker 1".to_string()];
        let bars = vec![
            GanttBar {
                lane: 0,
                label: "a".into(),
                start_ms: 0.0,
                end_ms: 5.0,
            },
            GanttBar {
                lane: 1,
                label: "b".into(),
                start_ms: 1.0,
                end_ms: 9.0,
            },
            GanttBar {
                lane: 1,
                label: "a".into(),
                start_ms: 9.0,
                end_ms: 10.0,
            },
        ];
        let svg = gantt("t", &lanes, &bars);
        check_xml(&svg).expect("well-formed SVG");
        let fills: Vec<String> = elements(&svg, "rect")
            .iter()
            .filter_map(|r| attr(r, "fill"))
            .collect();
        assert_eq!(fills.iter().filter(|f| **f == hex(PALETTE[0])).count(), 2);
        assert_eq!(fills.iter().filter(|f| **f == hex(PALETTE[1])).count(), 1);
        assert!(svg.contains("worker 1"));
    }

    #[test]
    fn empty_charts_are_well_formed() {
        check_xml(&gantt("none", &[], &[])).expect("well-formed SVG");
        check_xml(&time_bars("none", &[])).expect("well-formed SVG");
        check_xml(&speedup_chart("none", &[], Some(0.5), 2)).expect("well-formed SVG");
    }

    #[test]
    fn lines_chart_is_well_formed() {
        let svg = lines("l", "x", "y", &[("s", vec![(1.0, 2.0), (2.0, 3.0)])]);
        check_xml(&svg).expect("well-formed SVG");
        assert_eq!(series_lines(&svg), vec![hex(PALETTE[0])]);
        let empty = lines("empty", "x", "y", &[]);
        check_xml(&empty).expect("well-formed SVG");
    }

    #[test]
    fn error_svg_is_well_formed() {
        check_xml(&error_svg("a < b & c")).expect("well-formed SVG");
    }
}
