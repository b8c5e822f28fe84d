//! PreAct-ResNet18 in BackdoorBench's layout (`models/preact_resnet.py`): a 3×3 stem conv (64),
//! four stages of two pre-activation basic blocks (64, 128, 256, 512 channels, strides 1, 2, 2, 2),
//! a final BatchNorm + ReLU, global average pooling (so any input of at least 28×28 works) and a
//! linear head. Convolutions have no bias, as in the reference. The features are the 512-d pooled
//! vector.

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};

/// Hyper-parameters of [`PreActResNet18`].
#[derive(Config, Debug)]
pub struct PreActResNet18Config {
    /// Input channels.
    pub channels: usize,
    pub num_classes: usize,
}

/// One pre-activation basic block: BN–ReLU–conv3×3(stride)–BN–ReLU–conv3×3, plus a 1×1 strided
/// projection of the pre-activated input when the shape changes.
#[derive(Module, Debug)]
pub struct PreActBlock {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

fn conv(c_in: usize, c_out: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([c_in, c_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

impl PreActBlock {
    fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        Self {
            bn1: BatchNormConfig::new(c_in).init(device),
            conv1: conv(c_in, c_out, 3, stride, device),
            bn2: BatchNormConfig::new(c_out).init(device),
            conv2: conv(c_out, c_out, 3, 1, device),
            shortcut: (stride != 1 || c_in != c_out).then(|| conv(c_in, c_out, 1, stride, device)),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out = relu(self.bn1.forward(x.clone()));
        let shortcut = match &self.shortcut {
            Some(projection) => projection.forward(out.clone()),
            None => x,
        };
        let out = self.conv1.forward(out);
        let out = self.conv2.forward(relu(self.bn2.forward(out)));
        out + shortcut
    }

    fn batch_norms(&mut self) -> [&mut BatchNorm; 2] {
        [&mut self.bn1, &mut self.bn2]
    }
}

/// PreAct-ResNet18.
#[derive(Module, Debug)]
pub struct PreActResNet18 {
    stem: Conv2d,
    blocks: Vec<PreActBlock>,
    bn: BatchNorm,
    pool: AdaptiveAvgPool2d,
    head: Linear,
}

impl PreActResNet18Config {
    /// A freshly initialised model on `device`.
    pub fn init(&self, device: &Device) -> PreActResNet18 {
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (c_out, stride) in [(64, 1), (128, 2), (256, 2), (512, 2)] {
            blocks.push(PreActBlock::new(c_in, c_out, stride, device));
            blocks.push(PreActBlock::new(c_out, c_out, 1, device));
            c_in = c_out;
        }
        PreActResNet18 {
            stem: conv(self.channels, 64, 3, 1, device),
            blocks,
            bn: BatchNormConfig::new(512).init(device),
            pool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            head: LinearConfig::new(512, self.num_classes).init(device),
        }
    }
}

impl PreActResNet18 {
    /// The output of the last stage after the final BN–ReLU.
    ///
    /// # Shapes
    /// - input `[batch, C, H, W]` → `[batch, 512, H/8, W/8]`
    pub fn conv_features(&self, images: Tensor<4>) -> Tensor<4> {
        let mut x = self.stem.forward(images); // [b, 64, H, W]
        for block in &self.blocks {
            x = block.forward(x);
        }
        relu(self.bn.forward(x))
    }

    /// The activations after each named layer, flattened per sample: `stem`, `stage1` … `stage4`
    /// (after the two blocks of each stage; `stage4` includes the final BN–ReLU) and `pool` (the
    /// penultimate features).
    pub fn named_features(&self, images: Tensor<4>, layer: &str) -> Option<Tensor<2>> {
        let mut x = self.stem.forward(images);
        if layer == "stem" {
            return Some(x.flatten(1, 3));
        }
        for (stage, pair) in self.blocks.chunks(2).enumerate() {
            for block in pair {
                x = block.forward(x);
            }
            if stage == 3 {
                x = relu(self.bn.forward(x));
            }
            if layer == format!("stage{}", stage + 1) {
                return Some(x.flatten(1, 3));
            }
        }
        (layer == "pool").then(|| self.pool.forward(x).flatten(1, 3))
    }

    /// The pooled 512-d features.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        self.pool.forward(self.conv_features(images)).flatten(1, 3) // [b, 512]
    }

    /// Class logits.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.head.forward(self.features(images))
    }

    /// The pooled features computed from [`PreActResNet18::conv_features`]' output.
    pub fn features_from_conv(&self, conv: Tensor<4>) -> Tensor<2> {
        self.pool.forward(conv).flatten(1, 3)
    }

    /// Class logits from the pooled features.
    pub fn logits(&self, features: Tensor<2>) -> Tensor<2> {
        self.head.forward(features)
    }

    /// The BatchNorm layers, deepest first (the final one, then each block's second and first,
    /// last block first).
    pub fn batch_norms_deepest_first(&mut self) -> Vec<&mut BatchNorm> {
        let mut out = vec![&mut self.bn];
        for block in self.blocks.iter_mut().rev() {
            let [bn1, bn2] = block.batch_norms();
            out.push(bn2);
            out.push(bn1);
        }
        out
    }

    /// Sets the running-statistics momentum of every BatchNorm (0 freezes them).
    pub fn set_bn_momentum(&mut self, momentum: f64) {
        self.bn.momentum = momentum;
        for block in &mut self.blocks {
            for bn in block.batch_norms() {
                bn.momentum = momentum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_for_mnist_and_cifar_sizes() {
        let device = Device::flex();
        let model = PreActResNet18Config::new(1, 10).init(&device);
        let x = Tensor::<4>::zeros([2, 1, 28, 28], &device);
        assert_eq!(model.features(x.clone()).dims(), [2, 512]);
        assert_eq!(model.forward(x).dims(), [2, 10]);
        let rgb = PreActResNet18Config::new(3, 43).init(&device);
        let x = Tensor::<4>::zeros([1, 3, 32, 32], &device);
        assert_eq!(rgb.conv_features(x.clone()).dims(), [1, 512, 4, 4]);
        assert_eq!(rgb.forward(x.clone()).dims(), [1, 43]);
        let stage2 = rgb.named_features(x.clone(), "stage2").unwrap();
        assert_eq!(stage2.dims(), [1, 128 * 16 * 16]);
        let pooled = rgb.named_features(x.clone(), "pool").unwrap();
        assert_eq!(
            pooled.into_data().try_to_vec_as::<f32>().unwrap(),
            rgb.features(x.clone())
                .into_data()
                .try_to_vec_as::<f32>()
                .unwrap()
        );
        assert!(rgb.named_features(x, "stage9").is_none());
        // 11.2 M parameters, as BackdoorBench's PreAct-ResNet18 (BN running stats excluded).
        let params = rgb.num_params();
        assert!((11_000_000..11_300_000).contains(&params), "{params}");
    }
}
