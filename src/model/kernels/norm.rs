//! BatchNorm statistics, the affine + ReLU + max-pool pass and its backward, on channel rows.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{Dims, threads_for};

/// Per-channel batch statistics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub mean: Vec<f32>,
    /// The biased variance (÷ n), as Burn's and PyTorch's training-mode BatchNorm use.
    pub var: Vec<f32>,
    /// `1/√(var + ε)`
    pub inv_std: Vec<f32>,
}

/// Sum of `f(v)` over `values`, in 16 independent f32 lanes (vectorised) added up in f64.
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut lanes = [0.0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f64::from(f(v))).sum();
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

/// [`lane_sum`] of `f(a[i], b[i])` over two rows of equal length (one pass each, so that each
/// loop stays vectorised: two sums in one loop compiled to branches per lane).
fn lane_sum_pairs(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut lanes = [0.0f32; 16];
    let (mut a16, mut b16) = (a.chunks_exact(16), b.chunks_exact(16));
    for (a, b) in (&mut a16).zip(&mut b16) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(a).zip(b) {
            *lane += f(x, y);
        }
    }
    let tail: f64 = a16
        .remainder()
        .iter()
        .zip(b16.remainder())
        .map(|(&x, &y)| f64::from(f(x, y)))
        .sum();
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + tail
}

/// Mean, biased variance and `1/√(var + ε)` of one channel row (two passes: the mean, then
/// the squared deviations).
fn row_stats(row: &[f32], epsilon: f64) -> (f32, f32, f32) {
    let n = row.len().max(1) as f64;
    let mean = (lane_sum(row, |v| v) / n) as f32;
    let var = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
    let inv_std = (1.0 / (var + epsilon).sqrt()) as f32;
    (mean, var as f32, inv_std)
}

impl Stats {
    fn from_rows(rows: Vec<(f32, f32, f32)>) -> Self {
        let mut stats = Stats::default();
        for (mean, var, inv_std) in rows {
            stats.mean.push(mean);
            stats.var.push(var);
            stats.inv_std.push(inv_std);
        }
        stats
    }
}

/// Per-channel BatchNorm statistics of a channel-major activation: replaces every row of `y`
/// (`[c, plane]`) by its normalised values `(y − mean)/√(var + ε)`.
pub fn normalize_rows(y: &mut [f32], plane: usize, epsilon: f64) -> Stats {
    let body = |row: &mut [f32]| {
        let (mean, var, inv_std) = row_stats(row, epsilon);
        row.iter_mut().for_each(|v| *v = (*v - mean) * inv_std);
        (mean, var, inv_std)
    };
    let rows: Vec<(f32, f32, f32)> = if threads_for(y.len()) > 1 {
        y.par_chunks_mut(plane.max(1)).map(body).collect()
    } else {
        y.chunks_mut(plane.max(1)).map(body).collect()
    };
    Stats::from_rows(rows)
}

/// A vector of `rows.len()` rows of `plane` values written by `fill(c, row c of the output,
/// rows[c])`. The values are not zeroed first (the output of an elementwise kernel is tens of
/// megabytes, and zeroing it cost a pass over it). `plane` must not be 0.
///
/// # Safety
/// `fill` must write every value of the output row it is given (the vector is returned as
/// initialised).
unsafe fn written_rows<T: Send, R: Send>(
    plane: usize,
    rows: Vec<T>,
    fill: impl Fn(usize, &mut [MaybeUninit<f32>], T) -> R + Sync + Send,
) -> (Vec<f32>, Vec<R>) {
    assert!(plane > 0, "rows of no values");
    let len = rows.len() * plane;
    let mut out = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let answers = if threads_for(len) > 1 {
        spare
            .par_chunks_mut(plane)
            .zip(rows)
            .enumerate()
            .map(|(c, (out, side))| fill(c, out, side))
            .collect()
    } else {
        spare
            .chunks_mut(plane)
            .zip(rows)
            .enumerate()
            .map(|(c, (out, side))| fill(c, out, side))
            .collect()
    };
    // SAFETY: the rows of `plane` values cover the first `len` values of `out`'s capacity
    // (`rows.len()` of them, each zipped with one item of `rows`), and `fill` wrote every value
    // of each (the caller's contract).
    unsafe { out.set_len(len) };
    (out, answers)
}

