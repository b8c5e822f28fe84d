//! The embedded demo set is byte-for-byte the PyTorch reference's split.

use poisonscope::data::{self, LoadOptions, Summary};
use sha2::{Digest, Sha256};

/// Rebuilds the reference's record layout (1 label byte + 784 pixels per sample).
fn records(d: &data::Dataset) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..d.len() {
        out.push(d.labels[i] as u8);
        out.extend_from_slice(d.image(i).unwrap());
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn embedded_mnist_matches_the_reference_split() {
    let d = data::load("embedded:mnist", &LoadOptions::default()).unwrap();
    let s = Summary::of(&d);
    assert_eq!((s.n_train, s.n_test), (8000, 2000));
    assert_eq!(s.shape, [28, 28, 1]);
    let train: Vec<usize> = s.classes.iter().map(|c| c.train).collect();
    let test: Vec<usize> = s.classes.iter().map(|c| c.test).collect();
    assert_eq!(train, [784, 882, 805, 828, 789, 679, 811, 882, 755, 785]);
    assert_eq!(test, [217, 245, 186, 204, 191, 184, 203, 188, 189, 193]);
    assert_eq!(
        hex(&Sha256::digest(records(&d.train))),
        "2c003b55dc5938789c722170e10025f7d805696c65dcb32d6bf59df1f6f8f5ed"
    );
    assert_eq!(
        hex(&Sha256::digest(records(&d.test))),
        "1222e842d37602b666acf8ae0dd39712f3e65b27c7609dcdc3287e275fdb4e61"
    );
}

#[test]
fn limit_keeps_a_stratified_subset() {
    let options = LoadOptions {
        limit: 1000,
        ..LoadOptions::default()
    };
    let d = data::load("embedded:mnist", &options).unwrap();
    assert_eq!(d.train.len(), 1000);
    assert_eq!(d.test.len(), 2000);
    // class 1 has 882/8000 of the samples → 110.25 of 1000
    let ones = d.train.class_counts()[1];
    assert!((110..=111).contains(&ones), "{ones}");
}
