//! Convolutions without bias on channel-major activations, any of the ResNet's shapes: 3×3 with
//! padding 1 and 1×1 with padding 0, stride 1 or 2. The forward pass and both gradients are
//! matrix products over an im2col matrix (`[C·k·k, B·OH·OW]`); the small CNN's block
//! ([`crate::model::fused`]) uses the same im2col, col2im and weight-gradient product for its
//! one shape.

use rayon::prelude::*;

use super::{
    Buffer, Dims, Mat, matmul, matmul_into, matmul_ptr, pool_threads, profile, serially,
    threads_for,
};

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
/// offset of the value it reads, relative to the output position, in a channel's `[b, h, w]`
/// values. Reading `channel[p + offset]` is right for every position but those whose source
/// row or column lies outside the image: in the first or last column, the ones that wrapped to
/// the neighbouring row ([`wrapped_column`]); in the first or last row of an image, the ones
/// that read the neighbouring image or nothing ([`padded_rows`]).
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

/// The rows `(b, y)` of a `[b, h, w]` channel plane whose tap row `ky` reads padding: the
/// first row of every image for `ky = 0`, the last for `ky = 2`.
fn padded_rows(ky: usize, d: Dims) -> impl Iterator<Item = usize> {
    let row = match ky {
        0 => Some(0),
        2 => Some(d.h - 1),
        _ => None,
    };
    (0..d.b).filter_map(move |b| row.map(|y| b * d.h + y))
}

/// Zeroes the values of one tap's `[b, h, w]` plane that read padding: the wrapped column and
/// the padded rows.
fn zero_padding(values: &mut [f32], ky: usize, kx: usize, d: Dims) {
    if let Some(column) = wrapped_column(kx, d.w) {
        values
            .iter_mut()
            .skip(column)
            .step_by(d.w)
            .for_each(|v| *v = 0.0);
    }
    for row in padded_rows(ky, d) {
        values[row * d.w..(row + 1) * d.w].fill(0.0);
    }
}

/// [`im2col`] for [`SAME3X3`]: each tap's row is one shifted copy of the input channel (all
/// images at once: the shift crosses image boundaries only in rows that read padding), with
/// the padding written over it afterwards.
fn im2col_same3x3(x: &[f32], stride: usize, d: Dims, col: &mut [f32]) {
    let plane = d.plane();
    let body = |(row, dst): (usize, &mut [f32])| {
        let (c, ky, kx) = (row / 9, (row % 9) / 3, row % 3);
        let src = &x[c * stride..c * stride + plane];
        let offset = tap_offset(ky, kx, d.w);
        let shift = offset.unsigned_abs().min(plane);
        if offset >= 0 {
            dst[..plane - shift].copy_from_slice(&src[shift..]);
            dst[plane - shift..].fill(0.0);
        } else {
            dst[shift..].copy_from_slice(&src[..plane - shift]);
            dst[..shift].fill(0.0);
        }
        zero_padding(dst, ky, kx, d);
    };
    if threads_for(col.len()) > 1 {
        col.par_chunks_mut(plane.max(1)).enumerate().for_each(body);
    } else {
        col.chunks_mut(plane.max(1)).enumerate().for_each(body);
    }
}

/// [`col2im`] for [`SAME3X3`]: zeroes the entries of `col` that read padding, then adds each
/// tap's row, shifted, to the input gradient's channel.
fn col2im_same3x3(col: &mut [f32], d: Dims, channels: &mut [&mut [f32]]) {
    let plane = d.plane();
    let body = |(channel, taps): (&mut &mut [f32], &mut [f32])| {
        let channel = &mut channel[..plane];
        channel.fill(0.0);
        for (tap, src) in taps.chunks_exact_mut(plane.max(1)).enumerate() {
            let (ky, kx) = (tap / 3, tap % 3);
            zero_padding(src, ky, kx, d);
            let offset = tap_offset(ky, kx, d.w);
            let shift = offset.unsigned_abs().min(plane);
            let (src, dst) = if offset >= 0 {
                (&src[..plane - shift], &mut channel[shift..])
            } else {
                (&src[shift..], &mut channel[..plane - shift])
            };
            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
        }
    };
    if threads_for(col.len()) > 1 {
        channels
            .par_iter_mut()
            .zip(col.par_chunks_mut((9 * plane).max(1)))
            .for_each(body);
    } else {
        channels
            .iter_mut()
            .zip(col.chunks_mut((9 * plane).max(1)))
            .for_each(body);
    }
}

