//! Evaluating replacement expressions for a job: natively for GNU
//! parallel's seven default strings, in one long-lived Perl interpreter
//! for everything else, once per (input, expression) per job as GNU
//! parallel caches them.

use std::collections::HashMap;

use super::perl::{Perl, PerlJob};
use super::rpl::Native;
use crate::input::Arg;

/// An expression's index in [`Exprs`].
pub(crate) type ExprId = usize;

/// One distinct expression (the code after its position prefix).
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    /// The Perl code.
    pub(crate) code: String,
    /// How fanout computes it without Perl, if it can.
    pub(crate) native: Option<Native>,
}

/// Every expression of a run's templates, each once.
#[derive(Debug, Default, Clone)]
pub(crate) struct Exprs {
    list: Vec<Expr>,
}

impl Exprs {
    /// The id of `code`, added if new.
    pub(crate) fn intern(&mut self, code: &str) -> ExprId {
        if let Some(id) = self.list.iter().position(|e| e.code == code) {
            return id;
        }
        self.list.push(Expr {
            code: code.to_owned(),
            native: Native::of(code),
        });
        self.list.len() - 1
    }

    /// The expression `id`.
    pub(crate) fn get(&self, id: ExprId) -> &Expr {
        &self.list[id]
    }

    /// Whether any expression needs Perl.
    pub(crate) fn needs_perl(&self) -> bool {
        self.list.iter().any(|e| e.native.is_none())
    }

    /// The Perl code of every expression, by id (native ones too: Perl
    /// compiles them all, fanout only asks for the others).
    pub(crate) fn codes(&self) -> Vec<&str> {
        self.list.iter().map(|e| e.code.as_str()).collect()
    }
}

/// GNU parallel's `--trim`: white space removed from inputs before any
/// expression sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Trim {
    /// `n`: nothing.
    #[default]
    None,
    /// `l`: leading.
    Left,
    /// `r`: trailing.
    Right,
    /// `lr` or `rl`: both.
    Both,
}

impl Trim {
    /// `--trim n|l|r|lr|rl`.
    pub(crate) fn parse(spec: &str) -> anyhow::Result<Trim> {
        Ok(match spec {
            "n" => Trim::None,
            "l" => Trim::Left,
            "r" => Trim::Right,
            "lr" | "rl" => Trim::Both,
            _ => anyhow::bail!("bad --trim {spec:?}: give n, l, r, lr or rl"),
        })
    }

    /// Applies the trim with Perl's `\s` (ASCII white space, vertical tab
    /// included).
    pub(crate) fn apply(self, value: &str) -> &str {
        let ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C');
        match self {
            Trim::None => value,
            Trim::Left => value.trim_start_matches(ws),
            Trim::Right => value.trim_end_matches(ws),
            Trim::Both => value.trim_matches(ws),
        }
    }

    /// The letter(s) GNU parallel uses.
    pub(crate) fn letters(self) -> &'static str {
        match self {
            Trim::None => "n",
            Trim::Left => "l",
            Trim::Right => "r",
            Trim::Both => "lr",
        }
    }
}

/// One computed replacement.
#[derive(Debug, Clone)]
pub(crate) struct Evaluated {
    /// The value.
    pub(crate) text: String,
    /// Whether the expression called `uq()`: inserted without quoting.
    pub(crate) unquoted: bool,
}

/// The values a job's templates need, computed before rendering.
#[derive(Debug, Default)]
pub(crate) struct JobValues {
    values: HashMap<(usize, ExprId), Evaluated>,
    /// Whether an expression called `skip()`.
    pub(crate) skip: bool,
}

impl JobValues {
    /// The value of `expr` on argument `arg` (0-based in the job's flat
    /// list); empty if it was not asked for.
    pub(crate) fn get(&self, arg: usize, expr: ExprId) -> Option<&Evaluated> {
        self.values.get(&(arg, expr))
    }
}

/// Computes expression values, starting Perl the first time one needs it.
#[derive(Debug)]
pub(crate) struct Evaluator {
    exprs: Exprs,
    trim: Trim,
    perl: Option<Perl>,
    /// For `total_jobs()` and `{##}`.
    pub(crate) total_jobs: u64,
    /// For `{0%}`.
    pub(crate) max_jobs: usize,
}

