//! CPU kernels of the fused convolution block ([`super::fused`]) on plain `f32` slices.
//!
//! Activations are kept channel-major, `[C, B, H, W]` ("CBHW"): every channel is one contiguous
//! row of `B·H·W` values, so a 3×3 convolution is one well-shaped matrix product over an im2col
//! matrix, and BatchNorm's per-channel statistics are sums over contiguous rows with no
//! transposes. Rows are independent, so the elementwise kernels split them over rayon's pool;
//! the matrix products use the `gemm` crate (Burn's CPU backend uses it too), threaded over the
//! same pool.

pub mod conv;
mod norm;
pub mod profile;

pub use norm::{
    CUT, Stats, add_row_bias, affine_relu_maxpool, affine_relu_maxpool_backward, batch_norm_relu,
    batch_norm_relu_backward, batch_norm_relu_inference, normalize_rows, row_sums,
};

/// A recycled `f32` buffer for the fused block's large activations (im2col matrices, normalised
/// activations, their gradients: up to 29 MB each at batch 128).
///
/// Freshly allocated memory this size comes from the operating system page by page, and the page
/// faults cost more than a tenth of a training step; dropped buffers go back to a small pool
/// instead and the next step reuses them.
pub struct Buffer(Vec<f32>);

/// Buffers kept for reuse (the block needs about eight live at once).
static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());
const POOL_SIZE: usize = 12;
/// Most memory the pool keeps (large images make buffers of gigabytes; those go back to the
/// system rather than staying with a long-lived window).
const POOL_BYTES: usize = 512 << 20;
/// Smaller buffers are cheap to allocate and are not pooled.
const POOL_MIN: usize = 1 << 16;

impl Buffer {
    /// A buffer of `len` values whose contents are unspecified (old values of a recycled
    /// buffer): for outputs that a kernel overwrites entirely.
    pub fn scratch(len: usize) -> Self {
        let mut pool = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        let mut values = best.map_or_else(Vec::new, |i| pool.swap_remove(i));
        drop(pool);
        if values.len() >= len {
            values.truncate(len);
        } else {
            values.resize(len, 0.0);
        }
        Self(values)
    }
}

impl Buffer {
    /// The values, taken out of the pool's reach (for a tensor that outlives the step).
    pub fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.0.capacity() < POOL_MIN {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let bytes = |v: &Vec<f32>| v.capacity() * std::mem::size_of::<f32>();
        let kept: usize = pool.iter().map(bytes).sum();
        if pool.len() < POOL_SIZE && kept + bytes(&self.0) <= POOL_BYTES {
            pool.push(std::mem::take(&mut self.0));
        }
    }
}

impl std::ops::Deref for Buffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

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

thread_local! {
    /// Set while this thread runs one part of a job that others share ([`serially`]).
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Threads the kernels may use: rayon's pool, or one inside [`serially`].
pub(super) fn pool_threads() -> usize {
    if SERIAL.get() {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Threads for a kernel of `work` multiply-adds: one below a size where splitting costs more
/// than it saves.
pub(super) fn threads_for(work: usize) -> usize {
    if work < 1 << 18 { 1 } else { pool_threads() }
}

/// Runs `f` with every kernel it calls on this thread alone: for a job split into parts that
/// the pool's threads work on side by side.
pub(super) fn serially<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.set(self.0);
        }
    }
    let _restore = Restore(SERIAL.replace(true));
    f()
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
    matmul_into(m, n, k, a, b, out, n, false);
}

/// `out[m × n]` = `a[m × k] · b[k × n]` (or, with `accumulate`, `out + a · b`), where row `i`
/// of `out` starts at `out[i · row_stride]`.
#[allow(clippy::too_many_arguments)]
pub fn matmul_into(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    out: &mut [f32],
    row_stride: usize,
    accumulate: bool,
) {
    if m > 0 && n > 0 {
        assert!(n <= row_stride, "matmul output rows overlap");
        assert!(
            (m - 1) * row_stride + n <= out.len(),
            "matmul output out of bounds"
        );
    }
    // SAFETY: the assertions above: every written element `i · row_stride + j` (i < m, j < n)
    // lies inside `out`, which this call borrows mutably.
    unsafe { matmul_ptr(m, n, k, a, b, out.as_mut_ptr(), row_stride, accumulate) }
}

/// [`matmul_into`] writing through a pointer: for products that threads run side by side, each
/// writing its own columns of one output.
///
/// # Safety
/// `out.add(i · row_stride + j)` must be valid for reads and writes for every `i < m`,
/// `j < n`, no two of those elements may coincide (`n ≤ row_stride` or `m ≤ 1`), and nothing
/// else may access them during the call.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul_ptr(
    m: usize,
    n: usize,
    k: usize,
    a: Mat<'_>,
    b: Mat<'_>,
    out: *mut f32,
    row_stride: usize,
    accumulate: bool,
) {
    a.check(m, k);
    b.check(k, n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: the caller's contract: row i's n elements are valid and ours.
                unsafe { std::slice::from_raw_parts_mut(out.add(i * row_stride), n).fill(0.0) };
            }
        }
        return;
    }
    let threads = threads_for(m * n * k);
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `check` proved every element the product reads lies inside `a.data` / `b.data`;
    // the caller, that every written element is valid and exclusively ours. With
    // `read_dst = false`, `out` is only written. The strides fit in isize because they index
    // memory that exists.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out,
            1,
            row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
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
}
