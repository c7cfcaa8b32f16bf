//! The evaluator: selectors, subqueries, aggregations and binary operators over all steps.
//!
//! Every expression is evaluated once for all steps of the query: a selector reads its series
//! for the whole range in one storage call, a range function slides two cursors over each
//! series, an aggregation adds series into per-group, per-step state. Values are whole
//! vectors of series (`Val::Vector`), except on the path dashboards take most:
//! `sum|avg|count|group|min|max|stddev|stdvar [by|without (...)] (range_fn(selector[r]))`
//! is streamed ([`Storage::select_each`]): each series is read, put through the function and
//! added to its group before the next one is read, so the query holds one series and the
//! groups' state (bounded by `ACC_CELLS`), not the selection. Both paths add in the same
//! order and charge the same budget, so they answer and fail alike.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, Offset, SubqueryExpr,
    VectorMatchCardinality, VectorSelector,
};

use crate::functions;
use crate::value::{Labels, METRIC_NAME, Sample, Series, Value, format_float, is_stale};

/// Why a query failed, by Prometheus's error types.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The query or a parameter is malformed (HTTP 400).
    #[error("{0}")]
    BadData(String),
    /// The query is well-formed but cannot be evaluated (HTTP 422).
    #[error("{0}")]
    Execution(String),
    /// The query ran past its deadline (HTTP 503).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// The storage failed (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// Prometheus's `errorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::BadData(_) => "bad_data",
            Error::Execution(_) => "execution",
            Error::Timeout(_) => "timeout",
            Error::Internal(_) => "internal",
        }
    }

    pub(crate) fn exec(msg: impl Into<String>) -> Error {
        Error::Execution(msg.into())
    }
}

pub(crate) type Result<T> = std::result::Result<T, Error>;

/// The error of a query over its budget of samples and points (Prometheus's words).
pub const TOO_MANY_SAMPLES: &str =
    "query processing would load too many samples into memory in query execution";

/// Receives a selected series and the query's remaining budget (see [`Storage::select_each`]).
pub type EachSeries<'f> = dyn FnMut(Series, &mut usize) -> Result<()> + 'f;

/// Where series come from.
pub trait Storage {
    /// Every series matching all `matchers` that has samples in `[from, to]`, with those
    /// samples in time order (staleness markers included). Reading a sample takes one from
    /// `budget`; past it, fail (the evaluator maps that to its sample limit).
    fn select(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
        budget: &mut usize,
    ) -> Result<Vec<Series>>;

    /// [`Self::select`], handing the series to `f` one at a time in the same order, so a
    /// caller that reduces them need not hold them all. `f` gets the budget too (what is left
    /// of it after the reads so far), so what it charges counts against the same total. An
    /// error from `f` ends the selection.
    fn select_each(
        &self,
        matchers: &[Matcher],
        from: i64,
        to: i64,
        budget: &mut usize,
        f: &mut EachSeries<'_>,
    ) -> Result<()> {
        for s in self.select(matchers, from, to, budget)? {
            f(s, budget)?;
        }
        Ok(())
    }
}

/// Evaluation settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// How far back an instant selector looks for a sample.
    pub lookback_ms: i64,
    /// Samples a query may read from the storage.
    pub max_samples: usize,
    /// When the query is abandoned.
    pub deadline: Option<Instant>,
    /// A subquery's resolution when it names none.
    pub subquery_step_ms: i64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lookback_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            deadline: None,
            subquery_step_ms: 60 * 1000,
        }
    }
}

/// Longest query accepted.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// Parses a query (syntax and types), as a `bad_data` error when it is invalid.
pub fn parse(query: &str) -> Result<Expr> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(Error::BadData(format!(
            "the query is {} bytes long; at most {MAX_QUERY_BYTES} are accepted",
            query.len()
        )));
    }
    static EXTRA: std::sync::Once = std::sync::Once::new();
    EXTRA.call_once(|| {
        // Prometheus 2.x's name for double exponential smoothing, which the parser (following
        // Prometheus 3) no longer knows.
        use promql_parser::parser::function::{Function, register_extra_functions};
        let holt_winters = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Only fails for a name the parser already has, which this is not.
        let _ = register_extra_functions(vec![holt_winters]);
    });
    // The parser panics on some out-of-range numbers (`foo offset 1e20`): an invalid query.
    match std::panic::catch_unwind(|| promql_parser::parser::parse(query)) {
        Ok(parsed) => parsed.map_err(Error::BadData),
        Err(_) => Err(Error::BadData(
            "invalid query: a number or duration is out of range".into(),
        )),
    }
}

/// Evaluates `expr` at `t_ms`.
pub fn instant_query(
    storage: &dyn Storage,
    expr: &Expr,
    t_ms: i64,
    opts: &Options,
) -> Result<Value> {
    let budget = Cell::new(opts.max_samples);
    let t_ms = clamp_time(t_ms);
    let ev = Ev::new(storage, opts, &budget, t_ms, t_ms, 1);
    Ok(match ev.eval(expr)? {
        Val::Scalar(v) => Value::Scalar(t_ms, v[0]),
        Val::Str(s) => Value::String(t_ms, s),
        Val::Vector(series) => Value::Vector(
            series
                .into_iter()
                .filter_map(|s| {
                    s.samples.first().map(|&(_, v)| Sample {
                        labels: s.labels,
                        t: t_ms,
                        v,
                    })
                })
                .collect(),
        ),
        Val::Matrix(mut series) => {
            series.retain(|s| !s.samples.is_empty());
            series.sort_by(|a, b| a.labels.cmp(&b.labels));
            Value::Matrix(series)
        }
    })
}

