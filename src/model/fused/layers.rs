//! PreAct-ResNet's layers as Burn autodiff operations on the CPU backend, on channel-major
//! activations (`[C, B, H, W]`): a convolution without bias (3×3 or 1×1, stride 1 or 2) and the
//! pre-activation BatchNorm + ReLU, each with its own backward pass, and their evaluation twins.
//! The residual add and the global average pool stay Burn's (elementwise, no copies).
//!
//! Why, as for the small CNN's block ([`super`]): Burn's CPU backend implements the
//! convolution's forward pass only; its gradients and the training BatchNorm run through generic
//! code that copies and transposes whole activations. Here the convolution and both its
//! gradients are single matrix products over an im2col matrix built when needed (the backward
//! pass builds it again rather than keeping nine copies of every activation alive), and
//! BatchNorm works on contiguous channel rows.

use std::sync::Arc;

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};

use super::{Ad, flex, primitive, slice, values};
use crate::model::kernels::conv::{self, Geometry};
use crate::model::kernels::{self, Buffer, Dims, profile};

/// The geometry of `layer` if these layers can run it: 3×3 with padding 1 or 1×1 without,
/// stride 1 or 2, no bias, dilation 1, one group.
pub fn geometry(layer: &Conv2d) -> Option<Geometry> {
    let [k, k2] = layer.kernel_size;
    let [s, s2] = layer.stride;
    let pad = match layer.padding {
        PaddingConfig2d::Explicit(a, b, c, d) if a == b && b == c && c == d => a,
        PaddingConfig2d::Valid => 0,
        _ => return None,
    };
    let fits = k == k2
        && s == s2
        && matches!((k, pad), (3, 1) | (1, 0))
        && matches!(s, 1 | 2)
        && layer.dilation == [1, 1]
        && layer.groups == 1
        && layer.bias.is_none();
    fits.then_some(Geometry {
        kernel: k,
        stride: s,
        pad,
    })
}

/// The `[C, B, H, W]` size of a 4-d shape.
fn dims(shape: &[usize]) -> Option<Dims> {
    let &[c, b, h, w] = shape else { return None };
    Some(Dims { c, b, h, w })
}

/// The values and `[O, C·k·k]` size of a convolution's weight for a `c`-channel input.
fn weight_of(weight: &FlexTensor, c: usize, g: Geometry) -> Option<(FlexTensor, usize)> {
    let (w, shape) = values(weight)?;
    let &[o, wc, kh, kw] = shape.as_slice() else {
        return None;
    };
    (wc == c && kh == g.kernel && kw == g.kernel).then_some((w, o))
}

/// The convolution on a plain CPU tensor (evaluation); `None` where it does not apply.
pub fn conv_inference(x: Tensor<4>, layer: &Conv2d) -> Option<Tensor<4>> {
    let g = geometry(layer)?;
    let (xs, shape) = values(&x.try_into_primitive::<Flex>().ok()?)?;
    let d = dims(&shape)?;
    let (w, o) = weight_of(
        &layer.weight.val().try_into_primitive::<Flex>().ok()?,
        d.c,
        g,
    )?;
    let (y, out) = conv::conv_forward(slice(&xs), d, g, slice(&w), o);
    Some(Tensor::<4>::from_primitive::<Flex>(flex(
        y.into_vec(),
        &[out.c, out.b, out.h, out.w],
    )))
}

