//! The screen: a summary line, requests per second by cache result for
//! each node, origin members with their breakers, and the top URLs by
//! requests and by origin fetches. Plain colours only (the 16 ANSI ones),
//! so it reads the same over SSH and in any terminal.

use std::collections::HashMap;
use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};

use super::poll::{HIT_RESULTS, Live, NodeState, NodeView, Snapshot};

/// The cache results, in the order of their columns.
const RESULTS: [&str; 6] = ["HIT", "MISS", "STALE", "REVALIDATED", "PASS", "ERROR"];
const HEADERS: [&str; 6] = ["HIT", "MISS", "STALE", "REVAL", "PASS", "ERROR"];

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

fn header(cells: impl IntoIterator<Item = &'static str>) -> Row<'static> {
    Row::new(cells).style(bold().fg(Color::Cyan))
}

/// Draws one snapshot; `interval` is the refresh period.
pub fn draw(frame: &mut Frame, snapshot: &Snapshot, interval: Duration) {
    let down: Vec<_> = snapshot
        .nodes
        .iter()
        .filter_map(|n| match &n.state {
            NodeState::Down(error) => Some((n.node.as_str(), error.as_str())),
            _ => None,
        })
        .collect();
    let total_row = usize::from(snapshot.nodes.len() > 1);
    let requests_height = 3 + snapshot.nodes.len() + total_row + down.len();
    let members: usize =
        live(snapshot).map(|(_, l)| l.stats.origins.iter().map(|o| o.members.len()).sum::<usize>()).sum();
    let [summary, requests, origins, top] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(requests_height as u16),
        Constraint::Length(3 + members.max(1) as u16),
        Constraint::Min(4),
    ])
    .areas(frame.area());
    frame.render_widget(summary_line(snapshot, interval), summary);
    draw_requests(frame, requests, snapshot, &down);
    draw_origins(frame, origins, snapshot);
    let [by_requests, by_fetches] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    draw_top(frame, by_requests, snapshot, "requests", |l| l.top.as_ref().map(|t| &t.requests[..]));
    draw_top(frame, by_fetches, snapshot, "origin fetches", |l| l.top.as_ref().map(|t| &t.fetches[..]));
}

/// The nodes that answered.
fn live(snapshot: &Snapshot) -> impl Iterator<Item = (&NodeView, &Live)> {
    snapshot.nodes.iter().filter_map(|n| match &n.state {
        NodeState::Up(live) => Some((n, &**live)),
        _ => None,
    })
}

fn percent(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

fn rate(value: f64) -> String {
    if value < 100.0 { format!("{value:.1}") } else { format!("{value:.0}") }
}

fn summary_line(snapshot: &Snapshot, interval: Duration) -> Paragraph<'static> {
    let (mut hits, mut lookups, mut total, mut all_hits, mut all_lookups) = (0, 0, 0.0, 0, 0);
    let mut rated = false;
    for (_, live) in live(snapshot) {
        if let Some(rates) = &live.rates {
            (hits, lookups, total, rated) = (hits + rates.hits, lookups + rates.lookups, total + rates.total, true);
        }
        let count = |r: &str| live.stats.responses.get(r).copied().unwrap_or(0);
        let node_hits: u64 = HIT_RESULTS.iter().map(|r| count(r)).sum();
        (all_hits, all_lookups) = (all_hits + node_hits, all_lookups + node_hits + count("MISS"));
    }
    let ratio = |h: u64, l: u64| (l > 0).then(|| h as f64 / l as f64);
    let up = live(snapshot).count();
    let nodes = snapshot.nodes.len();
    let node_word = if nodes == 1 { "node" } else { "nodes" };
    let mut spans = vec![
        Span::styled(" holdfast top ", bold().fg(Color::Black).bg(Color::Cyan)),
        Span::raw(format!("  {up}/{nodes} {node_word} up  every {}  ", humantime::format_duration(interval))),
        Span::styled("hit ratio ", bold()),
        Span::styled(percent(ratio(hits, lookups)), bold().fg(Color::Green)),
        Span::raw(format!(" last interval, {} since start  ", percent(ratio(all_hits, all_lookups)))),
    ];
    if rated {
        spans.push(Span::styled(format!("{} req/s", rate(total)), bold()));
    }
    spans.push(Span::styled("   q: quit", Style::new().fg(Color::DarkGray)));
    Paragraph::new(Line::from(spans))
}

