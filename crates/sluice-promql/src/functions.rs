//! PromQL functions, with Prometheus 2.42's formulas (extrapolation, Kahan sums, quantiles,
//! classic-histogram quantiles).

use std::collections::{HashMap, HashSet};

use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use crate::calendar::{civil_from_days, days_from_civil};
use crate::eval::{
    Error, Ev, Out, RangeInput, Result, Val, by_step, selector_matchers, unwrap_parens,
    valid_label_name,
};
use crate::value::{BUCKET_LABEL, Labels, METRIC_NAME, Series};

pub(crate) fn call(ev: &Ev<'_>, c: &Call) -> Result<Val> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| &**a).collect();
    match name {
        "rate" | "increase" | "delta" | "irate" | "idelta" | "deriv" | "resets" | "changes"
        | "avg_over_time" | "min_over_time" | "max_over_time" | "sum_over_time"
        | "count_over_time" | "stddev_over_time" | "stdvar_over_time" | "last_over_time"
        | "present_over_time" | "quantile_over_time" | "predict_linear" | "holt_winters" => {
            range_function(ev, name, &args)
        }
        "absent_over_time" => absent_over_time(ev, args[0]),
        "absent" => absent(ev, args[0]),
        "time" => Ok(Val::Scalar(
            (0..ev.steps()).map(|i| ev.ts(i) as f64 / 1000.0).collect(),
        )),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; ev.steps()])),
        "vector" => {
            let s = ev.eval_scalar(args[0])?;
            Ok(Val::Vector(vec![Series {
                labels: Labels::empty(),
                samples: (0..ev.steps()).map(|i| (ev.ts(i), s[i])).collect(),
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector(args[0])?;
            let mut count = vec![0u32; ev.steps()];
            let mut value = vec![f64::NAN; ev.steps()];
            for s in &v {
                for &(t, x) in &s.samples {
                    let i = ev.step_of(t);
                    count[i] += 1;
                    value[i] = x;
                }
            }
            Ok(Val::Scalar(
                count
                    .iter()
                    .zip(value)
                    .map(|(c, x)| if *c == 1 { x } else { f64::NAN })
                    .collect(),
            ))
        }
        "timestamp" => timestamp(ev, args[0]),
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(args[0])?;
            if ev.steps() == 1 {
                let desc = name == "sort_desc";
                v.sort_by(|a, b| {
                    let (x, y) = (a.samples[0].1, b.samples[0].1);
                    match (x.is_nan(), y.is_nan()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => std::cmp::Ordering::Greater,
                        (false, true) => std::cmp::Ordering::Less,
                        _ if desc => y.total_cmp(&x),
                        _ => x.total_cmp(&y),
                    }
                });
            }
            Ok(Val::Vector(v))
        }
        "label_replace" => label_replace(ev, &args),
        "label_join" => label_join(ev, &args),
        "histogram_quantile" => histogram_quantile(ev, args[0], args[1]),
        "round" => {
            let to = match args.get(1) {
                Some(a) => ev.eval_scalar(a)?,
                None => vec![1.0; ev.steps()],
            };
            map_vector(ev, args[0], |i, v| {
                let inv = 1.0 / to[i];
                Some((v * inv + 0.5).floor() / inv)
            })
        }
        "clamp" => {
            let lo = ev.eval_scalar(args[1])?;
            let hi = ev.eval_scalar(args[2])?;
            map_vector(ev, args[0], |i, v| {
                // Only `max < min` empties the result (NaN bounds give NaN, as in Prometheus).
                (hi[i] >= lo[i] || hi[i].is_nan() || lo[i].is_nan())
                    .then(|| go_max(lo[i], go_min(hi[i], v)))
            })
        }
        "clamp_min" => {
            let lo = ev.eval_scalar(args[1])?;
            map_vector(ev, args[0], |i, v| Some(go_max(lo[i], v)))
        }
        "clamp_max" => {
            let hi = ev.eval_scalar(args[1])?;
            map_vector(ev, args[0], |i, v| Some(go_min(hi[i], v)))
        }
        "minute" | "hour" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "month" | "year" => date_function(ev, name, args.first().copied()),
        _ => match simple_math(name) {
            Some(f) => map_vector(ev, args[0], |_, v| Some(f(v))),
            None => Err(Error::BadData(format!(
                "function {name:?} is not supported"
            ))),
        },
    }
}

/// Math functions of one value.
fn simple_math(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sgn" => |v: f64| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        },
        "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
        "rad" => |v: f64| v * std::f64::consts::PI / 180.0,
        "acos" => f64::acos,
        "acosh" => f64::acosh,
        "asin" => f64::asin,
        "asinh" => f64::asinh,
        "atan" => f64::atan,
        "atanh" => f64::atanh,
        "cos" => f64::cos,
        "cosh" => f64::cosh,
        "sin" => f64::sin,
        "sinh" => f64::sinh,
        "tan" => f64::tan,
        "tanh" => f64::tanh,
        _ => return None,
    })
}

