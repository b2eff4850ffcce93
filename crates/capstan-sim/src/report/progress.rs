//! A progress bar for long simulations, shown only on a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar counting `total_steps` simulated steps on stderr; hidden (drawing nothing)
/// when stderr is not a terminal, so logs and pipes stay clean.
pub fn progress_bar(total_steps: u64) -> ProgressBar {
    bar_for(total_steps, std::io::stderr().is_terminal())
}

fn bar_for(total_steps: u64, on_terminal: bool) -> ProgressBar {
    if !on_terminal {
        return ProgressBar::with_draw_target(Some(total_steps), ProgressDrawTarget::hidden());
    }
    let bar = ProgressBar::new(total_steps);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>12} [{bar:40}] {percent:>3}% {pos}/{len} steps, {eta} left",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::bar_for;

    #[test]
    fn hidden_off_a_terminal_but_still_counts() {
        let bar = bar_for(100, false);
        assert!(bar.is_hidden());
        bar.inc(30);
        assert_eq!(bar.position(), 30);
        assert_eq!(bar.length(), Some(100));
    }
}
