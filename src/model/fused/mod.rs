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

/// Whether the block's im2col matrix for a `[C, B, H, W]` input stays within `MAX_COL_VALUES`.
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
    kernels::conv::im2col(x, input, kernels::conv::SAME3X3, &mut col);
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

    update_running_statistics(bn, stats, &device);
    Some(output)
}

/// Updates `bn`'s running statistics with a batch's, as `BatchNorm::forward` does in training
/// mode.
fn update_running_statistics(bn: &BatchNorm, stats: kernels::Stats, device: &burn::tensor::Device) {
    let channels = stats.mean.len();
    let momentum = bn.momentum;
    let update = |state: &burn::module::RunningState<Tensor<1>>, batch: Vec<f32>| {
        let batch = Tensor::<1>::from_data(TensorData::new(batch, [channels]), device);
        let running = state
            .value_sync()
            .to_device(device)
            .mul_scalar(1.0 - momentum)
            .add(batch.mul_scalar(momentum));
        state.update(running.detach());
    };
    update(&bn.running_mean, stats.mean);
    update(&bn.running_var, stats.var);
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
            let grad_w = kernels::conv::weight_grad_from_col(&s.col, &grad_y, o, k, n);
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
            kernels::conv::col2im(&mut grad_col, input, kernels::conv::SAME3X3, &mut grad_x);
            grads.register::<Flex>(node.id, flex(grad_x, &[input.c, input.b, input.h, input.w]));
        }
    }
}

pub mod layers;

#[cfg(test)]
pub(crate) mod tests;