/// Go's `math.Max`: NaN wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: NaN wins.
fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Applies `f(step, value)` to every point of a vector, dropping `__name__`; `None` drops the
/// point.
fn map_vector(ev: &Ev<'_>, arg: &Expr, f: impl Fn(usize, f64) -> Option<f64>) -> Result<Val> {
    let v = ev.eval_vector(arg)?;
    let mut out = Out::new();
    for s in v {
        let labels = s.labels.without_name();
        for (t, x) in s.samples {
            if let Some(y) = f(ev.step_of(t), x) {
                out.push(labels.clone(), t, y)?;
            }
        }
    }
    Ok(Val::Vector(out.finish()))
}

/// Neumaier's compensated sum step: `(sum + inc, new compensation)`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// The functions of a range vector, resolved once per call (not per window).
#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeFn {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
    Deriv,
    PredictLinear,
    Resets,
    Changes,
    Avg,
    Min,
    Max,
    Sum,
    Count,
    Stddev,
    Stdvar,
    Last,
    Present,
    Quantile,
    HoltWinters,
}

impl RangeFn {
    /// Which argument is the range vector.
    fn matrix_arg(self) -> usize {
        if self == RangeFn::Quantile { 1 } else { 0 }
    }

    fn of(name: &str) -> Option<RangeFn> {
        Some(match name {
            "rate" => RangeFn::Rate,
            "increase" => RangeFn::Increase,
            "delta" => RangeFn::Delta,
            "irate" => RangeFn::Irate,
            "idelta" => RangeFn::Idelta,
            "deriv" => RangeFn::Deriv,
            "predict_linear" => RangeFn::PredictLinear,
            "resets" => RangeFn::Resets,
            "changes" => RangeFn::Changes,
            "avg_over_time" => RangeFn::Avg,
            "min_over_time" => RangeFn::Min,
            "max_over_time" => RangeFn::Max,
            "sum_over_time" => RangeFn::Sum,
            "count_over_time" => RangeFn::Count,
            "stddev_over_time" => RangeFn::Stddev,
            "stdvar_over_time" => RangeFn::Stdvar,
            "last_over_time" => RangeFn::Last,
            "present_over_time" => RangeFn::Present,
            "quantile_over_time" => RangeFn::Quantile,
            "holt_winters" => RangeFn::HoltWinters,
            _ => return None,
        })
    }
}

/// A function of one window: `(step index, step time, reference time, samples) -> value`.
type WindowFn<'f> = dyn FnMut(usize, i64, i64, &[(i64, f64)]) -> Option<f64> + 'f;

/// Receives a streamed output series: its labels and points.
pub(crate) type EmitSeries<'f> = dyn FnMut(&Labels, &[(i64, f64)]) -> Result<()> + 'f;

/// A range function with its scalar arguments evaluated, applied to one input series at a
/// time (materialized by [`range_function`], streamed by [`stream_range_call`]).
struct RangeCall {
    kind: RangeFn,
    /// Each argument's value per step (empty for the range-vector argument).
    scalars: Vec<Vec<f64>>,
    /// The step a step-invariant call (`@`) is evaluated at, as Prometheus does: the first.
    fixed_ts: Option<i64>,
    range: i64,
    /// As Prometheus divides: the range in seconds, a division of its milliseconds.
    range_s: f64,
    /// Each step's reference time (`@` and offset applied).
    refs: Vec<i64>,
}

