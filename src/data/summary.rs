//! What `inspect-data` reports about a loaded dataset.

use serde::Serialize;

use super::{Format, SplitDataset, SplitKind};

/// One class and its sample counts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassSummary {
    pub index: usize,
    pub name: String,
    pub train: usize,
    pub test: usize,
}

/// Format, counts, classes and image shape of a dataset.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub source: String,
    pub format: Format,
    pub split: SplitKind,
    pub n_train: usize,
    pub n_test: usize,
    /// `[height, width, channels]`.
    pub shape: [usize; 3],
    pub classes: Vec<ClassSummary>,
    /// Sub-folders of the source not read (validation splits).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

impl Summary {
    /// Summarises a loaded dataset.
    pub fn of(data: &SplitDataset) -> Self {
        let train = data.train.class_counts();
        let test = data.test.class_counts();
        let s = data.train.shape;
        Self {
            source: data.source.clone(),
            format: data.format,
            split: data.split,
            n_train: data.train.len(),
            n_test: data.test.len(),
            shape: [s.height, s.width, s.channels],
            classes: data
                .train
                .class_names
                .iter()
                .enumerate()
                .map(|(index, name)| ClassSummary {
                    index,
                    name: name.clone(),
                    train: train.get(index).copied().unwrap_or(0),
                    test: test.get(index).copied().unwrap_or(0),
                })
                .collect(),
            left_out: data.left_out.clone(),
        }
    }

    /// A human-readable report.
    pub fn to_text(&self) -> String {
        let split = match self.split {
            SplitKind::FromSource => "test split from the source".to_owned(),
            SplitKind::Seeded {
                test_fraction,
                seed,
            } => format!("test split held out: {test_fraction} per class, seed {seed}"),
        };
        let [h, w, c] = self.shape;
        let mut out = format!(
            "source:  {}\nformat:  {}\nsamples: {} train / {} test ({split})\nshape:   {h}×{w}×{c} (H×W×C)\nclasses: {}\n",
            self.source,
            self.format,
            self.n_train,
            self.n_test,
            self.classes.len()
        );
        if !self.left_out.is_empty() {
            out.push_str(&format!(
                "left out: {} (validation split; poisonscope reads train/ and test/)\n",
                self.left_out.join(", ")
            ));
        }
        let width = self
            .classes
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        out.push_str(&format!(
            "  {:>3}  {:<width$}  {:>7}  {:>7}\n",
            "#", "class", "train", "test"
        ));
        for class in &self.classes {
            out.push_str(&format!(
                "  {:>3}  {:<width$}  {:>7}  {:>7}\n",
                class.index, class.name, class.train, class.test
            ));
        }
        out
    }
}
