//! `podnet top`: the node's pods, sorted by what is wrong right now (rates per second
//! between the agent's last two collections): drops (with the leading kernel reason),
//! retransmits, resets, listen overflows, conntrack failures. A pod view shows its counters
//! and latest events. `--once` prints the table as text.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use podnet_exporter_control::PodCounters;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row as TableRow, Table, TableState};

use super::client::{request, text_line};
use super::protocol::{Filter, Request};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    Drops,
    Retransmits,
    Resets,
    Overflows,
    Conntrack,
    /// Socket read latency (99th percentile).
    Latency,
}

impl SortBy {
    fn next(self) -> SortBy {
        match self {
            SortBy::Drops => SortBy::Retransmits,
            SortBy::Retransmits => SortBy::Resets,
            SortBy::Resets => SortBy::Overflows,
            SortBy::Overflows => SortBy::Conntrack,
            SortBy::Conntrack => SortBy::Latency,
            SortBy::Latency => SortBy::Drops,
        }
    }
}

/// One pod's line.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub pod: String,
    pub drops: f64,
    pub top_reason: String,
    pub retransmits: f64,
    pub resets: f64,
    pub overflows: f64,
    pub conntrack: f64,
    /// Socket read delay, 99th percentile, in nanoseconds (socketlatency probe).
    pub read_p99_ns: Option<f64>,
    pub counters: PodCounters,
}

fn sum(p: &PodCounters, pick: impl Fn(&str) -> bool) -> f64 {
    p.rates.iter().filter(|(k, _)| pick(k)).map(|(_, v)| v).sum()
}

pub fn lines(pods: Vec<PodCounters>, sort: SortBy) -> Vec<Line> {
    let mut out: Vec<Line> = pods
        .into_iter()
        .map(|p| {
            let top_reason = p
                .rates
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("podnet.packet.drops/").map(|r| (r, *v)))
                .filter(|(_, v)| *v > 0.0)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(r, _)| r.to_string())
                .unwrap_or_default();
            Line {
                pod: match (p.key.namespace.as_str(), p.key.pod.as_str()) {
                    (_, "") => "(node)".to_string(),
                    ("", pod) => pod.to_string(),
                    (ns, pod) => format!("{ns}/{pod}"),
                },
                drops: sum(&p, |k| k.starts_with("podnet.packet.drops/")),
                top_reason,
                retransmits: sum(&p, |k| k == "podnet.tcp.retransmits"),
                resets: sum(&p, |k| k.starts_with("podnet.tcp.resets/")),
                overflows: sum(&p, |k| k.ends_with("listen_overflows") || k.ends_with("listen_drops")),
                conntrack: sum(&p, |k| k.starts_with("podnet.conntrack.")),
                read_p99_ns: p.p99_ns.get("podnet.socket.read.delay").copied(),
                counters: p,
            }
        })
        .collect();
    let key = |l: &Line| match sort {
        SortBy::Drops => l.drops,
        SortBy::Retransmits => l.retransmits,
        SortBy::Resets => l.resets,
        SortBy::Overflows => l.overflows,
        SortBy::Conntrack => l.conntrack,
        SortBy::Latency => l.read_p99_ns.unwrap_or(0.0),
    };
    out.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.pod.cmp(&b.pod)));
    out
}

fn rate(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).chain(std::iter::once('…')).collect() }
}

pub const HEADER: [&str; 8] = ["POD", "DROP/s", "TOP REASON", "RETR/s", "RST/s", "OVFL/s", "CT/s", "READp99"];
const WIDTHS: [usize; 8] = [19, 7, 14, 7, 6, 6, 6, 7];

/// Nanoseconds as `850ns`, `4.1us`, `8.4ms`, `1.2s`; `-` when unknown.
fn duration(ns: Option<f64>) -> String {
    match ns {
        None => "-".into(),
        Some(v) if v < 1e3 => format!("{v:.0}ns"),
        Some(v) if v < 1e6 => format!("{:.1}us", v / 1e3),
        Some(v) if v < 1e9 => format!("{:.1}ms", v / 1e6),
        Some(v) => format!("{:.1}s", v / 1e9),
    }
}

fn cells(l: &Line) -> [String; 8] {
    [
        l.pod.clone(),
        rate(l.drops),
        l.top_reason.clone(),
        rate(l.retransmits),
        rate(l.resets),
        rate(l.overflows),
        rate(l.conntrack),
        duration(l.read_p99_ns),
    ]
}

