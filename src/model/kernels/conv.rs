//! Convolutions without bias on channel-major activations, any of the ResNet's shapes: 3×3 with
//! padding 1 and 1×1 with padding 0, stride 1 or 2. The forward pass and both gradients are
//! matrix products over an im2col matrix (`[C·k·k, B·OH·OW]`), as the small CNN's block does
//! for its one shape ([`super::im2col3x3`]).

use rayon::prelude::*;

use super::{Buffer, Dims, Mat, matmul, profile, threads_for};

/// A square convolution's kernel size, stride and padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Geometry {
    /// The output of a convolution with `out_channels` filters over `input`.
    pub fn output(&self, input: Dims, out_channels: usize) -> Dims {
        let size = |s: usize| (s + 2 * self.pad).saturating_sub(self.kernel) / self.stride + 1;
        Dims {
            c: out_channels,
            b: input.b,
            h: size(input.h),
            w: size(input.w),
        }
    }

    /// Rows of the im2col matrix per input channel.
    pub fn taps(&self) -> usize {
        self.kernel * self.kernel
    }

    /// Whether the im2col matrix is the input itself (1×1, stride 1, no padding).
    pub fn is_identity(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.pad == 0
    }

    /// The output columns `ox` whose input column `ox·stride + tap − pad` lies in `0..width`.
    fn valid(&self, tap: usize, width: usize, out_width: usize) -> std::ops::Range<usize> {
        let first = self.pad.saturating_sub(tap).div_ceil(self.stride);
        // Largest ox with ox·stride + tap − pad ≤ width − 1.
        let last = (width + self.pad)
            .checked_sub(tap + 1)
            .map_or(0, |v| v / self.stride + 1);
        first.min(out_width)..last.min(out_width).max(first.min(out_width))
    }
}

/// The small CNN's and most of the ResNet's convolution: 3×3, stride 1, padding 1.
pub const SAME3X3: Geometry = Geometry {
    kernel: 3,
    stride: 1,
    pad: 1,
};

/// For tap `(ky, kx)` of a 3×3 / stride 1 / padding 1 convolution over `h×w` images: the
/// offset of the value it reads, relative to the output position, within one image plane.
/// Reading `plane[p + offset]` is right for every position but those whose source row or
/// column lies outside the image: the ones outside `0..h·w` and, in the first or last column,
/// the ones that wrapped to the neighbouring row ([`wrapped_column`]).
fn tap_offset(ky: usize, kx: usize, w: usize) -> isize {
    (ky as isize - 1) * w as isize + (kx as isize - 1)
}

/// The column whose values wrap to the neighbouring row for tap column `kx`: the first for
/// `kx = 0` (it reads column −1), the last for `kx = 2` (column w).
fn wrapped_column(kx: usize, w: usize) -> Option<usize> {
    match kx {
        0 => Some(0),
        2 => Some(w - 1),
        _ => None,
    }
}

/// [`im2col`] for [`SAME3X3`]: each image plane of each tap is one shifted copy of the input's
/// plane, with the padding written over it afterwards (rather than one short copy per row).
fn im2col_same3x3(x: &[f32], d: Dims, col: &mut [f32]) {
    let (hw, plane) = (d.h * d.w, d.plane());
    let body = |(row, dst): (usize, &mut [f32])| {
        let (c, ky, kx) = (row / 9, (row % 9) / 3, row % 3);
        let channel = &x[c * plane..(c + 1) * plane];
        let offset = tap_offset(ky, kx, d.w);
        let shift = offset.unsigned_abs().min(hw);
        for (dst, src) in dst.chunks_exact_mut(hw).zip(channel.chunks_exact(hw)) {
            if offset >= 0 {
                dst[..hw - shift].copy_from_slice(&src[shift..]);
                dst[hw - shift..].fill(0.0);
            } else {
                dst[shift..].copy_from_slice(&src[..hw - shift]);
                dst[..shift].fill(0.0);
            }
            if let Some(column) = wrapped_column(kx, d.w) {
                dst.iter_mut().skip(column).step_by(d.w).for_each(|v| *v = 0.0);
            }
        }
    };
    if threads_for(col.len()) > 1 {
        col.par_chunks_mut(plane.max(1)).enumerate().for_each(body);
    } else {
        col.chunks_mut(plane.max(1)).enumerate().for_each(body);
    }
}

