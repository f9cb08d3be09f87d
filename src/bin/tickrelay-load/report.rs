//! Output: the once-a-second progress line, the summary (human table on stderr, one JSON
//! line on stdout) and the optional self-contained HTML report with hand-written SVG.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use crate::stats::{fmt_ns, Json};

/// A once-a-second progress line on stderr and the timeline it samples.
pub struct Ticker {
    task: tokio::task::JoinHandle<()>,
    timeline: Arc<Mutex<Vec<(f64, f64)>>>,
}

impl Ticker {
    /// Calls `line(elapsed_s)` every second; it returns the progress text and the value
    /// to put on the timeline (e.g. deliveries in the last second).
    pub fn start<F>(quiet: bool, mut line: F) -> Ticker
    where
        F: FnMut(f64) -> (String, f64) + Send + 'static,
    {
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let tl = timeline.clone();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            loop {
                tick.tick().await;
                let t = start.elapsed().as_secs_f64();
                let (text, v) = line(t);
                tl.lock().push((t, v));
                if !quiet {
                    eprintln!("[{t:6.1}s] {text}");
                }
            }
        });
        Ticker { task, timeline }
    }

    /// Stops the line and returns the timeline.
    pub fn stop(self) -> Vec<(f64, f64)> {
        self.task.abort();
        let v = self.timeline.lock().clone();
        v
    }
}

/// Everything a run reports.
pub struct Report {
    /// `fanout`, `connect` or `idle`.
    pub mode: &'static str,
    /// Human rows (name, value) for the table.
    pub rows: Vec<(String, String)>,
    /// JSON fields of the summary line.
    pub json: Vec<(String, Json)>,
    /// A latency histogram to plot, with its title.
    pub latency: Option<(String, Histogram<u64>)>,
    /// Timeline samples (seconds, value) with the value's label.
    pub timeline: (String, Vec<(f64, f64)>),
    /// Warnings worth a line each (saturation, file limit, loss).
    pub notes: Vec<String>,
    /// Whether the run met its own correctness expectations (exit code).
    pub ok: bool,
}

impl Report {
    /// An empty report of `mode` with its timeline (`label`, samples), ok until told not.
    pub fn new(mode: &'static str, label: &str, timeline: Vec<(f64, f64)>) -> Report {
        Report {
            mode,
            rows: Vec::new(),
            json: Vec::new(),
            latency: None,
            timeline: (label.into(), timeline),
            notes: Vec::new(),
            ok: true,
        }
    }

    /// Adds a row to both the table and the JSON.
    pub fn field(&mut self, key: &str, human: String, json: Json) {
        self.rows.push((key.to_string(), human));
        self.json.push((key.to_string(), json));
    }

    /// The one JSON line.
    pub fn json_line(&self) -> String {
        let mut fields = vec![("mode".to_string(), Json::Str(self.mode.into()))];
        fields.extend(self.json.iter().cloned());
        fields.push((
            "notes".into(),
            Json::Arr(self.notes.iter().map(|n| Json::Str(n.clone())).collect()),
        ));
        fields.push(("ok".into(), Json::Bool(self.ok)));
        Json::Obj(fields).to_string()
    }