impl RangeCall {
    /// `None` when `name` is not a range function. `matrix` is the range-vector argument's
    /// range, `@` and reference times.
    fn new(
        ev: &Ev<'_>,
        name: &str,
        args: &[&Expr],
        range: i64,
        at: &Option<promql_parser::parser::AtModifier>,
        refs: Vec<i64>,
    ) -> Result<RangeCall> {
        let Some(kind) = RangeFn::of(name) else {
            return Err(Error::BadData(format!(
                "function {name:?} is not supported"
            )));
        };
        let mut scalars: Vec<Vec<f64>> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            scalars.push(if i == kind.matrix_arg() {
                Vec::new()
            } else {
                ev.eval_scalar(a)?
            });
        }
        Ok(RangeCall {
            kind,
            scalars,
            fixed_ts: at.as_ref().map(|_| ev.start),
            range,
            range_s: range as f64 / 1000.0,
            refs,
        })
    }

    /// The output series' labels: every function of a range vector drops the name, but
    /// `last_over_time`.
    fn labels(&self, input: &Labels) -> Labels {
        if self.kind == RangeFn::Last {
            input.clone()
        } else {
            input.without_name()
        }
    }

    /// The function over one series' samples, appended to `points` (one per step with a
    /// non-empty window), and charged to the query's budget.
    fn apply(
        &self,
        ev: &Ev<'_>,
        samples: &[(i64, f64)],
        points: &mut Vec<(i64, f64)>,
    ) -> Result<()> {
        let (range, range_s) = (self.range, self.range_s);
        let scalars = &self.scalars;
        let fixed_ts = self.fixed_ts;
        points.reserve(ev.steps().min(samples.len() * 2 + 1));
        let before = points.len();
        // One window loop per function (each closure is its own monomorphized loop: the
        // dashboard functions run over millions of windows).
        let mut run = |f: &mut WindowFn<'_>| {
            ev.windows(&self.refs, range, samples, |i, ts, r, w| {
                if let Some(v) = f(i, ts, r, w) {
                    points.push((ts, v));
                }
            })
        };
        match self.kind {
            RangeFn::Rate => rate_windows(ev, &self.refs, range, samples, points, |r, w| {
                extrapolated_rate(w, r - range, r, range_s, true, true)
            }),
            RangeFn::Increase => rate_windows(ev, &self.refs, range, samples, points, |r, w| {
                extrapolated_rate(w, r - range, r, range_s, true, false)
            }),
            RangeFn::Delta => rate_windows(ev, &self.refs, range, samples, points, |r, w| {
                extrapolated_rate(w, r - range, r, range_s, false, false)
            }),
            RangeFn::Irate => run(&mut |_, _, _, w| instant_value(w, true)),
            RangeFn::Idelta => run(&mut |_, _, _, w| instant_value(w, false)),
            RangeFn::Deriv => {
                run(&mut |_, _, _, w| (w.len() >= 2).then(|| linear_regression(w, w[0].0).0))
            }
            RangeFn::PredictLinear => run(&mut |i, ts, _, w| {
                (w.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(w, fixed_ts.unwrap_or(ts));
                    slope * scalars[1][i] + intercept
                })
            }),
            RangeFn::Resets => {
                run(&mut |_, _, _, w| Some(w.windows(2).filter(|p| p[1].1 < p[0].1).count() as f64))
            }
            RangeFn::Changes => run(&mut |_, _, _, w| {
                Some(
                    w.windows(2)
                        .filter(|p| p[1].1 != p[0].1 && !(p[1].1.is_nan() && p[0].1.is_nan()))
                        .count() as f64,
                )
            }),
            RangeFn::Avg => run(&mut |_, _, _, w| Some(avg_over_time(w))),
            RangeFn::Min => run(&mut |_, _, _, w| {
                Some(
                    w.iter()
                        .fold(w[0].1, |m, p| if m > p.1 || m.is_nan() { p.1 } else { m }),
                )
            }),
            RangeFn::Max => run(&mut |_, _, _, w| {
                Some(
                    w.iter()
                        .fold(w[0].1, |m, p| if m < p.1 || m.is_nan() { p.1 } else { m }),
                )
            }),
            RangeFn::Sum => run(&mut |_, _, _, w| {
                let (mut sum, mut c) = (0.0, 0.0);
                for p in w {
                    (sum, c) = kahan_inc(p.1, sum, c);
                }
                Some(if sum.is_infinite() { sum } else { sum + c })
            }),
            RangeFn::Count => run(&mut |_, _, _, w| Some(w.len() as f64)),
            RangeFn::Stddev => run(&mut |_, _, _, w| Some(stdvar_over_time(w).sqrt())),
            RangeFn::Stdvar => run(&mut |_, _, _, w| Some(stdvar_over_time(w))),
            RangeFn::Last => run(&mut |_, _, _, w| Some(w[w.len() - 1].1)),
            RangeFn::Present => run(&mut |_, _, _, _| Some(1.0)),
            RangeFn::Quantile => run(&mut |i, _, _, w| {
                let mut values: Vec<f64> = w.iter().map(|p| p.1).collect();
                Some(quantile(scalars[0][i], &mut values))
            }),
            RangeFn::HoltWinters => {
                let mut failure: Option<Error> = None;
                run(&mut |i, _, _, w| {
                    if failure.is_some() {
                        return None;
                    }
                    holt_winters(w, scalars[1][i], scalars[2][i]).unwrap_or_else(|e| {
                        failure = Some(e);
                        None
                    })
                });
                if let Some(e) = failure {
                    return Err(e);
                }
            }
        }
        ev.charge(points.len() - before)
    }
}