/// The table as text, 80 columns.
pub fn table_text(lines: &[Line]) -> String {
    let mut out = String::new();
    let row = |cells: [String; 8]| {
        cells
            .iter()
            .zip(WIDTHS)
            .enumerate()
            .map(|(i, (c, w))| if i == 0 || i == 2 { format!("{:<w$}", cut(c, w)) } else { format!("{:>w$}", cut(c, w)) })
            .collect::<Vec<_>>()
            .join(" ")
    };
    out.push_str(row(HEADER.map(str::to_string)).trim_end());
    out.push('\n');
    for l in lines {
        out.push_str(row(cells(l)).trim_end());
        out.push('\n');
    }
    out
}

fn fetch(socket: &Path, sort: SortBy) -> Result<Vec<Line>> {
    let mut c = request(socket, &Request::Pods)?;
    let pods = c.next()?.and_then(|a| a.pods).unwrap_or_default();
    Ok(lines(pods, sort))
}

pub fn once(socket: &Path, sort: SortBy) -> Result<String> {
    Ok(table_text(&fetch(socket, sort)?))
}

fn pod_events(socket: &Path, line: &Line) -> Vec<String> {
    let filter = Filter { pod: Some(line.counters.key.pod.clone()), namespace: Some(line.counters.key.namespace.clone()), r#type: None };
    let Ok(mut c) = request(socket, &Request::Events { since_unix_nano: 0, follow: false, filter }) else { return Vec::new() };
    let mut out = Vec::new();
    while let Ok(Some(a)) = c.next() {
        if let Some(e) = a.event {
            out.push(text_line(&e));
        }
    }
    out
}

/// The interactive view: ↑/↓ choose a pod, Enter opens it, Esc goes back, `s` changes the
/// sort, `q` quits (the terminal is restored however it ends).
pub fn interactive(socket: &Path, mut sort: SortBy) -> Result<()> {
    let mut terminal = ratatui::init();
    let result = (|| -> Result<()> {
        let mut state = TableState::default().with_selected(Some(0));
        let mut open: Option<(Line, Vec<String>)> = None;
        let mut lines = fetch(socket, sort)?;
        loop {
            terminal.draw(|f| {
                let [main, help] = Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(f.area());
                match &open {
                    None => {
                        let header = TableRow::new(HEADER.map(Cell::from)).style(Style::default().add_modifier(Modifier::BOLD));
                        let rows = lines.iter().map(|l| TableRow::new(cells(l)));
                        let widths = WIDTHS.map(|w| Constraint::Length(w as u16));
                        let table = Table::new(rows, widths)
                            .header(header)
                            .block(Block::default().borders(Borders::ALL).title(format!(" podnet top — sorted by {sort:?} (per second) ")))
                            .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
                        f.render_stateful_widget(table, main, &mut state);
                        f.render_widget(Paragraph::new("q quit  ↑↓ select  Enter pod view  s sort"), help);
                    }
                    Some((line, events)) => {
                        let mut text: Vec<String> = line
                            .counters
                            .counters
                            .iter()
                            .map(|(k, v)| format!("{k:<48} {v:>12}  {:>8}/s", rate(line.counters.rates.get(k).copied().unwrap_or(0.0))))
                            .collect();
                        text.extend(line.counters.p99_ns.iter().map(|(k, v)| format!("{k:<48} p99 {:>9}", duration(Some(*v)))));
                        text.push(String::new());
                        text.push("latest events:".into());
                        text.extend(events.iter().rev().take(20).cloned());
                        let p =
                            Paragraph::new(text.join("\n")).block(Block::default().borders(Borders::ALL).title(format!(" {} ", line.pod)));
                        f.render_widget(p, main);
                        f.render_widget(Paragraph::new("Esc back  q quit"), help);
                    }
                }
            })?;
            if event::poll(Duration::from_secs(1))?
                && let TermEvent::Key(k) = event::read()?
                && k.kind == KeyEventKind::Press
            {
                {
                    match (k.code, open.is_some()) {
                        (KeyCode::Char('q'), _) => return Ok(()),
                        (KeyCode::Esc, true) => open = None,
                        (KeyCode::Down, false) => {
                            state.select(Some((state.selected().unwrap_or(0) + 1).min(lines.len().saturating_sub(1))))
                        }
                        (KeyCode::Up, false) => state.select(Some(state.selected().unwrap_or(0).saturating_sub(1))),
                        (KeyCode::Char('s'), false) => sort = sort.next(),
                        (KeyCode::Enter, false) => {
                            if let Some(l) = state.selected().and_then(|i| lines.get(i)) {
                                open = Some((l.clone(), pod_events(socket, l)));
                            }
                        }
                        _ => {}
                    }
                }
            }
            // Refresh every second, and after every key.
            lines = fetch(socket, sort)?;
            if let Some((line, _)) = &open
                && let Some(fresh) = lines.iter().find(|l| l.pod == line.pod)
            {
                open = Some((fresh.clone(), pod_events(socket, fresh)));
            }
        }
    })();
    ratatui::restore();
    result
}