/// Calls `visit(row of the output plane, source row or None, tap_y)` for every (b, oy) of one
/// im2col row: the source row is the input row the tap reads, None for padding.
fn rows_of(
    d: Dims,
    g: Geometry,
    out: Dims,
    ky: usize,
    mut visit: impl FnMut(usize, Option<usize>),
) {
    for b in 0..d.b {
        for oy in 0..out.h {
            let sy = (oy * g.stride + ky)
                .checked_sub(g.pad)
                .filter(|&sy| sy < d.h);
            visit(b * out.h + oy, sy.map(|sy| b * d.h + sy));
        }
    }
}

/// The im2col matrix of `x` (`d`): row `c·k² + ky·k + kx`, column `(b, oy, ox)` holds
/// `x[c, b, oy·s + ky − p, ox·s + kx − p]` (0 outside the image).
pub fn im2col(x: &[f32], d: Dims, g: Geometry, col: &mut [f32]) {
    assert_eq!(x.len(), d.len());
    im2col_strided(x, d.plane(), d, g, col);
}

/// [`im2col`] of `d`'s images where channel `c`'s values start at `x[c·stride]` (a run of
/// consecutive images of a larger batch).
fn im2col_strided(x: &[f32], stride: usize, d: Dims, g: Geometry, col: &mut [f32]) {
    let needed = (d.c.max(1) - 1) * stride + d.plane();
    assert!(x.len() >= needed, "im2col input too short");
    profile::time(
        || "  (of which im2col)".to_owned(),
        0,
        || im2col_untimed(x, stride, d, g, col),
    );
}

fn im2col_untimed(x: &[f32], stride: usize, d: Dims, g: Geometry, col: &mut [f32]) {
    if g == SAME3X3 {
        return im2col_same3x3(x, stride, d, col);
    }
    let out = g.output(d, d.c);
    let (plane, out_plane, taps) = (d.plane(), out.plane(), g.taps());
    assert_eq!(col.len(), d.c * taps * out_plane);
    let body = |(row, dst): (usize, &mut [f32])| {
        let (c, ky, kx) = (row / taps, (row % taps) / g.kernel, row % g.kernel);
        let channel = &x[c * stride..c * stride + plane];
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
                for (v, s) in dst[valid.clone()]
                    .iter_mut()
                    .zip(src[first..].iter().step_by(g.stride))
                {
                    *v = *s;
                }
            }
        });
    };
    if threads_for(col.len()) > 1 {
        col.par_chunks_mut(out_plane.max(1))
            .enumerate()
            .for_each(body);
    } else {
        col.chunks_mut(out_plane.max(1)).enumerate().for_each(body);
    }
}

/// The adjoint of [`im2col`]: `x[c, b, y, x]` = the sum of the `col` entries that read it.
/// The entries of `col` that read padding may be overwritten (with zeros).
pub fn col2im(col: &mut [f32], d: Dims, g: Geometry, x: &mut [f32]) {
    assert_eq!(x.len(), d.len());
    if d.is_empty() {
        return;
    }
    let mut channels: Vec<&mut [f32]> = x.chunks_mut(d.plane()).collect();
    col2im_channels(col, d, g, &mut channels);
}

/// [`col2im`] into `d`'s images given as one slice per channel (a run of consecutive images of
/// a larger batch: [`run_channels`]).
fn col2im_channels(col: &mut [f32], d: Dims, g: Geometry, channels: &mut [&mut [f32]]) {
    assert_eq!(channels.len(), d.c, "col2im: one slice per channel");
    assert!(
        channels.iter().all(|channel| channel.len() >= d.plane()),
        "col2im output too short"
    );
    profile::time(
        || "  (of which col2im)".to_owned(),
        0,
        || col2im_untimed(col, d, g, channels),
    );
}

