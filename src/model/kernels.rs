//! CPU kernels of the fused convolution block ([`super::fused`]) on plain `f32` slices.
//!
//! Activations are kept channel-major, `[C, B, H, W]` ("CBHW"): every channel is one contiguous
//! row of `B·H·W` values, so a 3×3 convolution is one well-shaped matrix product over an im2col
//! matrix, and BatchNorm's per-channel statistics are sums over contiguous rows with no
//! transposes. Rows are independent, so the elementwise kernels split them over rayon's pool;
//! the matrix products use the `gemm` crate (Burn's CPU backend uses it too), threaded over the
//! same pool.

use rayon::prelude::*;

/// The size of a channel-major activation `[c, b, h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub c: usize,
    pub b: usize,
    pub h: usize,
    pub w: usize,
}

impl Dims {
    /// Values per channel (`b·h·w`).
    pub fn plane(&self) -> usize {
        self.b * self.h * self.w
    }

    pub fn len(&self) -> usize {
        self.c * self.plane()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The activation after a 2×2, stride-2 max-pool (odd edges dropped, as Burn and PyTorch do).
    pub fn pooled(&self) -> Dims {
        Dims {
            h: self.h / 2,
            w: self.w / 2,
            ..*self
        }
    }
}

/// Threads for a kernel of `work` multiply-adds: one below a size where splitting costs more
/// than it saves.
fn threads_for(work: usize) -> usize {
    if work < 1 << 18 {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// The im2col matrix of a 3×3, padding-1, stride-1 convolution: `col` is `[c·9, b·h·w]`,
/// row `c·9 + ky·3 + kx`, column `(b, y, x)` holding `x[c, b, y + ky − 1, x + kx − 1]` (0 outside).
pub fn im2col3x3(x: &[f32], d: Dims, col: &mut [f32]) {
    let plane = d.plane();
    assert_eq!(x.len(), d.len());
    assert_eq!(col.len(), d.len() * 9);
    let (h, w) = (d.h, d.w);
    let body = |(row, out): (usize, &mut [f32])| {
        let (c, ky, kx) = (row / 9, (row % 9) / 3, row % 3);
        let channel = &x[c * plane..(c + 1) * plane];
        for b in 0..d.b {
            for y in 0..h {
                let dst = &mut out[(b * h + y) * w..(b * h + y + 1) * w];
                let sy = y + ky;
                if sy == 0 || sy > h {
                    dst.fill(0.0);
                    continue;
                }
                let src = &channel[(b * h + sy - 1) * w..(b * h + sy) * w];
                match kx {
                    0 => {
                        dst[0] = 0.0;
                        dst[1..].copy_from_slice(&src[..w - 1]);
                    }
                    1 => dst.copy_from_slice(src),
                    _ => {
                        dst[..w - 1].copy_from_slice(&src[1..]);
                        dst[w - 1] = 0.0;
                    }
                }
            }
        }
    };
    if threads_for(col.len()) > 1 {
        col.par_chunks_mut(plane).enumerate().for_each(body);
    } else {
        col.chunks_mut(plane).enumerate().for_each(body);
    }
}

/// The adjoint of [`im2col3x3`]: `x[c, b, y, x]` = sum of the `col` entries that read it.
pub fn col2im3x3(col: &[f32], d: Dims, x: &mut [f32]) {
    let plane = d.plane();
    assert_eq!(x.len(), d.len());
    assert_eq!(col.len(), d.len() * 9);
    let (h, w) = (d.h, d.w);
    let body = |(c, channel): (usize, &mut [f32])| {
        channel.fill(0.0);
        for k in 0..9 {
            let (ky, kx) = (k / 3, k % 3);
            let rows = &col[(c * 9 + k) * plane..(c * 9 + k + 1) * plane];
            for b in 0..d.b {
                for y in 0..h {
                    let sy = y + ky;
                    if sy == 0 || sy > h {
                        continue;
                    }
                    let src = &rows[(b * h + y) * w..(b * h + y + 1) * w];
                    let dst = &mut channel[(b * h + sy - 1) * w..(b * h + sy) * w];
                    match kx {
                        0 => dst[..w - 1]
                            .iter_mut()
                            .zip(&src[1..])
                            .for_each(|(d, s)| *d += s),
                        1 => dst.iter_mut().zip(src).for_each(|(d, s)| *d += s),
                        _ => dst[1..]
                            .iter_mut()
                            .zip(&src[..w - 1])
                            .for_each(|(d, s)| *d += s),
                    }
                }
            }
        }
    };
    if threads_for(col.len()) > 1 {
        x.par_chunks_mut(plane).enumerate().for_each(body);
    } else {
        x.chunks_mut(plane).enumerate().for_each(body);
    }
}

/// A matrix operand: its values and the strides of a row and of a column.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    /// Checks that the `rows × cols` matrix lies inside `data`.
    fn check(&self, rows: usize, cols: usize) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.row_stride + (cols - 1) * self.col_stride;
            assert!(last < self.data.len(), "matrix operand out of bounds");
        }
    }
}

