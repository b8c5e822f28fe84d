//! Sharpness-Aware Minimization (Foret et al., ICLR 2021) and its adaptive variant ASAM (Kwon et
//! al., ICML 2021), as a wrapper around any base optimiser step.
//!
//! One SAM step on a batch: g = ∇L(w); e = ρ·g/‖g‖₂ with one global L2 norm over every trainable
//! parameter (weight decay not included); g' = ∇L(w + e) on the same batch; then the base step
//! (SGD with momentum and weight decay) at the *original* w with g'. ASAM scales elementwise with
//! T = |w| + η: e = ρ·T²g/‖T g‖₂.
//!
//! [`perturbed`] builds w + e as a new module whose parameters are fresh leaf tensors keeping each
//! [`ParamId`], so the gradients of the second pass map back onto the original model by id.
//! Buffers that have no gradient (BatchNorm running statistics) are left as they are; the caller
//! freezes their update in the second pass (see `Net::set_bn_momentum`).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// How the ascent step is scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ascent {
    /// SAM: e = ρ·g/‖g‖.
    Plain,
    /// ASAM: e = ρ·T²g/‖Tg‖, T = |w| + η.
    Adaptive { eta: f64 },
}

/// ASAM's η (the ASAM paper's 0.01).
pub const ASAM_ETA: f64 = 0.01;

/// Below this gradient norm no ascent is taken (a zero gradient has no direction).
const MIN_NORM: f64 = 1e-12;

/// The module at w + e, or `None` when the gradient is zero (then w + e = w).
pub fn perturbed<M: Module>(
    model: &M,
    grads: &GradientsParams,
    rho: f64,
    ascent: Ascent,
) -> Option<M> {
    let norm = scaled_grad_norm(model, grads, ascent);
    if !norm.is_finite() || norm < MIN_NORM || rho == 0.0 {
        return None;
    }
    let mut mapper = Perturb {
        grads,
        scale: rho / norm,
        ascent,
    };
    Some(model.clone().map(&mut mapper))
}

/// ‖g‖₂ (SAM) or ‖T g‖₂ (ASAM) over every parameter that has a gradient.
pub fn scaled_grad_norm<M: Module>(model: &M, grads: &GradientsParams, ascent: Ascent) -> f64 {
    let mut visitor = SquaredNorm {
        grads,
        ascent,
        sums: Vec::new(),
    };
    model.visit(&mut visitor);
    if visitor.sums.is_empty() {
        return 0.0;
    }
    // One read for every parameter's sum (on a GPU each read waits for the queue), added up in
    // f64 on the host.
    let sums = Tensor::cat(visitor.sums, 0)
        .into_data()
        .try_to_vec_as::<f32>()
        .unwrap_or_default();
    sums.iter().map(|&v| f64::from(v)).sum::<f64>().sqrt()
}

/// T = |w| + η (ASAM) or 1 (SAM), elementwise, on the gradient's device.
fn scaling<const D: usize>(weight: &Param<Tensor<D>>, ascent: Ascent) -> Option<Tensor<D>> {
    match ascent {
        Ascent::Plain => None,
        Ascent::Adaptive { eta } => Some(weight.val().inner().abs().add_scalar(eta)),
    }
}

struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    ascent: Ascent,
    /// Each parameter's sum of squares, still on the device.
    sums: Vec<Tensor<1>>,
}

impl ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(grad) = self.grads.get::<D>(param.id) else {
            return;
        };
        let scaled = match scaling(param, self.ascent) {
            Some(t) => grad * t,
            None => grad,
        };
        self.sums.push(scaled.powi_scalar(2).sum());
    }
}

struct Perturb<'a> {
    grads: &'a GradientsParams,
    scale: f64,
    ascent: Ascent,
}