/// Training-mode BatchNorm + ReLU per channel row of `x` (`[c, plane]`): with each row's
/// batch statistics, one pass writes the normalised values `x̂ = (x − mean)/√(var + ε)` to
/// `xhat` (kept for the backward pass) and returns `relu(γ·x̂ + β)`. `plane` must not be 0
/// (there are no statistics of an empty batch).
pub fn batch_norm_relu(
    x: &[f32],
    plane: usize,
    epsilon: f64,
    [gamma, beta]: [&[f32]; 2],
    xhat: &mut [f32],
) -> (Vec<f32>, Stats) {
    assert!(plane > 0, "batch_norm_relu: rows of no values");
    assert_eq!(
        x.len(),
        gamma.len() * plane,
        "batch_norm_relu: one γ per row"
    );
    assert_eq!(beta.len(), gamma.len());
    assert_eq!(xhat.len(), x.len());
    let xhat_rows: Vec<&mut [f32]> = xhat.chunks_mut(plane).collect();
    // SAFETY: the closure writes every value of its output row: one loop over it zipped with
    // the row's x̂ and x, all `plane` long (the assertions above).
    let (out, rows) = unsafe {
        written_rows(plane, xhat_rows, |c, out, xhat| {
            let row = &x[c * plane..(c + 1) * plane];
            let (mean, var, inv_std) = row_stats(row, epsilon);
            let (g, b) = (gamma[c], beta[c]);
            for ((o, h), &v) in out.iter_mut().zip(xhat.iter_mut()).zip(row) {
                let n = (v - mean) * inv_std;
                *h = n;
                o.write((g * n + b).max(0.0));
            }
            (mean, var, inv_std)
        })
    };
    (out, Stats::from_rows(rows))
}

/// No gradient flows back through this pooling window (its maximum was ≤ 0: ReLU cut it).
pub const CUT: u8 = u8::MAX;

/// Runs `body(channel, rows…)` for every channel, over rayon's pool when the work is large.
fn per_channel<A: Send, B: Send>(
    a: &mut [A],
    a_len: usize,
    b: &mut [B],
    b_len: usize,
    work: usize,
    body: impl Fn(usize, &mut [A], &mut [B]) + Sync + Send,
) {
    let (a_len, b_len) = (a_len.max(1), b_len.max(1));
    if threads_for(work) > 1 {
        a.par_chunks_mut(a_len)
            .zip(b.par_chunks_mut(b_len))
            .enumerate()
            .for_each(|(c, (a, b))| body(c, a, b));
    } else {
        a.chunks_mut(a_len)
            .zip(b.chunks_mut(b_len))
            .enumerate()
            .for_each(|(c, (a, b))| body(c, a, b));
    }
}