fn draw_requests(frame: &mut Frame, area: Rect, snapshot: &Snapshot, down: &[(&str, &str)]) {
    let block = Block::bordered().title(" Requests per second, by cache result ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [table_area, errors_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(down.len() as u16)]).areas(inner);
    let mut rows = Vec::new();
    let mut sums = [0.0; RESULTS.len()];
    let (mut sum_total, mut sum_hits, mut sum_lookups) = (0.0, 0, 0);
    for node in &snapshot.nodes {
        let (state, style) = match &node.state {
            NodeState::Waiting => ("…", Style::new().fg(Color::DarkGray)),
            NodeState::Down(_) => ("DOWN", bold().fg(Color::Red)),
            NodeState::Up(live) if !live.stats.ready => ("DRAIN", bold().fg(Color::Yellow)),
            NodeState::Up(_) => ("up", Style::new().fg(Color::Green)),
        };
        let mut cells = vec![Span::raw(node.node.clone()), Span::styled(state, style)];
        match &node.state {
            NodeState::Up(live) => match &live.rates {
                Some(rates) => {
                    cells.push(Span::styled(rate(rates.total), bold()));
                    for (i, result) in RESULTS.iter().enumerate() {
                        let value = rates.by_result.get(*result).copied().unwrap_or(0.0);
                        sums[i] += value;
                        cells.push(Span::raw(rate(value)));
                    }
                    cells.push(Span::raw(percent(rates.hit_ratio())));
                    (sum_total, sum_hits, sum_lookups) =
                        (sum_total + rates.total, sum_hits + rates.hits, sum_lookups + rates.lookups);
                }
                None => cells.extend((0..RESULTS.len() + 2).map(|_| Span::raw("…"))),
            },
            _ => cells.extend((0..RESULTS.len() + 2).map(|_| Span::raw("-"))),
        }
        let uptime = match &node.state {
            NodeState::Up(live) => humantime::format_duration(Duration::from_secs(live.stats.uptime_s)).to_string(),
            _ => String::new(),
        };
        cells.push(Span::raw(uptime.split(' ').next().unwrap_or("").to_owned()));
        rows.push(Row::new(cells));
    }
    if snapshot.nodes.len() > 1 {
        let mut cells = vec![Span::styled("all nodes", bold()), Span::raw(""), Span::styled(rate(sum_total), bold())];
        cells.extend(sums.iter().map(|v| Span::raw(rate(*v))));
        let ratio = (sum_lookups > 0).then(|| sum_hits as f64 / sum_lookups as f64);
        cells.push(Span::raw(percent(ratio)));
        rows.push(Row::new(cells).style(bold()));
    }
    let mut widths = vec![Constraint::Min(24), Constraint::Length(5), Constraint::Length(8)];
    widths.extend([Constraint::Length(8); RESULTS.len()]);
    widths.extend([Constraint::Length(9), Constraint::Length(8)]);
    let mut titles = vec!["NODE", "STATE", "TOTAL"];
    titles.extend(HEADERS);
    titles.extend(["HIT RATIO", "UP"]);
    frame.render_widget(Table::new(rows, widths).header(header(titles)), table_area);
    let errors: Vec<Line> = down
        .iter()
        .map(|(node, error)| {
            Line::from(vec![
                Span::styled(format!("{node} down: "), bold().fg(Color::Red)),
                Span::raw(error.to_string()),
            ])
        })
        .collect();
    frame.render_widget(Paragraph::new(errors), errors_area);
}

fn draw_origins(frame: &mut Frame, area: Rect, snapshot: &Snapshot) {
    let several = snapshot.nodes.len() > 1;
    let mut rows = Vec::new();
    for (node, live) in live(snapshot) {
        for group in &live.stats.origins {
            for member in &group.members {
                let colour = match member.breaker.as_str() {
                    "closed" => Color::Green,
                    "open" => Color::Red,
                    _ => Color::Yellow,
                };
                let mut cells = Vec::new();
                if several {
                    cells.push(Span::raw(node.node.clone()));
                }
                let role = if member.fallback { " (fallback)" } else { "" };
                cells.extend([
                    Span::raw(group.site.clone()),
                    Span::raw(format!("{}{role}", member.origin)),
                    Span::styled(member.breaker.clone(), bold().fg(colour)),
                    Span::raw(member.consecutive_failures.to_string()),
                    Span::raw(group.ejections.to_string()),
                ]);
                rows.push(Row::new(cells));
            }
        }
    }
    let mut widths = Vec::new();
    let mut titles = Vec::new();
    if several {
        widths.push(Constraint::Min(24));
        titles.push("NODE");
    }
    widths.extend([
        Constraint::Length(12),
        Constraint::Min(28),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(10),
    ]);
    titles.extend(["SITE", "ORIGIN", "BREAKER", "FAILURES", "EJECTIONS"]);
    let table = Table::new(rows, widths).header(header(titles)).block(Block::bordered().title(" Origins "));
    frame.render_widget(table, area);
}

fn draw_top(
    frame: &mut Frame,
    area: Rect,
    snapshot: &Snapshot,
    what: &str,
    list: impl Fn(&Live) -> Option<&[holdfast_control::TopUrl]>,
) {
    let mut sums: HashMap<&str, u64> = HashMap::new();
    let mut every = 1;
    let mut reported = false;
    for (_, live) in live(snapshot) {
        if let (Some(entries), Some(top)) = (list(live), &live.top) {
            reported = true;
            every = every.max(top.sample_every);
            for entry in entries {
                *sums.entry(&entry.url).or_default() += entry.count;
            }
        }
    }
    let mut sorted: Vec<_> = sums.into_iter().collect();
    sorted.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let seconds = f64::from(snapshot.top_seconds.max(1));
    let rows = sorted.into_iter().map(|(url, count)| Row::new([rate(count as f64 / seconds), url.to_owned()]));
    let sampled = if every > 1 { format!(", sampled 1 in {every}") } else { String::new() };
    let title = if reported {
        format!(" Top URLs by {what} (last {}s{sampled}) ", snapshot.top_seconds)
    } else {
        format!(" Top URLs by {what}: not reported ")
    };
    let table = Table::new(rows, [Constraint::Length(8), Constraint::Min(10)])
        .header(header(["PER S", "URL"]))
        .block(Block::bordered().title(title));
    frame.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use holdfast_control::{MemberStats, MemoryStats, OriginGroupStats, Stats, TopAnswer, TopUrl};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::top::poll::Rates;

    fn stats(breaker: &str) -> Stats {
        Stats {
            coalesced_waiters: 0,
            disk: None,
            fills_in_flight: 0,
            hit_ratio: 0.5,
            memory: MemoryStats::default(),
            origins: vec![OriginGroupStats {
                ejections: 1,
                failures: 0,
                holds: 0,
                members: vec![MemberStats {
                    breaker: breaker.into(),
                    consecutive_failures: 3,
                    fallback: false,
                    origin: "http://origin.test:80".into(),
                    ..MemberStats::default()
                }],
                requests: 0,
                retries: 0,
                site: "default".into(),
                ..OriginGroupStats::default()
            }],
            ready: true,
            responses: [("HIT".to_owned(), 90), ("MISS".to_owned(), 10)].into(),
            uptime_s: 3700,
            ..Stats::default()
        }
    }

    fn url(url: &str, count: u64) -> TopUrl {
        TopUrl { count, error: 0, url: url.into() }
    }

    fn screen(snapshot: &Snapshot) -> String {
        let mut terminal = Terminal::new(TestBackend::new(140, 30)).unwrap();
        terminal.draw(|frame| draw(frame, snapshot, Duration::from_secs(2))).unwrap();
        let buffer = terminal.backend().buffer();
        let area = buffer.area;
        (0..area.height).map(|y| (0..area.width).map(|x| buffer[(x, y)].symbol()).collect::<String>() + "\n").collect()
    }

    #[test]
    fn two_nodes_one_down_with_rates_breakers_and_merged_top_urls() {
        let rates = Rates {
            by_result: [("HIT".to_owned(), 45.0), ("MISS".to_owned(), 5.0)].into_iter().collect::<BTreeMap<_, _>>(),
            total: 50.0,
            hits: 90,
            lookups: 100,
        };
        let top = TopAnswer {
            fetches: vec![url("cdn.test/new.js", 4)],
            requests: vec![url("cdn.test/app.js", 60), url("cdn.test/logo.svg", 30)],
            sample_every: 1,
            seconds: 2,
        };
        let up = Live { stats: stats("open"), rates: Some(rates), top: Some(top) };
        let snapshot = Snapshot {
            nodes: vec![
                NodeView { node: "http://127.0.0.1:9901".into(), state: NodeState::Up(Box::new(up)) },
                NodeView {
                    node: "http://127.0.0.1:9902".into(),
                    state: NodeState::Down("unreachable: refused".into()),
                },
            ],
            top_seconds: 2,
        };
        let text = screen(&snapshot);
        for expected in [
            "1/2 nodes up",
            "hit ratio 90.0% last interval, 90.0% since start",
            "50.0 req/s",
            "http://127.0.0.1:9902 down: unreachable: refused",
            "DOWN",
            "http://origin.test:80",
            "open",
            "Top URLs by requests (last 2s)",
            "30.0     cdn.test/app.js",
            "2.0      cdn.test/new.js",
            "1h",
        ] {
            assert!(text.contains(expected), "{expected:?} not on the screen:\n{text}");
        }
    }

    #[test]
    fn before_the_first_answer_nothing_is_invented() {
        let snapshot = Snapshot {
            nodes: vec![NodeView { node: "http://127.0.0.1:9901".into(), state: NodeState::Waiting }],
            top_seconds: 1,
        };
        let text = screen(&snapshot);
        assert!(text.contains("0/1 node up"), "{text}");
        assert!(text.contains("hit ratio -"), "{text}");
        assert!(text.contains("Top URLs by requests: not reported"), "{text}");
    }
}
