//! `holdfast top`: a live terminal view of one node or a fleet, refreshed
//! every interval from the admin API (`/stats` and `/top`).
//!
//! The nodes are asked on a runtime thread; the main thread owns the
//! terminal, draws each new snapshot and reads keys, so `q` answers at once
//! even while a node takes its time. No mouse capture and the 16 ANSI
//! colours only: it works over SSH. The terminal is restored on `q`,
//! Ctrl-C (a key in raw mode, or SIGINT/SIGTERM from elsewhere) and on a
//! panic (ratatui's hook).

mod poll;
mod view;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::watch;

use crate::config::DEFAULT_ADMIN_LISTEN;

/// `holdfast top` arguments.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// A node's admin URL (repeatable); without it and without
    /// --nodes-file, the local node's default admin address.
    #[arg(long, value_name = "URL")]
    pub node: Vec<String>,
    /// TOML file with `shields = [...]` and `edges = [...]` admin URLs (as
    /// for purge): every node is shown.
    #[arg(long, value_name = "FILE")]
    pub nodes_file: Option<PathBuf>,
    /// File with the admin bearer token (else HOLDFAST_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Refresh period; also the span of the top URLs (whole seconds, 1 to 10).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

/// The shortest refresh period: faster would only measure noise.
const MIN_INTERVAL: Duration = Duration::from_millis(200);
/// How often keys are looked for between snapshots.
const KEY_POLL: Duration = Duration::from_millis(50);

/// Runs the view until `q` or Ctrl-C.
pub fn run(args: TopArgs, token_from_env: Option<&str>) -> anyhow::Result<()> {
    let token = crate::cli::token(args.token_file.as_deref(), token_from_env)?;
    let mut nodes = args.node;
    if let Some(path) = &args.nodes_file {
        let file = crate::cli::nodes_file(path)?;
        nodes.extend(file.shields);
        nodes.extend(file.edges);
    }
    if nodes.is_empty() {
        nodes.push(format!("http://{DEFAULT_ADMIN_LISTEN}"));
    }
    let interval = args.interval.max(MIN_INTERVAL);
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("holdfast top draws on a terminal; for a script, use `holdfast stats --json` or GET /top");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut poller = poll::Poller::new(nodes, token, interval);
    let (sender, mut snapshots) = watch::channel(poller.waiting());
    let quit = Arc::new(AtomicBool::new(false));
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if sender.send(poller.poll().await).is_err() {
                return;
            }
        }
    });
    let stop = Arc::clone(&quit);
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            return;
        };
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        stop.store(true, Ordering::SeqCst);
    });

    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let drawn = (|| -> anyhow::Result<()> {
        let mut redraw = true;
        while !quit.load(Ordering::SeqCst) {
            if snapshots.has_changed().unwrap_or(false) {
                snapshots.borrow_and_update();
                redraw = true;
            }
            if redraw {
                let snapshot = snapshots.borrow();
                terminal.draw(|frame| view::draw(frame, &snapshot, interval))?;
                redraw = false;
            }
            if event::poll(KEY_POLL)? {
                match event::read()? {
                    Event::Key(key) if key.kind != KeyEventKind::Release && is_quit(key.code, key.modifiers) => break,
                    Event::Resize(..) => redraw = true,
                    _ => {}
                }
            }
        }
        Ok(())
    })();
    let _ = terminal.show_cursor();
    let restored = ratatui::try_restore().context("cannot restore the terminal");
    runtime.shutdown_background();
    drawn.and(restored)
}

/// `q`, `Q`, Esc, or Ctrl-C (which raw mode delivers as a key).
fn is_quit(code: KeyCode, modifiers: KeyModifiers) -> bool {
    match code {
        KeyCode::Char('c') => modifiers.contains(KeyModifiers::CONTROL),
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quit_keys() {
        assert!(is_quit(KeyCode::Char('q'), KeyModifiers::NONE));
        assert!(is_quit(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(is_quit(KeyCode::Esc, KeyModifiers::NONE));
        assert!(!is_quit(KeyCode::Char('c'), KeyModifiers::NONE));
        assert!(!is_quit(KeyCode::Char('x'), KeyModifiers::NONE));
    }
}
