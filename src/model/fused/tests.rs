//! The fused block against Burn's own layers.

use super::*;
use burn::module::Param;
use burn::nn::BatchNormConfig;
use burn::nn::conv::Conv2dConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::Device;
use burn::tensor::activation::relu;

pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec_as::<f32>().unwrap()
}

/// Largest |a − b| relative to the largest |b| (the scale of the reference values).
pub(crate) fn relative_error(a: &[f32], b: &[f32]) -> f32 {
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
pub(crate) fn noise<const D: usize>(shape: [usize; D], salt: u64, device: &Device) -> Tensor<D> {
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
pub(crate) fn param<const D: usize>(id: burn::module::ParamId, t: Tensor<D>) -> Param<Tensor<D>> {
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