/// The convolution on a tracked CPU tensor (training); `None` where it does not apply.
pub fn conv(x: Tensor<4>, layer: &Conv2d) -> Option<Tensor<4>> {
    let g = geometry(layer)?;
    let x = primitive(x)?;
    let weight = primitive(layer.weight.val())?;
    let (xs, shape) = values(x.primitive())?;
    let d = dims(&shape)?;
    let (ws, o) = weight_of(weight.primitive(), d.c, g)?;
    let (y, out) = conv::conv_forward(slice(&xs), d, g, slice(&ws), o);
    let output = flex(y.into_vec(), &[out.c, out.b, out.h, out.w]);
    let tensor = match ConvBackward
        .prepare::<NoCheckpointing>([x.node(), weight.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let saved = ConvSaved {
                input: d,
                geometry: g,
                out_channels: o,
                x: xs,
                weight: ws,
            };
            prep.finish(Arc::new(saved), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    Some(Tensor::<4>::from_primitive::<Ad>(tensor))
}

/// What the convolution's backward pass needs: its input (not its im2col matrix, nine times
/// larger; the backward pass builds that again) and its weights.
struct ConvSaved {
    input: Dims,
    geometry: Geometry,
    out_channels: usize,
    x: FlexTensor,
    weight: FlexTensor,
}

impl std::fmt::Debug for ConvSaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvSaved")
            .field("input", &self.input)
            .field("geometry", &self.geometry)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    type State = Arc<ConvSaved>;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node, weight_node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let s = ops.state;
        let (d, g, o) = (s.input, s.geometry, s.out_channels);
        if let Some(node) = weight_node {
            let grad_w = conv::conv_weight_grad(slice(&s.x), d, g, slice(&grad), o);
            grads.register::<Flex>(node.id, flex(grad_w, &[o, d.c, g.kernel, g.kernel]));
        }
        if let Some(node) = x_node {
            let grad_x = conv::conv_input_grad(slice(&s.weight), d, g, slice(&grad), o);
            grads.register::<Flex>(node.id, flex(grad_x, &[d.c, d.b, d.h, d.w]));
        }
    }
}

/// The four per-channel vectors of a BatchNorm (γ, β, running mean, running variance) as
/// values, when they are plain CPU tensors of `c` values each.
fn norm_vectors(bn: &BatchNorm, c: usize) -> Option<[FlexTensor; 4]> {
    let plain = |t: Tensor<1>| {
        let (v, shape) = values(&t.try_into_primitive::<Flex>().ok()?)?;
        (shape == [c]).then_some(v)
    };
    Some([
        plain(bn.gamma.val())?,
        plain(bn.beta.val())?,
        plain(bn.running_mean.value())?,
        plain(bn.running_var.value())?,
    ])
}

/// BatchNorm (running statistics) + ReLU on a plain CPU tensor (evaluation); `None` where it
/// does not apply.
pub fn bn_relu_inference(x: Tensor<4>, bn: &BatchNorm) -> Option<Tensor<4>> {
    let (xs, shape) = values(&x.try_into_primitive::<Flex>().ok()?)?;
    let d = dims(&shape)?;
    let [gamma, beta, mean, var] = norm_vectors(bn, d.c)?;
    let mut out = vec![0.0; d.len()];
    kernels::batch_norm_relu_inference(
        slice(&xs),
        d.plane(),
        [slice(&gamma), slice(&beta), slice(&mean), slice(&var)],
        bn.epsilon,
        &mut out,
    );
    Some(Tensor::<4>::from_primitive::<Flex>(flex(out, &shape)))
}

/// BatchNorm (batch statistics) + ReLU on a tracked CPU tensor (training), updating the running
/// statistics as `BatchNorm::forward` does; `None` where it does not apply.
pub fn bn_relu(x: Tensor<4>, bn: &BatchNorm) -> Option<Tensor<4>> {
    if !bn.training.is_enabled() {
        return None;
    }
    let device = x.device();
    let x = primitive(x)?;
    let gamma = primitive(bn.gamma.val())?;
    let beta = primitive(bn.beta.val())?;
    let (xs, shape) = values(x.primitive())?;
    let d = dims(&shape)?;
    let (gs, _) = values(gamma.primitive())?;
    let (bs, _) = values(beta.primitive())?;
    // An empty batch has no statistics: Burn's layers say what that gives.
    if slice(&gs).len() != d.c || slice(&bs).len() != d.c || d.is_empty() {
        return None;
    }
    let plane = d.plane();
    let key = || format!("bn+relu {:>3}×{:<3} 1 forward", d.h, d.w);
    let (xhat, stats, out) = profile::time(key, 0, || {
        let mut xhat = Buffer::scratch(d.len());
        let (out, stats) = kernels::batch_norm_relu(
            slice(&xs),
            plane,
            bn.epsilon,
            [slice(&gs), slice(&bs)],
            &mut xhat,
        );
        (xhat, stats, out)
    });
    let output = flex(out, &shape);
    let tensor = match BnReluBackward
        .prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let saved = BnReluSaved {
                input: d,
                xhat,
                gamma: slice(&gs).to_vec(),
                beta: slice(&bs).to_vec(),
                inv_std: stats.inv_std.clone(),
            };
            prep.finish(Arc::new(saved), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    };
    super::update_running_statistics(bn, stats, &device);
    Some(Tensor::<4>::from_primitive::<Ad>(tensor))
}

/// What BatchNorm + ReLU's backward pass needs.
struct BnReluSaved {
    input: Dims,
    /// The normalised input, `[C, B·H·W]`.
    xhat: Buffer,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    inv_std: Vec<f32>,
}

impl std::fmt::Debug for BnReluSaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BnReluSaved")
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct BnReluBackward;

impl Backward<Flex, 3> for BnReluBackward {
    type State = Arc<BnReluSaved>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node).to_contiguous();
        let s = ops.state;
        let d = s.input;
        let key = || format!("bn+relu {:>3}×{:<3} 2 backward", d.h, d.w);
        let (grad_x, grad_gamma, grad_beta) = profile::time(key, 0, || {
            kernels::batch_norm_relu_backward(
                &s.xhat,
                d.plane(),
                [&s.gamma, &s.beta, &s.inv_std],
                slice(&grad),
            )
        });
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, flex(grad_gamma, &[d.c]));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, flex(grad_beta, &[d.c]));
        }
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, flex(grad_x, &[d.c, d.b, d.h, d.w]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fused::tests::{noise, param, relative_error, to_vec};
    use burn::module::Module;
    use burn::nn::BatchNormConfig;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::activation::relu;
    use burn::tensor::{Device, TensorData};

    /// Asserts that a gradient agrees with Burn's within 1e-4 relative.
    fn assert_agree(name: &str, got: &[f32], want: &[f32], case: &str) {
        let error = relative_error(got, want);
        assert!(error < 1e-4, "{name} gradient differs by {error} ({case})");
    }

    fn conv_layer(c: usize, o: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
        let pad = kernel / 2;
        let mut layer = Conv2dConfig::new([c, o], [kernel, kernel])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(device);
        layer.weight = param(
            layer.weight.id,
            noise([o, c, kernel, kernel], 7, device).mul_scalar(0.4),
        );
        layer
    }

    #[test]
    fn the_convolution_matches_burns_outputs_and_gradients() {
        let device = Device::flex().autodiff();
        // (kernel, stride, channels in, out, batch, height, width): odd and even sizes, the
        // strided 3×3 and the 1×1 projection.
        for (k, s, c, o, b, h, w) in [
            (3, 1, 3, 5, 2, 7, 9),
            (3, 2, 3, 5, 2, 7, 9),
            (3, 2, 4, 6, 3, 8, 8),
            (1, 2, 4, 6, 3, 8, 8),
            (1, 2, 2, 3, 2, 5, 7),
            (3, 1, 1, 4, 2, 2, 2),
        ] {
            let layer = conv_layer(c, o, k, s, &device);
            let reference = conv_layer(c, o, k, s, &device);
            assert!(geometry(&layer).is_some());
            let x = noise([b, c, h, w], 3, &device).require_grad();
            let want = reference.forward(x.clone());
            let got = conv(x.clone().swap_dims(0, 1), &layer)
                .expect("the layer applies on the CPU autodiff device")
                .swap_dims(0, 1);
            assert_eq!(got.dims(), want.dims());
            let error = relative_error(&to_vec(got.clone()), &to_vec(want.clone()));
            assert!(error < 1e-5, "outputs differ by {error} ({k}×{k}/{s})");
            let weights = noise(want.dims(), 4, &device);
            let grads = (got * weights.clone()).sum().backward();
            let grads_ref = (want * weights).sum().backward();
            for (name, got, want) in [
                (
                    "weight",
                    to_vec(layer.weight.val().grad(&grads).unwrap()),
                    to_vec(reference.weight.val().grad(&grads_ref).unwrap()),
                ),
                (
                    "input",
                    to_vec(x.grad(&grads).unwrap()),
                    to_vec(x.grad(&grads_ref).unwrap()),
                ),
            ] {
                assert_agree(name, &got, &want, &format!("{k}×{k}/{s}"));
            }
        }
        // Evaluation: the plain twin.
        let plain = Device::flex();
        let layer = conv_layer(3, 5, 3, 2, &plain);
        let x = noise([2, 3, 7, 9], 3, &plain);
        let got = conv_inference(x.clone().swap_dims(0, 1), &layer)
            .unwrap()
            .swap_dims(0, 1);
        assert!(relative_error(&to_vec(got), &to_vec(layer.forward(x))) < 1e-5);
    }

    #[test]
    fn the_convolution_steps_aside_for_other_layers() {
        let device = Device::flex();
        let with_bias = Conv2dConfig::new([2, 3], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        assert!(geometry(&with_bias).is_none());
        let wide = Conv2dConfig::new([2, 3], [5, 5])
            .with_bias(false)
            .init(&device);
        assert!(geometry(&wide).is_none());
        let stride3 = Conv2dConfig::new([2, 3], [1, 1])
            .with_stride([3, 3])
            .with_bias(false)
            .init(&device);
        assert!(geometry(&stride3).is_none());
    }

    fn norm(c: usize, device: &Device) -> BatchNorm {
        let mut bn = BatchNormConfig::new(c).init(device);
        let values = |f: fn(f32) -> f32| {
            let v: Vec<f32> = (0..c).map(|i| f(i as f32)).collect();
            Tensor::<1>::from_data(TensorData::new(v, [c]), device)
        };
        bn.gamma = param(bn.gamma.id, values(|i| 0.6 + 0.25 * i));
        bn.beta = param(bn.beta.id, values(|i| 0.2 - 0.15 * i));
        bn
    }

    #[test]
    fn batch_norm_relu_matches_burns_outputs_gradients_and_running_statistics() {
        let device = Device::flex().autodiff();
        // The last size is large enough for the kernels to split its rows between threads.
        for (c, b, h, w) in [(3, 2, 5, 7), (4, 3, 8, 8), (2, 5, 1, 1), (2, 8, 128, 128)] {
            let bn = norm(c, &device);
            let reference = norm(c, &device);
            let x = noise([b, c, h, w], 9, &device)
                .mul_scalar(2.0)
                .require_grad();
            let want = relu(reference.forward(x.clone()));
            let got = bn_relu(x.clone().swap_dims(0, 1), &bn)
                .expect("applies in training mode")
                .swap_dims(0, 1);
            let error = relative_error(&to_vec(got.clone()), &to_vec(want.clone()));
            assert!(error < 1e-5, "outputs differ by {error}");
            let weights = noise(want.dims(), 4, &device);
            let grads = (got * weights.clone()).sum().backward();
            let grads_ref = (want * weights).sum().backward();
            for (name, got, want) in [
                (
                    "gamma",
                    to_vec(bn.gamma.val().grad(&grads).unwrap()),
                    to_vec(reference.gamma.val().grad(&grads_ref).unwrap()),
                ),
                (
                    "beta",
                    to_vec(bn.beta.val().grad(&grads).unwrap()),
                    to_vec(reference.beta.val().grad(&grads_ref).unwrap()),
                ),
                (
                    "input",
                    to_vec(x.grad(&grads).unwrap()),
                    to_vec(x.grad(&grads_ref).unwrap()),
                ),
            ] {
                assert_agree(name, &got, &want, &format!("{c}×{b}×{h}×{w}"));
            }
            for (got, want) in [
                (bn.running_mean.value(), reference.running_mean.value()),
                (bn.running_var.value(), reference.running_var.value()),
            ] {
                assert!(relative_error(&to_vec(got), &to_vec(want)) < 1e-5);
            }
        }
        // Evaluation, with the running statistics.
        let plain = Device::flex();
        let bn = norm(3, &device).valid();
        let x = noise([2, 3, 4, 5], 9, &plain);
        let got = bn_relu_inference(x.clone().swap_dims(0, 1), &bn)
            .unwrap()
            .swap_dims(0, 1);
        let want = relu(bn.forward(x));
        assert!(relative_error(&to_vec(got), &to_vec(want)) < 1e-5);
    }
}
