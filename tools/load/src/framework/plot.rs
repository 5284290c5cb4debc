//! The report with plots over time (plotters): `--report FILE.svg`, `FILE.png` or `FILE.html`.
//!
//! One picture holds the run's title and summary lines, then stacked panels sharing the time axis: rate
//! (offered and succeeded per second), latency percentiles per second (p50, p90, p99, p99.9, max), loss in
//! percent (packet modes) or failures per second (transaction modes), and, with `--pid`, the server's CPU
//! and resident memory. The HTML file embeds the same picture as inline SVG plus the summary and the
//! per-second table, so it is one self-contained file. `sweep` draws its steps the same way, with the
//! offered rate on the horizontal axis.
//!
//! Text is laid out with a TrueType font read at run time (plotters' `ab_glyph` backend needs one even for
//! SVG): `$VIENNA_LOAD_FONT`, else DejaVu Sans or Liberation Sans from `/usr/share/fonts` (Debian
//! `fonts-dejavu-core`), else the first `.ttf` found there.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::series::Timeline;

/// One line of a panel.
#[derive(Clone)]
pub struct Line {
    /// Legend.
    pub name: &'static str,
    /// Colour.
    pub color: RGBColor,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

/// One panel: a title, a unit for the vertical axis, lines.
#[derive(Clone)]
pub struct Panel {
    /// Title.
    pub title: String,
    /// Vertical axis label.
    pub y_desc: &'static str,
    /// Lines.
    pub lines: Vec<Line>,
}

/// A whole picture.
#[derive(Clone)]
pub struct Figure {
    /// Title line.
    pub title: String,
    /// Summary lines under the title.
    pub summary: Vec<String>,
    /// Horizontal axis label.
    pub x_desc: &'static str,
    /// Panels, top to bottom.
    pub panels: Vec<Panel>,
}

const WIDTH: u32 = 1100;
const PANEL_HEIGHT: u32 = 250;
const LINE_HEIGHT: u32 = 17;
const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// The panels of a run's timeline.
pub fn timeline_figure(title: String, summary: Vec<String>, tl: &Timeline, ok_name: &'static str) -> Figure {
    let x = |r: &super::series::Row| r.t as f64 + 0.5;
    let mut panels = vec![
        Panel {
            title: "rate".into(),
            y_desc: "per second",
            lines: vec![
                Line {
                    name: "offered",
                    color: COLORS[0],
                    points: tl.rows.iter().map(|r| (x(r), r.offered as f64)).collect(),
                },
                Line { name: ok_name, color: COLORS[1], points: tl.rows.iter().map(|r| (x(r), r.ok as f64)).collect() },
            ],
        },
        Panel {
            title: "latency per second".into(),
            y_desc: "ms",
            lines: [("p50", 0usize), ("p90", 1), ("p99", 2), ("p99.9", 3), ("max", 4)]
                .into_iter()
                .map(|(name, i)| Line {
                    name,
                    color: COLORS[i],
                    points: tl
                        .rows
                        .iter()
                        .filter(|r| r.latency_us.count > 0)
                        .map(|r| {
                            let l = &r.latency_us;
                            let v = [l.p50, l.p90, l.p99, l.p999, l.max][i];
                            (x(r), v as f64 / 1000.0)
                        })
                        .collect(),
                })
                .collect(),
        },
    ];
    if tl.has_loss {
        panels.push(Panel {
            title: "loss (packets sent in that second that never came back)".into(),
            y_desc: "percent",
            lines: vec![Line {
                name: "loss",
                color: COLORS[3],
                points: tl
                    .rows
                    .iter()
                    .map(|r| (x(r), if r.offered == 0 { 0.0 } else { r.lost as f64 * 100.0 / r.offered as f64 }))
                    .collect(),
            }],
        });
    } else {
        panels.push(Panel {
            title: "failures".into(),
            y_desc: "per second",
            lines: vec![Line {
                name: "failed",
                color: COLORS[3],
                points: tl.rows.iter().map(|r| (x(r), r.failed as f64)).collect(),
            }],
        });
    }
    if tl.rows.iter().any(|r| r.server_cpu_percent.is_some()) {
        panels.push(Panel {
            title: "server CPU (--pid)".into(),
            y_desc: "% of a core",
            lines: vec![Line {
                name: "cpu",
                color: COLORS[4],
                points: tl.rows.iter().filter_map(|r| Some((x(r), r.server_cpu_percent?))).collect(),
            }],
        });
        panels.push(Panel {
            title: "server memory (--pid)".into(),
            y_desc: "RSS MiB",
            lines: vec![Line {
                name: "rss",
                color: COLORS[2],
                points: tl
                    .rows
                    .iter()
                    .filter_map(|r| Some((x(r), r.server_rss_bytes? as f64 / (1 << 20) as f64)))
                    .collect(),
            }],
        });
    }
    Figure { title, summary, x_desc: "seconds", panels }
}

/// Summary lines cut at spaces to fit the picture's width.
fn wrapped(lines: &[String]) -> Vec<String> {
    const WIDTH_CHARS: usize = 150;
    let mut out = Vec::new();
    for l in lines {
        let mut cur = String::new();
        for word in l.split(' ') {
            if !cur.is_empty() && cur.len() + 1 + word.len() > WIDTH_CHARS {
                out.push(std::mem::take(&mut cur));
                cur.push_str("             ");
            }
            if !cur.is_empty() && !cur.ends_with("  ") {
                cur.push(' ');
            }
            cur.push_str(word);
        }
        out.push(cur);
    }
    out
}

fn height(f: &Figure) -> u32 {
    40 + LINE_HEIGHT * f.summary.len() as u32 + PANEL_HEIGHT * f.panels.len() as u32
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, f: &Figure) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing the report: {e:?}");
    root.fill(&WHITE).map_err(e)?;
    root.draw(&Text::new(f.title.clone(), (10, 8), ("sans-serif", 20).into_font())).map_err(e)?;
    for (i, line) in f.summary.iter().enumerate() {
        let y = 34 + LINE_HEIGHT as i32 * i as i32;
        root.draw(&Text::new(line.clone(), (10, y), ("monospace", 13).into_font())).map_err(e)?;
    }
    let top = 40 + LINE_HEIGHT * f.summary.len() as u32;
    let (_, body) = root.split_vertically(top);
    let areas = body.split_evenly((f.panels.len().max(1), 1));
    let x_max = f
        .panels
        .iter()
        .flat_map(|p| p.lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)))
        .fold(1.0, f64::max)
        .ceil();
    for (panel, area) in f.panels.iter().zip(areas) {
        let y_max = panel.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(0.0, f64::max);
        let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(&area)
            .caption(panel.title.as_str(), ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(32)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(f.x_desc)
            .y_desc(panel.y_desc)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(e)?;
        for line in &panel.lines {
            let color = line.color;
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)).point_size(2))
                .map_err(e)?
                .label(line.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

/// The figure as an SVG document.
pub fn svg(f: &Figure) -> anyhow::Result<String> {
    register_font()?;
    let f = &Figure { summary: wrapped(&f.summary), ..f.clone() };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height(f))).into_drawing_area();
        draw(root, f)?;
    }
    Ok(out)
}