impl Evaluator {
    /// An evaluator for `exprs`; Perl starts (and compiles them all) now if
    /// any needs it, so a Perl error stops the run before it starts.
    ///
    /// # Errors
    /// Perl cannot be started or rejects an expression.
    pub(crate) fn new(
        exprs: Exprs,
        trim: Trim,
        total_jobs: u64,
        max_jobs: usize,
    ) -> anyhow::Result<Evaluator> {
        let perl = if exprs.needs_perl() {
            Some(Perl::start(&exprs.codes(), trim, max_jobs)?)
        } else {
            None
        };
        Ok(Evaluator {
            exprs,
            trim,
            perl,
            total_jobs,
            max_jobs,
        })
    }

    /// Computes `needs` (pairs of argument index and expression) for a job
    /// with these arguments, each pair once, in the order given.
    ///
    /// # Errors
    /// Perl failed while evaluating an expression.
    #[cfg(test)]
    pub(crate) fn evaluate(
        &mut self,
        args: &[Arg],
        seq: u64,
        slot: usize,
        needs: &[(usize, ExprId)],
    ) -> anyhow::Result<JobValues> {
        let mut out = JobValues::default();
        self.evaluate_into(&mut out, args, seq, slot, needs)?;
        Ok(out)
    }

    /// Like [`Evaluator::evaluate`], adding to `out` the pairs it lacks.
    /// A `slot` of 0 means the job has none yet: `{%}` is left for later.
    ///
    /// # Errors
    /// Perl failed while evaluating an expression.
    pub(crate) fn evaluate_into(
        &mut self,
        out: &mut JobValues,
        args: &[Arg],
        seq: u64,
        slot: usize,
        needs: &[(usize, ExprId)],
    ) -> anyhow::Result<()> {
        let mut for_perl = Vec::new();
        for &(arg, expr) in needs {
            if out.values.contains_key(&(arg, expr)) || for_perl.contains(&(arg, expr)) {
                continue;
            }
            let Some(value) = args.get(arg) else { continue };
            match self.exprs.get(expr).native {
                Some(Native::Slot) if slot == 0 => {}
                Some(native) => {
                    let text = match value {
                        Some(v) => native.apply(self.trim.apply(v), seq, slot),
                        None => NO_ARG.to_owned(),
                    };
                    out.values.insert(
                        (arg, expr),
                        Evaluated {
                            text,
                            unquoted: false,
                        },
                    );
                }
                None => for_perl.push((arg, expr)),
            }
        }
        if !for_perl.is_empty() {
            let perl = self
                .perl
                .as_mut()
                .ok_or_else(|| anyhow::anyhow!("internal error: Perl was not started"))?;
            let answer = perl.evaluate(&PerlJob {
                seq,
                slot,
                total_jobs: self.total_jobs,
                args,
                asks: &for_perl,
            })?;
            out.skip |= answer.skip;
            for (key, value) in for_perl.into_iter().zip(answer.values) {
                out.values.insert(key, value);
            }
        }
        Ok(())
    }

    /// Evaluates `--filter` expressions (already rendered) in Perl; `true`
    /// when every one is true.
    ///
    /// # Errors
    /// Perl cannot be started or fails.
    pub(crate) fn filter(&mut self, code: &[String]) -> anyhow::Result<bool> {
        if self.perl.is_none() {
            self.perl = Some(Perl::start(&self.exprs.codes(), self.trim, self.max_jobs)?);
        }
        let perl = self
            .perl
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("internal error: Perl was not started"))?;
        perl.filter(code)
    }
}

/// What GNU parallel substitutes for an argument `-n 0` leaves out; a token
/// that is exactly this (quoted or not) disappears from the command.
pub(crate) const NO_ARG: &str = "\0noarg";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_uses_perls_white_space() {
        assert_eq!(Trim::Both.apply(" \x0Ba b\t\n"), "a b");
        assert_eq!(Trim::Left.apply("  a "), "a ");
        assert_eq!(Trim::Right.apply("  a "), "  a");
        assert!(Trim::parse("x").is_err());
    }

    #[test]
    fn native_expressions_need_no_perl() {
        let mut exprs = Exprs::default();
        let whole = exprs.intern("");
        let base = exprs.intern("s:.*/::");
        assert_eq!(exprs.intern(""), whole);
        assert!(!exprs.needs_perl());
        let mut eval = Evaluator::new(exprs, Trim::None, 1, 1).unwrap();
        let args: Vec<Arg> = vec![Some("a/b.c".into())];
        let v = eval
            .evaluate(&args, 1, 1, &[(0, whole), (0, base), (3, base)])
            .unwrap();
        assert_eq!(v.get(0, whole).unwrap().text, "a/b.c");
        assert_eq!(v.get(0, base).unwrap().text, "b.c");
        assert!(v.get(3, base).is_none());
    }
}