/// The window loop of `rate`, `increase` and `delta`, monomorphized on `f(reference time,
/// window)`: these run over millions of windows per dashboard query.
fn rate_windows(
    ev: &Ev<'_>,
    refs: &[i64],
    range: i64,
    samples: &[(i64, f64)],
    points: &mut Vec<(i64, f64)>,
    f: impl Fn(i64, &[(i64, f64)]) -> Option<f64>,
) {
    ev.windows(refs, range, samples, |_, ts, r, w| {
        if let Some(v) = f(r, w) {
            points.push((ts, v));
        }
    })
}

/// Refuses a second output series with the label set of an earlier one, as Prometheus does.
#[derive(Default)]
struct DistinctOutputs(HashSet<Labels>);

impl DistinctOutputs {
    fn check(&mut self, labels: &Labels) -> Result<()> {
        if self.0.insert(labels.clone()) {
            Ok(())
        } else {
            Err(Error::exec(
                "vector cannot contain metrics with the same labelset",
            ))
        }
    }
}

fn range_function(ev: &Ev<'_>, name: &str, args: &[&Expr]) -> Result<Val> {
    let matrix_arg = RangeFn::of(name).map_or(0, RangeFn::matrix_arg);
    let input = ev.range_input(args[matrix_arg])?;
    let call = RangeCall::new(ev, name, args, input.range, &input.at, input.refs)?;
    let mut outputs: Vec<Series> = Vec::new();
    let mut distinct = DistinctOutputs::default();
    for s in &input.series {
        ev.check_deadline()?;
        let mut points = Vec::new();
        call.apply(ev, &s.samples, &mut points)?;
        if !points.is_empty() {
            let labels = call.labels(&s.labels);
            distinct.check(&labels)?;
            outputs.push(Series {
                labels,
                samples: points,
            });
        }
    }
    Ok(Val::Vector(outputs))
}

/// A range function over a range selector, one input series at a time, without holding the
/// selection: `emit(labels, points)` receives each output series, in the order
/// [`range_function`] would return them. `Ok(false)` (nothing read) when `c` is not such a
/// call (another function, or a subquery argument).
pub(crate) fn stream_range_call(ev: &Ev<'_>, c: &Call, emit: &mut EmitSeries<'_>) -> Result<bool> {
    let name = c.func.name;
    let Some(kind) = RangeFn::of(name) else {
        return Ok(false);
    };
    let args: Vec<&Expr> = c.args.args.iter().map(|a| &**a).collect();
    let Some(Expr::MatrixSelector(m)) = args.get(kind.matrix_arg()).map(|e| unwrap_parens(e))
    else {
        return Ok(false);
    };
    let range = crate::eval::ms(&m.range);
    let call = RangeCall::new(
        ev,
        name,
        &args,
        range,
        &m.vs.at,
        ev.refs(&m.vs.at, &m.vs.offset),
    )?;
    let mut distinct = DistinctOutputs::default();
    let mut points = Vec::new();
    ev.raw_range_each(&m.vs, range, &mut |s: Series| {
        ev.check_deadline()?;
        points.clear();
        call.apply(ev, &s.samples, &mut points)?;
        if !points.is_empty() {
            let labels = call.labels(&s.labels);
            distinct.check(&labels)?;
            emit(&labels, &points)?;
        }
        Ok(())
    })?;
    Ok(true)
}

