//! A fused training-mode block, conv 3×3 (padding 1) → BatchNorm → ReLU → max-pool 2×2, as one
//! Burn autodiff operation on the CPU backend (`Autodiff<Flex>`), with its own backward pass.
//!
//! Why: Burn's CPU backend implements only the convolution's forward pass; its weight and input
//! gradients, the training BatchNorm and the max-pool fall back to generic code that copies and
//! transposes whole activations (the profile is in the CPU-speed issue). Here the block keeps its
//! activation channel-major (`[C, B, H, W]`, see [`super::kernels`]): the convolution and both its
//! gradients are single matrix products over an im2col matrix, BatchNorm works on contiguous rows,
//! and the pooling keeps the position of every maximum.
//!
//! The block computes the same function as Burn's layers (the tests compare outputs and every
//! gradient with Burn's), and updates the BatchNorm running statistics the way Burn's
//! `BatchNorm::forward` does. It applies only where it can: a tracked CPU tensor, a layer in
//! training mode, a 3×3 / stride 1 / padding 1 convolution with bias. Its twin
//! [`conv_block_inference`] serves evaluation (a plain CPU tensor, running statistics). Anything
//! else (CUDA, other layers) gets `None` and the caller uses Burn's layers.

use std::sync::Arc;

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::{Tensor, TensorData};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::TensorMetadata;
use burn_backend::tensor::FloatTensor;
use burn_flex::{Flex, FlexTensor};

use super::kernels::{self, Buffer, Dims, Mat};

/// Burn's autodiff CPU backend as the training device uses it (no gradient checkpointing).
type Ad = Autodiff<Flex, NoCheckpointing>;

/// Whether the fused block would run for `input` and these BatchNorm layers: a tracked CPU
/// tensor and every layer in training mode.
pub fn applies(input: &Tensor<4>, norms: &[&BatchNorm]) -> bool {
    input.device().is_autodiff()
        && norms.iter().all(|bn| bn.training.is_enabled())
        && input.clone().try_into_primitive::<Ad>().is_ok()
}

/// Whether `input` is a plain (untracked) CPU tensor: evaluation, where [`conv_block_inference`]
/// applies.
pub fn is_plain_cpu(input: &Tensor<4>) -> bool {
    !input.device().is_autodiff() && input.clone().try_into_primitive::<Flex>().is_ok()
}

/// Largest im2col matrix the block builds (64 Mi values, 256 MB). The block builds it for the
/// whole batch at once (Burn's convolution works in tiles), so large images (say 256×256 RGB at
/// batch 128: 0.9 GB for the first convolution alone) go through Burn's layers instead.
const MAX_COL_VALUES: usize = 1 << 26;

/// Whether the block's im2col matrix for a `[C, B, H, W]` input stays within [`MAX_COL_VALUES`].
pub fn fits(c: usize, b: usize, h: usize, w: usize) -> bool {
    [c, b, h, w, 9]
        .iter()
        .try_fold(1usize, |acc, &v| acc.checked_mul(v))
        .is_some_and(|values| values <= MAX_COL_VALUES)
}

/// Whether `conv` is the fused block's convolution: 3×3, stride 1, padding 1, with a bias.
pub fn suitable(conv: &Conv2d) -> bool {
    conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1))
        && conv.bias.is_some()
}

