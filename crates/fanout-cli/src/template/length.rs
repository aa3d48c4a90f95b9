//! GNU parallel's estimate of a command line's length (`CommandLine::len`),
//! which decides how many arguments `-m`/`-X` put in a job and when a
//! command line is too long (fanout uses the same limit, 63664 bytes on
//! Linux: see [`usable_line_length`]).

use super::eval::{ExprId, JobValues};
use super::parse::{Piece, Words};
use crate::quote::shell_quote;

/// The parts of a command template that GNU parallel's estimate uses.
#[derive(Debug, Clone, Default)]
pub(crate) struct LengthModel {
    /// Length of the text outside the words that hold a replacement.
    noncontext: usize,
    /// Length of the text of the words that hold a replacement.
    context: usize,
    /// How many words hold a replacement.
    context_groups: usize,
    /// Number of command words.
    words: usize,
    /// Each distinct slot text: how often it occurs, its column (for
    /// positional ones) and its expression.
    slots: Vec<SlotCount>,
    /// Whether replaced values count quoted.
    quoted: bool,
    /// `-q`: the estimate is tripled.
    quote_all: bool,
    /// Context replace.
    context_replace: bool,
}

#[derive(Debug, Clone)]
struct SlotCount {
    text: String,
    count: usize,
    column: Option<i64>,
    expr: ExprId,
}

impl LengthModel {
    /// The model of a command template's words.
    pub(crate) fn new(
        words: &Words,
        expr_of: &mut dyn FnMut(&str) -> ExprId,
        quoted: bool,
        quote_all: bool,
        context_replace: bool,
    ) -> LengthModel {
        let mut model = LengthModel {
            words: words.len(),
            quoted,
            quote_all,
            context_replace,
            ..LengthModel::default()
        };
        for word in words {
            // A replacement becomes NUL; each run of non-white-space around
            // one is a context group.
            let mut flat: Vec<Option<char>> = Vec::new();
            for piece in word {
                match piece {
                    Piece::Text(t) => flat.extend(t.chars().map(Some)),
                    Piece::Slot(s) => {
                        model.add_slot(s, 1, expr_of);
                        flat.push(None);
                    }
                }
            }
            let is_ws = |c: &Option<char>| c.is_some_and(crate::input::is_perl_space);
            let mut i = 0;
            while i < flat.len() {
                if is_ws(&flat[i]) {
                    model.noncontext += 1;
                    i += 1;
                    continue;
                }
                let start = i;
                while i < flat.len() && !is_ws(&flat[i]) {
                    i += 1;
                }
                let run = &flat[start..i];
                let bytes: usize = run.iter().flatten().map(|c| c.len_utf8()).sum();
                if run.iter().any(Option::is_none) {
                    model.context += bytes;
                    model.context_groups += 1;
                } else {
                    model.noncontext += bytes;
                }
            }
        }
        model
    }

    /// Counts the slots of another template (`--tagstring`, `--results`)
    /// once each, as GNU parallel does.
    pub(crate) fn add_other(&mut self, words: &Words, expr_of: &mut dyn FnMut(&str) -> ExprId) {
        for piece in words.iter().flatten() {
            if let Piece::Slot(s) = piece {
                if !self.slots.iter().any(|c| &c.text == s) {
                    self.add_slot(s, 0, expr_of);
                    if let Some(last) = self.slots.last_mut() {
                        last.count = last.count.max(1);
                    }
                }
            }
        }
    }