/// [`col2im`] for [`SAME3X3`]: zeroes the entries of `col` that read padding, then adds each
/// tap's image plane, shifted, to the input gradient's.
fn col2im_same3x3(col: &mut [f32], d: Dims, x: &mut [f32]) {
    let (hw, plane) = (d.h * d.w, d.plane());
    let body = |(channel, taps): (&mut [f32], &mut [f32])| {
        channel.fill(0.0);
        for (tap, rows) in taps.chunks_exact_mut(plane.max(1)).enumerate() {
            let (ky, kx) = (tap / 3, tap % 3);
            let offset = tap_offset(ky, kx, d.w);
            let shift = offset.unsigned_abs().min(hw);
            for (src, dst) in rows.chunks_exact_mut(hw).zip(channel.chunks_exact_mut(hw)) {
                if let Some(column) = wrapped_column(kx, d.w) {
                    src.iter_mut().skip(column).step_by(d.w).for_each(|v| *v = 0.0);
                }
                let (src, dst) = if offset >= 0 {
                    (&src[..hw - shift], &mut dst[shift..])
                } else {
                    (&src[shift..], &mut dst[..hw - shift])
                };
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        }
    };
    if threads_for(col.len()) > 1 {
        x.par_chunks_mut(plane.max(1))
            .zip(col.par_chunks_mut((9 * plane).max(1)))
            .for_each(body);
    } else {
        x.chunks_mut(plane.max(1))
            .zip(col.chunks_mut((9 * plane).max(1)))
            .for_each(body);
    }
}

/// Calls `visit(row of the output plane, source row or None, tap_y)` for every (b, oy) of one
/// im2col row: the source row is the input row the tap reads, None for padding.
fn rows_of(d: Dims, g: Geometry, out: Dims, ky: usize, mut visit: impl FnMut(usize, Option<usize>)) {
    for b in 0..d.b {
        for oy in 0..out.h {
            let sy = (oy * g.stride + ky).checked_sub(g.pad).filter(|&sy| sy < d.h);
            visit(b * out.h + oy, sy.map(|sy| b * d.h + sy));
        }
    }
}

/// The im2col matrix of `x` (`d`): row `c·k² + ky·k + kx`, column `(b, oy, ox)` holds
/// `x[c, b, oy·s + ky − p, ox·s + kx − p]` (0 outside the image).
pub fn im2col(x: &[f32], d: Dims, g: Geometry, col: &mut [f32]) {
    profile::time(|| "  (of which im2col)".to_owned(), 0, || im2col_untimed(x, d, g, col));
}

fn im2col_untimed(x: &[f32], d: Dims, g: Geometry, col: &mut [f32]) {
    if g == SAME3X3 {
        return im2col_same3x3(x, d, col);
    }
    let out = g.output(d, d.c);
    let (plane, out_plane, taps) = (d.plane(), out.plane(), g.taps());
    assert_eq!(x.len(), d.len());
    assert_eq!(col.len(), d.c * taps * out_plane);
    let body = |(row, dst): (usize, &mut [f32])| {
        let (c, ky, kx) = (row / taps, (row % taps) / g.kernel, row % g.kernel);
        let channel = &x[c * plane..(c + 1) * plane];
        let valid = g.valid(kx, d.w, out.w);
        rows_of(d, g, out, ky, |o, src| {
            let dst = &mut dst[o * out.w..(o + 1) * out.w];
            let Some(s) = src else {
                dst.fill(0.0);
                return;
            };
            if valid.is_empty() {
                dst.fill(0.0);
                return;
            }
            let src = &channel[s * d.w..(s + 1) * d.w];
            dst[..valid.start].fill(0.0);
            dst[valid.end..].fill(0.0);
            let first = valid.start * g.stride + kx - g.pad;
            if g.stride == 1 {
                dst[valid.clone()].copy_from_slice(&src[first..first + valid.len()]);
            } else {
                for (v, s) in dst[valid.clone()].iter_mut().zip(src[first..].iter().step_by(g.stride)) {
                    *v = *s;
                }
            }
        });
    };
    if threads_for(col.len()) > 1 {
        col.par_chunks_mut(out_plane.max(1)).enumerate().for_each(body);
    } else {
        col.chunks_mut(out_plane.max(1)).enumerate().for_each(body);
    }
}

/// The adjoint of [`im2col`]: `x[c, b, y, x]` = the sum of the `col` entries that read it.
/// The entries of `col` that read padding may be overwritten (with zeros).
pub fn col2im(col: &mut [f32], d: Dims, g: Geometry, x: &mut [f32]) {
    profile::time(|| "  (of which col2im)".to_owned(), 0, || col2im_untimed(col, d, g, x));
}

fn col2im_untimed(col: &mut [f32], d: Dims, g: Geometry, x: &mut [f32]) {
    if g == SAME3X3 {
        return col2im_same3x3(col, d, x);
    }
    let col = &*col;
    let out = g.output(d, d.c);
    let (plane, out_plane, taps) = (d.plane(), out.plane(), g.taps());
    assert_eq!(x.len(), d.len());
    assert_eq!(col.len(), d.c * taps * out_plane);
    let body = |(c, channel): (usize, &mut [f32])| {
        channel.fill(0.0);
        for tap in 0..taps {
            let (ky, kx) = (tap / g.kernel, tap % g.kernel);
            let row = &col[(c * taps + tap) * out_plane..(c * taps + tap + 1) * out_plane];
            let valid = g.valid(kx, d.w, out.w);
            if valid.is_empty() {
                continue;
            }
            let first = valid.start * g.stride + kx;
            rows_of(d, g, out, ky, |o, dst| {
                let Some(s) = dst else { return };
                let src = &row[o * out.w + valid.start..o * out.w + valid.end];
                let dst = &mut channel[s * d.w..(s + 1) * d.w];
                let first = first - g.pad;
                if g.stride == 1 {
                    dst[first..first + src.len()]
                        .iter_mut()
                        .zip(src)
                        .for_each(|(d, s)| *d += s);
                } else {
                    dst[first..]
                        .iter_mut()
                        .step_by(g.stride)
                        .zip(src)
                        .for_each(|(d, s)| *d += s);
                }
            });
        }
    };
    if threads_for(col.len()) > 1 {
        x.par_chunks_mut(plane.max(1)).enumerate().for_each(body);
    } else {
        x.chunks_mut(plane.max(1)).enumerate().for_each(body);
    }
}

/// The profile key of a convolution: `conv 3×3/2 64→128 28×28 PART`.
fn key(d: Dims, g: Geometry, o: usize, part: &str) -> impl FnOnce() -> String {
    move || {
        format!(
            "conv {0}×{0}/{1} {2:>3}→{3:<3} {4:>3}×{5:<3} {part}",
            g.kernel, g.stride, d.c, o, d.h, d.w
        )
    }
}

/// Multiply-adds of one of the convolution's matrix products.
fn macs(d: Dims, g: Geometry, o: usize) -> usize {
    g.output(d, o).plane() * d.c * g.taps() * o
}

/// `y[O, B·OH·OW]` = the convolution of `x` (`d`) with `weight` (`[O, C·k·k]`), no bias.
pub fn conv_forward(x: &[f32], d: Dims, g: Geometry, weight: &[f32], o: usize) -> (Buffer, Dims) {
    profile::time(key(d, g, o, "1 forward"), macs(d, g, o), || {
        conv_forward_untimed(x, d, g, weight, o)
    })
}

fn conv_forward_untimed(
    x: &[f32],
    d: Dims,
    g: Geometry,
    weight: &[f32],
    o: usize,
) -> (Buffer, Dims) {
    let out = g.output(d, o);
    let (n, k) = (out.plane(), d.c * g.taps());
    let mut y = Buffer::scratch(o * n);
    if g.is_identity() {
        matmul(o, n, k, Mat::rows(weight, k), Mat::rows(x, n), &mut y);
    } else {
        let mut col = Buffer::scratch(k * n);
        im2col(x, d, g, &mut col);
        matmul(o, n, k, Mat::rows(weight, k), Mat::rows(&col, n), &mut y);
    }
    (y, out)
}

/// The weight gradient `[O, C·k·k]` of [`conv_forward`] given the output gradient `grad_y`.
pub fn conv_weight_grad(x: &[f32], d: Dims, g: Geometry, grad_y: &[f32], o: usize) -> Vec<f32> {
    profile::time(key(d, g, o, "2 weight grad"), macs(d, g, o), || {
        conv_weight_grad_untimed(x, d, g, grad_y, o)
    })
}

fn conv_weight_grad_untimed(
    x: &[f32],
    d: Dims,
    g: Geometry,
    grad_y: &[f32],
    o: usize,
) -> Vec<f32> {
    let out = g.output(d, o);
    let (n, k) = (out.plane(), d.c * g.taps());
    let col = if g.is_identity() {
        None
    } else {
        let mut col = Buffer::scratch(k * n);
        im2col(x, d, g, &mut col);
        Some(col)
    };
    let col = col.as_deref().unwrap_or(x);
    weight_grad_from_col(col, grad_y, o, k, n)
}

/// The weight gradient `∂W = ∂y · colᵀ` (`[o, k]`) from the im2col matrix `col` (`[k, n]`) and
/// the output gradient `grad_y` (`[o, n]`).
pub fn weight_grad_from_col(col: &[f32], grad_y: &[f32], o: usize, k: usize, n: usize) -> Vec<f32> {
    let mut grad_w = vec![0.0; o * k];
    if k >= o {
        // The transposed product, `∂Wᵀ = col · ∂yᵀ`, then the small transpose: the gemm crate
        // runs this shape at 85–108 GFLOP/s on one core where `∂y · colᵀ` ran at 32–98
        // (measured on the ResNet's shapes: 64→64 at 28×28 was the slowest layer of the step).
        let mut transposed = vec![0.0; k * o];
        matmul(k, o, n, Mat::rows(col, n), Mat::transposed(grad_y, n), &mut transposed);
        for (row, values) in transposed.chunks_exact(o.max(1)).enumerate() {
            for (oc, &v) in values.iter().enumerate() {
                grad_w[oc * k + row] = v;
            }
        }
    } else {
        matmul(o, k, n, Mat::rows(grad_y, n), Mat::transposed(col, n), &mut grad_w);
    }
    grad_w
}

/// The input gradient (`d`) of [`conv_forward`] given the output gradient `grad_y`.
pub fn conv_input_grad(weight: &[f32], d: Dims, g: Geometry, grad_y: &[f32], o: usize) -> Vec<f32> {
    profile::time(key(d, g, o, "3 input grad"), macs(d, g, o), || {
        conv_input_grad_untimed(weight, d, g, grad_y, o)
    })
}

fn conv_input_grad_untimed(
    weight: &[f32],
    d: Dims,
    g: Geometry,
    grad_y: &[f32],
    o: usize,
) -> Vec<f32> {
    let out = g.output(d, o);
    let (n, k) = (out.plane(), d.c * g.taps());
    let mut grad_x = vec![0.0; d.len()];
    if g.is_identity() {
        matmul(k, n, o, Mat::transposed(weight, k), Mat::rows(grad_y, n), &mut grad_x);
    } else {
        let mut grad_col = Buffer::scratch(k * n);
        matmul(k, n, o, Mat::transposed(weight, k), Mat::rows(grad_y, n), &mut grad_col);
        col2im(&mut grad_col, d, g, &mut grad_x);
    }
    grad_x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, salt: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7 + salt) % 13) as f32 - 6.0).collect()
    }

    /// The direct definition of the convolution, for comparison.
    fn direct(x: &[f32], d: Dims, g: Geometry, w: &[f32], o: usize) -> Vec<f32> {
        let out = g.output(d, o);
        let mut y = vec![0.0; out.len()];
        for oc in 0..o {
            for b in 0..d.b {
                for oy in 0..out.h {
                    for ox in 0..out.w {
                        let mut sum = 0.0;
                        for c in 0..d.c {
                            for ky in 0..g.kernel {
                                for kx in 0..g.kernel {
                                    let sy = (oy * g.stride + ky) as isize - g.pad as isize;
                                    let sx = (ox * g.stride + kx) as isize - g.pad as isize;
                                    if sy < 0 || sx < 0 || sy >= d.h as isize || sx >= d.w as isize {
                                        continue;
                                    }
                                    let xi = ((c * d.b + b) * d.h + sy as usize) * d.w + sx as usize;
                                    let wi = ((oc * d.c + c) * g.kernel + ky) * g.kernel + kx;
                                    sum += x[xi] * w[wi];
                                }
                            }
                        }
                        y[((oc * d.b + b) * out.h + oy) * out.w + ox] = sum;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn every_geometry_matches_the_direct_convolution_and_col2im_is_the_adjoint() {
        let geometries = [
            Geometry { kernel: 3, stride: 1, pad: 1 },
            Geometry { kernel: 3, stride: 2, pad: 1 },
            Geometry { kernel: 1, stride: 2, pad: 0 },
            Geometry { kernel: 1, stride: 1, pad: 0 },
        ];
        for g in geometries {
            for (h, w) in [(7, 7), (8, 6), (5, 9), (1, 1), (2, 3)] {
                let d = Dims { c: 3, b: 2, h, w };
                let o = 4;
                let x = values(d.len(), 1);
                let weight = values(o * d.c * g.taps(), 5);
                let (y, out) = conv_forward(&x, d, g, &weight, o);
                assert_eq!(&y[..], &direct(&x, d, g, &weight, o)[..], "{g:?} {h}×{w}");
                assert_eq!(out.len(), y.len());

                // ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩
                let k = d.c * g.taps();
                let cg = values(k * out.plane(), 3);
                let mut col = vec![0.0; k * out.plane()];
                im2col(&x, d, g, &mut col);
                let mut back = vec![0.0; d.len()];
                col2im(&mut cg.clone(), d, g, &mut back);
                let lhs: f32 = col.iter().zip(&cg).map(|(a, b)| a * b).sum();
                let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
                assert_eq!(lhs, rhs, "{g:?} {h}×{w}");
            }
        }
    }
}