fn col2im_untimed(col: &mut [f32], d: Dims, g: Geometry, channels: &mut [&mut [f32]]) {
    if g == SAME3X3 {
        return col2im_same3x3(col, d, channels);
    }
    let col = &*col;
    let out = g.output(d, d.c);
    let (plane, out_plane, taps) = (d.plane(), out.plane(), g.taps());
    assert_eq!(col.len(), d.c * taps * out_plane);
    let body = |(c, channel): (usize, &mut &mut [f32])| {
        let channel = &mut channel[..plane];
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
        channels.par_iter_mut().enumerate().for_each(body);
    } else {
        channels.iter_mut().enumerate().for_each(body);
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

/// Values of im2col matrix built at a time (8 MB): the convolutions work through the batch a few
/// images at a time, so the matrix is written and read again while it is still in the cache
/// (and a step at batch 128 on 32×32 images needs 8 MB for it instead of 300).
const COL_CHUNK_VALUES: usize = 1 << 21;

/// Output positions a run of images covers at least: the products' inner dimension in the
/// weight gradient, which runs at 71 GFLOP/s over 448 positions (28 images of 4×4) and at
/// 97 over 1 024 on one core.
const MIN_CHUNK_POSITIONS: usize = 2048;

/// The runs of consecutive images the convolution works on, and how many threads work on them
/// side by side.
struct Runs {
    runs: Vec<std::ops::Range<usize>>,
    /// Groups of consecutive runs, one per thread, each run's kernels on its thread alone; 1:
    /// one run after another, each product threaded. Side by side, each thread's products stay
    /// whole: at 64 channels a weight gradient split inside the gemm crate between two threads
    /// ran at 58 GFLOP/s a thread, against 80–100 on its own.
    groups: usize,
}

/// Output positions each thread's share of a batch covers at least, where one run of images
/// is split between the threads: 512 (32 images of 4×4) keeps the weight gradient's products
/// at 104 GFLOP/s on one core, where the whole batch's product split inside the gemm crate
/// ran at 62 a thread.
const MIN_SIDE_BY_SIDE_POSITIONS: usize = 512;

/// Each run's im2col matrix stays within [`COL_CHUNK_VALUES`] or covers [`MIN_CHUNK_POSITIONS`]
/// output positions, whichever takes more images (at least one image per run). With several
/// threads, where there are at least as many runs as threads (or the batch splits into shares
/// of [`MIN_SIDE_BY_SIDE_POSITIONS`]), their number is rounded up to a multiple of the threads
/// and the threads work on them side by side.
fn image_runs(d: Dims, g: Geometry, out: Dims) -> Runs {
    let per_image = (d.c * g.taps() * out.h * out.w).max(1);
    let by_size = COL_CHUNK_VALUES / per_image;
    let by_positions = MIN_CHUNK_POSITIONS.div_ceil((out.h * out.w).max(1));
    let batch = d.b.max(1);
    let mut images = if g.is_identity() {
        batch
    } else {
        by_size.max(by_positions).clamp(1, batch)
    };
    let threads = pool_threads();
    let count = batch.div_ceil(images);
    let side_by_side = threads > 1
        && !g.is_identity()
        && batch >= threads
        && (count >= threads || batch * out.h * out.w >= threads * MIN_SIDE_BY_SIDE_POSITIONS);
    let groups = if side_by_side {
        let count = count.max(threads);
        images = batch.div_ceil(count.next_multiple_of(threads));
        threads
    } else {
        1
    };
    let runs: Vec<_> = (0..d.b)
        .step_by(images)
        .map(|b0| b0..(b0 + images).min(d.b))
        .collect();
    Runs {
        groups: groups.min(runs.len()).max(1),
        runs,
    }
}

/// Runs `work(state, item)` for every item, in `groups` groups of consecutive items side by
/// side (each group on one thread with its kernels serial, its own `init()` state) or, for one
/// group, in order with the kernels threaded. Returns each group's state, in order.
fn in_groups<I: Send, T: Send>(
    items: Vec<I>,
    groups: usize,
    init: impl Fn() -> T + Sync,
    work: impl Fn(&mut T, I) + Sync,
) -> Vec<T> {
    let run = |group: Vec<I>| {
        let mut state = init();
        for item in group {
            work(&mut state, item);
        }
        state
    };
    if groups <= 1 {
        return vec![run(items)];
    }
    let per_group = items.len().div_ceil(groups).max(1);
    let mut items = items.into_iter().peekable();
    let mut grouped = Vec::with_capacity(groups);
    while items.peek().is_some() {
        grouped.push(items.by_ref().take(per_group).collect::<Vec<_>>());
    }
    grouped
        .into_par_iter()
        .map(|group| serially(|| run(group)))
        .collect()
}

/// Calls `f(output columns, im2col matrix [k, columns])` for the run of images `images`: their
/// im2col matrix (or, for a 1×1 / stride 1 convolution, the input itself as a strided matrix).
fn with_col<R>(
    x: &[f32],
    d: Dims,
    g: Geometry,
    out: Dims,
    images: std::ops::Range<usize>,
    f: impl FnOnce(std::ops::Range<usize>, Mat<'_>) -> R,
) -> R {
    let (in_hw, out_hw, k) = (d.h * d.w, out.h * out.w, d.c * g.taps());
    let chunk = Dims {
        b: images.len(),
        ..d
    };
    let n = images.len() * out_hw;
    let columns = images.start * out_hw..images.end * out_hw;
    if g.is_identity() {
        let col = Mat {
            data: &x[images.start * in_hw..],
            row_stride: d.plane(),
            col_stride: 1,
        };
        f(columns, col)
    } else {
        let mut col = Buffer::scratch(k * n);
        im2col_strided(&x[images.start * in_hw..], d.plane(), chunk, g, &mut col);
        f(columns, Mat::rows(&col, n))
    }
}

/// Each run's slice of every channel of a channel-major `[c, b, h, w]` tensor (`d`), for runs
/// of consecutive images that cover the batch in order: `[run][channel]`.
fn run_channels<'a>(
    x: &'a mut [f32],
    d: Dims,
    runs: &[std::ops::Range<usize>],
) -> Vec<Vec<&'a mut [f32]>> {
    let hw = d.h * d.w;
    let mut split: Vec<Vec<&mut [f32]>> = runs.iter().map(|_| Vec::with_capacity(d.c)).collect();
    if d.is_empty() {
        return split;
    }
    for mut rest in x.chunks_mut(d.plane()) {
        for (run, images) in split.iter_mut().zip(runs) {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(images.len() * hw);
            run.push(head);
            rest = tail;
        }
    }
    split
}

/// Columns `columns` of a row-major matrix with `width` columns.
fn column_block<'a>(values: &'a [f32], width: usize, columns: &std::ops::Range<usize>) -> Mat<'a> {
    Mat {
        data: &values[columns.start..],
        row_stride: width,
        col_stride: 1,
    }
}