/// `out[m × n]` (row-major) = `a[m × k] · b[k × n]`.
pub fn matmul(m: usize, n: usize, k: usize, a: Mat<'_>, b: Mat<'_>, out: &mut [f32]) {
    assert_eq!(out.len(), m * n);
    a.check(m, k);
    b.check(k, n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.fill(0.0);
        return;
    }
    let threads = threads_for(m * n * k);
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `check` proved every element the product reads lies inside `a.data` / `b.data`,
    // `out` holds exactly `m × n` row-major values, and `read_dst = false` means `out` is only
    // written. The strides fit in isize because they index slices that exist.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Per-channel batch statistics.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub mean: Vec<f32>,
    /// The biased variance (÷ n), as Burn's and PyTorch's training-mode BatchNorm use.
    pub var: Vec<f32>,
    /// `1/√(var + ε)`
    pub inv_std: Vec<f32>,
}

/// Per-channel BatchNorm statistics of a channel-major activation: replaces every row of `y`
/// (`[c, plane]`) by its normalised values `(y − mean)/√(var + ε)`.
pub fn normalize_rows(y: &mut [f32], plane: usize, epsilon: f64) -> Stats {
    let body = |row: &mut [f32]| {
        let n = row.len().max(1) as f64;
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let inv_std = (1.0 / (var + epsilon).sqrt()) as f32;
        let mean32 = mean as f32;
        row.iter_mut().for_each(|v| *v = (*v - mean32) * inv_std);
        (mean32, var as f32, inv_std)
    };
    let rows: Vec<(f32, f32, f32)> = if threads_for(y.len()) > 1 {
        y.par_chunks_mut(plane.max(1)).map(body).collect()
    } else {
        y.chunks_mut(plane.max(1)).map(body).collect()
    };
    let mut stats = Stats::default();
    for (mean, var, inv_std) in rows {
        stats.mean.push(mean);
        stats.var.push(var);
        stats.inv_std.push(inv_std);
    }
    stats
}