    fn add_slot(&mut self, text: &str, n: usize, expr_of: &mut dyn FnMut(&str) -> ExprId) {
        if let Some(c) = self.slots.iter_mut().find(|c| c.text == text) {
            c.count += n;
            return;
        }
        // GNU parallel: /^(-?\d+)(?:\D.*|)$/ marks a positional slot.
        let neg = text.starts_with('-');
        let digits = text[usize::from(neg)..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let column = (digits > 0)
            .then(|| text[..usize::from(neg) + digits].parse::<i64>().ok())
            .flatten();
        let code_start = if digits > 0 {
            usize::from(neg) + digits
        } else {
            0
        };
        let expr = expr_of(super::rpl::strip_position(&text[code_start..]));
        self.slots.push(SlotCount {
            text: text.to_owned(),
            count: n,
            column,
            expr,
        });
    }

    /// The (argument, expression) pairs the estimate needs for a record
    /// whose arguments start at `first` in the job and number `width`.
    pub(crate) fn needs(&self, first: usize, width: usize, out: &mut Vec<(usize, ExprId)>) {
        for slot in &self.slots {
            match slot.column {
                Some(c) => {
                    if let Some(col) = column(c, width) {
                        out.push((first + col, slot.expr));
                    }
                }
                None => out.extend((0..width).map(|i| (first + i, slot.expr))),
            }
        }
    }

    /// GNU parallel's estimate for a job whose records have these numbers
    /// of arguments, with its values computed.
    pub(crate) fn estimate(&self, widths: &[usize], values: &JobValues) -> usize {
        let mut tally = Tally::default();
        let mut first = 0;
        for &width in widths {
            self.add(&mut tally, first, width, values);
            first += width;
        }
        self.estimate_tally(&tally)
    }

    /// Adds a record (its arguments start at `first` and number `width`)
    /// to a running tally.
    pub(crate) fn add(&self, tally: &mut Tally, first: usize, width: usize, values: &JobValues) {
        if tally.totals.len() < self.slots.len() {
            tally.totals.resize(self.slots.len(), 0);
        }
        if tally.records == 0 {
            tally.first_width = width;
        }
        tally.records += 1;
        for (slot, total) in self.slots.iter().zip(&mut tally.totals) {
            *total += self.record_len(slot, first, width, values);
        }
    }

    /// Takes the last record added back out of a tally.
    pub(crate) fn remove(&self, tally: &mut Tally, first: usize, width: usize, values: &JobValues) {
        tally.records = tally.records.saturating_sub(1);
        for (slot, total) in self.slots.iter().zip(&mut tally.totals) {
            *total = total.saturating_sub(self.record_len(slot, first, width, values));
        }
    }

    fn record_len(
        &self,
        slot: &SlotCount,
        first: usize,
        width: usize,
        values: &JobValues,
    ) -> usize {
        let value_len = |arg: usize| -> usize {
            values.get(arg, slot.expr).map_or(0, |v| {
                if self.quoted && !v.unquoted {
                    shell_quote(&v.text).len()
                } else {
                    v.text.len()
                }
            })
        };
        match slot.column {
            Some(c) => column(c, width).map_or(0, |col| value_len(first + col)),
            None => (0..width).map(|i| value_len(first + i)).sum(),
        }
    }

    /// GNU parallel's estimate for the records of a tally.
    pub(crate) fn estimate_tally(&self, tally: &Tally) -> usize {
        // GNU parallel counts every record as wide as the first.
        let recargs = tally.records * tally.first_width;
        let mut len = self.noncontext + self.words.saturating_sub(1);
        for (slot, total) in self
            .slots
            .iter()
            .zip(tally.totals.iter().chain(std::iter::repeat(&0)))
        {
            if self.context_replace {
                len += total * slot.count;
            } else {
                len += (recargs.saturating_sub(1) + total) * slot.count;
            }
        }
        if self.context_replace {
            len += recargs * self.context + recargs.saturating_sub(1) * self.context_groups;
        } else {
            len += self.context;
        }
        if self.quote_all {
            len *= 3;
        }
        len
    }
}

/// The running sums of a job's replaced values, record by record.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tally {
    totals: Vec<usize>,
    records: usize,
    first_width: usize,
}

/// The column a positional slot names within a record of `width`
/// arguments (Perl's indexing, negative from the end).
fn column(c: i64, width: usize) -> Option<usize> {
    let width = width as i64;
    let i = if c < 0 { width + c } else { c - 1 };
    (0..width).contains(&i).then_some(i as usize)
}

/// GNU parallel's usable command-line length: it finds the longest
/// `echo cc…c` that `/bin/sh -c` accepts (Linux limits one argument to
/// 128 KiB) with a search that stops within 1%, then keeps half of it minus
/// 3000 bytes for its own wrapping. The search is deterministic, so it is
/// replayed here with the kernel's limit instead of running `echo`.
pub(crate) fn usable_line_length() -> usize {
    // `sh -c "ECHO ccc… && true"`: the argument is `len + 8` bytes plus its
    // NUL, and must fit in MAX_ARG_STRLEN (32 pages).
    const MAX_ARG_STRLEN: usize = 32 * 4096;
    let accepts = |len: usize| len + 8 < MAX_ARG_STRLEN;
    let mut len = 324;
    while accepts(len * 16) {
        len *= 16;
    }
    let (mut lower, mut upper) = (len, len * 16);
    loop {
        if lower == upper || lower + 1 == upper || lower as f64 / upper as f64 > 0.99 {
            break;
        }
        let middle = (upper - lower) / 2 + lower;
        if accepts(middle) {
            lower = middle;
        } else {
            upper = middle;
        }
    }
    (lower - 3000) / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usable_length_is_gnus() {
        // `parallel --show-limits`: "Maximal usable size of command: 63664".
        assert_eq!(usable_line_length(), 63664);
    }
}