/// An output that threads write side by side, each its own elements.
struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the pointer is only written through `matmul_ptr` at elements the caller proves
// belong to its thread alone (disjoint column blocks of the output).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn new(values: &mut [f32]) -> Self {
        Self {
            ptr: values.as_mut_ptr(),
            len: values.len(),
        }
    }

    /// Values in the output (a method, so that closures capture the whole `Sync` value).
    fn len(&self) -> usize {
        self.len
    }

    /// The address of element `offset` (not dereferenced here).
    fn at(&self, offset: usize) -> *mut f32 {
        self.ptr.wrapping_add(offset)
    }
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
    let shared = SharedOut::new(&mut y);
    let Runs { runs, groups } = image_runs(d, g, out);
    in_groups(
        runs,
        groups,
        || (),
        |(), images| {
            with_col(x, d, g, out, images, |columns, col| {
                assert!(o == 0 || (o - 1) * n + columns.end <= shared.len());
                // SAFETY: the elements written, `i·n + j` for i < o and j in `columns`, lie
                // inside `y` (the assertion); the runs are disjoint, so are their columns, and
                // `y` is not otherwise touched until every run is done.
                unsafe {
                    matmul_ptr(
                        o,
                        columns.len(),
                        k,
                        Mat::rows(weight, k),
                        col,
                        shared.at(columns.start),
                        n,
                        false,
                    );
                }
            });
        },
    );
    (y, out)
}

/// The weight gradient `[O, C·k·k]` of [`conv_forward`] given the output gradient `grad_y`.
pub fn conv_weight_grad(x: &[f32], d: Dims, g: Geometry, grad_y: &[f32], o: usize) -> Vec<f32> {
    profile::time(key(d, g, o, "2 weight grad"), macs(d, g, o), || {
        conv_weight_grad_untimed(x, d, g, grad_y, o)
    })
}

fn conv_weight_grad_untimed(x: &[f32], d: Dims, g: Geometry, grad_y: &[f32], o: usize) -> Vec<f32> {
    let out = g.output(d, o);
    let (n, k) = (out.plane(), d.c * g.taps());
    let Runs { runs, groups } = image_runs(d, g, out);
    let parts = in_groups(
        runs,
        groups,
        || WeightGrad::new(o, k),
        |grad_w, images| {
            with_col(x, d, g, out, images, |columns, col| {
                grad_w.add(col, column_block(grad_y, n, &columns), columns.len());
            });
        },
    );
    let mut parts = parts.into_iter();
    let mut grad_w = parts.next().unwrap_or_else(|| WeightGrad::new(o, k));
    for part in parts {
        grad_w.merge(part);
    }
    grad_w.finish()
}

