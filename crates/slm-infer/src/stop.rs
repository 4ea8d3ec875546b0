//! Stop strings in streamed text.
//!
//! Generated text is released to the caller only once it can no longer be the beginning of
//! a stop string, so a stop string never reaches the output, even when it arrives split
//! across several tokens.

/// Holds back text that may start a stop string.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    pending: String,
}

/// What the matcher decided about newly added text.
#[derive(Debug, PartialEq, Eq)]
pub enum StopCheck {
    /// Text safe to print now (may be empty).
    Continue(String),
    /// A stop string was found: print this text (what preceded it) and stop.
    Stop(String),
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            pending: String::new(),
        }
    }

    /// Adds a newly decoded `piece`, hands what is safe to print to `on_text` and appends it
    /// to `text`; true when a stop string was reached (the generation loops' one step).
    pub fn emit(
        &mut self,
        piece: &str,
        on_text: &mut dyn FnMut(&str) -> slm_core::Result<()>,
        text: &mut String,
    ) -> slm_core::Result<bool> {
        let (out, stop) = match self.push(piece) {
            StopCheck::Continue(s) => (s, false),
            StopCheck::Stop(s) => (s, true),
        };
        on_text(&out)?;
        text.push_str(&out);
        Ok(stop)
    }

    pub fn push(&mut self, text: &str) -> StopCheck {
        self.pending.push_str(text);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return StopCheck::Stop(out);
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let mut hold = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.pending.ends_with(&s[..i]) {
                    hold = hold.max(i);
                }
            }
        }
        let cut = self.pending.len() - hold;
        let out = self.pending[..cut].to_string();
        self.pending.drain(..cut);
        StopCheck::Continue(out)
    }

    /// Releases whatever was held back (end of generation without a stop string).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_split_across_pieces_never_printed() {
        let mut m = StopMatcher::new(vec!["THE END".into()]);
        assert_eq!(m.push("and so TH"), StopCheck::Continue("and so ".into()));
        assert_eq!(m.push("E EN"), StopCheck::Continue(String::new()));
        assert_eq!(m.push("D!"), StopCheck::Stop(String::new()));
    }

    #[test]
    fn false_start_is_released() {
        let mut m = StopMatcher::new(vec!["\n\n".into()]);
        assert_eq!(m.push("a\n"), StopCheck::Continue("a".into()));
        assert_eq!(m.push("b"), StopCheck::Continue("\nb".into()));
        assert_eq!(m.push("c\n"), StopCheck::Continue("c".into()));
        assert_eq!(m.finish(), "\n");
    }

    #[test]
    fn no_stops_passes_through() {
        let mut m = StopMatcher::new(vec![]);
        assert_eq!(m.push("héllo"), StopCheck::Continue("héllo".into()));
    }
}