/// conv → BatchNorm (running statistics) → ReLU → max-pool 2×2 on a plain CPU tensor,
/// channel-major `[C, B, H, W]` → `[O, B, H/2, W/2]`: the evaluation-mode block (no graph, no
/// statistics update); `None` where it does not apply.
pub fn conv_block_inference(x: Tensor<4>, conv: &Conv2d, bn: &BatchNorm) -> Option<Tensor<4>> {
    if !suitable(conv) {
        return None;
    }
    let plain = |t: Tensor<4>| t.try_into_primitive::<Flex>().ok();
    let plain1 = |t: Tensor<1>| t.try_into_primitive::<Flex>().ok();
    let (xs, x_shape) = values(&plain(x)?)?;
    let (ws, w_shape) = values(&plain(conv.weight.val())?)?;
    let vectors = [
        conv.bias.as_ref()?.val(),
        bn.gamma.val(),
        bn.beta.val(),
        bn.running_mean.value(),
        bn.running_var.value(),
    ]
    .map(|t| plain1(t).and_then(|t| values(&t)));
    let [
        Some((bias, _)),
        Some((gamma, _)),
        Some((beta, _)),
        Some((mean, _)),
        Some((var, _)),
    ] = vectors
    else {
        return None;
    };
    let (&[c, b, h, w], &[o, wc, 3, 3]) = (x_shape.as_slice(), w_shape.as_slice()) else {
        return None;
    };
    let per_channel = [&bias, &gamma, &beta, &mean, &var];
    if wc != c || h < 2 || w < 2 || per_channel.iter().any(|t| slice(t).len() != o) {
        return None;
    }
    let input = Dims { c, b, h, w };
    let conv_out = Dims { c: o, ..input };
    let mut xhat = convolve(slice(&xs), input, slice(&ws), o).1;
    let n = input.plane();
    let (mean, var) = (slice(&mean), slice(&var));
    let bias = slice(&bias);
    for (ch, row) in xhat.chunks_mut(n.max(1)).enumerate() {
        let inv_std = (1.0 / (f64::from(var[ch]) + bn.epsilon).sqrt()) as f32;
        let shift = bias[ch] - mean[ch];
        row.iter_mut().for_each(|v| *v = (*v + shift) * inv_std);
    }
    let pooled = conv_out.pooled();
    let mut out = vec![0.0; pooled.len()];
    let mut arg = vec![0u8; pooled.len()];
    kernels::affine_relu_maxpool(
        &xhat,
        conv_out,
        slice(&gamma),
        slice(&beta),
        &mut out,
        &mut arg,
    );
    Some(Tensor::<4>::from_primitive::<Flex>(flex(
        out,
        &[o, b, pooled.h, pooled.w],
    )))
}

/// The im2col matrix of `x` and the convolution `[O, B·H·W]` without bias.
fn convolve(x: &[f32], input: Dims, weight: &[f32], o: usize) -> (Buffer, Buffer) {
    let (n, k) = (input.plane(), input.c * 9);
    let mut col = Buffer::scratch(k * n);
    kernels::im2col3x3(x, input, &mut col);
    let mut y = Buffer::scratch(o * n);
    kernels::matmul(o, n, k, Mat::rows(weight, k), Mat::rows(&col, n), &mut y);
    (col, y)
}

/// conv → BatchNorm (batch statistics) → ReLU → max-pool 2×2 on a channel-major input
/// `[C, B, H, W]`, giving `[O, B, H/2, W/2]`; `None` where the block does not apply.
pub fn conv_block(x: Tensor<4>, conv: &Conv2d, bn: &BatchNorm) -> Option<Tensor<4>> {
    let bias = conv.bias.as_ref()?;
    if !suitable(conv) || !bn.training.is_enabled() {
        return None;
    }
    let device = x.device();
    let (output, stats) = forward(
        primitive(x)?,
        primitive(conv.weight.val())?,
        primitive(bias.val())?,
        primitive(bn.gamma.val())?,
        primitive(bn.beta.val())?,
        bn.epsilon,
    )?;
    let output = Tensor::<4>::from_primitive::<Ad>(output);

    // The running statistics, as `BatchNorm::forward` updates them in training mode.
    let channels = stats.mean.len();
    let momentum = bn.momentum;
    let update = |state: &burn::module::RunningState<Tensor<1>>, batch: Vec<f32>| {
        let batch = Tensor::<1>::from_data(TensorData::new(batch, [channels]), &device);
        let running = state
            .value_sync()
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.mul_scalar(momentum));
        state.update(running.detach());
    };
    update(&bn.running_mean, stats.mean);
    update(&bn.running_var, stats.var);
    Some(output)
}

/// The autodiff CPU primitive of `tensor`, if it is one.
fn primitive<const D: usize>(tensor: Tensor<D>) -> Option<FloatTensor<Ad>> {
    tensor.try_into_primitive::<Ad>().ok()
}

/// What the backward pass needs.
struct Saved {
    input: Dims,
    out_channels: usize,
    /// im2col of the input, `[C·9, B·H·W]` (for the weight gradient).
    col: Buffer,
    /// The weights `[O, C·9]` (for the input gradient).
    weight: Vec<f32>,
    /// The normalised convolution output, `[O, B·H·W]`.
    xhat: Buffer,
    gamma: Vec<f32>,
    inv_std: Vec<f32>,
    /// Window position of each pooled maximum, or [`kernels::CUT`].
    arg: Vec<u8>,
}

