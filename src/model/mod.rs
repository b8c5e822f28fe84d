//! Burn models. Each exposes `forward` (logits), `features` (the penultimate layer, which the
//! detectors read) and `conv_features` (the last convolutional block).

pub mod cnn;
pub mod fused;
pub mod kernels;
pub mod resnet;

use burn::module::Module;
use burn::nn::BatchNorm;
use burn::tensor::{Device, Tensor};

pub use cnn::{SmallCnn, SmallCnnConfig};
pub use resnet::{PreActResNet18, PreActResNet18Config};

use crate::config::ModelKind;
use crate::data::Shape;

/// The outputs of [`Net::inspect`].
pub struct Inspection {
    /// `[batch, channels, h, w]`
    pub conv: Tensor<4>,
    /// `[batch, feature_dim]`
    pub features: Tensor<2>,
    /// `[batch, classes]`
    pub logits: Tensor<2>,
}

/// The classifier being trained: one of the supported architectures.
// The variants are a few hundred bytes of handles each (the weights live behind them); moving
// 1.5 kB once per optimiser step costs nothing next to the step, and Burn's `Module` derive
// does not go through a `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Net {
    Cnn(SmallCnn),
    PreActResNet18(PreActResNet18),
}

/// Checks that images of `shape` suit the model `kind` (see [`ModelKind::check_input`]).
pub fn check_input(kind: ModelKind, shape: Shape) -> Result<(), String> {
    kind.check_input(shape)
}

impl Net {
    /// A freshly initialised model for images of `shape` and `num_classes` classes.
    ///
    /// The weights come from Burn's initialisers on `device`; seed the device
    /// (`burn::tensor::Device::seed`) first for reproducible weights.
    pub fn new(kind: ModelKind, shape: Shape, num_classes: usize, device: &Device) -> Self {
        match kind {
            ModelKind::Cnn => Self::Cnn(
                SmallCnnConfig::new(shape.channels, shape.height, shape.width, num_classes)
                    .init(device),
            ),
            ModelKind::PreActResNet18 => Self::PreActResNet18(
                PreActResNet18Config::new(shape.channels, num_classes).init(device),
            ),
        }
    }

    /// Class logits `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Self::Cnn(m) => m.forward(images),
            Self::PreActResNet18(m) => m.forward(images),
        }
    }

    /// Penultimate features `[batch, feature_dim]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Self::Cnn(m) => m.features(images),
            Self::PreActResNet18(m) => m.features(images),
        }
    }

    /// Output of the last convolutional block `[batch, channels, h, w]`.
    pub fn conv_features(&self, images: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Cnn(m) => m.conv_features(images),
            Self::PreActResNet18(m) => m.conv_features(images),
        }
    }

    /// One pass that returns what the detectors read: the last conv block, the penultimate
    /// features and the logits.
    pub fn inspect(&self, images: Tensor<4>) -> Inspection {
        let (conv, features, logits) = match self {
            Self::Cnn(m) => {
                let conv = m.conv_features(images);
                let features = m.features_from_conv(conv.clone());
                let logits = m.logits(features.clone());
                (conv, features, logits)
            }
            Self::PreActResNet18(m) => {
                let conv = m.conv_features(images);
                let features = m.features_from_conv(conv.clone());
                let logits = m.logits(features.clone());
                (conv, features, logits)
            }
        };
        Inspection {
            conv,
            features,
            logits,
        }
    }

    /// Name of the layer [`Net::conv_features`] returns.
    pub fn conv_layer_name(&self) -> &'static str {
        match self {
            Self::Cnn(_) => "block2",
            Self::PreActResNet18(_) => "stage4",
        }
    }

    /// The layers [`Net::named_features`] knows, shallow to deep; the last is the penultimate one.
    pub fn layer_names(&self) -> &'static [&'static str] {
        match self {
            Self::Cnn(_) => &["block1", "block2", "fc"],
            Self::PreActResNet18(_) => &["stem", "stage1", "stage2", "stage3", "stage4", "pool"],
        }
    }

    /// Activations after `layer` (one of [`Net::layer_names`]), flattened to `[batch, n]`, or
    /// `None` for an unknown name.
    pub fn named_features(&self, images: Tensor<4>, layer: &str) -> Option<Tensor<2>> {
        match self {
            Self::Cnn(m) => m.named_features(images, layer),
            Self::PreActResNet18(m) => m.named_features(images, layer),
        }
    }

    /// Number of BatchNorm layers.
    pub fn batch_norm_count(&self) -> usize {
        self.clone().batch_norms_deepest_first().len()
    }

    /// A copy whose `layers` deepest BatchNorm layers have their scale and shift (γ, β, not the
    /// running statistics) multiplied by `factor`: IBD-PSC's parameter amplification. `layers`
    /// beyond the model's count amplify them all.
    pub fn amplified(&self, layers: usize, factor: f32) -> Net {
        let mut copy = self.clone();
        for bn in copy.batch_norms_deepest_first().into_iter().take(layers) {
            bn.gamma = bn.gamma.clone().map(|t| t * factor);
            bn.beta = bn.beta.clone().map(|t| t * factor);
        }
        copy
    }

    fn batch_norms_deepest_first(&mut self) -> Vec<&mut BatchNorm> {
        match self {
            Self::Cnn(m) => m.batch_norms_deepest_first(),
            Self::PreActResNet18(m) => m.batch_norms_deepest_first(),
        }
    }

    /// Sets the running-statistics momentum of every BatchNorm; 0 keeps the running statistics
    /// unchanged by a forward pass (SAM's second pass).
    pub fn set_bn_momentum(&mut self, momentum: f64) {
        match self {
            Self::Cnn(m) => m.set_bn_momentum(momentum),
            Self::PreActResNet18(m) => m.set_bn_momentum(momentum),
        }
    }
}