/// Evaluates `expr` at every step from `start_ms` to `end_ms`: series sorted by labels.
pub fn range_query(
    storage: &dyn Storage,
    expr: &Expr,
    start_ms: i64,
    end_ms: i64,
    step_ms: i64,
    opts: &Options,
) -> Result<Vec<Series>> {
    match expr.value_type() {
        ValueType::Vector | ValueType::Scalar => {}
        other => {
            return Err(Error::BadData(format!(
                "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                match other {
                    ValueType::Matrix => "range vector",
                    _ => "string",
                }
            )));
        }
    }
    if step_ms <= 0 {
        return Err(Error::BadData("zero or negative step".into()));
    }
    let budget = Cell::new(opts.max_samples);
    let (start_ms, end_ms) = (clamp_time(start_ms), clamp_time(end_ms));
    let ev = Ev::new(
        storage,
        opts,
        &budget,
        start_ms,
        end_ms,
        step_ms.min(MAX_TIME_MS),
    );
    ev.charge(ev.steps())?;
    let mut series = match ev.eval(expr)? {
        Val::Scalar(v) => vec![Series {
            labels: Labels::empty(),
            samples: (0..ev.steps()).map(|i| (ev.ts(i), v[i])).collect(),
        }],
        Val::Vector(s) => s,
        Val::Str(_) | Val::Matrix(_) => unreachable!("checked above"),
    };
    series.retain(|s| !s.samples.is_empty());
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(series)
}

/// An expression's value over all steps.
pub(crate) enum Val {
    /// An instant vector: points at step timestamps.
    Vector(Vec<Series>),
    /// One value per step.
    Scalar(Vec<f64>),
    Str(String),
    /// A range vector (only as an instant query's result).
    Matrix(Vec<Series>),
}

pub(crate) struct Ev<'a> {
    storage: &'a dyn Storage,
    opts: &'a Options,
    budget: &'a Cell<usize>,
    pub(crate) start: i64,
    end: i64,
    pub(crate) step: i64,
    /// The outermost query's start and end, for `@ start()` and `@ end()`.
    q_start: i64,
    q_end: i64,
}

/// Collects per-step output samples into series keyed by labels, refusing two samples of one
/// label set at one step.
pub(crate) struct Out {
    index: HashMap<Labels, usize, foldhash::fast::RandomState>,
    series: Vec<Series>,
}

impl Out {
    pub(crate) fn new() -> Out {
        Out {
            index: HashMap::default(),
            series: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, labels: Labels, t: i64, v: f64) -> Result<()> {
        let i = match self.index.get(&labels) {
            Some(i) => *i,
            None => {
                self.series.push(Series {
                    labels: labels.clone(),
                    samples: Vec::new(),
                });
                self.index.insert(labels, self.series.len() - 1);
                self.series.len() - 1
            }
        };
        let samples = &mut self.series[i].samples;
        match samples.last() {
            Some(&(last, _)) if last < t => samples.push((t, v)),
            None => samples.push((t, v)),
            _ => match samples.binary_search_by_key(&t, |p| p.0) {
                Ok(_) => {
                    return Err(Error::exec(
                        "vector cannot contain metrics with the same labelset",
                    ));
                }
                Err(pos) => samples.insert(pos, (t, v)),
            },
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Vec<Series> {
        self.series
    }
}

/// The largest time or duration (ms) the evaluator works with: every time and duration is
/// clamped to `±MAX_TIME_MS`, so a sum or difference of two never overflows.
pub const MAX_TIME_MS: i64 = 1 << 60;

/// Milliseconds of a duration.
pub(crate) fn ms(d: &std::time::Duration) -> i64 {
    d.as_millis().min(MAX_TIME_MS as u128) as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => ms(d),
        Some(Offset::Neg(d)) => -ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => ms(&d),
        Err(e) => -ms(&e.duration()),
    }
}

fn clamp_time(t: i64) -> i64 {
    t.clamp(-MAX_TIME_MS, MAX_TIME_MS)
}

/// The matchers of a selector, its metric name included.
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
    if !vs.matchers.or_matchers.is_empty() {
        return Err(Error::BadData(
            "`or` between label matchers is not supported".into(),
        ));
    }
    let mut out = vs.matchers.matchers.clone();
    if let Some(name) = &vs.name
        && !out
            .iter()
            .any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal && &m.value == name)
    {
        out.push(Matcher::new(MatchOp::Equal, METRIC_NAME, name));
    }
    Ok(out)
}

/// The matchers of a query that is a plain selector (`match[]` of the series look-ups).
pub fn selector_matchers_of(expr: &Expr) -> Result<Vec<Matcher>> {
    match expr {
        Expr::VectorSelector(vs) => selector_matchers(vs),
        _ => Err(Error::BadData(format!(
            "invalid parameter \"match[]\": {expr} is not a series selector"
        ))),
    }
}

/// A Prometheus duration (`1h30m`, `15s`).
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    promql_parser::util::parse_duration(s)
}

/// The per-step vectors of a vector value: for each step, `(series index, value)`.
pub(crate) fn by_step(ev: &Ev<'_>, series: &[Series]) -> Vec<Vec<(u32, f64)>> {
    let mut steps: Vec<Vec<(u32, f64)>> = vec![Vec::new(); ev.steps()];
    for (i, s) in series.iter().enumerate() {
        for &(t, v) in &s.samples {
            steps[ev.step_of(t)].push((i as u32, v));
        }
    }
    steps
}

pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