/// No gradient flows back through this pooling window (its maximum was ≤ 0: ReLU cut it).
pub const CUT: u8 = u8::MAX;

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
    let body = |(c, (out, arg)): (usize, (&mut [f32], &mut [u8]))| {
        let (g, bt) = (gamma[c], beta[c]);
        let channel = &xhat[c * plane..(c + 1) * plane];
        for b in 0..d.b {
            for i in 0..p.h {
                let top = &channel[(b * d.h + 2 * i) * d.w..];
                let bottom = &channel[(b * d.h + 2 * i + 1) * d.w..];
                for j in 0..p.w {
                    let window = [top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]];
                    let (mut best, mut at) = (g * window[0] + bt, 0u8);
                    for (k, &v) in window.iter().enumerate().skip(1) {
                        let z = g * v + bt;
                        if z > best {
                            best = z;
                            at = k as u8;
                        }
                    }
                    let o = (b * p.h + i) * p.w + j;
                    if best > 0.0 {
                        out[o] = best;
                        arg[o] = at;
                    } else {
                        out[o] = 0.0;
                        arg[o] = CUT;
                    }
                }
            }
        }
    };
    if threads_for(xhat.len()) > 1 {
        out.par_chunks_mut(pooled.max(1))
            .zip(arg.par_chunks_mut(pooled.max(1)))
            .enumerate()
            .for_each(body);
    } else {
        out.chunks_mut(pooled.max(1))
            .zip(arg.chunks_mut(pooled.max(1)))
            .enumerate()
            .for_each(body);
    }
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
    assert_eq!(grad_y.len(), d.len());
    let position = |b: usize, o: usize, k: u8| {
        let (i, j) = (o / p.w, o % p.w);
        (b * d.h + 2 * i + usize::from(k / 2)) * d.w + 2 * j + usize::from(k % 2)
    };
    let body = |(c, out): (usize, &mut [f32])| {
        let channel = &xhat[c * plane..(c + 1) * plane];
        let grads = &grad[c * pooled..(c + 1) * pooled];
        let args = &arg[c * pooled..(c + 1) * pooled];
        let (mut dbeta, mut dgamma) = (0.0f64, 0.0f64);
        for b in 0..d.b {
            for o in 0..p.h * p.w {
                let k = args[b * p.h * p.w + o];
                if k != CUT {
                    let g = grads[b * p.h * p.w + o];
                    dbeta += f64::from(g);
                    dgamma += f64::from(g) * f64::from(channel[position(b, o, k)]);
                }
            }
        }
        let n = plane.max(1) as f64;
        let scale = gamma[c] * inv_std[c];
        let shift = (f64::from(scale) * dbeta / n) as f32;
        let slope = (f64::from(scale) * dgamma / n) as f32;
        out.iter_mut()
            .zip(channel)
            .for_each(|(o, &x)| *o = -shift - slope * x);
        for b in 0..d.b {
            for o in 0..p.h * p.w {
                let k = args[b * p.h * p.w + o];
                if k != CUT {
                    out[position(b, o, k)] += scale * grads[b * p.h * p.w + o];
                }
            }
        }
        (dgamma as f32, dbeta as f32)
    };
    let sums: Vec<(f32, f32)> = if threads_for(grad_y.len()) > 1 {
        grad_y
            .par_chunks_mut(plane.max(1))
            .enumerate()
            .map(body)
            .collect()
    } else {
        grad_y
            .chunks_mut(plane.max(1))
            .enumerate()
            .map(body)
            .collect()
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_reads_transposed_operands() {
        // a = [[1, 2, 3], [4, 5, 6]] (2×3), b = aᵀ (3×2) stored as a.
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [0.0; 4];
        matmul(2, 2, 3, Mat::rows(&a, 3), Mat::transposed(&a, 3), &mut out);
        assert_eq!(out, [14.0, 32.0, 32.0, 77.0]);
        let mut out = [0.0; 9];
        matmul(3, 3, 2, Mat::transposed(&a, 3), Mat::rows(&a, 3), &mut out);
        assert_eq!(out, [17.0, 22.0, 27.0, 22.0, 29.0, 36.0, 27.0, 36.0, 45.0]);
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // ⟨im2col(x), g⟩ = ⟨x, col2im(g)⟩ for any x, g.
        let d = Dims {
            c: 2,
            b: 2,
            h: 3,
            w: 4,
        };
        let x: Vec<f32> = (0..d.len()).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let g: Vec<f32> = (0..d.len() * 9)
            .map(|i| ((i * 5) % 13) as f32 - 6.0)
            .collect();
        let mut col = vec![0.0; d.len() * 9];
        im2col3x3(&x, d, &mut col);
        let mut back = vec![0.0; d.len()];
        col2im3x3(&g, d, &mut back);
        let lhs: f32 = col.iter().zip(&g).map(|(a, b)| a * b).sum();
        let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
        assert_eq!(lhs, rhs);
        // The centre tap is the image itself; the top-left tap of the first row reads padding.
        assert_eq!(&col[4 * d.plane()..5 * d.plane()], &x[..d.plane()]);
        assert!(col[..d.w].iter().all(|&v| v == 0.0));
    }
}