/// `rate`, `increase` and `delta`: the change over the window, extrapolated to its edges.
///
/// Prometheus computes in seconds with eight divisions, and on the dashboard queries (millions
/// of five-sample windows) their latency was most of the evaluator's time. This computes with
/// one: the thresholds are compared multiplied out (`to_start < 1.1 × sampled / (n-1)` as
/// `to_start × (n-1) < 1.1 × sampled`) and the extrapolated interval is kept scaled by
/// `2(n-1)` so half an interval needs no division. The value agrees with Prometheus's to a few
/// ulps, and the three decisions (extrapolate to an edge or by half an interval; stop at the
/// counter's zero) are Prometheus's: when a comparison is too close to call in the other
/// form, [`extrapolated_rate_exact`] decides.
#[inline(always)]
fn extrapolated_rate(
    w: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range_s: f64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut result = last.1 - first.1;
    if is_counter {
        let mut prev = first.1;
        for p in &w[1..] {
            if p.1 < prev {
                result += prev;
            }
            prev = p.1;
        }
    }
    let exact = || {
        extrapolated_rate_exact(
            w,
            result,
            range_start,
            range_end,
            range_s,
            is_counter,
            is_rate,
        )
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
    let n1 = (w.len() - 1) as f64;
    let scale = 2.0 * n1;
    let sampled = (last.0 - first.0) as f64;
    // Scaled by `scale`: the threshold (1.1 average intervals) and half an interval.
    let threshold = 1.1 * sampled * 2.0;
    let mut to_start = (first.0 - range_start) as f64 * scale;
    let to_end = (range_end - last.0) as f64 * scale;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        // `sampled × first / result < to_start`, multiplied out.
        let (zero, start) = (sampled * first.1 * scale, to_start * result);
        if close(zero, start) {
            return exact();
        }
        if zero < start {
            to_start = zero / result;
        }
    }
    if close(to_start, threshold) || close(to_end, threshold) {
        return exact();
    }
    let extrapolated = sampled * scale
        + if to_start < threshold {
            to_start
        } else {
            sampled
        }
        + if to_end < threshold { to_end } else { sampled };
    let denominator = sampled * scale * if is_rate { range_s } else { 1.0 };
    Some(result * extrapolated / denominator)
}

/// [`extrapolated_rate`] computed as Prometheus computes it (in seconds), given the window's
/// counter-corrected change.
#[cold]
fn extrapolated_rate_exact(
    w: &[(i64, f64)],
    result: f64,
    range_start: i64,
    range_end: i64,
    range_s: f64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let (first, last) = (w[0], w[w.len() - 1]);
    let mut duration_to_start = (first.0 - range_start) as f64 / 1000.0;
    let duration_to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled_interval = (last.0 - first.0) as f64 / 1000.0;
    let average_between = sampled_interval / (w.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        let duration_to_zero = sampled_interval * (first.1 / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = average_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        average_between / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        average_between / 2.0
    };
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= range_s;
    }
    Some(result * factor)
}