/// `out = maxpool2×2(relu(γ·x̂ + β))` per channel of the normalised activation `xhat` (`d`),
/// with the window position (0–3, row-major) of each maximum in `arg`, or [`CUT`].
pub fn affine_relu_maxpool(
    xhat: &[f32],
    d: Dims,
    gamma: &[f32],
    beta: &[f32],
    out: &mut [f32],
    arg: &mut [u8],
) {
    let p = d.pooled();
    let (plane, pooled) = (d.plane(), p.plane());
    assert_eq!(xhat.len(), d.len());
    assert_eq!(out.len(), p.len());
    assert_eq!(arg.len(), p.len());
    per_channel(out, pooled, arg, pooled, xhat.len(), |c, out, arg| {
        let (g, bt) = (gamma[c], beta[c]);
        let channel = &xhat[c * plane..(c + 1) * plane];
        for b in 0..d.b {
            for i in 0..p.h {
                let row = (b * d.h + 2 * i) * d.w;
                let top = &channel[row..row + 2 * p.w];
                let bottom = &channel[row + d.w..row + d.w + 2 * p.w];
                let o = (b * p.h + i) * p.w;
                let outs = out[o..o + p.w].iter_mut().zip(&mut arg[o..o + p.w]);
                for (j, (out, arg)) in outs.enumerate() {
                    let z = [
                        g * top[2 * j] + bt,
                        g * top[2 * j + 1] + bt,
                        g * bottom[2 * j] + bt,
                        g * bottom[2 * j + 1] + bt,
                    ];
                    // The first maximum wins ties, as in Burn's max-pool.
                    let (mut best, mut at) = (z[0], 0u8);
                    for (k, &v) in z.iter().enumerate().skip(1) {
                        if v > best {
                            best = v;
                            at = k as u8;
                        }
                    }
                    (*out, *arg) = if best > 0.0 { (best, at) } else { (0.0, CUT) };
                }
            }
        }
    });
}

/// The backward pass of [`affine_relu_maxpool`] and of the BatchNorm normalisation before it.
///
/// Given the gradient of the pooled output `grad` (`d.pooled()`), returns the gradient of the
/// convolution output `y` (`d`, channel-major) in `grad_y` and per channel `(∂γ, ∂β)`:
/// `∂β = Σ ∂z`, `∂γ = Σ ∂z·x̂`, `∂y = γ/σ · (∂z − ∂β/n − x̂·∂γ/n)`.
#[allow(clippy::too_many_arguments)]
pub fn affine_relu_maxpool_backward(
    xhat: &[f32],
    d: Dims,
    gamma: &[f32],
    inv_std: &[f32],
    arg: &[u8],
    grad: &[f32],
    grad_y: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let p = d.pooled();
    let (plane, pooled) = (d.plane(), p.plane());
    assert_eq!(grad.len(), p.len());
    assert_eq!(arg.len(), p.len());
    assert_eq!(grad_y.len(), d.len());
    // Offset of window position k from the window's top-left value.
    let offset = |k: u8| usize::from(k / 2) * d.w + usize::from(k % 2);
    // Each channel's (∂γ, ∂β) is written by the task that owns the channel.
    let mut sums = vec![(0.0f32, 0.0f32); d.c];
    per_channel(grad_y, plane, &mut sums, 1, grad_y.len(), |c, out, sum| {
        let channel = &xhat[c * plane..(c + 1) * plane];
        let grads = &grad[c * pooled..(c + 1) * pooled];
        let args = &arg[c * pooled..(c + 1) * pooled];
        // Calls `visit(input offset of the window's maximum, gradient)` for every window whose
        // maximum passed the ReLU.
        let windows = |visit: &mut dyn FnMut(usize, f32)| {
            for b in 0..d.b {
                for i in 0..p.h {
                    let row = (b * d.h + 2 * i) * d.w;
                    let o = (b * p.h + i) * p.w;
                    let window_args = &args[o..o + p.w];
                    let window_grads = &grads[o..o + p.w];
                    for j in 0..p.w {
                        let k = window_args[j];
                        if k != CUT {
                            visit(row + 2 * j + offset(k), window_grads[j]);
                        }
                    }
                }
            }
        };
        let (mut dbeta, mut dgamma) = (0.0f64, 0.0f64);
        windows(&mut |at, g| {
            dbeta += f64::from(g);
            dgamma += f64::from(g) * f64::from(channel[at]);
        });
        let n = plane.max(1) as f64;
        let scale = gamma[c] * inv_std[c];
        let shift = (f64::from(scale) * dbeta / n) as f32;
        let slope = (f64::from(scale) * dgamma / n) as f32;
        out.iter_mut()
            .zip(channel)
            .for_each(|(o, &x)| *o = -shift - slope * x);
        windows(&mut |at, g| out[at] += scale * g);
        sum[0] = (dgamma as f32, dbeta as f32);
    });
    sums.into_iter().unzip()
}