impl std::fmt::Debug for Saved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saved")
            .field("input", &self.input)
            .field("out_channels", &self.out_channels)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct ConvBlockBackward;

/// The values of a CPU tensor, row-major (copied only when the tensor is a strided view).
fn values(tensor: &FlexTensor) -> Option<(FlexTensor, Vec<usize>)> {
    let contiguous = tensor.to_contiguous();
    contiguous.as_slice::<f32>()?;
    let shape = tensor.shape().to_vec();
    Some((contiguous, shape))
}

fn slice(tensor: &FlexTensor) -> &[f32] {
    tensor.as_slice::<f32>().unwrap_or(&[])
}

fn flex(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

fn forward(
    x: FloatTensor<Ad>,
    weight: FloatTensor<Ad>,
    bias: FloatTensor<Ad>,
    gamma: FloatTensor<Ad>,
    beta: FloatTensor<Ad>,
    epsilon: f64,
) -> Option<(FloatTensor<Ad>, kernels::Stats)> {
    let (xs, x_shape) = values(x.primitive())?;
    let (ws, w_shape) = values(weight.primitive())?;
    let (bs, _) = values(bias.primitive())?;
    let (gs, _) = values(gamma.primitive())?;
    let (betas, _) = values(beta.primitive())?;
    let &[c, b, h, w] = x_shape.as_slice() else {
        return None;
    };
    let &[o, wc, 3, 3] = w_shape.as_slice() else {
        return None;
    };
    let (gamma_s, beta_s, bias_s) = (slice(&gs), slice(&betas), slice(&bs));
    if wc != c || h < 2 || w < 2 || [gamma_s, beta_s, bias_s].iter().any(|v| v.len() != o) {
        return None;
    }
    let input = Dims { c, b, h, w };
    let conv_out = Dims { c: o, ..input };
    let n = input.plane();

    let (col, mut xhat) = convolve(slice(&xs), input, slice(&ws), o);
    kernels::add_row_bias(&mut xhat, n, bias_s);
    let stats = kernels::normalize_rows(&mut xhat, n, epsilon);
    let pooled = conv_out.pooled();
    let mut out = vec![0.0; pooled.len()];
    let mut arg = vec![0u8; pooled.len()];
    kernels::affine_relu_maxpool(&xhat, conv_out, gamma_s, beta_s, &mut out, &mut arg);
    let output = flex(out, &[o, b, pooled.h, pooled.w]);

    let nodes = [
        x.node(),
        weight.node(),
        bias.node(),
        gamma.node(),
        beta.node(),
    ];
    let tensor = match ConvBlockBackward
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let saved = Saved {
                input,
                out_channels: o,
                col,
                weight: slice(&ws).to_vec(),
                xhat,
                gamma: gamma_s.to_vec(),
                inv_std: stats.inv_std.clone(),
                arg,
            };
            prep.finish(Arc::new(saved), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Some((tensor, stats))
}

impl Backward<Flex, 5> for ConvBlockBackward {
    type State = Arc<Saved>;

    fn backward(
        self,
        ops: Ops<Self::State, 5>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node, weight_node, bias_node, gamma_node, beta_node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let s = ops.state;
        let (input, o) = (s.input, s.out_channels);
        let (n, k) = (input.plane(), input.c * 9);
        let conv_out = Dims { c: o, ..input };

        let mut grad_y = Buffer::scratch(o * n);
        let (grad_gamma, grad_beta) = kernels::affine_relu_maxpool_backward(
            &s.xhat,
            conv_out,
            &s.gamma,
            &s.inv_std,
            &s.arg,
            slice(&grad),
            &mut grad_y,
        );
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, flex(grad_gamma, &[o]));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, flex(grad_beta, &[o]));
        }
        if let Some(node) = bias_node {
            grads.register::<Flex>(node.id, flex(kernels::row_sums(&grad_y, n), &[o]));
        }
        if let Some(node) = weight_node {
            let mut grad_w = vec![0.0; o * k];
            kernels::matmul(
                o,
                k,
                n,
                Mat::rows(&grad_y, n),
                Mat::transposed(&s.col, n),
                &mut grad_w,
            );
            grads.register::<Flex>(node.id, flex(grad_w, &[o, input.c, 3, 3]));
        }
        if let Some(node) = x_node {
            let mut grad_col = Buffer::scratch(k * n);
            kernels::matmul(
                k,
                n,
                o,
                Mat::transposed(&s.weight, k),
                Mat::rows(&grad_y, n),
                &mut grad_col,
            );
            let mut grad_x = vec![0.0; input.len()];
            kernels::col2im3x3(&grad_col, input, &mut grad_x);
            grads.register::<Flex>(node.id, flex(grad_x, &[input.c, input.b, input.h, input.w]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::nn::BatchNormConfig;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::tensor::Device;
    use burn::tensor::activation::relu;

    fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec_as::<f32>().unwrap()
    }

    /// Largest |a − b| relative to the largest |b| (the scale of the reference values).
    fn relative_error(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
        a.iter()
            .zip(b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
            / scale
    }

    /// A conv–BN pair with seeded weights and non-trivial γ, β, running statistics.
    /// Deterministic pseudo-random values in [-1, 1) (no shared generator: tests run in
    /// parallel and Burn's seed is process-wide).
    fn noise<const D: usize>(shape: [usize; D], salt: u64, device: &Device) -> Tensor<D> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n as u64)
            .map(|i| {
                let h = (i ^ salt.rotate_left(17))
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .rotate_left(29)
                    .wrapping_mul(0xBF58_476D_1CE4_E5B9);
                (h >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect();
        Tensor::<D>::from_data(TensorData::new(v, shape), device)
    }

    /// A leaf parameter (tracked on an autodiff device).
    fn param<const D: usize>(id: burn::module::ParamId, t: Tensor<D>) -> Param<Tensor<D>> {
        let t = if t.device().is_autodiff() {
            t.require_grad()
        } else {
            t
        };
        Param::initialized(id, t)
    }

    /// A conv–BN pair with fixed weights and non-trivial γ, β.
    fn layers(c: usize, o: usize, device: &Device) -> (Conv2d, BatchNorm) {
        let mut conv = Conv2dConfig::new([c, o], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device);
        conv.weight = param(
            conv.weight.id,
            noise([o, c, 3, 3], 1, device).mul_scalar(0.4),
        );
        let bias = conv
            .bias
            .take()
            .map(|b| param(b.id, noise([o], 2, device).mul_scalar(0.1)));
        conv.bias = bias;
        let mut bn = BatchNormConfig::new(o).init(device);
        let values = |f: fn(f32) -> f32| {
            let v: Vec<f32> = (0..o).map(|i| f(i as f32)).collect();
            Tensor::<1>::from_data(TensorData::new(v, [o]), device)
        };
        bn.gamma = param(bn.gamma.id, values(|i| 0.6 + 0.25 * i));
        bn.beta = param(bn.beta.id, values(|i| 0.2 - 0.15 * i));
        (conv, bn)
    }

    #[test]
    fn the_fused_block_matches_burns_layers_outputs_gradients_and_running_statistics() {
        let device = Device::flex().autodiff();
        // (channels in, out, batch, height, width, input tracked): odd sizes drop the last
        // row/column in the pooling, as Burn does.
        for (c, o, b, h, w, track_input) in [
            (1, 4, 3, 6, 6, false),
            (3, 5, 2, 7, 9, true),
            (2, 3, 4, 28, 28, true),
        ] {
            let (conv, bn) = layers(c, o, &device);
            let (conv_ref, bn_ref) = layers(c, o, &device);
            let x = noise([b, c, h, w], 3, &device);
            let x = if track_input { x.require_grad() } else { x };
            let weights = noise([b, o, h / 2, w / 2], 4, &device);

            let pool = MaxPool2dConfig::new([2, 2]).init();
            let reference = pool.forward(relu(bn_ref.forward(conv_ref.forward(x.clone()))));
            let fused = conv_block(x.clone().swap_dims(0, 1), &conv, &bn)
                .expect("the fused block applies on the CPU autodiff device")
                .swap_dims(0, 1);
            let (out, out_ref) = (to_vec(fused.clone()), to_vec(reference.clone()));
            let error = relative_error(&out, &out_ref);
            assert!(error < 1e-5, "outputs differ by {error}");

            let grads = (fused * weights.clone()).sum().backward();
            let grads_ref = (reference * weights).sum().backward();
            let pairs = [
                (
                    "weight",
                    to_vec(conv.weight.val().grad(&grads).unwrap()),
                    to_vec(conv_ref.weight.val().grad(&grads_ref).unwrap()),
                ),
                (
                    "gamma",
                    to_vec(bn.gamma.val().grad(&grads).unwrap()),
                    to_vec(bn_ref.gamma.val().grad(&grads_ref).unwrap()),
                ),
                (
                    "beta",
                    to_vec(bn.beta.val().grad(&grads).unwrap()),
                    to_vec(bn_ref.beta.val().grad(&grads_ref).unwrap()),
                ),
            ];
            for (name, got, want) in pairs {
                let error = relative_error(&got, &want);
                assert!(
                    error < 1e-4,
                    "{name} gradient differs by {error} (c={c}, h={h})"
                );
            }
            // The bias gradient is zero up to rounding (BatchNorm removes the mean); compare
            // it on the scale of the weight gradient.
            let bias = to_vec(conv.bias.as_ref().unwrap().val().grad(&grads).unwrap());
            let bias_ref = to_vec(
                conv_ref
                    .bias
                    .as_ref()
                    .unwrap()
                    .val()
                    .grad(&grads_ref)
                    .unwrap(),
            );
            let weight_scale = to_vec(conv_ref.weight.val().grad(&grads_ref).unwrap())
                .iter()
                .fold(0.0f32, |m, v| m.max(v.abs()));
            for (a, r) in bias.iter().zip(&bias_ref) {
                assert!(
                    (a - r).abs() < 1e-4 * weight_scale,
                    "bias gradient {a} vs {r}"
                );
            }
            let input_grad = x.grad(&grads);
            assert_eq!(input_grad.is_some(), track_input);
            if let Some(got) = input_grad {
                let want = to_vec(x.grad(&grads_ref).unwrap());
                let error = relative_error(&to_vec(got), &want);
                assert!(error < 1e-4, "input gradient differs by {error}");
            }
            for (got, want) in [
                (bn.running_mean.value(), bn_ref.running_mean.value()),
                (bn.running_var.value(), bn_ref.running_var.value()),
            ] {
                assert!(relative_error(&to_vec(got), &to_vec(want)) < 1e-5);
            }
        }
    }

    #[test]
    fn the_inference_block_matches_burns_layers_with_running_statistics() {
        let device = Device::flex();
        for (c, o, b, h, w) in [(1, 4, 3, 6, 6), (3, 5, 2, 7, 9)] {
            let (conv, mut bn) = layers(c, o, &device);
            let stats = |f: fn(f32) -> f32| {
                let v: Vec<f32> = (0..o).map(|i| f(i as f32)).collect();
                burn::module::RunningState::new(Tensor::<1>::from_data(
                    TensorData::new(v, [o]),
                    &device,
                ))
            };
            bn.running_mean = stats(|i| 0.1 * i - 0.2);
            bn.running_var = stats(|i| 0.5 + 0.3 * i);
            let x = noise([b, c, h, w], 5, &device);
            assert!(is_plain_cpu(&x));
            let pool = MaxPool2dConfig::new([2, 2]).init();
            let reference = to_vec(pool.forward(relu(bn.forward(conv.forward(x.clone())))));
            let fused = conv_block_inference(x.swap_dims(0, 1), &conv, &bn)
                .expect("the inference block applies to a plain CPU tensor")
                .swap_dims(0, 1);
            let error = relative_error(&to_vec(fused), &reference);
            assert!(error < 1e-5, "outputs differ by {error}");
        }
    }

    #[test]
    fn the_im2col_size_limit_sends_large_images_to_burns_layers() {
        assert!(fits(1, 128, 28, 28));
        assert!(fits(32, 256, 14, 14));
        assert!(!fits(3, 128, 256, 256));
        assert!(!fits(usize::MAX, 2, 2, 2));
    }

    #[test]
    fn the_fused_block_steps_aside_where_it_does_not_apply() {
        // Evaluation device (no autodiff): Burn's layers run.
        let device = Device::flex();
        let (conv, bn) = layers(1, 2, &device.clone().autodiff());
        let x = Tensor::<4>::zeros([1, 2, 4, 4], &device);
        assert!(!applies(&x, &[&bn]));
        // A 5×5 convolution is not the fused block's.
        let device = Device::flex().autodiff();
        let wide = Conv2dConfig::new([1, 2], [5, 5]).init(&device);
        let x = Tensor::<4>::zeros([1, 2, 8, 8], &device).require_grad();
        assert!(applies(&x, &[&bn]));
        assert!(conv_block(x.clone(), &wide, &bn).is_none());
        assert!(conv_block(x, &conv, &bn).is_some());
    }
}