/// `irate` and `idelta`: from the last two samples.
fn instant_value(w: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if w.len() < 2 {
        return None;
    }
    let (prev, last) = (w[w.len() - 2], w[w.len() - 1]);
    let mut result = if is_rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares slope and intercept at `intercept_time`, x in seconds.
fn linear_regression(w: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let init_y = w[0].1;
    let mut const_y = true;
    let (mut n, mut sum_x, mut cx, mut sum_y, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut cxy, mut sum_x2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for (i, p) in w.iter().enumerate() {
        if const_y && i > 0 && p.1 != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (p.0 - intercept_time) as f64 / 1000.0;
        (sum_x, cx) = kahan_inc(x, sum_x, cx);
        (sum_y, cy) = kahan_inc(p.1, sum_y, cy);
        (sum_xy, cxy) = kahan_inc(x * p.1, sum_xy, cxy);
        (sum_x2, cx2) = kahan_inc(x * x, sum_x2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (sum_x + cx, sum_y + cy, sum_xy + cxy, sum_x2 + cx2);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn avg_over_time(w: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0, 0.0);
    for p in w {
        count += 1.0;
        if mean.is_infinite() {
            if p.1.is_infinite() && (mean > 0.0) == (p.1 > 0.0) {
                continue;
            }
            if !p.1.is_infinite() && !p.1.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(p.1 / count - mean / count, mean, c);
    }
    if mean.is_infinite() { mean } else { mean + c }
}

fn stdvar_over_time(w: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in w {
        count += 1.0;
        let delta = p.1 - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (p.1 - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

fn holt_winters(w: &[(i64, f64)], sf: f64, tf: f64) -> Result<Option<f64>> {
    if !(sf > 0.0 && sf < 1.0) {
        return Err(Error::exec(format!(
            "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
        )));
    }
    if !(tf > 0.0 && tf < 1.0) {
        return Err(Error::exec(format!(
            "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
        )));
    }
    if w.len() < 2 {
        return Ok(None);
    }
    let (mut s0, mut s1) = (0.0, w[0].1);
    let mut b = w[1].1 - w[0].1;
    for (i, p) in w.iter().enumerate().skip(1) {
        let x = sf * p.1;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Ok(Some(s1))
}

/// The φ-quantile of `values` (Prometheus's interpolation); sorts `values`.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// The labels `absent` gives: those of the selector's equality matchers, unless a label is
/// also constrained otherwise.
fn absent_labels(e: &Expr) -> Result<Labels> {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(m) => &m.vs,
        _ => return Ok(Labels::empty()),
    };
    let mut set: Vec<(String, String)> = Vec::new();
    let mut drop: Vec<String> = Vec::new();
    for m in selector_matchers(vs)? {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == MatchOp::Equal && !set.iter().any(|(k, _)| *k == m.name) {
            set.push((m.name.clone(), m.value.clone()));
        } else {
            drop.push(m.name.clone());
        }
    }
    set.retain(|(k, _)| !drop.contains(k));
    Ok(Labels::new(set))
}

fn absent(ev: &Ev<'_>, arg: &Expr) -> Result<Val> {
    let v = ev.eval_vector(arg)?;
    let mut present = vec![false; ev.steps()];
    for s in &v {
        for &(t, _) in &s.samples {
            present[ev.step_of(t)] = true;
        }
    }
    absent_result(ev, arg, &present)
}

fn absent_over_time(ev: &Ev<'_>, arg: &Expr) -> Result<Val> {
    let input: RangeInput = ev.range_input(arg)?;
    let mut present = vec![false; ev.steps()];
    for s in &input.series {
        ev.windows(&input.refs, input.range, &s.samples, |i, _, _, _| {
            present[i] = true
        });
    }
    absent_result(ev, arg, &present)
}

fn absent_result(ev: &Ev<'_>, arg: &Expr, present: &[bool]) -> Result<Val> {
    let samples: Vec<(i64, f64)> = present
        .iter()
        .enumerate()
        .filter(|(_, p)| !**p)
        .map(|(i, _)| (ev.ts(i), 1.0))
        .collect();
    if samples.is_empty() {
        return Ok(Val::Vector(Vec::new()));
    }
    Ok(Val::Vector(vec![Series {
        labels: absent_labels(arg)?,
        samples,
    }]))
}

fn timestamp(ev: &Ev<'_>, arg: &Expr) -> Result<Val> {
    let mut e = arg;
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    let v = match e {
        // The sample's own time, not the step's.
        Expr::VectorSelector(vs) => ev.vector_selector(vs, |t, _| t as f64 / 1000.0)?,
        _ => ev
            .eval_vector(arg)?
            .into_iter()
            .map(|s| Series {
                labels: s.labels,
                samples: s
                    .samples
                    .into_iter()
                    .map(|(t, _)| (t, t as f64 / 1000.0))
                    .collect(),
            })
            .collect(),
    };
    let mut out = Out::new();
    for s in v {
        let labels = s.labels.without_name();
        for (t, x) in s.samples {
            out.push(labels.clone(), t, x)?;
        }
    }
    Ok(Val::Vector(out.finish()))
}

/// Re-labels every series with `relabel` (once per series), checking collisions per step.
fn relabel_vector(v: Vec<Series>, relabel: impl Fn(&Labels) -> Labels) -> Result<Val> {
    let mut out = Out::new();
    for s in v {
        let labels = relabel(&s.labels);
        for (t, x) in s.samples {
            out.push(labels.clone(), t, x)?;
        }
    }
    Ok(Val::Vector(out.finish()))
}

fn label_replace(ev: &Ev<'_>, args: &[&Expr]) -> Result<Val> {
    let dst = ev.eval_string(args[1])?;
    let repl = ev.eval_string(args[2])?;
    let src = ev.eval_string(args[3])?;
    let pattern = ev.eval_string(args[4])?;
    let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|_| {
        Error::exec(format!(
            "invalid regular expression in label_replace(): {pattern}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(Error::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let v = ev.eval_vector(args[0])?;
    relabel_vector(v, |l| match re.captures(l.get(&src)) {
        None => l.clone(),
        Some(caps) => {
            let mut res = String::new();
            caps.expand(&repl, &mut res);
            l.with(&dst, &res)
        }
    })
}

fn label_join(ev: &Ev<'_>, args: &[&Expr]) -> Result<Val> {
    let dst = ev.eval_string(args[1])?;
    let sep = ev.eval_string(args[2])?;
    let mut srcs = Vec::new();
    for a in &args[3..] {
        let s = ev.eval_string(a)?;
        if !valid_label_name(&s) {
            return Err(Error::exec(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
        srcs.push(s);
    }
    if !valid_label_name(&dst) {
        return Err(Error::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let v = ev.eval_vector(args[0])?;
    relabel_vector(v, |l| {
        let joined: Vec<&str> = srcs.iter().map(|s| l.get(s)).collect();
        l.with(&dst, &joined.join(&sep))
    })
}

fn histogram_quantile(ev: &Ev<'_>, q_arg: &Expr, v_arg: &Expr) -> Result<Val> {
    let q = ev.eval_scalar(q_arg)?;
    let v = ev.eval_vector(v_arg)?;
    // Per series: its bucket bound and group (labels without `le`), computed once.
    let mut groups: Vec<Labels> = Vec::new();
    let mut group_of: Vec<Option<(u32, f64)>> = Vec::with_capacity(v.len());
    let mut index: HashMap<Labels, u32> = HashMap::new();
    for s in &v {
        let Ok(bound) = parse_go_float(s.labels.get(BUCKET_LABEL)) else {
            group_of.push(None);
            continue;
        };
        // Grouped without `le` and `__name__` (buckets of two metrics with the same other labels
        // are one histogram, as in Prometheus 2.42).
        let key = s.labels.filtered(|k| k != BUCKET_LABEL && k != METRIC_NAME);
        let id = *index.entry(key.clone()).or_insert_with(|| {
            groups.push(key.clone());
            (groups.len() - 1) as u32
        });
        group_of.push(Some((id, bound)));
    }
    let steps = by_step(ev, &v);
    let mut out = Out::new();
    let mut buckets: Vec<Vec<(f64, f64)>> = vec![Vec::new(); groups.len()];
    for (i, vec) in steps.iter().enumerate() {
        ev.check_deadline()?;
        buckets.iter_mut().for_each(Vec::clear);
        for &(si, x) in vec {
            if let Some((g, bound)) = group_of[si as usize] {
                buckets[g as usize].push((bound, x));
            }
        }
        for (g, b) in buckets.iter_mut().enumerate() {
            if !b.is_empty() {
                out.push(groups[g].clone(), ev.ts(i), bucket_quantile(q[i], b))?;
            }
        }
    }
    Ok(Val::Vector(out.finish()))
}

/// A float as Go's `strconv.ParseFloat` reads a label value (`+Inf`, `Inf`, `NaN` included).
fn parse_go_float(s: &str) -> std::result::Result<f64, ()> {
    match s.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => Ok(f64::INFINITY),
        "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
        "nan" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| ()),
    }
}

/// Quantile `q` of classic buckets `(upper bound, cumulative count)`.
fn bucket_quantile(q: f64, buckets: &mut [(f64, f64)]) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().map(|b| b.0) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    // Coalesce equal bounds.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for &(b, c) in buckets.iter() {
        match merged.last_mut() {
            Some(last) if last.0 == b => last.1 += c,
            _ => merged.push((b, c)),
        }
    }
    // Make counts monotonic.
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = merged[..merged.len() - 1].partition_point(|x| x.1 < rank);
    if b == merged.len() - 1 {
        return merged[merged.len() - 2].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn date_function(ev: &Ev<'_>, name: &str, arg: Option<&Expr>) -> Result<Val> {
    let f = |secs: f64| -> f64 {
        let secs = if secs.is_finite() {
            secs as i64
        } else {
            i64::MIN / 2
        };
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        match name {
            "minute" => ((sod / 60) % 60) as f64,
            "hour" => (sod / 3600) as f64,
            "day_of_month" => d as f64,
            "day_of_week" => (days + 4).rem_euclid(7) as f64,
            "day_of_year" => (days - days_from_civil(y, 1, 1) + 1) as f64,
            "days_in_month" => {
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as f64
            }
            "month" => m as f64,
            _ => y as f64,
        }
    };
    match arg {
        None => Ok(Val::Vector(vec![Series {
            labels: Labels::empty(),
            samples: (0..ev.steps())
                .map(|i| (ev.ts(i), f((ev.ts(i) / 1000) as f64)))
                .collect(),
        }])),
        Some(a) => map_vector(ev, a, |_, v| Some(f(v))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_and_buckets_follow_prometheus() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(0.5, &mut v), 2.5);
        assert_eq!(quantile(2.0, &mut v), f64::INFINITY);
        let mut b = vec![(1.0, 10.0), (f64::INFINITY, 20.0), (0.5, 5.0)];
        assert_eq!(bucket_quantile(0.5, &mut b), 1.0);
        let mut b = vec![(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(bucket_quantile(0.75, &mut b), 1.5);
        assert_eq!(bucket_quantile(1.0, &mut b), 2.0);
    }

    #[test]
    fn rate_extrapolates_like_prometheus() {
        // A counter rising 1/s sampled every 15 s over a 60 s window ending at 60 s.
        let w: Vec<(i64, f64)> = (1..=4).map(|i| (i * 15_000, 15.0 * i as f64)).collect();
        let r = extrapolated_rate(&w, 0, 60_000, 60.0, true, true).unwrap();
        assert!((r - 1.0).abs() < 1e-12, "{r}");
    }

    /// The one-division form against Prometheus's arithmetic, on windows with irregular
    /// spacing, counter resets, negative and zero-crossing values, and edges on the thresholds.
    #[test]
    fn fast_extrapolation_agrees_with_prometheus_arithmetic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut decided_exactly = 0;
        for case in 0..200_000 {
            let n = rng.random_range(2..8);
            let range = [60_000i64, 300_000, 7_000][case % 3];
            let end = 1_000_000i64;
            let start = end - range;
            let mut t = start + rng.random_range(0..range / 4);
            let step = rng.random_range(1..range / n as i64);
            let mut v: f64 = rng.random_range(-5.0..50.0);
            let mut w = Vec::new();
            for _ in 0..n {
                if t > end {
                    break;
                }
                w.push((t, v));
                // Regular spacing half of the time: the thresholds are hit exactly then.
                t += if case % 2 == 0 {
                    step
                } else {
                    rng.random_range(1..=step)
                };
                v = if rng.random_bool(0.1) {
                    rng.random_range(0.0..3.0)
                } else {
                    v + rng.random_range(0.0..10.0)
                };
            }
            let range_s = range as f64 / 1000.0;
            for (counter, rate) in [(true, true), (true, false), (false, false)] {
                let fast = extrapolated_rate(&w, start, end, range_s, counter, rate);
                let exact = (w.len() >= 2).then(|| {
                    let mut result = w[w.len() - 1].1 - w[0].1;
                    if counter {
                        for p in w.windows(2) {
                            if p[1].1 < p[0].1 {
                                result += p[0].1;
                            }
                        }
                    }
                    extrapolated_rate_exact(&w, result, start, end, range_s, counter, rate).unwrap()
                });
                match (fast, exact) {
                    (None, None) => {}
                    (Some(a), Some(b)) => {
                        if a == b {
                            decided_exactly += 1;
                        }
                        assert!(
                            (a - b).abs() <= 1e-12 * a.abs().max(b.abs()),
                            "{w:?} counter={counter} rate={rate}: {a} vs {b}"
                        );
                    }
                    other => panic!("{w:?}: {other:?}"),
                }
            }
        }
        assert!(decided_exactly > 0);
    }
}
