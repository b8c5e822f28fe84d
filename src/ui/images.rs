//! Dataset images as egui images.

use eframe::egui;

use crate::data::Dataset;

/// The image of sample `index` as an egui image.
pub fn color_image(data: &Dataset, index: usize) -> Option<egui::ColorImage> {
    image_of(data, data.image(index)?)
}

pub(super) fn image_of(data: &Dataset, pixels: &[u8]) -> Option<egui::ColorImage> {
    let s = data.shape;
    let size = [s.width, s.height];
    (pixels.len() == s.width * s.height * s.channels).then(|| match s.channels {
        1 => egui::ColorImage::from_gray(size, pixels),
        _ => egui::ColorImage::from_rgb(size, pixels),
    })
}