impl<'a> Ev<'a> {
    fn new(
        storage: &'a dyn Storage,
        opts: &'a Options,
        budget: &'a Cell<usize>,
        start: i64,
        end: i64,
        step: i64,
    ) -> Ev<'a> {
        Ev {
            storage,
            opts,
            budget,
            start,
            end,
            step,
            q_start: start,
            q_end: end,
        }
    }

    pub(crate) fn steps(&self) -> usize {
        if self.end < self.start {
            0
        } else {
            ((self.end as i128 - self.start as i128) / self.step as i128) as usize + 1
        }
    }

    /// Takes `n` from the query's budget of samples and points (what a query may hold).
    pub(crate) fn charge(&self, n: usize) -> Result<()> {
        match self.budget.get().checked_sub(n) {
            Some(left) => {
                self.budget.set(left);
                Ok(())
            }
            None => Err(Error::exec(TOO_MANY_SAMPLES)),
        }
    }

    pub(crate) fn ts(&self, i: usize) -> i64 {
        self.start + i as i64 * self.step
    }

    pub(crate) fn step_of(&self, t: i64) -> usize {
        ((t - self.start) / self.step) as usize
    }

    pub(crate) fn check_deadline(&self) -> Result<()> {
        match self.opts.deadline {
            Some(d) if Instant::now() >= d => Err(Error::Timeout("expression evaluation")),
            _ => Ok(()),
        }
    }

    /// The reference time of step `ts` for a selector with these modifiers.
    fn ref_time(&self, at: &Option<AtModifier>, offset: &Option<Offset>, ts: i64) -> i64 {
        let base = match at {
            None => ts,
            Some(AtModifier::Start) => self.q_start,
            Some(AtModifier::End) => self.q_end,
            Some(AtModifier::At(t)) => system_time_ms(t),
        };
        clamp_time(base.saturating_sub(offset_ms(offset)))
    }

    /// The reference time of every step (computed once per selector, not per series).
    pub(crate) fn refs(&self, at: &Option<AtModifier>, offset: &Option<Offset>) -> Vec<i64> {
        (0..self.steps())
            .map(|i| self.ref_time(at, offset, self.ts(i)))
            .collect()
    }

    /// The smallest and largest reference time over the steps.
    fn ref_span(&self, at: &Option<AtModifier>, offset: &Option<Offset>) -> (i64, i64) {
        (
            self.ref_time(at, offset, self.start),
            self.ref_time(at, offset, self.ts(self.steps().saturating_sub(1))),
        )
    }

    fn select(&self, matchers: &[Matcher], from: i64, to: i64) -> Result<Vec<Series>> {
        self.check_deadline()?;
        let mut budget = self.budget.get();
        let out = self.storage.select(matchers, from, to, &mut budget);
        self.budget.set(budget);
        out
    }

    pub(crate) fn eval(&self, e: &Expr) -> Result<Val> {
        match e {
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.steps()])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.vector_selector(vs, |_, v| v)?)),
            Expr::MatrixSelector(m) => {
                let range = ms(&m.range);
                let raw = self.raw_range_with(&m.vs, range)?;
                Ok(Val::Matrix(self.windows_at_end(
                    raw,
                    &m.vs.at,
                    &m.vs.offset,
                    range,
                )))
            }
            Expr::Subquery(sq) => {
                let inner = self.subquery(sq)?;
                Ok(Val::Matrix(self.windows_at_end(
                    inner,
                    &sq.at,
                    &sq.offset,
                    ms(&sq.range),
                )))
            }
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(series) => {
                    let mut out = Out::new();
                    for s in series {
                        let labels = s.labels.without_name();
                        for (t, v) in s.samples {
                            out.push(labels.clone(), t, -v)?;
                        }
                    }
                    Ok(Val::Vector(out.finish()))
                }
                _ => Err(Error::BadData(
                    "unary minus needs a scalar or a vector".into(),
                )),
            },
            Expr::Binary(b) => self.binary(b),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Call(c) => self.call(c),
            Expr::Extension(_) => Err(Error::BadData("unsupported expression".into())),
        }
    }

    pub(crate) fn eval_vector(&self, e: &Expr) -> Result<Vec<Series>> {
        match self.eval(e)? {
            Val::Vector(v) => Ok(v),
            _ => Err(Error::BadData(format!("expected an instant vector: {e}"))),
        }
    }

    pub(crate) fn eval_scalar(&self, e: &Expr) -> Result<Vec<f64>> {
        match self.eval(e)? {
            Val::Scalar(v) => Ok(v),
            _ => Err(Error::BadData(format!("expected a scalar: {e}"))),
        }
    }

    pub(crate) fn eval_string(&self, e: &Expr) -> Result<String> {
        match self.eval(e)? {
            Val::Str(s) => Ok(s),
            _ => Err(Error::BadData(format!("expected a string: {e}"))),
        }
    }

    /// An instant selector: at each step, the newest sample in the lookback window of its
    /// reference time, unless that is a staleness marker. `value(sample_t, v)` gives the
    /// output value (`timestamp()` asks for the sample's time).
    pub(crate) fn vector_selector(
        &self,
        vs: &VectorSelector,
        value: impl Fn(i64, f64) -> f64,
    ) -> Result<Vec<Series>> {
        let matchers = selector_matchers(vs)?;
        let (lo, hi) = self.ref_span(&vs.at, &vs.offset);
        let series = self.select(&matchers, lo - self.opts.lookback_ms, hi)?;
        let n = self.steps();
        let mut out = Vec::with_capacity(series.len());
        for s in series {
            self.check_deadline()?;
            let mut points = Vec::new();
            let mut j = 0;
            for i in 0..n {
                let ts = self.ts(i);
                let r = self.ref_time(&vs.at, &vs.offset, ts);
                while j < s.samples.len() && s.samples[j].0 <= r {
                    j += 1;
                }
                if j > 0 {
                    let (t, v) = s.samples[j - 1];
                    if t >= r - self.opts.lookback_ms && !is_stale(v) {
                        points.push((ts, value(t, v)));
                    }
                }
                if i % 4096 == 4095 {
                    self.check_deadline()?;
                }
            }
            self.charge(points.len())?;
            if !points.is_empty() {
                out.push(Series {
                    labels: s.labels,
                    samples: points,
                });
            }
        }
        Ok(out)
    }

    /// [`Self::raw_range_with`], one series at a time.
    pub(crate) fn raw_range_each(
        &self,
        vs: &VectorSelector,
        range: i64,
        f: &mut dyn FnMut(Series) -> Result<()>,
    ) -> Result<()> {
        let matchers = selector_matchers(vs)?;
        let (lo, hi) = self.ref_span(&vs.at, &vs.offset);
        self.check_deadline()?;
        // One budget: the storage charges what it reads to `budget`, `f` charges what it holds
        // to the evaluator's cell; each hands the remainder to the other.
        let mut budget = self.budget.get();
        let out = self.storage.select_each(
            &matchers,
            lo - range,
            hi,
            &mut budget,
            &mut |mut s: Series, left: &mut usize| {
                s.samples.retain(|(_, v)| !is_stale(*v));
                self.budget.set(*left);
                let r = f(s);
                *left = self.budget.get();
                r
            },
        );
        self.budget.set(budget);
        out
    }

    /// The raw samples a range selector needs over all steps, staleness markers removed.
    fn raw_range_with(&self, vs: &VectorSelector, range: i64) -> Result<Vec<Series>> {
        let matchers = selector_matchers(vs)?;
        let (lo, hi) = self.ref_span(&vs.at, &vs.offset);
        let mut series = self.select(&matchers, lo - range, hi)?;
        for s in &mut series {
            s.samples.retain(|(_, v)| !is_stale(*v));
        }
        Ok(series)
    }

    /// A range vector's input series: a selector's samples or a subquery's points.
    pub(crate) fn range_input(&self, arg: &Expr) -> Result<RangeInput> {
        match unwrap_parens(arg) {
            Expr::MatrixSelector(m) => {
                let range = ms(&m.range);
                Ok(RangeInput {
                    series: self.raw_range_with(&m.vs, range)?,
                    range,
                    at: m.vs.at.clone(),
                    refs: self.refs(&m.vs.at, &m.vs.offset),
                })
            }
            Expr::Subquery(sq) => Ok(RangeInput {
                series: self.subquery(sq)?,
                range: ms(&sq.range),
                at: sq.at.clone(),
                refs: self.refs(&sq.at, &sq.offset),
            }),
            other => Err(Error::BadData(format!("expected a range vector: {other}"))),
        }
    }

    /// For each step, calls `f(step index, step time, reference time, window)` with the
    /// series' samples in `[r - range, r]`.
    pub(crate) fn windows(
        &self,
        refs: &[i64],
        range: i64,
        samples: &[(i64, f64)],
        mut f: impl FnMut(usize, i64, i64, &[(i64, f64)]),
    ) {
        let (mut lo, mut hi) = (0, 0);
        for (i, &r) in refs.iter().enumerate() {
            let ts = self.ts(i);
            while hi < samples.len() && samples[hi].0 <= r {
                hi += 1;
            }
            while lo < hi && samples[lo].0 < r - range {
                lo += 1;
            }
            if lo < hi {
                f(i, ts, r, &samples[lo..hi]);
            }
        }
    }

    /// A range vector as an instant query's result: the window at the (only) step.
    fn windows_at_end(
        &self,
        series: Vec<Series>,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
        range: i64,
    ) -> Vec<Series> {
        let r = self.ref_time(at, offset, self.end);
        series
            .into_iter()
            .map(|s| Series {
                labels: s.labels,
                samples: s
                    .samples
                    .into_iter()
                    .filter(|(t, _)| *t >= r - range && *t <= r)
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect()
    }

    /// A subquery's inner expression at its own steps: multiples of its resolution from the
    /// first one at or after the earliest window's start, to the latest reference time.
    fn subquery(&self, sq: &SubqueryExpr) -> Result<Vec<Series>> {
        let step = match &sq.step {
            Some(d) if ms(d) > 0 => ms(d),
            _ => self.opts.subquery_step_ms,
        };
        let range = ms(&sq.range);
        let (lo, hi) = self.ref_span(&sq.at, &sq.offset);
        let first = lo - range;
        let mut start = first.div_euclid(step) * step;
        if start < first {
            start += step;
        }
        let inner = Ev {
            storage: self.storage,
            opts: self.opts,
            budget: self.budget,
            start,
            end: hi,
            step,
            q_start: self.q_start,
            q_end: self.q_end,
        };
        // Every step of the inner query is at least one point held.
        self.charge(inner.steps())?;
        match inner.eval(&sq.expr)? {
            Val::Vector(v) => Ok(v),
            Val::Scalar(v) => Ok(vec![Series {
                labels: Labels::empty(),
                samples: (0..inner.steps()).map(|i| (inner.ts(i), v[i])).collect(),
            }]),
            _ => Err(Error::BadData(
                "subquery is only allowed on instant vector".into(),
            )),
        }
    }

    fn call(&self, c: &Call) -> Result<Val> {
        functions::call(self, c)
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Val> {
        let op = a.op.to_string();
        if let Some(v) = self.accumulate_streamed(&op, a)? {
            return Ok(v);
        }
        let input = self.eval_vector(&a.expr)?;
        let n = self.steps();
        // The parameter, per step.
        let mut k_param: Vec<f64> = Vec::new();
        let mut value_label = String::new();
        match op.as_str() {
            "topk" | "bottomk" | "quantile" => {
                let p = a
                    .param
                    .as_ref()
                    .ok_or_else(|| Error::BadData(format!("{op} needs a parameter")))?;
                k_param = self.eval_scalar(p)?;
            }
            "count_values" => {
                let p = a
                    .param
                    .as_ref()
                    .ok_or_else(|| Error::BadData("count_values needs a label".into()))?;
                value_label = self.eval_string(p)?;
                if !valid_label_name(&value_label) {
                    return Err(Error::exec(format!("invalid label name {value_label:?}")));
                }
            }
            "sum" | "avg" | "count" | "min" | "max" | "stddev" | "stdvar" | "group" => {}
            other => {
                return Err(Error::BadData(format!("unsupported aggregation {other}")));
            }
        }
        let (by, names) = grouping(a);
        let group_labels = |l: &Labels| group_key(by, &names, l);
        let mut out = Out::new();
        if op == "count_values" {
            let mut names_cv = names.clone();
            if by {
                names_cv.push(value_label.clone());
            }
            let steps = by_step(self, &input);
            for (i, vec) in steps.iter().enumerate() {
                self.check_deadline()?;
                let mut counts: Vec<(Labels, f64)> = Vec::new();
                let mut idx: HashMap<Labels, usize> = HashMap::new();
                for &(si, v) in vec {
                    let l = input[si as usize]
                        .labels
                        .with(&value_label, &format_float(v));
                    let g = if by {
                        l.filtered(|k| names_cv.iter().any(|n| n == k))
                    } else {
                        l.filtered(|k| k != METRIC_NAME && !names.iter().any(|n| n == k))
                    };
                    match idx.get(&g) {
                        Some(&j) => counts[j].1 += 1.0,
                        None => {
                            idx.insert(g.clone(), counts.len());
                            counts.push((g, 1.0));
                        }
                    }
                }
                for (l, c) in counts {
                    out.push(l, self.ts(i), c)?;
                }
            }
            return Ok(Val::Vector(out.finish()));
        }
        // Each input series' group, computed once.
        let mut group_of: Vec<u32> = Vec::with_capacity(input.len());
        let mut groups: Vec<Labels> = Vec::new();
        {
            let mut index: HashMap<Labels, u32> = HashMap::new();
            for s in &input {
                let g = group_labels(&s.labels);
                let id = *index.entry(g.clone()).or_insert_with(|| {
                    groups.push(g);
                    (groups.len() - 1) as u32
                });
                group_of.push(id);
            }
        }
        if matches!(
            op.as_str(),
            "sum" | "avg" | "count" | "group" | "min" | "max" | "stddev" | "stdvar"
        ) {
            return self.accumulate(&op, &input, &group_of, groups);
        }
        let steps = by_step(self, &input);
        for (i, vec) in steps.iter().enumerate().take(n) {
            self.check_deadline()?;
            let ts = self.ts(i);
            if op == "topk" || op == "bottomk" {
                let kf = k_param[i];
                if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&kf) {
                    return Err(Error::exec(format!(
                        "Scalar value {} overflows int64",
                        format_float(kf)
                    )));
                }
                let k = kf as i64;
                if k < 1 {
                    continue;
                }
                let mut per_group: HashMap<u32, Vec<(u32, f64)>> = HashMap::new();
                for &(si, v) in vec {
                    per_group
                        .entry(group_of[si as usize])
                        .or_default()
                        .push((si, v));
                }
                let top = op == "topk";
                for (_, mut members) in per_group {
                    // Largest (topk) or smallest (bottomk) first; NaN ranks last for both.
                    members.sort_by(|a, b| match (a.1.is_nan(), b.1.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if top => b.1.total_cmp(&a.1),
                        _ => a.1.total_cmp(&b.1),
                    });
                    for (si, v) in members
                        .into_iter()
                        .take(usize::try_from(k).unwrap_or(usize::MAX))
                    {
                        out.push(input[si as usize].labels.clone(), ts, v)?;
                    }
                }
                continue;
            }
            // quantile
            let mut values: Vec<Vec<f64>> = vec![Vec::new(); groups.len()];
            for &(si, v) in vec {
                values[group_of[si as usize] as usize].push(v);
            }
            for (g, vs) in values.iter_mut().enumerate() {
                if !vs.is_empty() {
                    out.push(groups[g].clone(), ts, functions::quantile(k_param[i], vs))?;
                }
            }
        }
        Ok(Val::Vector(out.finish()))
    }

    /// [`Self::accumulate`] over a range function of a range selector (`sum by (path)
    /// (rate(x[5m]))`, the shape of most dashboard panels) without holding its input: each
    /// series is read, put through the function and added to its group's steps before the
    /// next is read, so a query over 5,000 series holds one series' samples and points at a
    /// time instead of both for all of them. Same order of additions, so the same sums.
    /// `None` when the aggregation or its argument has another shape, or when the groups'
    /// state would pass [`ACC_CELLS`] (then the selection is read again the general way).
    fn accumulate_streamed(&self, op: &str, a: &AggregateExpr) -> Result<Option<Val>> {
        if !matches!(
            op,
            "sum" | "avg" | "count" | "group" | "min" | "max" | "stddev" | "stdvar"
        ) {
            return Ok(None);
        }
        let Expr::Call(call) = unwrap_parens(&a.expr) else {
            return Ok(None);
        };
        let agg = AggOp::of(op);
        let (by, names) = grouping(a);
        let n = self.steps();
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut groups: Vec<(Labels, Vec<Acc>)> = Vec::new();
        let mut too_many_groups = false;
        let budget = self.budget.get();
        let streamed = functions::stream_range_call(self, call, &mut |labels, points| {
            let key = group_key(by, &names, labels);
            let g = match index.get(&key) {
                Some(&g) => g,
                None => {
                    if (groups.len() + 1).saturating_mul(n) > ACC_CELLS {
                        too_many_groups = true;
                        return Err(Error::Internal("too many groups to stream".into()));
                    }
                    index.insert(key.clone(), groups.len());
                    groups.push((key, vec![Acc::default(); n]));
                    groups.len() - 1
                }
            };
            let acc = &mut groups[g].1;
            // Points sit at step times, in order: walk the steps rather than divide.
            let (mut k, mut step_ts) = (0, self.start);
            for &(t, v) in points {
                while step_ts < t && k + 1 < n {
                    k += 1;
                    step_ts += self.step;
                }
                acc[k].add(agg, v);
            }
            Ok(())
        });
        match streamed {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(_) if too_many_groups => {
                self.budget.set(budget);
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
        Ok(Some(Val::Vector(
            groups
                .into_iter()
                .filter_map(|(labels, acc)| {
                    let samples: Vec<(i64, f64)> = acc
                        .iter()
                        .enumerate()
                        .filter(|(_, a)| a.count > 0)
                        .map(|(k, a)| (self.ts(k), a.result(agg)))
                        .collect();
                    (!samples.is_empty()).then_some(Series { labels, samples })
                })
                .collect(),
        )))
    }

    /// `sum avg count group min max stddev stdvar`, series by series: each group's running
    /// state per step, filled in the order of the input series (the order Prometheus adds a
    /// step's samples in, so sums round the same way), over blocks of steps so that the state
    /// stays within [`ACC_CELLS`] cells however many groups there are.
    fn accumulate(
        &self,
        op: &str,
        input: &[Series],
        group_of: &[u32],
        groups: Vec<Labels>,
    ) -> Result<Val> {
        let op = AggOp::of(op);
        let n = self.steps();
        let block = (ACC_CELLS / groups.len().max(1)).clamp(1, n.max(1));
        let mut points: Vec<Vec<(i64, f64)>> = vec![Vec::new(); groups.len()];
        let mut cursor = vec![0usize; input.len()];
        let mut acc: Vec<Acc> = Vec::new();
        let mut first = 0;
        while first < n {
            self.check_deadline()?;
            let len = block.min(n - first);
            let end_ts = self.ts(first + len - 1);
            acc.clear();
            acc.resize(groups.len() * len, Acc::default());
            for (si, s) in input.iter().enumerate() {
                let g = group_of[si] as usize * len;
                let c = &mut cursor[si];
                // Points sit at step times, in order: walk the steps rather than divide.
                let mut k = 0;
                let mut step_ts = self.ts(first);
                while let Some(&(t, v)) = s.samples.get(*c) {
                    if t > end_ts {
                        break;
                    }
                    while step_ts < t && k + 1 < len {
                        k += 1;
                        step_ts += self.step;
                    }
                    acc[g + k].add(op, v);
                    *c += 1;
                }
            }
            for (g, p) in points.iter_mut().enumerate() {
                for (k, a) in acc[g * len..(g + 1) * len].iter().enumerate() {
                    if a.count > 0 {
                        p.push((self.ts(first + k), a.result(op)));
                    }
                }
            }
            first += len;
        }
        // Groups are distinct label sets: no collision check needed.
        Ok(Val::Vector(
            groups
                .into_iter()
                .zip(points)
                .filter(|(_, p)| !p.is_empty())
                .map(|(labels, samples)| Series { labels, samples })
                .collect(),
        ))
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Val> {
        let op = b.op.to_string();
        let return_bool = b.return_bool();
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        let comparison = matches!(op.as_str(), "==" | "!=" | ">" | "<" | ">=" | "<=");
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(a, b)| {
                        let (v, keep) = elem_binop(&op, *a, *b);
                        if comparison {
                            if keep { 1.0 } else { 0.0 }
                        } else {
                            v
                        }
                    })
                    .collect(),
            )),
            (Val::Vector(v), Val::Scalar(s)) => self.vector_scalar(&op, v, &s, false, return_bool),
            (Val::Scalar(s), Val::Vector(v)) => self.vector_scalar(&op, v, &s, true, return_bool),
            (Val::Vector(l), Val::Vector(r)) => match op.as_str() {
                "and" | "or" | "unless" => self.set_op(&op, b, l, r),
                _ => self.vector_vector(&op, b, l, r, return_bool),
            },
            _ => Err(Error::BadData(
                "binary expression must contain only scalar and instant vector types".into(),
            )),
        }
    }

    fn vector_scalar(
        &self,
        op: &str,
        v: Vec<Series>,
        s: &[f64],
        swap: bool,
        return_bool: bool,
    ) -> Result<Val> {
        let comparison = is_comparison(op);
        let drop_name = drops_name(op) || return_bool;
        let mut out = Out::new();
        for series in v {
            let labels = if drop_name {
                series.labels.without_name()
            } else {
                series.labels.clone()
            };
            for (t, x) in series.samples {
                let sc = s[self.step_of(t)];
                let (l, r) = if swap { (sc, x) } else { (x, sc) };
                let (mut value, mut keep) = elem_binop(op, l, r);
                if comparison && swap {
                    value = r;
                }
                if return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                    keep = true;
                }
                if keep {
                    out.push(labels.clone(), t, value)?;
                }
            }
        }
        Ok(Val::Vector(out.finish()))
    }

    fn matching(b: &BinaryExpr) -> (bool, Vec<String>, VectorMatchCardinality) {
        match &b.modifier {
            None => (false, Vec::new(), VectorMatchCardinality::OneToOne),
            Some(m) => {
                let (on, names) = match &m.matching {
                    None => (false, Vec::new()),
                    Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
                    Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
                };
                (on, names, m.card.clone())
            }
        }
    }

    fn set_op(&self, op: &str, b: &BinaryExpr, l: Vec<Series>, r: Vec<Series>) -> Result<Val> {
        let (on, names, _) = Self::matching(b);
        let sig = |x: &Labels| signature(x, on, &names);
        let lsig: Vec<Labels> = l.iter().map(|s| sig(&s.labels)).collect();
        let rsig: Vec<Labels> = r.iter().map(|s| sig(&s.labels)).collect();
        let lsteps = by_step(self, &l);
        let rsteps = by_step(self, &r);
        let mut out = Out::new();
        for i in 0..self.steps() {
            self.check_deadline()?;
            let ts = self.ts(i);
            match op {
                "and" | "unless" => {
                    let right: std::collections::HashSet<&Labels> = rsteps[i]
                        .iter()
                        .map(|(si, _)| &rsig[*si as usize])
                        .collect();
                    for &(si, v) in &lsteps[i] {
                        let found = right.contains(&lsig[si as usize]);
                        if found == (op == "and") {
                            out.push(l[si as usize].labels.clone(), ts, v)?;
                        }
                    }
                }
                _ => {
                    let left: std::collections::HashSet<&Labels> = lsteps[i]
                        .iter()
                        .map(|(si, _)| &lsig[*si as usize])
                        .collect();
                    for &(si, v) in &lsteps[i] {
                        out.push(l[si as usize].labels.clone(), ts, v)?;
                    }
                    for &(si, v) in &rsteps[i] {
                        if !left.contains(&rsig[si as usize]) {
                            out.push(r[si as usize].labels.clone(), ts, v)?;
                        }
                    }
                }
            }
        }
        Ok(Val::Vector(out.finish()))
    }

    fn vector_vector(
        &self,
        op: &str,
        b: &BinaryExpr,
        l: Vec<Series>,
        r: Vec<Series>,
        return_bool: bool,
    ) -> Result<Val> {
        let (on, names, card) = Self::matching(b);
        let include: Vec<String> = card.labels().map(|l| l.labels.clone()).unwrap_or_default();
        let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
        let one_to_one = matches!(card, VectorMatchCardinality::OneToOne);
        // The "many" side is `lhs` below; for group_right the sides swap.
        let (lhs, rhs) = if one_to_many { (r, l) } else { (l, r) };
        let sig = |x: &Labels| signature(x, on, &names);
        let lsig: Vec<Labels> = lhs.iter().map(|s| sig(&s.labels)).collect();
        let rsig: Vec<Labels> = rhs.iter().map(|s| sig(&s.labels)).collect();
        let lsteps = by_step(self, &lhs);
        let rsteps = by_step(self, &rhs);
        let drop_name = drops_name(op) || return_bool;
        let mut result_labels: HashMap<(u32, u32), Labels> = HashMap::new();
        let mut out = Out::new();
        for i in 0..self.steps() {
            self.check_deadline()?;
            if lsteps[i].is_empty() || rsteps[i].is_empty() {
                continue;
            }
            let ts = self.ts(i);
            let mut right: HashMap<&Labels, (u32, f64)> = HashMap::new();
            for &(si, v) in &rsteps[i] {
                let s = &rsig[si as usize];
                if let Some((other, _)) = right.insert(s, (si, v)) {
                    let side = if one_to_many { "left" } else { "right" };
                    return Err(Error::exec(format!(
                        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        s.to_prom_string(),
                        rhs[si as usize].labels.to_prom_string(),
                        rhs[other as usize].labels.to_prom_string(),
                    )));
                }
            }
            let mut matched: HashMap<&Labels, std::collections::HashSet<Labels>> = HashMap::new();
            for &(li, lv) in &lsteps[i] {
                let s = &lsig[li as usize];
                let Some(&(ri, rv)) = right.get(s) else {
                    continue;
                };
                let (a, c) = if one_to_many { (rv, lv) } else { (lv, rv) };
                let (mut value, keep) = elem_binop(op, a, c);
                if return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                } else if !keep {
                    continue;
                }
                let labels = result_labels
                    .entry((li, ri))
                    .or_insert_with(|| {
                        let mut m = lhs[li as usize].labels.clone();
                        if drop_name {
                            m = m.without_name();
                        }
                        if one_to_one {
                            m = if on {
                                m.filtered(|k| names.iter().any(|n| n == k))
                            } else {
                                m.filtered(|k| !names.iter().any(|n| n == k))
                            };
                        }
                        for name in &include {
                            m = m.with(name, rhs[ri as usize].labels.get(name));
                        }
                        m
                    })
                    .clone();
                let seen = matched.entry(s).or_default();
                if one_to_one {
                    if !seen.is_empty() {
                        return Err(Error::exec(
                            "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                        ));
                    }
                    seen.insert(Labels::empty());
                } else if !seen.insert(labels.clone()) {
                    return Err(Error::exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
                out.push(labels, ts, value)?;
            }
        }
        Ok(Val::Vector(out.finish()))
    }
}

/// A range vector argument: series, window length, `@`, and each step's reference time.
pub(crate) struct RangeInput {
    pub(crate) series: Vec<Series>,
    pub(crate) range: i64,
    pub(crate) at: Option<AtModifier>,
    /// Each step's reference time (`@` and offset applied).
    pub(crate) refs: Vec<i64>,
}

/// An aggregation's grouping: `by` (true) or `without` (false) these label names.
fn grouping(a: &AggregateExpr) -> (bool, Vec<String>) {
    match &a.modifier {
        None => (true, Vec::new()),
        Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
    }
}

/// The labels of the group a series with labels `l` belongs to.
fn group_key(by: bool, names: &[String], l: &Labels) -> Labels {
    if by {
        l.filtered(|k| names.iter().any(|n| n == k))
    } else {
        l.filtered(|k| k != METRIC_NAME && !names.iter().any(|n| n == k))
    }
}

/// Arithmetic drops `__name__`; comparisons, `atan2` and set operators keep it.
fn drops_name(op: &str) -> bool {
    matches!(op, "+" | "-" | "*" | "/" | "%" | "^")
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// The labels two series are matched on: `on(names)` keeps only those, otherwise all but
/// `names` and `__name__`.
fn signature(l: &Labels, on: bool, names: &[String]) -> Labels {
    if on {
        l.filtered(|k| names.iter().any(|n| n == k))
    } else {
        l.filtered(|k| k != METRIC_NAME && !names.iter().any(|n| n == k))
    }
}

/// `(value, keep)` of `l op r`: comparisons keep `l` when true.
fn elem_binop(op: &str, l: f64, r: f64) -> (f64, bool) {
    match op {
        "+" => (l + r, true),
        "-" => (l - r, true),
        "*" => (l * r, true),
        "/" => (l / r, true),
        "%" => (l % r, true),
        "^" => (l.powf(r), true),
        "atan2" => (l.atan2(r), true),
        "==" => (l, l == r),
        "!=" => (l, l != r),
        ">" => (l, l > r),
        "<" => (l, l < r),
        ">=" => (l, l >= r),
        "<=" => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

pub(crate) fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Most accumulator cells (groups × steps) an aggregation holds at once (~32 MB).
const ACC_CELLS: usize = 1 << 20;

/// The aggregations [`Ev::accumulate`] computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AggOp {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    Stddev,
    Stdvar,
}

impl AggOp {
    fn of(op: &str) -> AggOp {
        match op {
            "sum" => AggOp::Sum,
            "avg" => AggOp::Avg,
            "count" => AggOp::Count,
            "group" => AggOp::Group,
            "min" => AggOp::Min,
            "max" => AggOp::Max,
            "stddev" => AggOp::Stddev,
            _ => AggOp::Stdvar,
        }
    }
}

/// An aggregation's running state for one group at one step (Prometheus's formulas).
#[derive(Clone, Copy, Default)]
struct Acc {
    count: u64,
    sum: f64,
    mean: f64,
    value: f64,
}

impl Acc {
    fn result(&self, op: AggOp) -> f64 {
        match op {
            AggOp::Sum => self.sum,
            AggOp::Avg => self.mean,
            AggOp::Count => self.count as f64,
            AggOp::Group => 1.0,
            AggOp::Min | AggOp::Max => self.value,
            AggOp::Stdvar => self.value / self.count as f64,
            AggOp::Stddev => (self.value / self.count as f64).sqrt(),
        }
    }

    fn add(&mut self, op: AggOp, v: f64) {
        self.count += 1;
        let n = self.count as f64;
        match op {
            AggOp::Sum => self.sum += v,
            AggOp::Avg => {
                if self.count == 1 {
                    self.mean = v;
                    return;
                }
                if self.mean.is_infinite() {
                    if v.is_infinite() && (self.mean > 0.0) == (v > 0.0) {
                        return;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        return;
                    }
                }
                self.mean += v / n - self.mean / n;
            }
            AggOp::Max if self.count == 1 || self.value < v || self.value.is_nan() => {
                self.value = v
            }
            AggOp::Min if self.count == 1 || self.value > v || self.value.is_nan() => {
                self.value = v
            }
            AggOp::Stddev | AggOp::Stdvar => {
                if self.count == 1 {
                    self.mean = v;
                    self.value = 0.0;
                    return;
                }
                let delta = v - self.mean;
                self.mean += delta / n;
                self.value += delta * (v - self.mean);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Series held in memory; `select` keeps those every matcher accepts.
    struct Memory(Vec<Series>);

    /// [`Memory`] whose `select_each` reads (and charges) series one at a time, as the server's
    /// storage does.
    struct Lazy(Memory);

    impl Storage for Lazy {
        fn select(
            &self,
            matchers: &[Matcher],
            from: i64,
            to: i64,
            budget: &mut usize,
        ) -> Result<Vec<Series>> {
            self.0.select(matchers, from, to, budget)
        }

        fn select_each(
            &self,
            matchers: &[Matcher],
            from: i64,
            to: i64,
            budget: &mut usize,
            f: &mut EachSeries<'_>,
        ) -> Result<()> {
            for s in &self.0.0 {
                let one = Memory(vec![s.clone()]);
                for s in one.select(matchers, from, to, budget)? {
                    f(s, budget)?;
                }
            }
            Ok(())
        }
    }

    impl Storage for Memory {
        fn select(
            &self,
            matchers: &[Matcher],
            from: i64,
            to: i64,
            budget: &mut usize,
        ) -> Result<Vec<Series>> {
            let mut out = Vec::new();
            for s in &self.0 {
                if matchers.iter().all(|m| m.is_match(s.labels.get(&m.name))) {
                    let samples: Vec<(i64, f64)> = s
                        .samples
                        .iter()
                        .copied()
                        .filter(|(t, _)| *t >= from && *t <= to)
                        .collect();
                    *budget = budget
                        .checked_sub(samples.len())
                        .ok_or_else(|| Error::exec(TOO_MANY_SAMPLES))?;
                    if !samples.is_empty() {
                        out.push(Series {
                            labels: s.labels.clone(),
                            samples,
                        });
                    }
                }
            }
            Ok(out)
        }
    }

    /// `groups` groups of `per_group` counters, a sample every `every_ms` with gaps and resets.
    fn counters(groups: usize, per_group: usize, minutes: i64, every_ms: i64) -> Memory {
        let mut series = Vec::new();
        for g in 0..groups {
            for k in 0..per_group {
                let mut v = 0.0;
                let samples = (0..minutes * 60_000 / every_ms)
                    .filter(|i| (i + g as i64) % 11 != 0)
                    .map(|i| {
                        v = if i % 97 == 13 {
                            1.0
                        } else {
                            v + (g * 3 + k) as f64 * 0.37 + 0.1
                        };
                        (i * every_ms, v)
                    })
                    .collect();
                series.push(Series {
                    labels: Labels::new(vec![
                        (METRIC_NAME.into(), "x".into()),
                        ("g".into(), g.to_string()),
                        ("k".into(), k.to_string()),
                    ]),
                    samples,
                });
            }
        }
        Memory(series)
    }

    fn run(storage: &Memory, query: &str, end_ms: i64) -> Result<Vec<Series>> {
        let expr = parse(query)?;
        range_query(storage, &expr, 0, end_ms, 60_000, &Options::default())
    }

    /// The streamed aggregation answers bit for bit as the general path (`+ 0` defeats the
    /// streaming without changing a value), with few groups and with more than its state may
    /// hold (where it falls back to the general path), and fails alike over the budget.
    #[test]
    fn streamed_aggregation_answers_as_the_general_path() {
        // The second case has 1,100 groups × 1,001 steps: more than `ACC_CELLS`.
        let all = ["sum", "avg", "count", "min", "max", "stddev", "group"];
        for (groups, per_group, minutes, every, ops) in [
            (4, 3, 120, 15_000, &all[..]),
            (1100, 1, 1000, 60_000, &["sum", "stddev"][..]),
        ] {
            let storage = counters(groups, per_group, minutes, every);
            let end = minutes * 60_000;
            for op in ops {
                for grouping in ["by (g)", "without (k)", ""] {
                    let streamed = format!("{op} {grouping} (rate(x[5m]))");
                    let general = format!("{op} {grouping} (rate(x[5m]) + 0)");
                    let a = run(&storage, &streamed, end).unwrap();
                    let b = run(&storage, &general, end).unwrap();
                    assert_eq!(a.len(), b.len(), "{streamed}");
                    for (a, b) in a.iter().zip(&b) {
                        assert_eq!(a.labels, b.labels, "{streamed}");
                        let bits = |s: &Series| {
                            s.samples
                                .iter()
                                .map(|(t, v)| (*t, v.to_bits()))
                                .collect::<Vec<_>>()
                        };
                        assert_eq!(bits(a), bits(b), "{streamed}");
                    }
                }
            }
        }
        // The smallest budget the general path needs (samples read plus points held) is the
        // one the streamed path needs, with a storage that charges as it reads.
        let storage = Lazy(counters(4, 3, 120, 15_000));
        let fits = |q: &str, max_samples: usize| {
            let opts = Options {
                max_samples,
                ..Options::default()
            };
            match range_query(&storage, &parse(q).unwrap(), 0, 7_200_000, 60_000, &opts) {
                Ok(_) => true,
                Err(e) => {
                    assert_eq!(e, Error::exec(TOO_MANY_SAMPLES), "{q}");
                    false
                }
            }
        };
        let (mut lo, mut hi) = (0, 10_000_000);
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if fits("sum(rate(x[5m]) + 0)", mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        assert!(fits("sum(rate(x[5m]))", hi));
        assert!(!fits("sum(rate(x[5m]))", hi - 1));
    }
}
