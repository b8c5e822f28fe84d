//! The small CNN for MNIST-size inputs, the same layout as the PyTorch reference's `SmallCNN`:
//! conv(C→32, 3, pad 1)–BN–ReLU–maxpool 2, conv(32→64, 3, pad 1)–BN–ReLU–maxpool 2, flatten,
//! fc(64·⌊H/4⌋·⌊W/4⌋ → 128)–ReLU (the features), fc(128 → classes).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Hyper-parameters of [`SmallCnn`].
#[derive(Config, Debug)]
pub struct SmallCnnConfig {
    /// Input channels (1 for grayscale, 3 for RGB).
    pub channels: usize,
    /// Input height and width.
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
    /// Size of the feature (penultimate) layer.
    #[config(default = 128)]
    pub feature_dim: usize,
}

/// The small CNN.
#[derive(Module, Debug)]
pub struct SmallCnn {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    pool: MaxPool2d,
    fc: Linear,
    head: Linear,
}

impl SmallCnnConfig {
    /// A freshly initialised model on `device`.
    pub fn init(&self, device: &Device) -> SmallCnn {
        let conv = |c_in, c_out| {
            Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device)
        };
        let flat = 64 * (self.height / 4) * (self.width / 4);
        SmallCnn {
            conv1: conv(self.channels, 32),
            bn1: BatchNormConfig::new(32).init(device),
            conv2: conv(32, 64),
            bn2: BatchNormConfig::new(64).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            fc: LinearConfig::new(flat, self.feature_dim).init(device),
            head: LinearConfig::new(self.feature_dim, self.num_classes).init(device),
        }
    }
}

impl SmallCnn {
    /// The output of the second conv block, before flattening.
    ///
    /// # Shapes
    /// - input `[batch, C, H, W]` → `[batch, 64, H/4, W/4]`
    pub fn conv_features(&self, images: Tensor<4>) -> Tensor<4> {
        self.blocks(images, 2)
    }

    /// The first `blocks` conv blocks (1 or 2), NCHW: fused where they apply, Burn's layers
    /// otherwise.
    fn blocks(&self, images: Tensor<4>, blocks: usize) -> Tensor<4> {
        if let Some(fused) = self.fused_blocks(&images, blocks) {
            return fused;
        }
        let mut x = images;
        for (conv, bn) in self.block_layers().into_iter().take(blocks) {
            x = self.pool.forward(relu(bn.forward(conv.forward(x))));
        }
        x
    }

    /// The conv and BatchNorm of each block, shallow first.
    fn block_layers(&self) -> [(&Conv2d, &BatchNorm); 2] {
        [(&self.conv1, &self.bn1), (&self.conv2, &self.bn2)]
    }

    /// The first `blocks` conv blocks (1 or 2) through the fused CPU blocks ([`super::fused`]):
    /// the training block on a tracked CPU tensor, the inference block on a plain one; `None`
    /// elsewhere (CUDA), where Burn's layers run.
    fn fused_blocks(&self, images: &Tensor<4>, blocks: usize) -> Option<Tensor<4>> {
        let layers = self.block_layers();
        let [b, c, h, w] = images.dims();
        // Checked before any block runs: a training block updates its running statistics, so
        // falling back to Burn's layers half-way would update them twice.
        let sizes_fit = super::fused::fits(c, b, h, w)
            && super::fused::fits(layers[0].0.weight.dims()[0], b, h / 2, w / 2);
        if !sizes_fit || !layers.iter().all(|(conv, _)| super::fused::suitable(conv)) {
            return None;
        }
        let training = super::fused::applies(images, &[&self.bn1, &self.bn2]);
        if !training && !super::fused::is_plain_cpu(images) {
            return None;
        }
        let block = |x, conv, bn| {
            if training {
                super::fused::conv_block(x, conv, bn)
            } else {
                super::fused::conv_block_inference(x, conv, bn)
            }
        };
        // The blocks work channel-major, [C, B, H, W]; one channel needs no copy.
        let mut x = if c == 1 {
            images.clone().reshape([1, b, h, w])
        } else {
            images.clone().swap_dims(0, 1)
        };
        for (conv, bn) in layers.into_iter().take(blocks) {
            x = block(x, conv, bn)?;
        }
        Some(x.swap_dims(0, 1))
    }

    /// The activations after each named layer, flattened per sample: `block1` (conv–BN–ReLU–pool,
    /// 32·H/2·W/2), `block2` (64·H/4·W/4), `fc` (the penultimate features).
    pub fn named_features(&self, images: Tensor<4>, layer: &str) -> Option<Tensor<2>> {
        match layer {
            "block1" => Some(self.blocks(images, 1).flatten(1, 3)),
            "block2" => Some(self.blocks(images, 2).flatten(1, 3)),
            "fc" => Some(self.features(images)),
            _ => None,
        }
    }

    /// The penultimate features.
    ///
    /// # Shapes
    /// - input `[batch, C, H, W]` → `[batch, feature_dim]`
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let x: Tensor<2> = self.conv_features(images).flatten(1, 3);
        relu(self.fc.forward(x))
    }

    /// Class logits.
    ///
    /// # Shapes
    /// - input `[batch, C, H, W]` → `[batch, num_classes]`
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.features(images))
    }

    /// The penultimate features computed from [`SmallCnn::conv_features`]' output.
    pub fn features_from_conv(&self, conv: Tensor<4>) -> Tensor<2> {
        relu(self.fc.forward(conv.flatten(1, 3)))
    }

    /// Class logits from the penultimate features.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    /// The BatchNorm layers, deepest first.
    pub fn batch_norms_deepest_first(&mut self) -> Vec<&mut BatchNorm> {
        vec![&mut self.bn2, &mut self.bn1]
    }

    /// Sets the running-statistics momentum of both BatchNorms (0 freezes them).
    pub fn set_bn_momentum(&mut self, momentum: f64) {
        self.bn1.momentum = momentum;
        self.bn2.momentum = momentum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let device = Device::flex();
        let model = SmallCnnConfig::new(1, 28, 28, 10).init(&device);
        let x = Tensor::<4>::zeros([3, 1, 28, 28], &device);
        assert_eq!(model.conv_features(x.clone()).dims(), [3, 64, 7, 7]);
        assert_eq!(model.features(x.clone()).dims(), [3, 128]);
        assert_eq!(model.forward(x.clone()).dims(), [3, 10]);
        let block1 = model.named_features(x.clone(), "block1").unwrap();
        assert_eq!(block1.dims(), [3, 32 * 14 * 14]);
        let fc = model.named_features(x.clone(), "fc").unwrap();
        assert_eq!(
            fc.into_data().try_to_vec_as::<f32>().unwrap(),
            model
                .features(x.clone())
                .into_data()
                .try_to_vec_as::<f32>()
                .unwrap()
        );
        assert!(model.named_features(x, "nope").is_none());
        let rgb = SmallCnnConfig::new(3, 32, 32, 10).init(&device);
        assert_eq!(
            rgb.forward(Tensor::<4>::zeros([2, 3, 32, 32], &device))
                .dims(),
            [2, 10]
        );
    }
}