impl ModuleMapper for Perturb<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let id: ParamId = param.id;
        let Some(grad) = self.grads.get::<D>(id) else {
            return param;
        };
        let step = match scaling(&param, self.ascent) {
            Some(t) => grad * t.powi_scalar(2),
            None => grad,
        }
        .mul_scalar(self.scale);
        let (id, weight, mapper) = param.consume();
        let moved = Tensor::from_inner(weight.inner() + step).require_grad();
        Param::from_mapped_value(id, moved, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::{GradientsParams, SgdConfig};
    use burn::tensor::{Device, TensorData};

    /// A 2→1 linear layer with w = [1, 2], b = 0.5 on an autodiff device.
    fn tiny(device: &Device) -> Linear {
        let layer = LinearConfig::new(2, 1).init(device);
        let weight = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0], [2, 1]), device);
        let bias = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), device);
        Linear {
            weight: Param::initialized(layer.weight.id, weight.require_grad()),
            bias: layer
                .bias
                .map(|b| Param::initialized(b.id, bias.require_grad())),
        }
    }

    /// L(w) = ½ (w·x + b − y)² on one sample x = [3, −1], y = 0.
    fn loss(layer: &Linear, device: &Device) -> Tensor<1> {
        let x = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, -1.0], [1, 2]), device);
        layer.forward(x).powi_scalar(2).mul_scalar(0.5).reshape([1])
    }

    fn values(layer: &Linear) -> Vec<f32> {
        let mut v = layer
            .weight
            .val()
            .into_data()
            .try_to_vec_as::<f32>()
            .unwrap();
        v.extend(
            layer
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .try_to_vec_as::<f32>()
                .unwrap(),
        );
        v
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    /// One SAM step by hand: residual r = w·x + b − y = 3 − 2 + 0.5 = 1.5;
    /// g = r·[x, 1] = [4.5, −1.5, 1.5]; ‖g‖ = 1.5·√11.
    /// e = ρ g/‖g‖ = ρ/√11 · [3, −1, 1]; with ρ = 0.1: w + e = [1 + 0.3/√11, 2 − 0.1/√11, 0.5 + 0.1/√11].
    /// r' = r + e·[x, 1] = 1.5 + ρ·11/√11 = 1.5 + 0.1·√11; g' = r'·[3, −1, 1].
    /// Plain SGD (lr 0.1): w ← w − 0.1·g'.
    #[test]
    fn sam_step_matches_hand_computation() {
        let device = Device::flex().autodiff();
        let model = tiny(&device);
        let rho = 0.1f64;
        let grads = GradientsParams::from_grads(loss(&model, &device).backward(), &model);
        let norm = scaled_grad_norm(&model, &grads, Ascent::Plain);
        close(&[norm as f32], &[(1.5 * 11f64.sqrt()) as f32]);

        let moved = perturbed(&model, &grads, rho, Ascent::Plain).unwrap();
        let s = (rho / 11f64.sqrt()) as f32;
        close(&values(&moved), &[1.0 + 3.0 * s, 2.0 - s, 0.5 + s]);
        assert_eq!(
            moved.weight.id, model.weight.id,
            "the perturbed weight keeps its ParamId"
        );
        close(&values(&model), &[1.0, 2.0, 0.5]);

        let grads2 = GradientsParams::from_grads(loss(&moved, &device).backward(), &moved);
        let r2 = (1.5 + rho * 11f64.sqrt()) as f32;
        let g2 = grads2.get::<2>(model.weight.id).unwrap();
        close(
            &g2.into_data().try_to_vec_as::<f32>().unwrap(),
            &[3.0 * r2, -r2],
        );

        let mut sgd = SgdConfig::new().init();
        let stepped = sgd.step(0.1, model, grads2);
        close(
            &values(&stepped),
            &[1.0 - 0.3 * r2, 2.0 + 0.1 * r2, 0.5 - 0.1 * r2],
        );
    }

    /// ASAM on the same problem: T = |w| + η = [1 + η, 2 + η, 0.5 + η];
    /// e = ρ T² g / ‖T g‖.
    #[test]
    fn asam_perturbation_matches_hand_computation() {
        let device = Device::flex().autodiff();
        let model = tiny(&device);
        let grads = GradientsParams::from_grads(loss(&model, &device).backward(), &model);
        let eta = 0.01f64;
        let t = [1.0 + eta, 2.0 + eta, 0.5 + eta];
        let g = [4.5, -1.5, 1.5];
        let tg: Vec<f64> = t.iter().zip(g).map(|(t, g)| t * g).collect();
        let norm = tg.iter().map(|v| v * v).sum::<f64>().sqrt();
        let moved = perturbed(&model, &grads, 0.2, Ascent::Adaptive { eta }).unwrap();
        let w = [1.0, 2.0, 0.5];
        let expected: Vec<f32> = (0..3)
            .map(|i| (w[i] + 0.2 * t[i] * t[i] * g[i] / norm) as f32)
            .collect();
        close(&values(&moved), &expected);
    }

    /// With ρ = 0 SAM takes no ascent, so its update is SGD's; with ρ > 0 it differs.
    #[test]
    fn rho_zero_is_sgd_and_positive_rho_is_not() {
        let device = Device::flex().autodiff();
        let step = |rho: f64| {
            let model = tiny(&device);
            let grads = GradientsParams::from_grads(loss(&model, &device).backward(), &model);
            let grads = match perturbed(&model, &grads, rho, Ascent::Plain) {
                Some(moved) => {
                    GradientsParams::from_grads(loss(&moved, &device).backward(), &moved)
                }
                None => grads,
            };
            values(&SgdConfig::new().init().step(0.1, model, grads))
        };
        let sgd = {
            let model = tiny(&device);
            let grads = GradientsParams::from_grads(loss(&model, &device).backward(), &model);
            values(&SgdConfig::new().init().step(0.1, model, grads))
        };
        close(&step(0.0), &sgd);
        let sam = step(0.1);
        assert!(
            sam.iter().zip(&sgd).any(|(a, b)| (a - b).abs() > 1e-3),
            "{sam:?} vs {sgd:?}"
        );
    }
}