/// The weight gradient `∂W = Σ ∂y · colᵀ` (`[o, k]`), summed over column blocks of the im2col
/// matrix and the output gradient.
struct WeightGrad {
    o: usize,
    k: usize,
    /// `∂W`, or `∂Wᵀ` when [`WeightGrad::transposed`].
    sum: Vec<f32>,
    started: bool,
}

impl WeightGrad {
    fn new(o: usize, k: usize) -> Self {
        Self {
            o,
            k,
            sum: vec![0.0; o * k],
            started: false,
        }
    }

    /// Whether the sum is kept as `∂Wᵀ = col · ∂yᵀ` (transposed at the end), where the im2col
    /// matrix is the larger operand: the gemm crate runs that at 85–108 GFLOP/s on one core
    /// where `∂y · colᵀ` ran at 32–98 (measured on the ResNet's shapes; 64→64 at 28×28 was the
    /// slowest layer of the step).
    fn transposed(&self) -> bool {
        self.k >= self.o
    }

    /// Adds the block of `width` columns: `col` (`[k, width]`) and `grad_y` (`[o, width]`).
    fn add(&mut self, col: Mat<'_>, grad_y: Mat<'_>, width: usize) {
        let (o, k, accumulate) = (self.o, self.k, self.started);
        if self.transposed() {
            let grad_y_t = Mat {
                data: grad_y.data,
                row_stride: grad_y.col_stride,
                col_stride: grad_y.row_stride,
            };
            matmul_into(k, o, width, col, grad_y_t, &mut self.sum, o, accumulate);
        } else {
            let col_t = Mat {
                data: col.data,
                row_stride: col.col_stride,
                col_stride: col.row_stride,
            };
            matmul_into(o, k, width, grad_y, col_t, &mut self.sum, k, accumulate);
        }
        self.started = true;
    }

    /// Adds another part's sum (of other columns).
    fn merge(&mut self, other: Self) {
        if !other.started {
            return;
        }
        if self.started {
            self.sum
                .iter_mut()
                .zip(&other.sum)
                .for_each(|(a, b)| *a += b);
        } else {
            *self = other;
        }
    }

    /// `∂W`, `[o, k]`.
    fn finish(self) -> Vec<f32> {
        if !self.transposed() {
            return self.sum;
        }
        let mut grad_w = vec![0.0; self.o * self.k];
        transpose(&self.sum, self.k, self.o, &mut grad_w);
        grad_w
    }
}

/// `out[c, r]` = `values[r, c]` for a row-major `rows × cols` matrix, in tiles that stay in the
/// cache (a plain loop writes a column of `out` per row of `values`).
fn transpose(values: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    const TILE: usize = 32;
    assert_eq!(values.len(), rows * cols);
    assert_eq!(out.len(), rows * cols);
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
}