    /// The human table.
    pub fn table(&self) -> String {
        let w = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let mut s = format!("── tickrelay-load {} summary ──\n", self.mode);
        for (k, v) in &self.rows {
            let _ = writeln!(s, "  {k:<w$}  {v}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }

    /// A self-contained HTML page: the table, a percentile plot, a timeline.
    pub fn html(&self, command: &str) -> String {
        let mut s = String::from(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>tickrelay-load</title>\
             <style>body{font:14px sans-serif;margin:2em;max-width:900px}\
             td{padding:2px 12px}tr:nth-child(odd){background:#f4f4f4}\
             code{background:#eee;padding:2px}</style></head><body>",
        );
        let _ = write!(
            s,
            "<h1>tickrelay-load {}</h1><p><code>{}</code></p><table>",
            self.mode,
            esc(command)
        );
        for (k, v) in &self.rows {
            let _ = write!(s, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
        }
        s.push_str("</table>");
        for n in &self.notes {
            let _ = write!(s, "<p><b>note:</b> {}</p>", esc(n));
        }
        if let Some((title, h)) = &self.latency {
            let _ = write!(s, "<h2>{}</h2>", esc(title));
            s.push_str(&percentile_svg(h));
        }
        if !self.timeline.1.is_empty() {
            let _ = write!(s, "<h2>{} per second</h2>", esc(&self.timeline.0));
            s.push_str(&timeline_svg(&self.timeline.1));
        }
        s.push_str("</body></html>\n");
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 800.0;
const H: f64 = 320.0;
const PAD: f64 = 60.0;

/// Latency by percentile, x on the usual "nines" scale (log10 of 1/(1-p)).
fn percentile_svg(h: &Histogram<u64>) -> String {
    let mut s = svg_open();
    if h.is_empty() {
        s.push_str("<text x=\"100\" y=\"100\">no samples</text></svg>");
        return s;
    }
    let max_nines = 5.0; // up to p99.999
    let points: Vec<(f64, u64)> = (0..=200)
        .map(|i| {
            let nines = max_nines * i as f64 / 200.0;
            let p = 100.0 * (1.0 - 10f64.powf(-nines));
            (nines, h.value_at_percentile(p))
        })
        .chain(std::iter::once((max_nines, h.max())))
        .collect();
    let ymax = h.max().max(1) as f64;
    let x = |n: f64| PAD + (W - 2.0 * PAD) * n / max_nines;
    let y = |v: f64| H - PAD + -(H - 2.0 * PAD) * v / ymax;
    axes(&mut s);
    for (n, label) in [
        (0.0, "p0"),
        (1.0, "p90"),
        (2.0, "p99"),
        (3.0, "p99.9"),
        (4.0, "p99.99"),
        (5.0, "p99.999"),
    ] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>",
            x(n),
            H - PAD + 18.0
        );
    }
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <line x1=\"{PAD}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>",
            PAD - 4.0,
            y(v) + 4.0,
            fmt_ns(v as u64),
            W - PAD,
            y(v),
            y(v)
        );
    }
    s.push_str("<polyline fill=\"none\" stroke=\"#c33\" stroke-width=\"2\" points=\"");
    for (n, v) in &points {
        let _ = write!(s, "{:.1},{:.1} ", x(*n), y(*v as f64));
    }
    s.push_str("\"/></svg>");
    s
}

/// One bar per second.
fn timeline_svg(samples: &[(f64, f64)]) -> String {
    let mut s = svg_open();
    axes(&mut s);
    let tmax = samples.iter().map(|p| p.0).fold(1.0, f64::max);
    let vmax = samples.iter().map(|p| p.1).fold(1.0, f64::max);
    let bw = ((W - 2.0 * PAD) / samples.len() as f64 * 0.8).max(1.0);
    for (t, v) in samples {
        let x = PAD + (W - 2.0 * PAD) * (t / tmax) - bw;
        let bh = (H - 2.0 * PAD) * v / vmax;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"#36c\">\
             <title>{t:.0}s: {v:.0}</title></rect>",
            H - PAD - bh
        );
    }
    for i in 0..=4 {
        let v = vmax * i as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            PAD - 4.0,
            H - PAD - (H - 2.0 * PAD) * i as f64 / 4.0 + 4.0,
            crate::stats::fmt_rate(v)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds (0 - {tmax:.0})</text></svg>",
        W / 2.0,
        H - PAD + 18.0
    );
    s
}

fn svg_open() -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         font-size=\"11\" font-family=\"sans-serif\">"
    )
}

fn axes(s: &mut String) {
    let _ = write!(
        s,
        "<line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#000\"/>\
         <line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#000\"/>",
        b = H - PAD,
        r = W - PAD
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_self_contained_with_two_svgs() {
        let mut h = crate::stats::histogram();
        for v in 1..1000u64 {
            h.record(v * 1000).unwrap();
        }
        let r = Report {
            mode: "fanout",
            rows: vec![("a<b".into(), "1".into())],
            json: vec![],
            latency: Some(("latency".into(), h)),
            timeline: ("deliveries".into(), vec![(1.0, 10.0), (2.0, 20.0)]),
            notes: vec![],
            ok: true,
        };
        let page = r.html("tickrelay-load fanout");
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(page.contains("a&lt;b"));
        assert!(!page.contains("<script"));
        assert!(r.json_line().starts_with("{\"mode\":\"fanout\""));
    }
}