/// Row sums of a `[rows, plane]` matrix.
pub fn row_sums(values: &[f32], plane: usize) -> Vec<f32> {
    values
        .chunks(plane.max(1))
        .map(|row| row.iter().map(|&v| f64::from(v)).sum::<f64>() as f32)
        .collect()
}

/// Adds `bias[c]` to every value of row `c` of a `[c, plane]` matrix.
pub fn add_row_bias(values: &mut [f32], plane: usize, bias: &[f32]) {
    values
        .chunks_mut(plane.max(1))
        .zip(bias)
        .for_each(|(row, &b)| row.iter_mut().for_each(|v| *v += b));
}

/// `out = relu(γ·(x − mean)/√(var + ε) + β)` per channel row of `x` (`[c, plane]`): the
/// evaluation-mode BatchNorm + ReLU with running statistics.
pub fn batch_norm_relu_inference(
    x: &[f32],
    plane: usize,
    [gamma, beta, mean, var]: [&[f32]; 4],
    epsilon: f64,
    out: &mut [f32],
) {
    assert_eq!(x.len(), out.len());
    let mut none = vec![(); gamma.len()];
    per_channel(out, plane, &mut none, 1, x.len(), |c, out, _| {
        let inv_std = (1.0 / (f64::from(var[c]) + epsilon).sqrt()) as f32;
        let scale = gamma[c] * inv_std;
        let shift = beta[c] - mean[c] * scale;
        let row = &x[c * plane..(c + 1) * plane];
        out.iter_mut()
            .zip(row)
            .for_each(|(o, &x)| *o = (scale * x + shift).max(0.0));
    });
}

/// The backward pass of [`batch_norm_relu`]: given the output gradient `grad` (`[c, plane]`),
/// returns the input gradient and per channel `(∂γ, ∂β)`, with `∂z = grad·[γ·x̂ + β > 0]`,
/// `∂β = Σ ∂z`, `∂γ = Σ ∂z·x̂`, `∂x = γ/σ · (∂z − ∂β/n − x̂·∂γ/n)`. Each row is read three
/// times (the two sums, then the gradient; it stays in the cache) and its gradient written
/// once. `plane` must not be 0.
pub fn batch_norm_relu_backward(
    xhat: &[f32],
    plane: usize,
    [gamma, beta, inv_std]: [&[f32]; 3],
    grad: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(plane > 0, "batch_norm_relu_backward: rows of no values");
    assert_eq!(
        xhat.len(),
        gamma.len() * plane,
        "batch_norm_relu_backward: one γ per row"
    );
    assert_eq!(beta.len(), gamma.len());
    assert_eq!(inv_std.len(), gamma.len());
    assert_eq!(grad.len(), xhat.len());
    // SAFETY: the closure writes every value of its output row: one loop over it zipped with
    // the row's x̂ and gradient, all `plane` long (the assertions above).
    let (grad_x, sums) = unsafe {
        written_rows(plane, vec![(); gamma.len()], |c, out, ()| {
            let (g, b) = (gamma[c], beta[c]);
            let row = &xhat[c * plane..(c + 1) * plane];
            let grads = &grad[c * plane..(c + 1) * plane];
            let dz = |x: f32, dy: f32| if g * x + b > 0.0 { dy } else { 0.0 };
            let dbeta = lane_sum_pairs(row, grads, dz);
            let dgamma = lane_sum_pairs(row, grads, |x, dy| dz(x, dy) * x);
            let n = plane as f64;
            let scale = g * inv_std[c];
            let shift = (dbeta / n) as f32;
            let slope = (dgamma / n) as f32;
            for ((o, &x), &dy) in out.iter_mut().zip(row).zip(grads) {
                o.write(scale * (dz(x, dy) - shift - slope * x));
            }
            (dgamma as f32, dbeta as f32)
        })
    };
    let (grad_gamma, grad_beta) = sums.into_iter().unzip();
    (grad_x, grad_gamma, grad_beta)
}