/// The figure as PNG bytes.
pub fn png(f: &Figure) -> anyhow::Result<Vec<u8>> {
    register_font()?;
    let f = &Figure { summary: wrapped(&f.summary), ..f.clone() };
    let (w, h) = (WIDTH, height(f));
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(root, f)?;
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().context("encoding PNG")?;
        writer.write_image_data(&rgb).context("encoding PNG")?;
    }
    Ok(out)
}

/// A self-contained HTML page: title, summary, the figure as inline SVG, and an optional table.
pub fn html(f: &Figure, table: Option<(Vec<&str>, Vec<Vec<String>>)>) -> anyhow::Result<String> {
    let svg = svg(f)?;
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    s.push_str(&escape(&f.title));
    s.push_str(
        "</title><style>body{font-family:sans-serif;margin:1em}pre{background:#f6f6f6;padding:.5em}\
         table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}\
         </style></head><body>\n<h1>",
    );
    s.push_str(&escape(&f.title));
    s.push_str("</h1>\n<pre>");
    s.push_str(&escape(&f.summary.join("\n")));
    s.push_str("</pre>\n");
    s.push_str(svg.trim_start_matches(|c| c != '<'));
    if let Some((head, rows)) = table {
        s.push_str("\n<h2>Per second</h2>\n<table><tr>");
        for h in head {
            s.push_str(&format!("<th>{}</th>", escape(h)));
        }
        s.push_str("</tr>\n");
        for r in rows {
            s.push_str("<tr>");
            for c in r {
                s.push_str(&format!("<td>{}</td>", escape(&c)));
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n");
    }
    s.push_str("</body></html>\n");
    Ok(s)
}

/// The per-second table of a timeline for [`html`].
pub fn timeline_table(tl: &Timeline) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let head = vec![
        "s",
        "offered",
        "ok",
        "failed",
        "lost",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "server cpu %",
        "server rss MiB",
    ];
    let rows = tl
        .rows
        .iter()
        .map(|r| {
            let l = &r.latency_us;
            vec![
                r.t.to_string(),
                r.offered.to_string(),
                r.ok.to_string(),
                r.failed.to_string(),
                r.lost.to_string(),
                l.p50.to_string(),
                l.p90.to_string(),
                l.p99.to_string(),
                l.p999.to_string(),
                l.max.to_string(),
                opt(r.server_cpu_percent.map(|c| c.to_string())),
                opt(r.server_rss_bytes.map(|b| format!("{:.1}", b as f64 / (1 << 20) as f64))),
            ]
        })
        .collect();
    (head, rows)
}

/// Writes `f` to `path` as SVG, PNG or HTML, by extension.
pub fn write(path: &Path, f: &Figure, table: Option<(Vec<&str>, Vec<Vec<String>>)>) -> anyhow::Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let bytes = match ext.as_deref() {
        Some("svg") => svg(f)?.into_bytes(),
        Some("png") => png(f)?,
        Some("html" | "htm") => html(f, table)?.into_bytes(),
        _ => bail!("--report {}: the name must end in .svg, .png or .html", path.display()),
    };
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Checks a `--report` name before the run, so a bad one does not waste it.
pub fn check_path(path: &Path) -> anyhow::Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if !matches!(ext.as_deref(), Some("svg" | "png" | "html" | "htm")) {
        bail!("--report {}: the name must end in .svg, .png or .html", path.display());
    }
    register_font()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn register_font() -> anyhow::Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let path = find_font().ok_or_else(|| {
            "the report needs a TrueType font: set VIENNA_LOAD_FONT=FILE.ttf or install one \
             (Debian: apt-get install fonts-dejavu-core)"
                .to_owned()
        })?;
        let bytes = std::fs::read(&path).map_err(|e| format!("reading font {}: {e}", path.display()))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        for family in ["sans-serif", "monospace"] {
            plotters::style::register_font(family, FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a usable TrueType font", path.display()))?;
        }
        Ok(())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

fn find_font() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VIENNA_LOAD_FONT") {
        return Some(PathBuf::from(p));
    }
    let known = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    ];
    if let Some(p) = known.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(p);
    }
    // Any .ttf, breadth first, a bounded walk.
    let mut dirs = vec![PathBuf::from("/usr/share/fonts"), PathBuf::from("/usr/local/share/fonts")];
    let mut seen = 0;
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            seen += 1;
            if seen > 10_000 {
                return None;
            }
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x.eq_ignore_ascii_case("ttf")) {
                return Some(p);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::series::{BinLatency, Row};

    fn tl() -> Timeline {
        Timeline {
            has_loss: true,
            rows: (0..3)
                .map(|t| Row {
                    t,
                    offered: 100,
                    ok: 99,
                    lost: 1,
                    latency_us: BinLatency { count: 99, p50: 100, p90: 200, p99: 300, p999: 400, max: 500 },
                    server_cpu_percent: Some(12.5),
                    server_rss_bytes: Some(10 << 20),
                    ..Row::default()
                })
                .collect(),
        }
    }

    #[test]
    fn svg_png_and_html() {
        let f = timeline_figure("test <run>".into(), vec!["sent=300".into()], &tl(), "received");
        assert_eq!(f.panels.len(), 5, "rate, latency, loss, cpu, memory");
        let s = svg(&f).unwrap();
        assert!(s.contains("<svg") && s.contains("latency per second") && s.contains("test &lt;run&gt;"));
        let p = png(&f).unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        let h = html(&f, Some(timeline_table(&tl()))).unwrap();
        assert!(h.starts_with("<!DOCTYPE html>") && h.contains("<svg") && h.contains("<td>99</td>"));
        assert!(check_path(Path::new("x.pdf")).is_err());
    }
}