/// The weight gradient `∂W = ∂y · colᵀ` (`[o, k]`) from the im2col matrix `col` (`[k, n]`) and
/// the output gradient `grad_y` (`[o, n]`).
pub fn weight_grad_from_col(col: &[f32], grad_y: &[f32], o: usize, k: usize, n: usize) -> Vec<f32> {
    let mut grad_w = WeightGrad::new(o, k);
    grad_w.add(Mat::rows(col, n), Mat::rows(grad_y, n), n);
    grad_w.finish()
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
        matmul(
            k,
            n,
            o,
            Mat::transposed(weight, k),
            Mat::rows(grad_y, n),
            &mut grad_x,
        );
        return grad_x;
    }
    let Runs { runs, groups } = image_runs(d, g, out);
    let channels = run_channels(&mut grad_x, d, &runs);
    in_groups(
        runs.into_iter().zip(channels).collect(),
        groups,
        || (),
        |(), (images, mut channels)| {
            let chunk = Dims {
                b: images.len(),
                ..d
            };
            let columns = images.start * out.h * out.w..images.end * out.h * out.w;
            let width = columns.len();
            let mut grad_col = Buffer::scratch(k * width);
            matmul_into(
                k,
                width,
                o,
                Mat::transposed(weight, k),
                column_block(grad_y, n, &columns),
                &mut grad_col,
                width,
                false,
            );
            col2im_channels(&mut grad_col, chunk, g, &mut channels);
        },
    );
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
                                    if sy < 0 || sx < 0 || sy >= d.h as isize || sx >= d.w as isize
                                    {
                                        continue;
                                    }
                                    let xi =
                                        ((c * d.b + b) * d.h + sy as usize) * d.w + sx as usize;
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
            Geometry {
                kernel: 3,
                stride: 1,
                pad: 1,
            },
            Geometry {
                kernel: 3,
                stride: 2,
                pad: 1,
            },
            Geometry {
                kernel: 1,
                stride: 2,
                pad: 0,
            },
            Geometry {
                kernel: 1,
                stride: 1,
                pad: 0,
            },
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

    #[test]
    fn batches_larger_than_one_im2col_chunk_give_the_whole_batch_products() {
        // 64 channels at 28×28: 4 images per im2col chunk at stride 1 (6 images make two
        // chunks), 18 at stride 2 (20 make two).
        for (g, b) in [
            (SAME3X3, 6),
            (
                Geometry {
                    kernel: 3,
                    stride: 2,
                    pad: 1,
                },
                20,
            ),
        ] {
            let d = Dims {
                c: 64,
                b,
                h: 28,
                w: 28,
            };
            let o = 8;
            let out = g.output(d, o);
            assert!(image_runs(d, g, out).runs.len() > 1, "{g:?}");
            let (n, k) = (out.plane(), d.c * g.taps());
            let x = values(d.len(), 1);
            let weight = values(o * k, 5);
            let grad_y = values(o * n, 3);
            let mut col = vec![0.0; k * n];
            im2col(&x, d, g, &mut col);
            let mut y = vec![0.0; o * n];
            matmul(o, n, k, Mat::rows(&weight, k), Mat::rows(&col, n), &mut y);
            assert_eq!(&conv_forward(&x, d, g, &weight, o).0[..], &y[..]);
            let mut grad_w = vec![0.0; o * k];
            matmul(
                o,
                k,
                n,
                Mat::rows(&grad_y, n),
                Mat::transposed(&col, n),
                &mut grad_w,
            );
            let got = conv_weight_grad(&x, d, g, &grad_y, o);
            let scale = grad_w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let error = got
                .iter()
                .zip(&grad_w)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(error <= 1e-5 * scale, "weight gradient {error} of {scale}");
            let mut grad_col = vec![0.0; k * n];
            matmul(
                k,
                n,
                o,
                Mat::transposed(&weight, k),
                Mat::rows(&grad_y, n),
                &mut grad_col,
            );
            let mut grad_x = vec![0.0; d.len()];
            col2im(&mut grad_col, d, g, &mut grad_x);
            assert_eq!(conv_input_grad(&weight, d, g, &grad_y, o), grad_x);
        }
    }

    #[test]
    fn runs_side_by_side_on_two_threads_give_the_one_thread_products() {
        // 64 channels at 28×28, 12 images: three runs of 4 on one thread; on two, four runs of
        // 3 in two groups (the runs' number rounded up to a multiple of the threads). 16
        // channels at 4×4, 64 images: one run on one thread, split in two on two.
        let cases = [
            (
                Dims {
                    c: 64,
                    b: 12,
                    h: 28,
                    w: 28,
                },
                [(3, 1), (4, 2)],
            ),
            (
                Dims {
                    c: 16,
                    b: 64,
                    h: 4,
                    w: 4,
                },
                [(1, 1), (2, 2)],
            ),
        ];
        for (d, expected) in cases {
            let (g, o) = (SAME3X3, 16);
            let out = g.output(d, o);
            let x = values(d.len(), 1);
            let weight = values(o * d.c * g.taps(), 5);
            let grad_y = values(out.len(), 3);
            let on = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let runs = image_runs(d, g, out);
                    (
                        (runs.runs.len(), runs.groups),
                        conv_forward(&x, d, g, &weight, o).0.into_vec(),
                        conv_weight_grad(&x, d, g, &grad_y, o),
                        conv_input_grad(&weight, d, g, &grad_y, o),
                    )
                })
            };
            let (one, two) = (on(1), on(2));
            assert_eq!([one.0, two.0], expected, "{d:?}");
            assert_eq!(one.1, two.1, "forward {d:?}");
            assert_eq!(one.1, direct(&x, d, g, &weight, o), "forward {d:?}");
            let scale = one.2.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let error = one
                .2
                .iter()
                .zip(&two.2)
                .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                error <= 1e-6 * scale,
                "weight gradient {error} of {scale}, {d:?}"
            );
            assert_eq!(one.3, two.3, "input gradient {d:?}");
        }
    }
}
